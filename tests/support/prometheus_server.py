"""A real Prometheus server for tests: Debian's ``prometheus`` binary on a free port.

The server gets a generated configuration (static scrape targets, optional rule files), a
storage directory of its own and 127.0.0.1 only; it is a child of the test run, stopped with
SIGTERM (SIGKILL if it lingers) when the ``with`` block ends. Typical use::

    jobs = [ScrapeJob("taskforge-api", ["127.0.0.1:9100"], {"namespace": "taskforge"})]
    with PrometheusServer(tmp_path, jobs, rule_files=[rules]) as prom:
        prom.query('up{job="taskforge-api"}')        # the result list; raises on error/warnings
        prom.query_range("up", start, end, step="1s")
        prom.api("/api/v1/rules")                     # any GET endpoint's "data"

``stack_jobs(stack, ...)`` gives the jobs of a ``scripts.devstack.Stack``'s services. The binary
is looked up on PATH, then in /usr/bin (``make bootstrap`` installs Debian's
``prometheus`` package for promtool, which brings the server too).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from scripts.devstack import Stack
from tests.support.ports import free_port
from tests.support.processes import LOG_TAIL_CHARS, log_text, terminate

INSTALL_HINT = (
    "the prometheus server binary is required by this test and was not found on PATH or in "
    "/usr/bin: run `make bootstrap` (bootstrap-promtool installs Debian's prometheus package) "
    "or `apt-get install -y prometheus`"
)
#: Most characters of the server's log quoted in a failure message.


class PrometheusError(RuntimeError):
    """The server is missing, did not start, or answered a query with an error or a warning."""


def find_prometheus() -> str:
    """Path of the ``prometheus`` binary.

    Raises:
        PrometheusError: it is not installed (the message says how to install it).
    """
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None
    )
    if found is None:
        raise PrometheusError(INSTALL_HINT)
    return found


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: its name, ``host:port`` targets and labels added to every series."""

    name: str
    targets: Sequence[str]
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"


def stack_jobs(
    stack: Stack, services: Sequence[str], release: str, labels: Mapping[str, str]
) -> list[ScrapeJob]:
    """A job per service of a local stack, named and labelled as Prometheus Operator would do
    in a cluster: job ``<release>-<service>``, pod ``<release>-<service>-0``, plus ``labels``.

    Waits until each service answers ``/readyz`` on its metrics port (``Stack.start`` waits for
    the api and the gateway only), so that the first scrapes find every target up.
    """
    for name in services:
        _wait_ready(stack, name)
    return [
        ScrapeJob(
            f"{release}-{name}",
            [f"127.0.0.1:{stack.metrics_ports[name]}"],
            {**labels, "pod": f"{release}-{name}-0"},
        )
        for name in services
    ]


def _wait_ready(stack: Stack, name: str, timeout_s: float = 30.0) -> None:
    url = f"http://127.0.0.1:{stack.metrics_ports[name]}/readyz"
    deadline = time.monotonic() + timeout_s
    while not _answers_200(url):
        if stack.procs[name].poll() is not None:
            raise PrometheusError(f"{name} exited with {stack.procs[name].returncode}")
        if time.monotonic() > deadline:
            raise PrometheusError(f"{name} not ready after {timeout_s:g}s: {url}")
        time.sleep(0.1)


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class PrometheusServer:
    """A Prometheus scraping ``jobs`` every ``interval`` and evaluating ``rule_files`` as often."""

    def __init__(
        self,
        directory: Path,
        jobs: Sequence[ScrapeJob],
        *,
        rule_files: Sequence[Path] = (),
        interval: str = "1s",
        binary: str | None = None,
    ) -> None:
        self.directory = directory
        self.jobs = list(jobs)
        self.rule_files = list(rule_files)
        self.interval = interval
        self.binary = binary or find_prometheus()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "prometheus.log"

    @property
    def url(self) -> str:
        """Base URL of the HTTP API and UI."""
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        """The prometheus.yml this server runs with."""
        return {
            "global": {
                "scrape_interval": self.interval,
                "scrape_timeout": self.interval,
                "evaluation_interval": self.interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": job.name,
                    "metrics_path": job.metrics_path,
                    "static_configs": [{"targets": list(job.targets), "labels": dict(job.labels)}],
                }
                for job in self.jobs
            ],
        }

    def start(self, timeout_s: float = 30.0) -> None:
        """Write the configuration, start the server and wait for ``/-/ready``.

        Raises:
            PrometheusError: it exited or was not ready in time (the message quotes its log).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + timeout_s
        while not _answers_200(f"{self.url}/-/ready"):
            if self.proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {self.proc.returncode}\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready after {timeout_s:g}s\n{self.log()}")
            time.sleep(0.1)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the server, SIGKILL it if it lingers."""
        terminate(self.proc, grace_s)

    def log(self) -> str:
        """The tail of the server's log."""
        return log_text(self.log_path)[-LOG_TAIL_CHARS:]

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- HTTP API --------------------------------------------------------------------------

    def answer(self, path: str, params: Mapping[str, str | Sequence[str]] | None = None) -> Any:
        """The whole JSON answer of a GET on ``path`` (``status``, ``data``, ``warnings``...),
        error answers (4xx/5xx with a JSON body) included."""
        query = urllib.parse.urlencode(params or {}, doseq=True)
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                return json.loads(body)
            except ValueError:
                raise PrometheusError(f"GET {path}: HTTP {error.code}: {body[:500]!r}") from None

    def api(self, path: str, params: Mapping[str, str | Sequence[str]] | None = None) -> Any:
        """The ``data`` of a GET on ``path``.

        Raises:
            PrometheusError: the answer's status is not ``success`` or it carries warnings.
        """
        reply = self.answer(path, params)
        if reply.get("status") != "success" or reply.get("warnings"):
            raise PrometheusError(
                f"GET {path} {dict(params or {})}: {reply.get('errorType')}: {reply.get('error')}"
                f" warnings={reply.get('warnings')}"
            )
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query now (a list of ``{"metric", "value"}``; a scalar or
        string result as a one-element list)."""
        data = self.api("/api/v1/query", {"query": expr})
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result)

    def query_range(
        self, expr: str, start: float, end: float, step: str = "1s"
    ) -> list[dict[str, Any]]:
        """The result of a range query (a list of ``{"metric", "values"}``)."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        return list(self.api("/api/v1/query_range", params)["result"])

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` now (None when the result is empty).

        Raises:
            PrometheusError: the result has more than one series.
        """
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])
