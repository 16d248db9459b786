"""Where the harness may write: every path it builds under an out folder from a name goes through ``under``, and
every file a reader may open while a run writes it goes through ``write_atomic``.

Names are validated where the config is read; ``under`` is the second line of defence, so that a name that got
past validation (an API caller's ``Plan``, a result file written by something else) still cannot write outside.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import ConfigError


class OutsideOutFolder(ConfigError):
    """A path built from a name would lie outside the folder it belongs in (``..``, an absolute name, a symlink)."""


def under(root: Path | str, *names: str) -> Path:
    """``root / names...``, refused (``OutsideOutFolder``) unless it resolves to a path inside ``root``.

    Symlinks are resolved on both sides, so a link inside ``root`` that points elsewhere is refused too.
    The returned path is the plain join (relative when ``root`` is), so messages show what the user typed.
    """
    root = Path(root)
    path = root.joinpath(*names)
    inside = root.resolve()
    resolved = path.resolve()
    if resolved == inside or not resolved.is_relative_to(inside):
        shown = "/".join(names)
        raise OutsideOutFolder(
            str(root), f"refusing to write {shown!r}: it resolves to {resolved}, outside {inside}",
            "names of benchmarks, searches and metrics may not contain '/', '..' or start with '/'",
        )
    return path


def check_out_folder(out: Path | str, flag: str = "--out") -> Path:
    """Raise ConfigError (exit 2, before anything trains) when ``out`` or a folder above it is a file.

    Nothing is created: ``--dry-run`` checks with this too.
    """
    out = Path(out)
    for path in (out, *out.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                kind = "a file" if path.is_file() else "not a folder"
                where = f"is {kind}" if path == out else f"is under {str(path)!r}, which is {kind}"
                raise ConfigError(flag, f"{str(out)!r} {where}", "give a folder path (new or existing)")
            return out
    return out


def temp_sibling(path: Path) -> Path:
    """A temporary name next to ``path`` (same folder, so ``os.replace`` is atomic) keeping its suffix (for
    writers such as matplotlib that choose the format by it), unique per process and thread."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")


def replace_atomically(path: Path, write: Callable[[Path], bool | None]) -> bool:
    """``write`` a temporary file next to ``path``, then move it into place, so a reader sees the old file or the
    new one, never a partial one. A ``write`` that returns False wrote nothing: ``path`` is left alone (False)."""
    tmp = temp_sibling(path)
    try:
        if write(tmp) is False:
            return False
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def atomic_figure(draw: Callable[[Path], Path | None], path: Path) -> Path | None:
    """``draw`` into a temporary file next to ``path``, then move it into place (or return None: nothing drawn)."""
    return path if replace_atomically(path, lambda tmp: draw(tmp) is not None) else None


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically, synced to disk before it replaces the old file."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())

    replace_atomically(path, write)


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented JSON with sorted keys (stable diffs of committed results), written atomically."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))
