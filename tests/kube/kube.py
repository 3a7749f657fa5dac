"""kubectl, helm and the in-cluster gateway, as the `make kube-test` scenarios use them.

The scenarios run on the host of the local cluster (scripts/kube/cluster.sh): kube-proxy's
iptables rules route the host's connections to a Service's ClusterIP as they route a pod's, so
the gateway is reached at its ClusterIP, through its Service, as in-cluster clients reach it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "taskforge"
#: The values the scenarios install with: the kind values plus tests/kube/values-kube-test.yaml.
VALUES_FILES = (REPO_ROOT / "k8s" / "values-kind.yaml", Path(__file__).with_name("values.yaml"))

T = TypeVar("T")


class ScenarioFailed(AssertionError):
    """A scenario's check failed; the message says which and what was seen."""


def check(condition: object, message: str) -> None:
    """Raise :class:`ScenarioFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ScenarioFailed(message)


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 1) -> T:
    """Call ``probe`` until it returns something other than None or False; return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


@dataclass(frozen=True)
class Cluster:
    """The local cluster's kubectl and helm, bound to one release and namespace."""

    kubectl_bin: str
    helm_bin: str
    kubeconfig: str
    namespace: str = "taskforge"
    release: str = "taskforge"

    def _run(
        self,
        argv: Sequence[str],
        timeout_s: float,
        stdin: str | None = None,
        expected_warning: str | None = None,
    ) -> str:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout_s, env=env
        )
        if done.returncode != 0:
            raise ScenarioFailed(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        warnings = [
            line
            for line in done.stderr.splitlines()
            if "warning" in line.lower() and not (expected_warning and expected_warning in line)
        ]
        check(not warnings, f"{' '.join(argv[:3])} printed warnings: {warnings}")
        return done.stdout

    def kubectl(
        self,
        *args: str,
        timeout_s: float = 120,
        stdin: str | None = None,
        expected_warning: str | None = None,
    ) -> str:
        """``kubectl -n <namespace> ...``: its output; a failure or an unexpected warning raises."""
        return self._run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args],
            timeout_s,
            stdin,
            expected_warning,
        )

    def get(self, *args: str) -> Any:
        """``kubectl get ... -o json``, decoded."""
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str, timeout_s: float = 600) -> str:
        """``helm ... -n <namespace>``: its output; a failure or a warning raises."""
        argv = [self.helm_bin, "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args]
        return self._run(argv, timeout_s)

    def chart_args(self, *overrides: str) -> list[str]:
        """The chart, its values files and ``--set`` overrides, for install and upgrade."""
        args = [self.release, str(CHART)]
        for values in VALUES_FILES:
            args += ["-f", str(values)]
        for override in overrides:
            args += ["--set", override]
        return args

    def secret_value(self, name: str, key: str) -> str:
        """One decoded value of a Secret of the namespace."""
        data = self.get("secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    def pods(self, component: str) -> list[dict[str, Any]]:
        """The release's pods of one component (not being deleted)."""
        selector = (
            f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component={component}"
        )
        items: list[dict[str, Any]] = self.get("pods", "-l", selector)["items"]
        return [pod for pod in items if not pod["metadata"].get("deletionTimestamp")]

    def service_url(self, component: str, port: str = "http") -> str:
        """``http://<ClusterIP>:<port>`` of one of the release's Services."""
        svc = self.get("service", f"{self.release}-{component}")
        (number,) = [p["port"] for p in svc["spec"]["ports"] if p["name"] == port]
        return f"http://{svc['spec']['clusterIP']}:{number}"


def ready(pod: dict[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


#: Gateway answers that mean "not accepted, try again": rate limited, api or Redis briefly away.
RETRYABLE = (429, 502, 503, 504)


@dataclass(frozen=True)
class Gateway:
    """The release's gateway, with the bootstrap admin key."""

    base_url: str
    key: str

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request: (status, decoded JSON body or None). A 429 waits its Retry-After."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                time.sleep(float(exc.headers.get("Retry-After") or 1))
            return exc.code, json.loads(exc.read() or b"null")

    def enqueue(self, body: dict[str, Any], timeout_s: float = 60) -> str:
        """Enqueue until accepted (201); connection errors and 502-504 are retried."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                status, answer = self.call("POST", "/v1/tasks", body)
            except (urllib.error.URLError, OSError) as exc:
                status, answer = 0, str(exc)
            if status == 201:
                return str(answer["id"])
            check(status in (0, *RETRYABLE), f"enqueue answered {status}: {answer}")
            check(time.monotonic() < deadline, f"enqueue not accepted: {status} {answer}")
            time.sleep(0.5)

    def task(self, task_id: str) -> dict[str, Any]:
        """The task's record; transient gateway errors are retried."""
        for _ in range(60):
            try:
                status, record = self.call("GET", f"/v1/tasks/{task_id}")
            except (urllib.error.URLError, OSError):
                status, record = 0, None
            if status == 200:
                return dict(record)
            check(status in (0, *RETRYABLE), f"GET task {task_id} answered {status}: {record}")
            time.sleep(0.5)
        raise ScenarioFailed(f"GET task {task_id} kept failing")

    def wait_finished(self, ids: Sequence[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Records of ``ids`` once none is waiting or running any more."""
        records: dict[str, dict[str, Any]] = {}
        pending = list(ids)

        def settled() -> bool:
            # Tasks finish roughly in enqueue order: a pass stops at the first unfinished one,
            # which keeps the polling far below the key's rate limit.
            for task_id in list(pending):
                record = self.task(task_id)
                if record["state"] not in ("succeeded", "dead", "cancelled"):
                    break
                records[task_id] = record
                pending.remove(task_id)
            return not pending

        wait_until(settled, timeout_s, f"{len(pending)} of {len(ids)} tasks to finish", 1)
        return records


def event_names(record: dict[str, Any]) -> list[str]:
    """The task's event log, names only."""
    return [str(event["event"]) for event in record.get("events", [])]


def started_workers(record: dict[str, Any]) -> list[str]:
    """Worker ids of the task's attempts (``<pod name>-<pid>-<random>``)."""
    return [str(e["worker"]) for e in record.get("events", []) if e["event"] == "started"]


def pod_of(worker_id: str) -> str:
    """The pod a worker id names (its host name is the pod name)."""
    return worker_id.rsplit("-", 2)[0]
