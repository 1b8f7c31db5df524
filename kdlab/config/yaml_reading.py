"""YAML text -> plain Python values for configs: safe_load minus two traps, with one-line errors.

:class:`ConfigYamlLoader` is PyYAML's ``SafeLoader`` (YAML 1.1 bools, null, ints in decimal, octal,
hex and binary, floats such as ``0.5`` and ``.inf``, dates) except that the base-60 ("sexagesimal")
numbers of YAML 1.1 are not numbers: ``1:30`` stays the string ``'1:30'`` instead of becoming 90,
so ``trainer.epochs: 1:30`` is refused by the schema rather than silently read as 90. As in
``safe_load``, ``1e-3`` (no dot, YAML 1.1's float syntax wants one) is the string ``'1e-3'``; the
schema's float fields parse such text.

:func:`alias_expansion` measures how much anchors and aliases multiply a loaded value: the loader
shares one Python object per anchored node, so loading a "billion laughs" document is fast, but
everything that walks the value afterwards (merging, validation, dumping) walks the expanded tree.
:func:`load_yaml` refuses a document whose aliases add more than :data:`MAX_ALIAS_EXPANSION` nodes,
or one that contains itself (``&a [*a]``).
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Optional

import yaml

from kdlab.config.errors import ConfigError

INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"

#: YAML 1.1 integers without the base-60 form: binary, octal, decimal, hex (``_`` separators allowed)
_INT = re.compile(r"^[-+]?(?:0b[01_]+|0[0-7_]+|0|[1-9][0-9_]*|0x[0-9a-fA-F_]+)$")
#: YAML 1.1 floats without the base-60 form: ``1.5``, ``1.``, ``.5``, ``1.5e+3`` (signed exponent), inf, nan
_FLOAT = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?"
    r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN))$"
)
_RESOLVERS = {INT_TAG: _INT, FLOAT_TAG: _FLOAT}

#: nodes that aliases may add to a document beyond its own size; a legit config adds a few hundred
MAX_ALIAS_EXPANSION = 100_000


class ConfigYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose ints and floats have no base-60 form (``1:30`` is a string)."""


# The same resolvers in the same order as SafeLoader's (the first match wins), int and float swapped
# for the base-60-free patterns; the first characters they are tried on are the same as before.
ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, _RESOLVERS.get(tag, pattern)) for tag, pattern in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _refuse_base_60(construct: Any) -> Any:
    def checked(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        if ":" in str(node.value):  # an explicit !!int / !!float tag on a base-60 number
            raise yaml.constructor.ConstructorError(
                None, None, f"base-60 number {node.value!r} is not supported (write the value itself)",
                node.start_mark,
            )
        return construct(loader, node)

    return checked


ConfigYamlLoader.add_constructor(INT_TAG, _refuse_base_60(yaml.SafeLoader.yaml_constructors[INT_TAG]))
ConfigYamlLoader.add_constructor(FLOAT_TAG, _refuse_base_60(yaml.SafeLoader.yaml_constructors[FLOAT_TAG]))


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based (line, column) of character ``position`` of ``text``."""
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1


def describe_yaml_error(err: BaseException, text: str) -> str:
    """One line: what is wrong and where (``<problem> at line L, column C``), without PyYAML's snippet."""
    if isinstance(err, yaml.MarkedYAMLError):
        problem = err.problem or err.context or "not valid YAML"
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    elif isinstance(err, yaml.reader.ReaderError):
        code = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or "\0")
        problem = f"unacceptable character #x{code:04x}: {err.reason}"
        line, column = _line_column(text, err.position)
        where = f" at line {line}, column {column}"
    elif isinstance(err, RecursionError):
        problem, where = "nested too deeply", ""
    else:  # ValueError of an impossible date (2001-13-45), or any other
        problem, where = str(err) or type(err).__name__, ""
    return " ".join(f"{problem}{where}".split())


def _children(node: Any) -> Iterator[Any]:
    return iter(node.values()) if isinstance(node, dict) else iter(node)


def alias_expansion(value: Any) -> Optional[int]:
    """Nodes that shared lists/dicts (anchors and aliases) add to ``value`` once expanded; None if it contains itself.

    The document has ``1 + E`` nodes, E the entries of its distinct lists and dicts (an alias is one
    entry); expanded into a tree it has ``expanded(node) = 1 + sum(expanded(child))`` nodes, computed
    once per distinct container, so this takes time linear in the document, not in its expansion.
    The result is the difference: 0 for a document without aliases.
    """
    if not isinstance(value, (dict, list)):
        return 0
    expanded: dict[int, int] = {}
    visiting: set[int] = set()
    distinct_edges = 0
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, children_done = stack.pop()
        ident = id(node)
        if children_done:
            expanded[ident] = 1 + sum(
                expanded[id(child)] if isinstance(child, (dict, list)) else 1 for child in _children(node)
            )
            visiting.discard(ident)
            continue
        if ident in expanded:
            continue
        if ident in visiting:  # reached again below itself: a recursive alias
            return None
        visiting.add(ident)
        stack.append((node, True))
        for child in _children(node):
            distinct_edges += 1
            if isinstance(child, (dict, list)) and id(child) not in expanded:
                if id(child) in visiting:
                    return None
                stack.append((child, False))
    return expanded[id(value)] - (1 + distinct_edges)


def check_alias_expansion(value: Any, where: str) -> None:
    """Refuse a value that contains itself or whose aliases expand it by more than MAX_ALIAS_EXPANSION nodes."""
    extra = alias_expansion(value)
    if extra is None:
        raise ConfigError(f"{where}: a YAML alias refers to a node that contains it (a recursive structure)")
    if extra > MAX_ALIAS_EXPANSION:
        raise ConfigError(
            f"{where}: YAML aliases expand it by {extra} values, more than the {MAX_ALIAS_EXPANSION} a config "
            "may use (an alias bomb?)"
        )


def parse_yaml(text: str) -> Any:
    """``text`` read by :class:`ConfigYamlLoader` (PyYAML's errors propagate; see :func:`load_yaml`)."""
    return yaml.load(text, Loader=ConfigYamlLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(text: str, where: str) -> Any:
    """The value of YAML ``text``, or a one-line :class:`ConfigError` ``{where} is not valid YAML: ...``.

    ``where`` names the text in messages (``config runs/x.yaml``).
    """
    try:
        value = parse_yaml(text)
    except (yaml.YAMLError, ValueError, RecursionError) as err:  # ValueError: e.g. a date like 2001-13-45
        raise ConfigError(f"{where} is not valid YAML: {describe_yaml_error(err, text)}") from None
    check_alias_expansion(value, where)
    return value
