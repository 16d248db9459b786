"""The plugin manager: loads every module of the ``harness`` entry-point group, built-ins included.

A module that fails to import (or whose hook raises) is recorded as broken with its distribution and error;
everything else keeps working. Two plugins registering one name is an error naming both distributions.
With ``HARNESS_DISABLE_PLUGIN_AUTOLOAD=1`` only the built-ins (distribution ``prior-harness``) are loaded.

Whatever a plugin's import or hook raises is that plugin's failure, ``SystemExit`` (a ``sys.exit()`` at import) and
``KeyboardInterrupt`` included: a module that raises them itself must not take the host down. A real Ctrl-C is
told apart by a SIGINT handler installed while plugins load: when the signal arrived, loading stops with
``KeyboardInterrupt`` whatever the plugin did with it. Registration is per plugin module and all or nothing: a
hook that registers some classes and then raises leaves none of that module's classes registered.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType, ModuleType
from typing import Any, Literal

import pluggy

from harness import hookspecs
from harness.api import Architecture, Dataset, Evaluator, Prior, Regularizer
from harness.trackers import Tracker

Kind = Literal["prior", "regularizer", "evaluator", "dataset", "architecture", "tracker"]

#: kind -> (hook name, base class); the order is the order `harness list` prints.
KINDS: dict[Kind, tuple[str, type]] = {
    "prior": ("harness_register_priors", Prior),
    "regularizer": ("harness_register_regularizers", Regularizer),
    "evaluator": ("harness_register_evaluators", Evaluator),
    "dataset": ("harness_register_datasets", Dataset),
    "architecture": ("harness_register_architectures", Architecture),
    "tracker": ("harness_register_trackers", Tracker),
}

#: Set to 1 to load only the built-in plugins (as pytest's PYTEST_DISABLE_PLUGIN_AUTOLOAD does for its plugins).
AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_DISTRIBUTION = "prior-harness"


class PluginConflict(Exception):
    """Two plugins registered the same name for one kind."""


@dataclass(frozen=True)
class PluginInfo:
    kind: Kind
    name: str
    cls: type
    distribution: str
    version: str
    module: str


@dataclass(frozen=True)
class BrokenPlugin:
    entry_point: str
    distribution: str
    version: str
    error: str


@dataclass(frozen=True)
class PluginModule:
    """A loaded plugin module: where it came from and which hooks it implements (``harness list --verbose``)."""

    entry_point: str
    distribution: str
    version: str
    module: str
    path: str | None
    hooks: tuple[str, ...]


@dataclass
class Registry:
    """Every registered plugin class by kind and name, the modules they came from, and the plugins that failed."""

    plugins: dict[Kind, dict[str, PluginInfo]] = field(default_factory=lambda: {k: {} for k in KINDS})
    broken: list[BrokenPlugin] = field(default_factory=list)
    modules: list[PluginModule] = field(default_factory=list)

    def get(self, kind: Kind, name: str) -> type[Any]:
        return self.plugins[kind][name].cls

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.plugins[kind])

    def __iter__(self) -> Iterator[PluginInfo]:
        for kind in KINDS:
            yield from sorted(self.plugins[kind].values(), key=lambda p: p.name)


#: What one plugin module registered, committed to the registry only once all its hooks returned.
Staged = dict[Kind, dict[str, PluginInfo]]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}".strip()


@contextmanager
def _noting_sigint() -> Iterator[list[int]]:
    """Record SIGINTs that arrive inside the block (the previous handler still runs and raises as usual).

    A KeyboardInterrupt is raised the same way by a Ctrl-C and by a module's own ``raise KeyboardInterrupt``; only
    the signal tells them apart. Outside the main thread no handler can be set, and no signal raises there either.
    """
    received: list[int] = []
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if not callable(previous):  # SIG_IGN or SIG_DFL: a SIGINT then raises nothing in Python
        yield received
        return

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def _unless_interrupted(exc: BaseException, sigints: list[int]) -> None:
    """Return when ``exc`` is the plugin's own failure; raise KeyboardInterrupt when the user pressed Ctrl-C."""
    if sigints:
        raise KeyboardInterrupt from exc


def _make_register(
    registry: Registry, staged: Staged, kind: Kind, dist: str, version: str
) -> Callable[[type], None]:
    base = KINDS[kind][1]

    def register(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"register() for {kind}s takes a subclass of harness.{base.__name__}, got {cls!r}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__} must set a class attribute `name` (the key used in YAML)")
        existing = staged[kind].get(name) or registry.plugins[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise PluginConflict(
                f"{kind} {name!r} is registered by two plugins: {existing.distribution} "
                f"({existing.module}.{existing.cls.__qualname__}) and {dist} ({cls.__module__}.{cls.__qualname__})"
            )
        staged[kind][name] = PluginInfo(kind, name, cls, dist, version, cls.__module__)

    return register


#: A loaded plugin module: (module, entry point label, distribution, version).
_Loaded = tuple[object, str, str, str]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entry_points() -> list[metadata.EntryPoint]:
    builtins_only = os.environ.get(AUTOLOAD_ENV, "") not in ("", "0")
    # Deduplicate: an editable install can expose one distribution twice on sys.path.
    seen: dict[tuple[str, str], metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=hookspecs.PROJECT_NAME):
        if builtins_only and (ep.dist is None or _canonical(ep.dist.name) != BUILTIN_DISTRIBUTION):
            continue
        seen.setdefault((ep.name, ep.value), ep)
    return sorted(seen.values(), key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))


def load_registry(extra_modules: list[ModuleType] | None = None) -> Registry:
    """Load every ``harness`` entry point (and ``extra_modules``, for tests) into a fresh registry.

    Raises ``PluginConflict`` when two plugins claim one name.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    with _noting_sigint() as sigints:
        loaded = _import_plugins(pm, registry, sigints)
        for module in extra_modules or []:
            pm.register(module)
            loaded.append((module, module.__name__, module.__name__, "local"))
        _register_classes(pm, registry, loaded, sigints)
    if sigints:  # a plugin caught the Ctrl-C and carried on: the user still asked to stop
        raise KeyboardInterrupt
    return registry


def _import_plugins(pm: pluggy.PluginManager, registry: Registry, sigints: list[int]) -> list[_Loaded]:
    """Import every entry point's module into ``pm``; those that fail are recorded as broken."""
    loaded: list[_Loaded] = []
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        label = f"{ep.name} = {ep.value}"
        try:
            module = ep.load()
            if pm.is_registered(module):
                continue
            pm.register(module, name=f"{dist}:{ep.name}")
        except BaseException as exc:  # noqa: BLE001 - sys.exit() at import too: the plugin's failure, not the host's
            _unless_interrupted(exc, sigints)
            registry.broken.append(BrokenPlugin(label, dist, version, _describe(exc)))
            continue
        loaded.append((module, label, dist, version))
    return loaded


def _register_classes(pm: pluggy.PluginManager, registry: Registry, loaded: list[_Loaded], sigints: list[int]) -> None:
    """Call each module's hooks on its own; what it registered counts only if all of them return."""
    plugins = [p for p, *_ in loaded]
    for plugin, label, dist, version in loaded:
        others = [p for p in plugins if p is not plugin]
        staged: Staged = {kind: {} for kind in KINDS}
        try:
            for kind, (hook_name, _) in KINDS.items():
                caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
                caller(register=_make_register(registry, staged, kind, dist, version))
        except PluginConflict:
            raise
        except BaseException as exc:  # noqa: BLE001 - a hook that raises (or exits) makes its plugin broken
            _unless_interrupted(exc, sigints)
            registry.broken.append(BrokenPlugin(label, dist, version, _describe(exc)))
            continue
        for kind, classes in staged.items():
            registry.plugins[kind].update(classes)
        # A hookimpl whose name matches no spec (a typo) is kept by pluggy without a spec: say so.
        callers = pm.get_hookcallers(plugin) or []
        hooks = tuple(sorted(c.name if c.spec else f"{c.name} (no such hook)" for c in callers))
        name = getattr(plugin, "__name__", repr(plugin))
        registry.modules.append(PluginModule(label, dist, version, name, getattr(plugin, "__file__", None), hooks))
