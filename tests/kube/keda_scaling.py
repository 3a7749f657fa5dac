"""KEDA scaling real worker pods: 0 -> 1 -> max -> 1 -> 0, never 0 while tasks still run.

Two long tasks go in first (the first pod takes them), then a backlog of short ones. The backlog
trigger (consumer-group lag) wakes the Deployment from zero and drives it to the maximum; once
the backlog is drained only the in-flight trigger (pending entries) is left, which must hold
one pod while the long tasks run, and let the Deployment go to zero once they are done.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field

from tests.kube.kube import Cluster, Gateway, ScenarioFailed, check, wait_until

#: Short tasks of the backlog and how long each sleeps: far more than maxReplicaCount pods x
#: concurrency slots, so the lag asks for the maximum.
BACKLOG_TASKS = 96
BACKLOG_SLEEP_S = 3
#: Long tasks still running after the backlog is drained and the HPA scaled down.
LONG_TASKS = 2
LONG_SLEEP_S = 90


@dataclass
class ReplicaWatch:
    """``kubectl get deployment --watch``: every spec.replicas the worker Deployment had."""

    cluster: Cluster
    deployment: str
    history: list[tuple[float, int]] = field(default_factory=list)
    _process: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> ReplicaWatch:
        c = self.cluster
        argv = [
            c.kubectl_bin,
            "--kubeconfig",
            c.kubeconfig,
            "-n",
            c.namespace,
            "get",
            "deployment",
            self.deployment,
            "--watch",
            "-o",
            "jsonpath={.spec.replicas}{'\\n'}",
        ]
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if line.strip().isdigit():
                value = int(line.strip())
                if not self.history or self.history[-1][1] != value:
                    self.history.append((time.monotonic(), value))

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def current(self) -> int | None:
        """The latest value seen (None before the first)."""
        return self.history[-1][1] if self.history else None

    def values(self) -> list[int]:
        """The successive distinct values."""
        return [value for _, value in self.history]


def milestones(values: list[int], maximum: int) -> str:
    """``0>1>4>1>0`` when ``values`` passes through those in order, else the whole history."""
    wanted = [0, 1, maximum, 1, 0]
    position = 0
    for value in values:
        if position < len(wanted) and value == wanted[position]:
            position += 1
    path = wanted if position == len(wanted) else values
    return ">".join(str(v) for v in path)


def _wait_for_zero(watch: ReplicaWatch, timeout_s: float) -> None:
    wait_until(lambda: watch.current() == 0, timeout_s, "the workers to scale to zero", 0.5)


def _enqueue(gateway: Gateway, seconds: float, count: int, label: str) -> list[str]:
    return [
        gateway.enqueue({"type": "sleep", "payload": {"seconds": seconds, label: i}})
        for i in range(count)
    ]


@dataclass
class KedaResult:
    """What the scaling scenario saw."""

    path: str
    pending_guard: str
    history: list[int]


def run(cluster: Cluster, gateway: Gateway, maximum: int) -> KedaResult:
    """Drive the scenario; raise :class:`ScenarioFailed` on a missed transition."""
    with ReplicaWatch(cluster, f"{cluster.release}-worker") as watch:
        wait_until(lambda: watch.current() is not None, 30, "the worker Deployment")
        _wait_for_zero(watch, 180)
        zero_at = len(watch.history) - 1
        long_ids = _enqueue(gateway, LONG_SLEEP_S, LONG_TASKS, "long")
        wait_until(
            lambda: all(gateway.task(i)["state"] == "running" for i in long_ids),
            120,
            "the long tasks to start (the first worker pod)",
        )
        backlog = _enqueue(gateway, BACKLOG_SLEEP_S, BACKLOG_TASKS, "backlog")
        wait_until(lambda: watch.current() == maximum, 120, f"{maximum} workers", 0.5)
        records = gateway.wait_finished(backlog, 300)
        check(
            all(r["state"] == "succeeded" for r in records.values()),
            "backlog tasks did not all succeed",
        )
        long_records = gateway.wait_finished(long_ids, 400)
        long_done_at = time.monotonic()
        check(
            all(r["state"] == "succeeded" for r in long_records.values()),
            f"long tasks: {[r['state'] for r in long_records.values()]}",
        )
        guarded = [v for t, v in watch.history[zero_at + 1 :] if t <= long_done_at]
        if 0 in guarded:
            raise ScenarioFailed(
                f"the workers went to zero while tasks were running: {watch.values()}"
            )
        _wait_for_zero(watch, 180)
        values = watch.values()[zero_at:]
    path = milestones(values, maximum)
    check(path == f"0>1>{maximum}>1>0", f"KEDA transitions {values} miss 0>1>{maximum}>1>0")
    return KedaResult(path=path, pending_guard="ok", history=values)
