"""values.yaml and values.schema.json document every value, and agree
(docs/conventions.md#chart-values)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

from tests.chart.helm import CHART
from tests.chart.values_doc import ValuesKey, values_keys

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
KEYS: list[ValuesKey] = values_keys(CHART / "values.yaml")


def schema_nodes(
    node: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every property schema below ``node``, with its path."""
    for name, child in node.get("properties", {}).items():
        yield (*path, name), child
        yield from schema_nodes(child, (*path, name))


NODES = dict(schema_nodes(SCHEMA))
LEAVES = {path: node for path, node in NODES.items() if "properties" not in node}


def schema_for(path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema covering ``path``: its own node, or the nearest opaque (free-form) ancestor."""
    for end in range(len(path), 0, -1):
        node = NODES.get(path[:end])
        if node is not None:
            if end == len(path) or "properties" not in node:
                return node
            return None  # an owned object without this property
    return None


def value_at(path: tuple[str, ...]) -> Any:
    node: Any = VALUES
    for name in path:
        node = node[name]
    return node


def test_the_values_parser_sees_every_key() -> None:
    def paths(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        if isinstance(node, dict):
            for name, child in node.items():
                yield (*path, name)
                yield from paths(child, (*path, name))

    assert {k.path for k in KEYS} == set(paths(VALUES))


def test_every_values_key_has_a_comment_sentence_above_it() -> None:
    bad = [
        f"line {k.line}: {k.dotted}"
        for k in KEYS
        if not k.description or (k.description[0].isalpha() and not k.description[0].isupper())
    ]
    assert not bad, "keys without a comment sentence above them:\n" + "\n".join(bad)


def test_every_values_key_is_in_the_schema() -> None:
    missing = [k.dotted for k in KEYS if schema_for(k.path) is None]
    assert not missing, f"values.yaml keys missing from values.schema.json: {missing}"


def test_every_schema_leaf_has_a_description_and_the_values_default() -> None:
    problems = []
    for path, node in sorted(LEAVES.items()):
        name = ".".join(path)
        if not node.get("description"):
            problems.append(f"{name}: no description")
        if "default" not in node:
            problems.append(f"{name}: no default")
        elif node["default"] != value_at(path):
            problems.append(
                f"{name}: default {node['default']!r} != values.yaml {value_at(path)!r}"
            )
    assert not problems, "\n".join(problems)


def test_owned_objects_refuse_unknown_keys() -> None:
    problems = []
    for path, node in sorted(NODES.items()):
        if "properties" not in node:
            continue
        name = ".".join(path)
        if node.get("additionalProperties") is not False:
            problems.append(f"{name}: additionalProperties is not false")
        if not node.get("description"):
            problems.append(f"{name}: no description")
        if set(node["properties"]) != set(value_at(path)):
            problems.append(f"{name}: properties differ from values.yaml")
    assert not problems, "\n".join(problems)


def test_the_root_refuses_unknown_keys() -> None:
    assert SCHEMA["additionalProperties"] is False
    assert set(SCHEMA["properties"]) == set(VALUES)


def test_the_schema_is_self_contained() -> None:
    text = json.dumps(SCHEMA)
    refs = [part for part in text.split('"$ref": ')[1:]]
    assert all(ref.startswith('"#') for ref in refs), "remote or file $ref breaks offline installs"


def test_descriptions_match_the_comments() -> None:
    for key in KEYS:
        node = NODES.get(key.path)
        if node is not None:
            assert node["description"].startswith(key.description[:40]), key.dotted
