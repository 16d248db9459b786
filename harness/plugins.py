"""The plugin manager: loads every module of the ``harness`` entry-point group, built-ins included.

A module that fails to import (or whose hook raises) is recorded as broken with its distribution and error;
everything else keeps working. Two plugins registering one name is an error naming both distributions.
With ``HARNESS_DISABLE_PLUGIN_AUTOLOAD=1`` only the built-ins (distribution ``prior-harness``) are loaded.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import pluggy

from harness import hookspecs
from harness.api import Architecture, Dataset, Evaluator, Prior, Regularizer

Kind = Literal["prior", "regularizer", "evaluator", "dataset", "architecture"]

#: kind -> (hook name, base class); the order is the order `harness list` prints.
KINDS: dict[Kind, tuple[str, type]] = {
    "prior": ("harness_register_priors", Prior),
    "regularizer": ("harness_register_regularizers", Regularizer),
    "evaluator": ("harness_register_evaluators", Evaluator),
    "dataset": ("harness_register_datasets", Dataset),
    "architecture": ("harness_register_architectures", Architecture),
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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _make_register(registry: Registry, kind: Kind, dist: str, version: str) -> Callable[[type], None]:
    base = KINDS[kind][1]

    def register(cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"register() for {kind}s takes a subclass of harness.{base.__name__}, got {cls!r}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__} must set a class attribute `name` (the key used in YAML)")
        existing = registry.plugins[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise PluginConflict(
                f"{kind} {name!r} is registered by two plugins: {existing.distribution} "
                f"({existing.module}.{existing.cls.__qualname__}) and {dist} ({cls.__module__}.{cls.__qualname__})"
            )
        registry.plugins[kind][name] = PluginInfo(kind, name, cls, dist, version, cls.__module__)

    return register


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
    loaded: list[tuple[object, str, str, str]] = []  # (plugin, entry point label, distribution, version)
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        label = f"{ep.name} = {ep.value}"
        try:
            module = ep.load()
            if pm.is_registered(module):
                continue
            pm.register(module, name=f"{dist}:{ep.name}")
        except Exception as exc:  # noqa: BLE001 - any import failure makes the plugin broken, not the host
            registry.broken.append(BrokenPlugin(label, dist, version, _describe(exc)))
            continue
        loaded.append((module, label, dist, version))
    for module in extra_modules or []:
        pm.register(module)
        loaded.append((module, module.__name__, module.__name__, "local"))

    plugins = [p for p, *_ in loaded]
    for plugin, label, dist, version in loaded:
        others = [p for p in plugins if p is not plugin]
        try:
            for kind, (hook_name, _) in KINDS.items():
                caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
                caller(register=_make_register(registry, kind, dist, version))
        except PluginConflict:
            raise
        except Exception as exc:  # noqa: BLE001 - a hook that raises makes its plugin broken
            registry.broken.append(BrokenPlugin(label, dist, version, _describe(exc)))
            continue
        # A hookimpl whose name matches no spec (a typo) is kept by pluggy without a spec: say so.
        callers = pm.get_hookcallers(plugin) or []
        hooks = tuple(sorted(c.name if c.spec else f"{c.name} (no such hook)" for c in callers))
        name = getattr(plugin, "__name__", repr(plugin))
        registry.modules.append(PluginModule(label, dist, version, name, getattr(plugin, "__file__", None), hooks))
    return registry
