"""How many torch threads each worker gets: from the cores this process may use and how busy they are.

torch's default is one thread per core, and its OpenMP threads spin while they wait for each other. On a 2-core
machine whose cores are busy, a tiny MLP step ran at about 1 step/s with 2 threads against 60-72 with one
(issue 12). Too many threads costs up to 50x under load, too few at most a factor of the core count when idle,
so ``auto`` leans low: it never gives a worker more threads than there are free cores per worker.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"

#: How long ``/proc/stat`` is watched to see how busy the cores are now (the load average lags by a minute).
SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class ThreadChoice:
    """The torch threads per worker, and what they were chosen from (for the one line printed on stderr)."""

    threads: int
    workers: int
    requested: int | str
    cores: int
    #: cores kept busy by other processes when choosing (``auto`` only)
    load: float | None = None

    def describe(self) -> str:
        if self.load is None:
            return f"torch threads: {self.threads} per worker (--threads {self.requested})"
        return f"torch threads: {self.threads} per worker ({self.cores} cores, load {self.load:.1f})"


def choose_threads(
    workers: int = 1,
    requested: int | str = AUTO,
    *,
    cores: int | None = None,
    load: float | None = None,
    ceiling: int | None = None,
) -> ThreadChoice:
    """Torch threads for each of ``workers`` processes on this machine.

    An int ``requested`` is used as is. ``auto``: the free cores (``cores`` this process may use minus the
    ``load``, the cores other processes keep busy, rounded) split between the workers, at least 1, and never
    more than ``ceiling`` (the process's current torch threads: torch's default, or OMP_NUM_THREADS when set,
    or what the caller already set). The measured defaults are replaced by the arguments given, for tests.
    """
    workers = max(1, workers)
    if requested != AUTO:
        count = int(requested)
        if count < 1:
            raise ValueError(f"threads must be >= 1, not {count}")
        return ThreadChoice(count, workers, count, cores or available_cores())
    cores = cores if cores is not None else available_cores()
    load = load if load is not None else other_load(cores)
    if ceiling is None:
        import torch

        ceiling = torch.get_num_threads()
    # Half a core of load or more counts as a busy core: fractions below it are the noise of an idle machine.
    free = cores - min(cores, math.floor(load + 0.5))
    threads = max(1, min(free // workers, ceiling))
    return ThreadChoice(threads, workers, AUTO, cores, round(load, 2))


def cpu_threads_per_worker(workers: int) -> int:
    """Torch threads for each of N CPU workers so that they do not oversubscribe the free cores."""
    return choose_threads(workers).threads


def apply(choice: ThreadChoice) -> None:
    """Set this process's torch threads to the choice (before any heavy torch work: pools start then)."""
    import torch

    torch.set_num_threads(choice.threads)


# --- what the machine has -----------------------------------------------------------------------------------


def _affinity() -> set[int] | None:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    allowed = _affinity()
    cores = len(allowed) if allowed else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cores, quota)) if quota else cores


def _cgroup_quota() -> int | None:
    """``cpu.max`` of cgroup v2 as whole cores (rounded up), None without a quota."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, -(-int(quota) // int(period)))


def other_load(cores: int, seconds: float = SAMPLE_SECONDS) -> float:
    """Cores that other processes keep busy now, among the CPUs this process may use.

    Measured in ``/proc/stat`` over ``seconds`` while this process sleeps. The 1-minute load average lags (it still
    counts a run that ended seconds ago, and this command's own start-up), so it only casts doubt on a quiet
    sample: when it says busier, a second, longer sample is taken and the busier one counts, so that a lull
    between another run's steps does not hand out threads that run will want back. Without ``/proc/stat`` the
    load average (scaled to this process's CPUs, less its own part) is all there is.
    """
    minute = _minute_load(cores)
    now = _busy_now(seconds)
    if now is None:
        return minute
    if min(minute, cores) >= now + 0.5:  # the sample cannot exceed the cores; the load average can
        now = max(now, _busy_now(4 * seconds) or 0.0)
    return now


def _minute_load(cores: int) -> float:
    try:
        minute = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    return max(0.0, minute * cores / max(cores, os.cpu_count() or cores) - _own_minute_load())


def _own_minute_load() -> float:
    """This process's (and its finished children's) share of the 1-minute load average, from its CPU time.

    A process that has used c CPU seconds adds at most about c/60 to the average, and never more than 1 per
    thread; a short-lived command (loading torch and a config) adds a few hundredths.
    """
    times = os.times()
    used = times.user + times.system + times.children_user + times.children_system
    return min(used, 60.0) / 60.0


def _cpu_jiffies() -> dict[int, tuple[int, int]] | None:
    """(busy, total) jiffies of each CPU in ``/proc/stat``; None where there is no such file."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    out: dict[int, tuple[int, int]] = {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        # user nice system idle iowait irq softirq steal: idle and iowait are free, steal is taken by the host.
        values = [int(v) for v in fields[:8]]
        total = sum(values)
        out[int(name[3:])] = (total - values[3] - values[4], total)
    return out


def _busy_now(seconds: float) -> float | None:
    """Busy cores among this process's CPUs over ``seconds``, less this process's own CPU time meanwhile."""
    before, own_before = _cpu_jiffies(), os.times()
    if before is None:
        return None
    time.sleep(seconds)
    after, own_after = _cpu_jiffies(), os.times()
    if after is None:
        return None
    cpus = _affinity() or set(after)
    busy = sum(after[c][0] - before[c][0] for c in cpus if c in before and c in after)
    total = sum(after[c][1] - before[c][1] for c in cpus if c in before and c in after)
    if total <= 0:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    own = (own_after.user + own_after.system - own_before.user - own_before.system) * tick
    return max(0.0, busy - own) / total * len(cpus)
