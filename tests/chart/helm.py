"""Render the chart with the real ``bin/helm`` and query the rendered objects.

Every distinct rendering (values, values files, --show-only, API versions) runs ``helm template``
once per test session: results are cached and handed out as deep copies.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "taskforge"
BIN = REPO / "bin"
HELM = BIN / "helm"
KUBECONFORM = BIN / "kubeconform"
SCHEMA_CACHE = REPO / ".cache" / "kubeconform"

#: Release and namespace every test renders with (the chart-check target uses the same).
RELEASE = "taskforge"
NAMESPACE = "taskforge"
#: APIs of the add-ons (KEDA, Prometheus Operator) that renders claim by default.
ADDON_APIS = ("keda.sh/v1alpha1", "monitoring.coreos.com/v1")
#: Every values file the chart supports: the k8s/ scenarios and the chart's ci/ scenarios.
VALUES_FILES = tuple(
    sorted(str(p.relative_to(REPO)) for p in (REPO / "k8s").glob("values-*.yaml"))
    + sorted(str(p.relative_to(REPO)) for p in (CHART / "ci").glob("*-values.yaml"))
)
#: Kinds whose pod template runs the long-lived services.
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

Doc = dict[str, Any]


class HelmFailed(AssertionError):
    """``helm template`` exited non-zero; ``stderr`` holds its message."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


@functools.lru_cache(maxsize=256)
def _template(
    values_json: str,
    files: tuple[str, ...],
    show_only: tuple[str, ...],
    api_versions: tuple[str, ...],
    release: str,
    namespace: str,
) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory(prefix="taskforge-chart-") as tmp:
        values_file = Path(tmp) / "values.json"
        values_file.write_text(values_json)
        args = [str(HELM), "template", release, str(CHART), "--namespace", namespace]
        for name in files:
            args += ["-f", str(REPO / name)]
        args += ["-f", str(values_file)]
        for api in api_versions:
            args += ["--api-versions", api]
        for template in show_only:
            args += ["--show-only", template]
        proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def render_text(
    values: Mapping[str, Any] | None = None,
    *,
    files: Sequence[str] = (),
    show_only: Sequence[str] = (),
    api_versions: Sequence[str] = ADDON_APIS,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> str:
    """The multi-document YAML ``helm template`` prints.

    Raises:
        HelmFailed: helm exited non-zero (a ``fail`` in check-values, a schema error, ...).
    """
    code, out, err = _template(
        json.dumps(values or {}, sort_keys=True),
        tuple(files),
        tuple(show_only),
        tuple(api_versions),
        release,
        namespace,
    )
    if code != 0:
        # --show-only of a template that rendered nothing is not an error for our purposes.
        if show_only and "could not find template" in err:
            return ""
        raise HelmFailed(err)
    return out


def render(
    values: Mapping[str, Any] | None = None,
    *,
    files: Sequence[str] = (),
    show_only: Sequence[str] = (),
    api_versions: Sequence[str] = ADDON_APIS,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Doc]:
    """The rendered objects (empty documents dropped), as fresh copies."""
    text = render_text(
        values,
        files=files,
        show_only=show_only,
        api_versions=api_versions,
        release=release,
        namespace=namespace,
    )
    return copy.deepcopy(_parse(text))


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_error(
    values: Mapping[str, Any] | None = None,
    *,
    files: Sequence[str] = (),
    api_versions: Sequence[str] = ADDON_APIS,
) -> str:
    """helm's error message for a rendering that must fail.

    Raises:
        AssertionError: the rendering succeeded.
    """
    try:
        render_text(values, files=files, api_versions=api_versions)
    except HelmFailed as exc:
        return exc.stderr
    raise AssertionError(f"helm template succeeded with values {values} and files {files}")


def find(docs: Iterable[Doc], kind: str, name: str | None = None) -> list[Doc]:
    """Objects of ``kind`` (and ``metadata.name``, when given)."""
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    """The single object of ``kind`` (and name).

    Raises:
        AssertionError: there is none or more than one.
    """
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def component(doc: Doc) -> str:
    """The object's app.kubernetes.io/component label."""
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def by_component(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    """The single ``kind`` object of component ``name``."""
    found = [d for d in find(docs, kind) if component(d) == name]
    assert len(found) == 1, f"expected one {kind} of component {name}, found {len(found)}"
    return found[0]


def pod_spec(doc: Doc) -> Doc:
    """The pod spec of a workload, Job or bare Pod."""
    if doc["kind"] == "Pod":
        return dict(doc["spec"])
    return dict(doc["spec"]["template"]["spec"])


def pod_objects(docs: Iterable[Doc]) -> Iterator[Doc]:
    """Every object that runs pods: workloads, Jobs (hooks) and bare Pods (helm tests)."""
    for doc in docs:
        if doc["kind"] in (*WORKLOAD_KINDS, "Job", "Pod"):
            yield doc


def containers(doc: Doc) -> list[Doc]:
    """Init and regular containers of a pod-running object."""
    spec = pod_spec(doc)
    return list(spec.get("initContainers", [])) + list(spec["containers"])
