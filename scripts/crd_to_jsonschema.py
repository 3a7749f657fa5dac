"""Turn Kubernetes OpenAPI documents and CRDs into the JSON schemas kubeconform reads, offline.

kubeconform normally downloads its schemas from GitHub; here they are generated from pinned Go
modules that ``mk/chart.mk`` downloads with ``go mod download``:

``openapi``: the Kubernetes OpenAPI v2 document (``api/openapi-spec/swagger.json`` of the
    ``k8s.io/kubernetes`` module) becomes one self-contained schema per kind, in the layout of
    kubeconform's default location: ``OUT/v<version>-standalone-strict/<kind>-<group>-<ver>.json``
    (``<kind>-<ver>.json`` for the core group). Each file holds the kind's definition plus every
    definition it references, so ``$ref: #/definitions/...`` resolves inside the file.
``crd``: CustomResourceDefinitions (``config/crd/bases/*.yaml`` of KEDA,
    ``example/prometheus-operator-crd/*.yaml`` of the Prometheus Operator) become one schema per
    served version, ``OUT/<group>/<kind>_<version>.json``, for
    ``-schema-location 'OUT/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'``.

Both are "strict" like kubeconform's own ``-strict`` schemas: every object that lists its
``properties`` refuses others (``additionalProperties: false``) unless it preserves unknown
fields, so a misspelt field fails validation instead of being ignored. int-or-string fields
accept both types, and ``nullable`` fields accept null.

Usage::

    python scripts/crd_to_jsonschema.py openapi OUT_DIR SWAGGER_JSON --kubernetes-version v1.37.0
    python scripts/crd_to_jsonschema.py crd OUT_DIR CRD_YAML...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

#: OpenAPI v2 definitions whose declared type is narrower than what the API server accepts.
LENIENT_DEFINITIONS: dict[str, dict[str, Any]] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "oneOf": [{"type": "string"}, {"type": "integer"}]
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    },
}

DEFINITIONS_REF = "#/definitions/"


class CrdLoader(yaml.SafeLoader):
    """A safe loader that reads a plain ``=`` as the string "=" (PyYAML reads it as the YAML 1.1
    "value" tag and fails; CRDs list "=" among operator enums)."""


CrdLoader.add_constructor(
    "tag:yaml.org,2002:value",
    lambda loader, node: loader.construct_scalar(node),
)


def strict(node: Any) -> Any:
    """Return a copy of ``node`` with the strict, int-or-string and nullable rewrites applied."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        dropped = ("type", "format", "anyOf", "x-kubernetes-int-or-string")
        rest = {k: v for k, v in node.items() if k not in dropped}
        return {**strict(rest), "oneOf": [{"type": "string"}, {"type": "integer"}]}
    out = {key: strict(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def references(node: Any) -> Iterator[str]:
    """Names of the definitions that ``node`` references with ``#/definitions/<name>``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEFINITIONS_REF):
            yield ref[len(DEFINITIONS_REF) :]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def closure(name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    """The definitions ``name`` needs, transitively (itself included)."""
    needed: dict[str, Any] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in needed:
            continue
        needed[current] = definitions[current]
        pending.extend(references(definitions[current]))
    return needed


def kind_file_name(group: str, version: str, kind: str) -> str:
    """kubeconform's file name for a kind: ``<kind>[-<first group label>]-<version>.json``."""
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix.lower()}.json"


def convert_openapi(swagger: dict[str, Any], out_dir: Path) -> int:
    """Write one standalone strict schema per kind of an OpenAPI v2 document; return the count."""
    definitions = {
        name: LENIENT_DEFINITIONS.get(name, schema)
        for name, schema in swagger["definitions"].items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            needed = closure(name, definitions)
            document = {**schema, "definitions": {n: d for n, d in needed.items() if n != name}}
            document["definitions"][name] = schema
            target = out_dir / kind_file_name(gvk["group"], gvk["version"], gvk["kind"])
            target.write_text(json.dumps(strict(document), indent=1, sort_keys=True))
            written += 1
    return written


def crd_documents(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every CustomResourceDefinition in the given YAML files (lists unpacked)."""
    for path in paths:
        for document in yaml.load_all(path.read_text(), Loader=CrdLoader):
            if not isinstance(document, dict):
                continue
            items = document.get("items") if document.get("kind", "").endswith("List") else None
            for item in items or [document]:
                if item.get("kind") == "CustomResourceDefinition":
                    yield item


def convert_crds(paths: Iterable[Path], out_dir: Path) -> int:
    """Write one strict schema per CRD version; return the count."""
    written = 0
    for crd in crd_documents(paths):
        spec = crd["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec.get("versions", []):
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema is None:
                continue
            target = out_dir / group / f"{kind.lower()}_{version['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(strict(schema), indent=1, sort_keys=True))
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and convert; prints what it wrote."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    openapi = commands.add_parser("openapi", help="Kubernetes swagger.json -> per-kind schemas")
    openapi.add_argument("out_dir", type=Path)
    openapi.add_argument("swagger", type=Path)
    openapi.add_argument("--kubernetes-version", required=True, help="e.g. v1.37.0")
    crd = commands.add_parser("crd", help="CustomResourceDefinition YAML -> per-version schemas")
    crd.add_argument("out_dir", type=Path)
    crd.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)

    if args.command == "openapi":
        version = args.kubernetes_version.removeprefix("v")
        target = args.out_dir / f"v{version}-standalone-strict"
        count = convert_openapi(json.loads(args.swagger.read_text()), target)
    else:
        target = args.out_dir
        count = convert_crds(args.files, target)
    if count == 0:
        print(f"crd_to_jsonschema: no schema found in the {args.command} input", file=sys.stderr)
        return 1
    print(f"crd_to_jsonschema: {count} schemas written under {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
