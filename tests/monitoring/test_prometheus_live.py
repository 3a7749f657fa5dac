"""A real Prometheus against the local stack: the series move as the work says, and every alert
rule and dashboard query evaluates without error.

One local stack (``scripts.devstack.Stack``: redis, api, gateway, worker, scheduler as processes)
and one Prometheus (Debian's binary) scraping every service's /metrics each second, with the
chart's PrometheusRule loaded as a rule file (evaluated each second). Work goes through the
gateway's HTTP API: tasks that succeed, tasks that fail once then succeed, one task that goes
dead, requests refused with 429 by a key's rate limit, one with a wrong key. The targets carry
the labels Prometheus Operator would add (``namespace``, ``job``, ``pod``) so that the chart's
expressions and the dashboard's selectors match as they do in a cluster.

Runs in `make test` (about a minute). The last test stops the scheduler.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from scripts.devstack import Stack, free_port
from taskforge_client import TaskForge
from taskforge_client.models import Backoff, TaskState
from tests.monitoring import promql
from tests.monitoring.test_metrics_catalogue import catalogue, dashboard_targets
from tests.monitoring.test_rules import alerts, render_rules
from tests.monitoring.tooling import CHART, NAMESPACE, RELEASE
from tests.support.processes import wait_until
from tests.support.prometheus_server import (
    PrometheusError,
    PrometheusServer,
    stack_jobs,
)

pytestmark = pytest.mark.timeout(300)  # the module's fixtures may build ./bin/helm first

DASHBOARD = CHART / "dashboards" / "taskforge.json"
SERVICES = ("gateway", "api", "worker", "scheduler")
#: Generous: Prometheus scrapes every second, the scheduler's gauges follow within a second.
SETTLE_S = 30.0
#: The one queue of this module's stack (its worker consumes only that one).
QUEUE = "prom-" + uuid.uuid4().hex[:10]
STACK_ENV = {
    "TASKFORGE_QUEUES": QUEUE,
    "TASKFORGE_TICK_S": "0.1",
    "TASKFORGE_BLOCK_MS": "200",
    "TASKFORGE_LEASE_S": "5",
    "TASKFORGE_HEARTBEAT_INTERVAL_S": "1",
    "TASKFORGE_QUEUE_REFRESH_S": "0.5",
    # The gateway's default per-key limit: the bootstrap (admin) key has it, so a quick series
    # of its requests is refused with 429. The producer key gets a high limit of its own.
    "TASKFORGE_DEFAULT_RATE_PER_S": "0.2",
    "TASKFORGE_DEFAULT_BURST": "3",
}
#: Grafana's built-in variables here. $__rate_interval is max(4 x scrape interval, $__interval
#: + scrape interval) in Grafana: 4 s at 1 s scrapes; one more second for scrape jitter.
BUILTINS = {"__rate_interval": "5s", "__interval": "1s", "__range": "1m"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")
#: Metrics nothing in this run moves (no lease lost, no reclaim, Redis and the api always up):
#: a query on them alone, or on 5xx only, may rightly find nothing.
NO_SERIES = frozenset(
    {
        "taskforge_worker_leases_lost_total",
        "taskforge_scheduler_reclaimed_total",
        "taskforge_redis_errors_total",
        "taskforge_gateway_upstream_errors_total",
    }
)
Check = Callable[[float | None], bool]


@dataclass(frozen=True)
class Workload:
    """What the test pushed through the gateway."""

    queue: str
    succeeded: int
    flaky: int  # failed once, then succeeded
    dead: int
    refused_429: int

    @property
    def enqueued(self) -> int:
        return self.succeeded + self.flaky + self.dead


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("prom-stack")
    running = Stack(gateway_port=free_port(), data_dir=data, quiet=True, extra_env=STACK_ENV)
    try:
        running.start(timeout_s=60)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def prom(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    directory = tmp_path_factory.mktemp("prometheus")
    rules = directory / "taskforge-rules.yaml"
    rules.write_text(yaml.safe_dump(render_rules()["spec"], sort_keys=False), encoding="utf-8")
    jobs = stack_jobs(stack, SERVICES, RELEASE, {"namespace": NAMESPACE})
    try:
        server = PrometheusServer(directory, jobs, rule_files=[rules])
    except PrometheusError as exc:  # the binary is missing: say how to install it
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def workload(stack: Stack, prom: PrometheusServer) -> Workload:
    """Push the work through the gateway and wait until every task is finished."""
    with TaskForge(stack.url, stack.admin_key) as admin:
        scopes = ["tasks:write", "tasks:read"]
        producer = admin.keys.create("prom-producer", scopes, rate_per_s=1000, burst=1000)
    quick = Backoff(kind="fixed", base_s=0.2, jitter=False)
    with TaskForge(stack.url, producer.key) as tf:
        ids = [tf.enqueue("echo", {"n": n}, queue=QUEUE).id for n in range(5)]
        for _ in range(3):
            flaky = tf.enqueue("fail", {"times": 1}, queue=QUEUE, max_retries=3, backoff=quick)
            ids.append(flaky.id)
        states = [tf.wait(task_id, timeout_s=60).state for task_id in ids]
        # The first dead task of a queue Prometheus already watches, as a long-lived queue's
        # would be (not one born and dead-lettered between two scrapes).
        _wait_scraped(prom, f'taskforge_queue_depth{{queue="{QUEUE}", state="dead"}} == 0')
        dead = tf.enqueue("fail", {}, queue=QUEUE, max_retries=1, backoff=quick).id
        states.append(tf.wait(dead, timeout_s=60).state)
    assert states == [TaskState.SUCCEEDED] * 8 + [TaskState.DEAD], states
    return Workload(QUEUE, succeeded=5, flaky=3, dead=1, refused_429=_provoke(stack))


def _wait_scraped(prom: PrometheusServer, expr: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not prom.query(expr):
        assert time.monotonic() < deadline, f"Prometheus never had {expr}"
        time.sleep(0.2)


def _provoke(stack: Stack) -> int:
    """Requests until the admin key's low limit answers 429 (three times), one wrong key."""
    refused = 0
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        headers = {"Authorization": f"Bearer {stack.admin_key}"}
        for _ in range(20):
            status = http.get("/v1/queues", headers=headers).status_code
            assert status in (200, 429), status
            refused += status == 429
            if refused == 3:
                break
        wrong = http.get("/v1/queues", headers={"Authorization": "Bearer tfk_wrong"})
        assert wrong.status_code == 401, wrong.text
    assert refused == 3, "the admin key's limit (burst 3, 0.2/s) did not answer 429 three times"
    return refused


def equals(expected: float) -> Check:
    return lambda value: value == expected


def at_least(expected: float) -> Check:
    return lambda value: value is not None and value >= expected


def nothing(value: float | None) -> bool:
    return value is None


async def _reaches(prom: PrometheusServer, expr: str, check: Check, what: str) -> None:
    """Wait until ``check(value of expr)`` holds (None: no series)."""
    seen: list[float | None] = []

    def holds() -> bool:
        seen.append(prom.value(expr))
        return check(seen[-1])

    await wait_until(
        holds, SETTLE_S, interval_s=0.5, message=lambda: f"{what}: {expr} = {seen[-1:]}"
    )


async def test_every_service_is_scraped(prom: PrometheusServer) -> None:
    def errors() -> str:
        targets = prom.api("/api/v1/targets")["activeTargets"]
        return str([(t["scrapeUrl"], t["lastError"]) for t in targets])

    for name in SERVICES:
        up = f'up{{job="{RELEASE}-{name}", namespace="{NAMESPACE}"}}'
        await _reaches(prom, up, equals(1), f"{name} scraped ({errors()})")


async def test_task_series_move_as_the_work_says(
    prom: PrometheusServer, workload: Workload
) -> None:
    q = f'namespace="{NAMESPACE}", queue="{workload.queue}"'
    done = workload.succeeded + workload.flaky
    attempts = done + workload.flaky + 2 * workload.dead
    retries = workload.flaky + workload.dead  # each flaky task once, the dead one once

    def finished(outcome: str) -> str:
        return f'sum(taskforge_tasks_finished_total{{{q}, outcome="{outcome}"}})'

    await _reaches(prom, finished("succeeded"), equals(done), "succeeded attempts")
    await _reaches(prom, finished("retry"), at_least(retries), "retried attempts")
    await _reaches(prom, finished("dead"), equals(workload.dead), "dead attempts")
    started = f"sum(taskforge_tasks_started_total{{{q}}})"
    await _reaches(prom, started, at_least(attempts), "started attempts")
    timed = f"sum(taskforge_task_duration_seconds_count{{{q}}})"
    await _reaches(prom, timed, at_least(attempts), "timed attempts")
    promoted = f"sum(taskforge_scheduler_promoted_total{{{q}}})"
    await _reaches(prom, promoted, at_least(retries), "retries promoted after their backoff")


async def test_queue_gauges_follow_the_queue(prom: PrometheusServer, workload: Workload) -> None:
    q = f'namespace="{NAMESPACE}", queue="{workload.queue}"'

    def depth(state: str) -> str:
        return f'max(taskforge_queue_depth{{{q}, state="{state}"}})'

    def events(event: str) -> str:
        return f'max(taskforge_queue_events{{{q}, event="{event}"}})'

    await _reaches(prom, depth("dead"), equals(workload.dead), "DLQ depth")
    for state in ("queued", "running", "scheduled"):
        await _reaches(prom, depth(state), equals(0), f"{state} depth")
    oldest = f"max(taskforge_queue_oldest_task_age_seconds{{{q}}})"
    await _reaches(prom, oldest, equals(0), "oldest waiting task age (none waits)")
    await _reaches(prom, events("enqueued"), equals(workload.enqueued), "enqueued events")
    await _reaches(prom, events("dead"), equals(workload.dead), "dead events")
    done = workload.succeeded + workload.flaky
    await _reaches(prom, events("succeeded"), equals(done), "succeeded events")
    # The DLQ gauge read 0 while Prometheus watched the queue, then 1 from the dead task on.
    history = prom.query_range(depth("dead"), time.time() - 300, time.time(), step="1s")
    values = [float(v) for _, v in history[0]["values"]] if history else []
    assert values and values[0] == 0 and values[-1] == workload.dead, values
    assert values == sorted(values), "the DLQ gauge went down although nothing was requeued"


async def test_http_series_count_the_requests(prom: PrometheusServer, workload: Workload) -> None:
    ns = f'namespace="{NAMESPACE}"'
    limited = f"sum(taskforge_gateway_rate_limited_total{{{ns}}})"
    await _reaches(prom, limited, equals(workload.refused_429), "429s counted")
    refused = f'sum(taskforge_gateway_requests_total{{{ns}, status_class="4xx"}})'
    await _reaches(prom, refused, at_least(workload.refused_429 + 1), "gateway 4xx (429, 401)")
    auth = f'sum(taskforge_gateway_auth_failures_total{{{ns}, reason="invalid"}})'
    await _reaches(prom, auth, equals(1), "the wrong key refused")
    enqueue = 'route="/v1/tasks", method="POST", status_class="2xx"'
    for metric in ("taskforge_gateway_requests_total", "taskforge_api_requests_total"):
        requests = f"sum({metric}{{{ns}, {enqueue}}})"
        await _reaches(prom, requests, equals(workload.enqueued), f"{metric}: enqueue requests")
    errors = f'sum(taskforge_api_requests_total{{{ns}, status_class="5xx"}})'
    await _reaches(prom, errors, nothing, "no api 5xx")


def test_every_scraped_family_is_catalogued_for_its_service(
    prom: PrometheusServer, workload: Workload
) -> None:
    """What Prometheus got from each service is what docs/metrics.md says the service exports."""
    index = promql.series_index()
    documented = {row.name: row.services for row in catalogue()}
    seen = prom.query('count by (__name__, job) ({__name__=~"taskforge_.+"})')
    assert seen, "no taskforge series scraped"
    wrong: dict[str, set[str]] = {}
    for sample in seen:
        name, job = sample["metric"]["__name__"], sample["metric"]["job"]
        assert name in index, f"{job} exports {name}, which no service defines"
        family, service = index[name].name, job.removeprefix(f"{RELEASE}-")
        if service not in documented.get(family, set()):
            wrong.setdefault(family, set()).add(service)
    assert wrong == {}, f"families exported by services docs/metrics.md does not name: {wrong}"


async def test_every_rule_loads_and_evaluates(prom: PrometheusServer, workload: Workload) -> None:
    names = {a["alert"] for a in alerts(render_rules())}

    def all_ok() -> list[dict[str, Any]] | None:
        rules = [r for g in prom.api("/api/v1/rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r["health"] == "ok" for r in rules) else None

    rules = await wait_until(all_ok, SETTLE_S, interval_s=0.5, message="rules not all evaluated")
    assert {r["name"] for r in rules} == names
    for rule in rules:
        assert not rule.get("lastError"), (rule["name"], rule["lastError"])
        prom.query(rule["query"])  # raises on an error or a warning

    def dead_letter_alert() -> bool:
        return any(
            a["labels"]["alertname"] == "TaskforgeDeadLetterGrowing"
            and a["labels"].get("queue") == workload.queue
            and a["state"] == "firing"
            for a in prom.api("/api/v1/alerts")["alerts"]
        )

    dead = f'taskforge_queue_events{{queue="{workload.queue}", event="dead"}}'
    await wait_until(dead_letter_alert, SETTLE_S, interval_s=0.5, message=lambda: (
        "TaskforgeDeadLetterGrowing never fired for the dead task: Prometheus has "
        f"{dead}[1m] = {prom.query(dead + '[1m]')}"
    ))  # fmt: skip


def _variables(dashboard: dict[str, Any]) -> dict[str, str]:
    """Grafana variable -> its value here: the stack's namespace; "All" (the variable's
    allValue) for the multi-value filters; the built-ins."""
    values = dict(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if name == "namespace":
            values[name] = NAMESPACE
        elif variable.get("includeAll"):
            values[name] = variable.get("allValue") or ".*"
    return values


def _grafana(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"no test value for the Grafana variable ${name} in {expr}"
        return values[name]

    return _VARIABLE.sub(value, expr)


def _may_be_empty(expr: str) -> bool:
    return any(
        s.metric in NO_SERIES or ("status_class", "=", "5xx") in s.matchers
        for s in promql.selectors(expr)
    )


def test_every_dashboard_query_evaluates(prom: PrometheusServer, workload: Workload) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))  # read now: it changes
    values = _variables(dashboard)
    targets = dashboard_targets(dashboard)
    assert targets, "the dashboard has no Prometheus query"
    empty = []
    for title, expr in targets:
        try:
            result = prom.query(_grafana(expr, values))
        except PrometheusError as exc:
            pytest.fail(f"panel {title!r}: {expr}\n{exc}", pytrace=False)
        if not result and not _may_be_empty(expr):
            empty.append((title, expr))
    assert empty == [], "queries that found nothing although the work moved their series"


def test_every_dashboard_variable_finds_its_values(
    prom: PrometheusServer, workload: Workload
) -> None:
    expected = {
        "namespace": {NAMESPACE},
        "queue": {workload.queue},
        "job": {f"{RELEASE}-{name}" for name in SERVICES},
        "pod": {f"{RELEASE}-{name}-0" for name in SERVICES},
    }
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    values = _variables(dashboard)
    variables = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert variables
    for variable in variables:
        match = _LABEL_VALUES.match(variable["definition"].strip())
        assert match, f"${variable['name']}: only label_values(selector, label) is evaluated here"
        selector, label = _grafana(match.group(1), values), match.group(2)
        found = prom.api(f"/api/v1/label/{label}/values", {"match[]": selector})
        assert found, f"${variable['name']}: {variable['definition']} finds nothing"
        assert expected.get(variable["name"], set()) <= set(found), (variable["name"], found)


async def test_scheduler_alerts_see_a_stopped_scheduler(
    stack: Stack, prom: PrometheusServer, workload: Workload
) -> None:
    """Last in the module: it stops the scheduler. The expressions of TaskforgeTargetDown and
    TaskforgeSchedulerAbsent then hold (their `for:` is minutes: not waited for)."""
    by_name = {a["alert"]: a["expr"] for a in alerts(render_rules())}
    stack.procs["scheduler"].terminate()
    stack.procs["scheduler"].wait(30)
    await _reaches(prom, f'up{{job="{RELEASE}-scheduler"}}', equals(0), "scheduler down")
    gauge = f'taskforge_scheduler_last_tick_timestamp_seconds{{namespace="{NAMESPACE}"}}'
    for name in ("TaskforgeTargetDown", "TaskforgeSchedulerAbsent"):
        exporters = [s["metric"] for s in prom.query(f"count by (job) ({gauge})")]
        await wait_until(lambda: prom.query(by_name[name]), SETTLE_S, interval_s=0.5, message=(
            f"{name} does not hold with the scheduler stopped: {by_name[name].strip()}; "
            f"{gauge} is still exported by {exporters}"
        ))  # fmt: skip
