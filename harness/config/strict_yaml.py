"""Reading a config file: bounded, strict YAML (no duplicate keys, no alias bombs), every problem a ConfigError."""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError, quote

#: What a config file may ask of the loader. The repo's benchmarks.yaml is 14 KiB, 9 levels deep and ~25,000
#: nodes and characters with its anchors expanded; an 800-byte file of nested aliases ("billion laughs") expands
#: to billions, which every later step (validation, error messages, cell configs) would copy.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
#: Nodes plus scalar characters of the document with every alias and ``<<`` merge written out.
MAX_EXPANDED = 1 << 22


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        self.key, self.line = key, line


class _Refused(Exception):
    """The document is over one of the loader's bounds (depth, expanded size) or has no content."""

    def __init__(self, message: str, mark: yaml.Mark | None = None) -> None:
        self.message, self.line = message, None if mark is None else mark.line + 1


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``) and refuses
    documents nested deeper than MAX_DEPTH or larger than MAX_EXPANDED once aliases are expanded.

    Anchors, aliases and ``<<`` merges stay allowed (benchmarks.yaml shares settings with them); only their
    expanded size is bounded, on the composed node graph, before anything is constructed from it.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # The composer recurses once per level: stop long before Python's recursion limit would.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            raise _Refused("the file is empty (nothing but whitespace or comments); write a mapping with a "
                           "top-level 'benchmarks:' key")
        _expanded_size(node, 1, {}, set())
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges: keys written beside it override the merged ones
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports the unhashable key
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _expanded_size(node: yaml.Node, depth: int, memo: dict[int, tuple[int, int]], open_: set[int]) -> int:
    """Nodes plus scalar characters under ``node`` with aliases written out; _Refused over the bounds.

    An alias is the same node object as its anchor, so the graph is walked once per node (``memo``: size and
    height) and the expanded size is summed, not built. ``open_`` holds the nodes being walked: an alias to one of
    them is a cycle (``&a [*a]``), which no config needs.
    """
    key = id(node)
    if key in memo:
        size, height = memo[key]
        if depth + height > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded", node.start_mark)
        return size
    if key in open_:
        raise _Refused("an alias refers to a node that contains it (a cycle)", node.start_mark)
    if depth > MAX_DEPTH:
        raise _Refused(f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded", node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        memo[key] = (1 + len(node.value), 0)
        return memo[key][0]
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    open_.add(key)
    size, height = 1, 0
    for child in children:
        size += _expanded_size(child, depth + 1, memo, open_)
        height = max(height, memo[id(child)][1] + 1)
        if size > MAX_EXPANDED:
            raise _Refused(
                f"its aliases expand to more than {MAX_EXPANDED:,} nodes and characters (nested aliases that "
                "multiply, as in a 'billion laughs' file); write the values out or alias less deeply",
                child.start_mark,
            )
    open_.discard(key)
    memo[key] = (size, height)
    return size


def _read_text(path: Path) -> str:
    """The file as text: at most MAX_FILE_BYTES of UTF-8, else a ConfigError saying what is wrong with it."""
    if not path.exists():
        raise ConfigError(str(path), "no such config file")
    if not path.is_file():
        raise ConfigError(str(path), "not a file (a folder?); give the path of a benchmarks YAML file")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
            size = max(len(data), path.stat().st_size)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the file: {exc.strerror or exc}") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(str(path), f"the file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte (1 MiB) limit "
                          "for a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: byte {exc.start} (line {line})",
                          f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


def load_yaml(path: Path) -> Any:
    text = _read_text(path)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: line {exc.line}", f"duplicate key {quote(exc.key)} (each key may appear once)") from None
    except _Refused as exc:
        raise ConfigError(f"{path}: line {exc.line}" if exc.line else str(path), exc.message) from None
    except yaml.reader.ReaderError as exc:  # a control character: no mark, and its text names "<unicode string>"
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{path}: line {line}", f"invalid YAML: character #x{exc.character:04x} is not allowed "
                          "(control characters cannot appear in YAML)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}: line {mark.line + 1} column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, f"invalid YAML: {' '.join(str(problem).split())}") from None
    except (ValueError, OverflowError) as exc:
        # A scalar the resolver took for a date or number but that is none (``2024-13-45``, 5,000 digits).
        raise ConfigError(str(path), f"invalid YAML value: {' '.join(str(exc).split())}") from None
