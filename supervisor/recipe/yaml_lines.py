"""YAML in, with the line of every key, so that a bad recipe can say where it is bad.

PyYAML's defaults are YAML 1.1, which bites recipes twice: `on:` (our policy key) loads as the
boolean True, and `lr: 1e-5` loads as the *string* "1e-5" (1.1 floats need a dot). `RecipeLoader`
uses YAML 1.2 core rules for both: only true/false are booleans, and `1e-5` is a float.

`load_with_lines(text, file)` returns the plain Python value and a map from key path
(`("args", "lr")`, `("command", 0)`) to the 1-based line where that key or item starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_INT_12 = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars: `on`/`yes`/`no` stay strings, `1e-5` is a float."""


# Rebuild the implicit resolvers: keep null/merge/timestamp-free 1.1 rules out, add 1.2 ones.
RecipeLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("tag:yaml.org,2002:bool", _BOOL_12, list("tTfF")),
    ("tag:yaml.org,2002:int", _INT_12, list("-+0123456789")),
    ("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789.")),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"]),
):
    RecipeLoader.add_implicit_resolver(_tag, _regexp, _first)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 0) if text.startswith("0x") else int(text)


RecipeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


class RecipeDumper(yaml.SafeDumper):
    """SafeDumper that also quotes what RecipeLoader would not read back as text (`1e-5`)."""


RecipeDumper.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
for _first_char, _resolvers in RecipeLoader.yaml_implicit_resolvers.items():
    RecipeDumper.yaml_implicit_resolvers.setdefault(_first_char, []).extend(_resolvers)


def dump_yaml(data: Any) -> str:
    """YAML text that both PyYAML's defaults and `RecipeLoader` read back as `data`.

    Text is written as UTF-8 where that reads back the same; PyYAML mangles a few characters
    (NEL, LS, PS: YAML 1.1 line breaks), and then every non-ASCII character is escaped instead.
    """
    text = yaml.dump(data, Dumper=RecipeDumper, sort_keys=False, allow_unicode=True, width=100)
    if yaml.load(text, Loader=RecipeLoader) == data:
        return text
    return yaml.dump(data, Dumper=RecipeDumper, sort_keys=False, allow_unicode=False, width=100)


MAX_NODES = 50_000  # a recipe has a few hundred values


class YamlProblem(Exception):
    """Invalid YAML: `line` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class Loaded:
    """The loaded value, the line of each key path, and duplicate keys found on the way."""

    value: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int]] = field(default_factory=list)
    nodes: int = 0

    def line_of(self, path: Path_) -> int:
        """The line of `path`, or of its nearest ancestor that exists (1 for the top)."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)


def load_scalar(text: str) -> Any:
    """Type one `--set` value by the same YAML rules as a recipe file (`1e-5` -> float)."""
    try:
        value = yaml.load(text, Loader=RecipeLoader)  # RecipeLoader is a SafeLoader
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("", "~", "null", "Null", "NULL"):
        return text  # `#foo` is a YAML comment, but on a command line it is the text `#foo`
    return value


def load_with_lines(text: str) -> Loaded:
    """Parse one YAML document; raise `YamlProblem` with a line for invalid YAML."""
    loader = RecipeLoader(text)
    try:
        node = loader.get_single_node()
        out = Loaded(value=None)
        if node is not None:
            out.lines[()] = node.start_mark.line + 1
            out.value = _build(loader, node, (), out)
        return out
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        what = " ".join(s for s in (exc.context, exc.problem) if s) or "invalid YAML"
        raise YamlProblem(line, f"invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(0, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _build(
    loader: RecipeLoader,
    node: yaml.Node,
    path: Path_,
    out: Loaded,
    inside: frozenset[int] = frozenset(),
) -> Any:
    if id(node) in inside:  # `a: &x [*x]`: an alias inside the node it names
        raise YamlProblem(node.start_mark.line + 1, "invalid YAML: an alias refers to itself")
    inside = inside | {id(node)}
    out.nodes += 1
    if out.nodes > MAX_NODES:  # aliases of aliases can expand a small file into billions
        raise YamlProblem(node.start_mark.line + 1, f"invalid YAML: over {MAX_NODES} values")
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<:` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise YamlProblem(key_node.start_mark.line + 1, "invalid YAML: a key must be text")
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in result:
                out.duplicates.append((child, line))
            out.lines[child] = line
            result[key] = _build(loader, value_node, child, out, inside)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            where = (*path, i)
            out.lines[where] = item.start_mark.line + 1
            items.append(_build(loader, item, where, out, inside))
        return items
    return loader.construct_object(node, deep=True)
