"""The plugin guide (docs/plugins.md) documents every hook, every public member of the base classes and every check
of the contract suites: adding one without documenting it fails here (as datasette checks its hooks' docs)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import harness.api
import harness.hookspecs
import harness.testing
import harness.trackers

GUIDE = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
HOOKS = [
    fn for name, fn in vars(harness.hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, f"{harness.hookspecs.PROJECT_NAME}_spec")
]  # fmt: skip
#: The modules of the plugin contract's classes: base classes and data in api, the tracker's in trackers.
CONTRACT_MODULES = (harness.api, harness.trackers)
CLASSES = [
    cls for module in CONTRACT_MODULES for cls in vars(module).values()
    if inspect.isclass(cls) and cls.__module__ == module.__name__ and not cls.__name__.startswith("_")
    and (module is harness.trackers or cls.__name__ in harness.api.__all__)
]  # fmt: skip
SUITES = [getattr(harness.testing, name) for name in harness.testing.__all__ if name.endswith("Contract")]


def section(title: str) -> str:
    """The guide's text under the heading ``### `title``` up to the next heading of that level or above."""
    match = re.search(rf"^### `{re.escape(title)}`\n(.*?)(?=^#{{1,3}} )", GUIDE + "\n# end", re.S | re.M)
    assert match, f"docs/plugins.md has no section '### `{title}`'"
    return match.group(1)


def public_members(cls: type) -> dict[str, type]:
    """Attributes, methods and constructor arguments ``harness.api`` defines for ``cls`` (not torch's), and where."""
    members: dict[str, type] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ not in {m.__name__ for m in CONTRACT_MODULES}:
            continue
        names = [*vars(klass), *getattr(klass, "__annotations__", {})]
        if "__init__" in vars(klass):
            names += [p for p in inspect.signature(klass.__init__).parameters if p != "self"]
        members.update((n, klass) for n in names if not n.startswith("_"))
    return members


def base_classes_intro() -> str:
    """Where what every plugin class declares (``name``, ``Params``) is documented: before the first class."""
    return GUIDE.split("## Base classes", 1)[1].split("\n### ", 1)[0]


def test_the_hooks_and_classes_to_check_were_found():
    assert len(HOOKS) == 6 and {c.__name__ for c in CLASSES} >= {"Prior", "Regularizer", "Evaluator", "Tracker"}
    assert len(SUITES) == 4


@pytest.mark.parametrize("hook", HOOKS, ids=lambda fn: fn.__name__)
def test_every_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(hook).parameters)
    assert f"`{hook.__name__}({params}" in GUIDE, f"docs/plugins.md does not document {hook.__name__}({params})"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_public_member_of_the_base_classes_is_documented_in_its_section(cls):
    if issubclass(cls, harness.api.PluginUnavailable) and cls is not harness.api.PluginUnavailable:
        text = section("PluginUnavailable")  # documented with its base class
        assert f"`{cls.__name__}`" in text
    else:
        text = section(cls.__name__)
    # Members of the private base every plugin class shares are documented once, before the first class.
    missing = sorted(
        m for m, owner in public_members(cls).items()
        if not re.search(rf"`{m}\b", base_classes_intro() if owner.__name__.startswith("_") else text)
    )  # fmt: skip
    assert not missing, f"docs/plugins.md, section {cls.__name__}: undocumented {missing}"


def test_every_exported_function_of_the_api_is_documented():
    functions = [name for name in harness.__all__ if inspect.isfunction(getattr(harness, name))]
    assert "pretrained_weights" in functions
    for name in functions:
        assert f"`{name}(" in GUIDE, f"docs/plugins.md does not document {name}()"


@pytest.mark.parametrize("suite", SUITES, ids=lambda c: c.__name__)
def test_every_check_and_fixture_of_the_contract_suites_is_documented(suite):
    text = section(suite.__name__)
    checks = [name for name in dir(suite) if name.startswith("test_")]
    fixtures = [name for name, value in inspect.getmembers(suite) if hasattr(value, "_fixture_function_marker")
                or type(value).__name__ == "FixtureFunctionDefinition"]
    knobs = [name for name, value in vars(suite).items() if not name.startswith("_") and isinstance(value, int | float)]
    missing = sorted(n for n in [*checks, *fixtures, *knobs] if f"`{n}`" not in text)
    assert checks and not missing, f"docs/plugins.md, section {suite.__name__}: undocumented {missing}"


def test_the_guide_covers_the_scaffold_autoload_switch_and_publishing():
    for text in ("harness new-plugin NAME --kind KIND [--dir DIR]", "HARNESS_DISABLE_PLUGIN_AUTOLOAD=1",
                 "harness list --verbose", "## Publishing", "## Options and validation", "grid axis",
                 "examples/harness-prior-laplace"):
        assert text in GUIDE
