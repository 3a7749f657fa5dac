"""The parts of `make kube-test` that need no cluster (collected by `make test` too)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from scripts.kube.oci_image import write_archive
from tests.kube.keda_scaling import milestones
from tests.kube.kube import pod_of


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([0, 1, 4, 1, 0], "0>1>4>1>0"),
        ([0, 1, 2, 4, 3, 1, 0], "0>1>4>1>0"),
        ([0, 1, 4, 0], "0>1>4>0"),  # straight to zero: the pending guard's "1" is missing
        ([0, 1, 3, 1, 0], "0>1>3>1>0"),  # never reached the maximum
    ],
)
def test_milestones_need_every_transition_in_order(history: list[int], expected: str) -> None:
    assert milestones(history, 4) == expected


def test_a_worker_id_names_its_pod() -> None:
    assert (
        pod_of("taskforge-worker-5c5ddb9885-rwnjc-1-a1b2c3") == "taskforge-worker-5c5ddb9885-rwnjc"
    )


def test_the_sandbox_archive_is_an_oci_layout_containerd_can_name(tmp_path: Path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    archive = tmp_path / "pause.tar"
    write_archive(binary, "registry.k8s.io/pause:3.10", archive)
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "registry.k8s.io/pause:3.10"
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Entrypoint"] == ["/pause"]
    (layer,) = manifest["layers"]
    layer_tar = files[f"blobs/sha256/{layer['digest'].split(':')[1]}"]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]
