"""Container-image tests: ``make images-test`` (after ``make images-build``).

They need podman and the built images, and take minutes, so they run only when asked for with
``-m images``: without that, the items are deselected (never skipped), and ``make test`` stays
as it is. At the end of a run that selected them, one summary line is printed:
``images: built=5 sizes=gateway:237MB,... containers=5 succeeded=1 dead=1 giveback=ok``.

Fixtures:
    image_docs (module): the chart rendered for the containers (image tag, Redis port, a short
        worker shutdown grace).
    image_stack (module): a started :class:`tests.images.containers.ContainerStack`; every
        container is removed afterwards, also when a test or the start fails.
    summary (session): the dict the summary line is made from; tests add their figures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from scripts.devstack import free_port
from tests.chart.helm import Doc, render
from tests.images.containers import ContainerStack, podman

MARKER = "images"
SUMMARY = pytest.StashKey[dict[str, Any]]()
SERVICES = ("gateway", "api", "worker", "scheduler")
COMPONENTS = (*SERVICES, "redis")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: builds/runs container images (make images-test)")
    config.stash[SUMMARY] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if MARKER in (config.option.markexpr or ""):
        return  # -m images runs them; -m "not images" deselects them itself
    dropped = [item for item in items if item.get_closest_marker(MARKER)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker(MARKER)]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(SUMMARY, {})
    if not figures.get("built"):
        return
    sizes = ",".join(f"{name}:{mb}MB" for name, mb in figures["sizes"].items())
    terminalreporter.write_line(
        f"images: built={figures['built']} sizes={sizes} "
        f"containers={figures.get('containers', 0)} succeeded={figures.get('succeeded', 0)} "
        f"dead={figures.get('dead', 0)} giveback={figures.get('giveback', 'not run')}"
    )


@pytest.fixture(scope="session")
def summary(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.config.stash[SUMMARY]


def image_values(redis_port: int) -> dict[str, Any]:
    """Chart values: the images make images-build tagged, a free Redis port, and a 1 s worker
    shutdown grace so a SIGTERMed worker gives its running task back within seconds."""
    prefix = os.environ.get("IMAGE_PREFIX", "taskforge-")
    values: dict[str, Any] = {
        "global": {"imageTag": os.environ.get("IMAGE_TAG", "dev")},
        "redis": {"port": redis_port},
        "worker": {"shutdownGraceSeconds": 1},
    }
    for service in SERVICES:
        values.setdefault(service, {})["image"] = {"repository": f"{prefix}{service}"}
    return values


@pytest.fixture(scope="module")
def image_docs() -> list[Doc]:
    return render(image_values(free_port()))


def image_sizes(images: dict[str, str]) -> dict[str, int]:
    """Megabytes (10^6) of each component's image; fails the run when one is missing."""
    sizes = {}
    for component, image in images.items():
        try:
            size = podman("image", "inspect", "--format", "{{.Size}}", image)
        except RuntimeError:
            pytest.fail(f"image {image} is missing: run `make images-build`", pytrace=False)
        sizes[component] = int(size) // 10**6
    return sizes


@pytest.fixture(scope="module")
def image_stack(
    image_docs: list[Doc], tmp_path_factory: pytest.TempPathFactory, summary: dict[str, Any]
) -> Iterator[ContainerStack]:
    stack = ContainerStack(image_docs, work_dir=tmp_path_factory.mktemp("containers"))
    stack.work_dir.chmod(0o755)  # the containers' users read their mounted config from here
    workloads = _workloads(image_docs)
    images = {
        c: workloads[c]["spec"]["template"]["spec"]["containers"][0]["image"] for c in COMPONENTS
    }
    summary["sizes"] = image_sizes(images)
    summary["built"] = len(images)
    with stack:
        summary["containers"] = len(stack.names)
        yield stack


def _workloads(docs: list[Doc]) -> dict[str, Doc]:
    found = {}
    for doc in docs:
        component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if doc["kind"] in ("Deployment", "StatefulSet") and component:
            found[component] = doc
    return found
