"""`make kube-test`'s scenarios on the running local cluster (scripts/kube/kube-test.sh).

In order: install with --wait, `helm test`, the README's first session through the in-cluster
gateway, KEDA scaling real workers, an upgrade under a flow of tasks (rolling update of the
workers), a worker pod force-deleted mid-task, rollback, uninstall. Each step asserts what the
cluster holds afterwards; any failure stops the run with the reason. The last line printed is
the summary, e.g. ``kube: server=v1.34.4 values_files=8 objects=N/N pods_ready=N ...``.

    python -m tests.kube.scenarios --kubectl K --helm H --kubeconfig C --validation "..."
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from tests.kube import keda_scaling
from tests.kube.flow import TaskFlow
from tests.kube.kube import (
    Cluster,
    Gateway,
    ScenarioFailed,
    check,
    event_names,
    pod_of,
    ready,
    started_workers,
    wait_until,
)

#: Components with pods right after install (workers may already be scaled to zero by KEDA).
SERVING = ("gateway", "api", "scheduler", "redis")
#: The value the upgrade changes (k8s/values-kind.yaml has 8), and so what rollback restores.
UPGRADED_CONCURRENCY = 6


def log(message: str) -> None:
    print(f"==> [kube-test] {message}", file=sys.stderr, flush=True)


def install(cluster: Cluster) -> int:
    """Namespace under Pod Security `restricted`, then `helm install --wait`; ready pods."""
    cluster.kubectl("create", "namespace", cluster.namespace)
    cluster.kubectl(
        "label",
        "namespace",
        cluster.namespace,
        *(f"pod-security.kubernetes.io/{mode}=restricted" for mode in ("enforce", "warn", "audit")),
    )
    cluster.helm("install", *cluster.chart_args(), "--wait", "--timeout", "5m")
    pods = cluster.get("pods")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    check(all(ready(p) for p in running), f"unready pods: {[p['metadata']['name'] for p in pods]}")
    for component in SERVING:
        check(
            any(ready(p) for p in cluster.pods(component)),
            f"no ready {component} pod after install",
        )
    return len(running)


def helm_test(cluster: Cluster) -> str:
    """`helm test`: the chart's own test pod enqueues through the gateway and waits."""
    out = cluster.helm("test", cluster.release, "--logs", "--timeout", "5m")
    check("PASS:" in out, f"helm test printed no PASS:\n{out}")
    pod = cluster.get("pod", f"{cluster.release}-test")
    check(pod["status"]["phase"] == "Succeeded", f"test pod is {pod['status']['phase']}")
    return "passed"


def first_session(gateway: Gateway) -> None:
    """The README's first session, through the in-cluster gateway."""
    status, created = gateway.call(
        "POST", "/v1/tasks", {"type": "echo", "payload": {"hello": "world"}}
    )
    check(status == 201 and created["created"] is True, f"echo enqueue: {status} {created}")
    record = gateway.wait_finished([created["id"]], 120)[created["id"]]
    check(record["state"] == "succeeded", f"echo task: {record}")
    check(record["result"] == {"hello": "world"} and record["attempts"] == 1, f"echo: {record}")
    check(event_names(record)[:1] == ["enqueued"], f"echo events: {event_names(record)}")
    check("succeeded" in event_names(record), f"echo events: {event_names(record)}")

    body = {"type": "fail", "max_retries": 2, "backoff": {"kind": "fixed", "base_s": 1}}
    status, failing = gateway.call("POST", "/v1/tasks", body)
    check(status == 201, f"fail enqueue: {status} {failing}")
    dead = gateway.wait_finished([failing["id"]], 120)[failing["id"]]
    check(dead["state"] == "dead" and dead["attempts"] == 3, f"fail task: {dead}")
    status, listing = gateway.call("GET", "/v1/dlq?queue=default")
    check(status == 200, f"GET /v1/dlq: {status} {listing}")
    items = {item["id"]: item for item in listing["items"]}
    check(failing["id"] in items, f"dead task not in the DLQ listing: {listing}")
    check(items[failing["id"]]["dead_reason"] == "retries_exhausted", f"{items[failing['id']]}")
    status, requeued = gateway.call("POST", f"/v1/dlq/{failing['id']}/requeue")
    check((status, requeued) == (200, {"count": 1}), f"requeue: {status} {requeued}")


def _worker_pods(cluster: Cluster) -> dict[str, str]:
    """Worker pod name -> pod-template-hash."""
    return {
        p["metadata"]["name"]: p["metadata"]["labels"]["pod-template-hash"]
        for p in cluster.pods("worker")
    }


def upgrade_under_flow(cluster: Cluster, gateway: Gateway) -> int:
    """`helm upgrade` with a changed worker value while tasks flow; returns tasks lost."""
    with TaskFlow(gateway, "upgrade") as flow:
        before = wait_until(
            lambda: {n: h for n, h in _worker_pods(cluster).items()} or None,
            120,
            "a worker pod serving the flow",
        )
        wait_until(lambda: len(flow.accepted) >= 20, 60, "the flow to be under way")
        cluster.helm(
            "upgrade",
            *cluster.chart_args(f"worker.concurrency={UPGRADED_CONCURRENCY}"),
            "--wait",
            "--timeout",
            "5m",
        )
        cluster.kubectl(
            "rollout", "status", f"deployment/{cluster.release}-worker", "--timeout=180s"
        )
        after = _worker_pods(cluster)
        time.sleep(5)  # tasks keep flowing onto the new pods
    check(not flow.errors, f"the flow was refused: {flow.errors}")
    check(after and not set(after) & set(before), f"workers not replaced: {before} -> {after}")
    check(set(after.values()).isdisjoint(before.values()), "worker pod template did not change")
    config = cluster.get("configmap", f"{cluster.release}-worker")["data"]
    check(config["TASKFORGE_CONCURRENCY"] == str(UPGRADED_CONCURRENCY), f"config: {config}")
    records = gateway.wait_finished(flow.accepted, 300)
    lost = [i for i, r in records.items() if r["state"] != "succeeded"]
    returned = [i for i, r in records.items() if "returned" in event_names(r)]
    log(
        f"upgrade: {len(flow.accepted)} tasks accepted during the rollout,"
        f" {len(returned)} given back"
    )
    check(returned, "no SIGTERMed worker gave a task back during the rolling update")
    for task_id in returned:
        check(records[task_id]["state"] == "succeeded", f"given back, then: {records[task_id]}")
    return len(lost)


def _pod_running(record: dict[str, Any]) -> str | None:
    workers = started_workers(record)
    return pod_of(workers[-1]) if record["state"] == "running" and workers else None


def kill_worker_mid_task(cluster: Cluster, gateway: Gateway) -> tuple[int, str]:
    """Force-delete a pod running tasks; they must rerun on another pod, none lost."""
    ids = [
        gateway.enqueue({"type": "sleep", "payload": {"seconds": 15, "kill": i}}) for i in range(4)
    ]
    victim = wait_until(
        lambda: next(filter(None, (_pod_running(gateway.task(i)) for i in ids)), None),
        120,
        "a task to run",
    )
    victims = [i for i in ids if _pod_running(gateway.task(i)) == victim]
    log(f"force-deleting worker pod {victim} while it runs {len(victims)} task(s)")
    cluster.kubectl(
        "delete",
        "pod",
        victim,
        "--force",
        "--grace-period=0",
        expected_warning="Immediate deletion does not wait",
    )
    records = gateway.wait_finished(ids, 240)
    lost = [i for i, r in records.items() if r["state"] != "succeeded"]
    for task_id in victims:
        pods = [pod_of(w) for w in started_workers(records[task_id])]
        check(victim in pods and pods[-1] != victim, f"{task_id} ran on {pods} ({victim} deleted)")
    how = {"returned" if "returned" in event_names(records[i]) else "lease" for i in victims}
    return len(lost), "+".join(sorted(how))


def rollback(cluster: Cluster) -> None:
    """`helm rollback` to the install's revision: the upgraded value is gone again."""
    cluster.helm("rollback", cluster.release, "1", "--wait", "--timeout", "5m")
    history = json.loads(cluster.helm("history", cluster.release, "-o", "json"))
    check([(h["revision"], h["status"]) for h in history][-1] == (3, "deployed"), f"{history}")
    config = cluster.get("configmap", f"{cluster.release}-worker")["data"]
    check(config["TASKFORGE_CONCURRENCY"] == "8", f"rollback left {config}")


def _leftovers(cluster: Cluster) -> list[str]:
    kinds = "all,configmaps,secrets,pvc,scaledobjects,triggerauthentications,networkpolicies,pdb"
    items: list[dict[str, Any]] = cluster.get(kinds)["items"]
    return sorted(
        f"{i['kind']}/{i['metadata']['name']}"
        for i in items
        if i["metadata"]["name"] != "kube-root-ca.crt"
    )


def uninstall(cluster: Cluster) -> list[str]:
    """`helm uninstall --wait`: only what deliberately outlives it remains.

    The Redis PVC (a StatefulSet's claims are never deleted with it: the queue's data) and the
    `helm test` pod (a hook, which Helm does not delete on uninstall; kept for its logs).
    k8s/OPERATIONS.md documents both.
    """
    cluster.helm("uninstall", cluster.release, "--wait", "--timeout", "3m")
    expected = [
        f"PersistentVolumeClaim/data-{cluster.release}-redis-0",
        f"Pod/{cluster.release}-test",
    ]
    seen: list[str] = []

    def only_expected() -> bool:
        seen[:] = _leftovers(cluster)
        return seen == expected

    try:
        wait_until(only_expected, 120, "the release's objects to go", 2)
    except ScenarioFailed as exc:
        raise ScenarioFailed(f"after uninstall {seen} remain, expected {expected}") from exc
    remaining = list(seen)
    cluster.kubectl("delete", "pvc", f"data-{cluster.release}-redis-0", "--wait=true")
    cluster.kubectl("delete", "pod", f"{cluster.release}-test", "--wait=true")
    cluster.kubectl(
        "delete",
        "namespace",
        cluster.namespace,
        "--wait=true",
        timeout_s=180,
        expected_warning="deleting cluster-scoped resources",
    )
    return remaining


def run(args: argparse.Namespace) -> str:
    cluster = Cluster(args.kubectl, args.helm, args.kubeconfig)
    version = json.loads(cluster.kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    fields = [f"server={version}", args.validation]
    log("helm install --wait")
    fields.append(f"pods_ready={install(cluster)}")
    log("helm test")
    fields.append(f"helm_test={helm_test(cluster)}")
    gateway = Gateway(
        cluster.service_url("gateway"),
        cluster.secret_value(f"{cluster.release}-bootstrap-key", "api-key"),
    )
    log(f"the README's first session through {gateway.base_url}")
    first_session(gateway)
    log("KEDA: backlog through the gateway, 0 -> 1 -> max -> 1 -> 0")
    keda = keda_scaling.run(cluster, gateway, maximum=4)
    log(f"KEDA replicas seen: {keda.history}")
    log("helm upgrade while tasks flow")
    upgrade_lost = upgrade_under_flow(cluster, gateway)
    log("force-delete a worker pod mid-task")
    killed_lost, how = kill_worker_mid_task(cluster, gateway)
    log(f"the killed pod's tasks came back by: {how}")
    log("helm rollback, helm uninstall")
    rollback(cluster)
    log(f"after uninstall: {uninstall(cluster)} (deleted by the test)")
    fields += [
        f"upgrade_lost={upgrade_lost}",
        f"killed_pod_lost={killed_lost}",
        f"keda={keda.path}",
        f"pending_guard={keda.pending_guard}",
    ]
    check(upgrade_lost == 0 and killed_lost == 0, "tasks were lost: " + " ".join(fields))
    return "kube: " + " ".join(fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag in ("--kubectl", "--helm", "--kubeconfig", "--validation"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    # Python keeps SIGINT ignored when started so (a background job of a script): restore it,
    # so that an interrupt stops the scenario and kube-test.sh's trap stops the cluster.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        summary = run(args)
    except ScenarioFailed as exc:
        print(f"FAIL [kube-test]: {exc}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
