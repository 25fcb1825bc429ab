"""YAML that remembers where each value came from, so errors name file and line."""

from __future__ import annotations

from typing import Any

import yaml


class Node:
    """Mixin: ``line`` of the node itself and, for mappings, ``lines[key]``."""

    line: int = 0


class LMap(dict, Node):  # type: ignore[type-arg]
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.lines: dict[Any, int] = {}


class LList(list, Node):  # type: ignore[type-arg]
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.lines: list[int] = []


# Bounds on what a case file may ask of the loader: nesting (the composer recurses) and no
# aliases at all (no case needs one, and a few aliases expand without end: a "billion laughs").
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.MarkedYAMLError(None, None, "aliases (*name) are not allowed in case files",
                                       self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                           self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


    def construct_object(self, node: Any, deep: bool = False) -> Any:
        # PyYAML's own constructors raise plain Python errors on some explicitly tagged values
        # (`!!timestamp 2001-01-01x`); they are malformed YAML like any other.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, KeyError, IndexError) as e:
            raise yaml.MarkedYAMLError(None, None, f"cannot read {node.tag.rsplit(':', 1)[-1]} value "
                                       f"({type(e).__name__})", node.start_mark) from None


def _map(loader: _Loader, node: yaml.MappingNode) -> LMap:
    m = LMap()
    m.line = node.start_mark.line + 1
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=True)
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise yaml.MarkedYAMLError("while reading a mapping", node.start_mark,
                                       f"a key is a name or a number, not {type(key).__name__}", knode.start_mark)
        if key in m:
            raise yaml.MarkedYAMLError("while reading a mapping", node.start_mark,
                                       f"duplicate key {key!r}", knode.start_mark)
        m[key] = loader.construct_object(vnode, deep=True)
        m.lines[key] = knode.start_mark.line + 1
    return m


def _seq(loader: _Loader, node: yaml.SequenceNode) -> LList:
    seq = LList()
    seq.line = node.start_mark.line + 1
    for item in node.value:
        seq.append(loader.construct_object(item, deep=True))
        seq.lines.append(item.start_mark.line + 1)
    return seq


def _int(loader: _Loader, node: yaml.ScalarNode) -> int:
    try:
        return int(yaml.SafeLoader.construct_yaml_int(loader, node))
    except ValueError:   # past the interpreter's limit on the digits of an int (4300)
        raise yaml.MarkedYAMLError(None, None, f"an integer of {len(node.value)} digits",
                                   node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


def load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def line_of(container: Any, key: Any = None) -> int:
    if key is not None:
        lines = getattr(container, "lines", None)
        if isinstance(lines, dict) and key in lines:
            return int(lines[key])
        if isinstance(lines, list) and isinstance(key, int) and 0 <= key < len(lines):
            return int(lines[key])
    return int(getattr(container, "line", 0))


def from_data(value: Any, line: int = 0) -> Any:
    """Plain data (dicts, lists, scalars) as the loader's nodes, every line ``line``:
    what ``load`` would give for the same data dumped as YAML, without the round trip."""
    if isinstance(value, dict):
        m = LMap()
        m.line = line
        for k, v in value.items():
            m[k] = from_data(v, line)
            m.lines[k] = line
        return m
    if isinstance(value, (list, tuple)):
        seq = LList()
        seq.line = line
        for v in value:
            seq.append(from_data(v, line))
            seq.lines.append(line)
        return seq
    return value
