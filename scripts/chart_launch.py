"""Run TaskForge on this machine exactly as the Helm chart configures it in a cluster.

The chart is rendered with ``bin/helm template``; every Deployment's container command and
environment (ConfigMap ``envFrom``, Secret ``secretKeyRef``, plain values) is resolved from the
rendered objects, and the processes are started locally. Only what a cluster provides is mapped:
Service host names become 127.0.0.1 ports, listening ports become free ports, and everything
binds to 127.0.0.1. Redis runs the chart's own container command with its rendered redis.conf.

    uv run python -m scripts.chart_launch -f k8s/values-dev.yaml     # Ctrl-C stops everything

tests/chart/test_chart_launch.py uses :class:`ChartStack` for its smoke test.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import yaml

from scripts.devstack import free_port

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "taskforge"
HELM = REPO / "bin" / "helm"
#: The services, in start order (the gateway needs the api's address).
SERVICES = ("api", "gateway", "worker", "scheduler")
REDIS_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/bin")

Doc = dict[str, Any]


def render(values_files: Iterable[str | Path] = (), release: str = "taskforge") -> list[Doc]:
    """``helm template`` the chart with ``values_files``; the rendered objects."""
    args = [str(HELM), "template", release, str(CHART)]
    for path in values_files:
        args += ["-f", str(path)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: Iterable[Doc], kind: str, name: str) -> Doc | None:
    """The rendered object of ``kind`` named ``name``, if any."""
    return next(
        (d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name),
        None,
    )


def by_component(docs: Iterable[Doc], kind: str, component: str) -> Doc:
    """The rendered ``kind`` object labelled app.kubernetes.io/component=``component``."""
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] == kind and labels.get("app.kubernetes.io/component") == component:
            return doc
    raise LookupError(f"no {kind} of component {component} was rendered")


def secret_value(docs: Iterable[Doc], name: str, key: str) -> str | None:
    """A key of a rendered Secret (base64 in ``data``, plain in ``stringData``), or None."""
    secret = find(docs, "Secret", name)
    if secret is None:
        return None
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    if key in secret.get("data", {}):
        return base64.b64decode(secret["data"][key]).decode()
    return None


MissingSecret = Callable[[str, str], str | None]


def _refuse_missing(name: str, key: str) -> str | None:
    raise LookupError(f"Secret {name!r} (key {key!r}) is not rendered by the chart")


def _env_from(docs: list[Doc], source: Doc) -> dict[str, str]:
    """The variables of one ``envFrom`` entry (a whole ConfigMap or Secret)."""
    kind, ref = (
        ("ConfigMap", "configMapRef") if "configMapRef" in source else ("Secret", "secretRef")
    )
    name = source[ref]["name"]
    obj = find(docs, kind, name)
    if obj is None:
        raise LookupError(f"{kind} {name!r} is not rendered by the chart")
    if kind == "ConfigMap":
        return {k: str(v) for k, v in obj.get("data", {}).items()}
    return {k: secret_value(docs, name, k) or "" for k in obj.get("data", {})}


def _env_value(docs: list[Doc], var: Doc, missing_secret: MissingSecret) -> str | None:
    """The value of one ``env`` entry, or None when it resolves to nothing here."""
    if "value" in var:
        return str(var["value"])
    source = var.get("valueFrom", {})
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        value = secret_value(docs, ref["name"], ref["key"])
        if value is None and not ref.get("optional"):
            value = missing_secret(ref["name"], ref["key"])
        return value
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        config_map = find(docs, "ConfigMap", ref["name"]) or {}
        found = config_map.get("data", {}).get(ref["key"])
        return None if found is None else str(found)
    return None  # fieldRef / resourceFieldRef: nothing local to map them to


def resolve_env(
    docs: list[Doc], container: Doc, missing_secret: MissingSecret = _refuse_missing
) -> dict[str, str]:
    """The environment Kubernetes would give ``container``: envFrom, then env (which wins).

    Args:
        docs: every rendered object (ConfigMaps and Secrets are looked up among them).
        container: the container spec.
        missing_secret: called for a Secret key the chart does not render (an existingSecret);
            returns the value to use, or None to leave the variable out. Optional references
            that are missing are left out without asking.

    Raises:
        LookupError: a referenced ConfigMap or Secret is not rendered and nothing replaces it.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_env_from(docs, source))
    for var in container.get("env", []):
        value = _env_value(docs, var, missing_secret)
        if value is not None:
            env[var["name"]] = value
    return env


def local_argv(container: Doc) -> list[str]:
    """The container's command and args, with its program found on this machine.

    The services' entrypoints (``taskforge-api`` ...) are console scripts of the uv environment,
    next to the running interpreter; ``python`` is this interpreter.
    """
    argv = [str(a) for a in container.get("command", []) + container.get("args", [])]
    if not argv:
        raise ValueError(f"container {container['name']} sets no command: the image decides")
    program = argv[0]
    beside = Path(sys.executable).parent / program
    if program in ("python", "python3"):
        argv[0] = sys.executable
    elif beside.exists():
        argv[0] = str(beside)
    elif found := shutil.which(program):
        argv[0] = found
    return argv


def find_redis_server() -> str:
    """Path of redis-server (PATH, then the usual directories)."""
    found = shutil.which("redis-server") or next(
        (f"{d}/redis-server" for d in REDIS_DIRS if os.access(f"{d}/redis-server", os.X_OK)), None
    )
    if found is None:
        raise FileNotFoundError("redis-server is required (make bootstrap installs it)")
    return found


def with_address(url: str, host: str, port: int) -> str:
    """``url`` with its host and port replaced."""
    parts = urlsplit(url)
    netloc = f"{host}:{port}"
    if parts.username or parts.password:
        netloc = f"{parts.netloc.rsplit('@', 1)[0]}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class LocalProcess:
    """A started process, its environment and log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's output, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


@dataclass
class ChartStack:
    """Redis and the four services, started from rendered chart objects.

    Use as a context manager; leaving it stops every process (SIGTERM, then SIGKILL).
    """

    docs: list[Doc]
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tf-chart-")))
    processes: dict[str, LocalProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    #: The rendered service environments, after the local mapping.
    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    # -- starting ------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> Self:
        """Start Redis, then the services; wait until the gateway and api are ready."""
        self.start_redis(timeout_s)
        for service in SERVICES:
            self.start_service(service)
        for service in ("api", "gateway"):
            self.wait_http(service, f"http://127.0.0.1:{self.ports[service]}/readyz", timeout_s)
        for service in ("worker", "scheduler"):
            metrics = self.envs[service]["TASKFORGE_METRICS_PORT"]
            self.wait_http(service, f"http://127.0.0.1:{metrics}/readyz", timeout_s)
        return self

    def start_redis(self, timeout_s: float) -> None:
        """Run the chart's Redis container command with its rendered redis.conf."""
        statefulset = by_component(self.docs, "StatefulSet", "redis")
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        config_map = find(self.docs, "ConfigMap", statefulset["metadata"]["name"])
        assert config_map is not None, "the Redis ConfigMap is not rendered"
        port = self.ports["redis"] = free_port()
        data_dir = self.work_dir / "redis-data"
        data_dir.mkdir(parents=True)
        conf = self.work_dir / "redis.conf"
        # Keep every rendered setting; move only what a pod gets from Kubernetes (its own
        # network namespace and the /data volume).
        local = {"port": str(port), "bind": "127.0.0.1", "dir": str(data_dir)}
        lines = [
            line
            for line in config_map["data"]["redis.conf"].splitlines()
            if line.split(" ", 1)[0] not in local
        ]
        conf.write_text("\n".join(lines + [f"{k} {v}" for k, v in local.items()]) + "\n")
        env = resolve_env(self.docs, container)
        argv = [
            a.replace("/etc/redis/redis.conf", str(conf)).replace(
                "redis-server", find_redis_server()
            )
            for a in local_argv(container)
        ]
        self._spawn("redis", argv, env)
        self.wait_redis(port, env["REDISCLI_AUTH"], timeout_s)

    def service_env(self, service: str) -> dict[str, str]:
        """The service's rendered environment, mapped to this machine's ports."""
        deployment = by_component(self.docs, "Deployment", service)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = resolve_env(self.docs, container)
        env["TASKFORGE_REDIS_URL"] = with_address(
            env["TASKFORGE_REDIS_URL"], "127.0.0.1", self.ports["redis"]
        )
        env["TASKFORGE_METRICS_PORT"] = str(free_port())
        env["TASKFORGE_METRICS_HOST"] = "127.0.0.1"
        if "TASKFORGE_PORT" in env:
            self.ports[service] = free_port()
            env["TASKFORGE_PORT"] = str(self.ports[service])
            env["TASKFORGE_HOST"] = "127.0.0.1"
        if "TASKFORGE_API_URL" in env:
            env["TASKFORGE_API_URL"] = with_address(
                env["TASKFORGE_API_URL"], "127.0.0.1", self.ports["api"]
            )
        return env

    def start_service(self, service: str) -> None:
        """Start one service with its container command and mapped environment."""
        deployment = by_component(self.docs, "Deployment", service)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = self.envs[service] = self.service_env(service)
        self._spawn(service, local_argv(container), env)

    def run_pod_command(
        self, container: Doc, env_overrides: Mapping[str, str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a Job's or test Pod's container command to completion, with its rendered env."""
        env = {**resolve_env(self.docs, container), **env_overrides}
        return subprocess.run(
            local_argv(container),
            env=self._process_env(env),
            cwd=self.work_dir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def _process_env(self, env: Mapping[str, str]) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
        return {**inherited, **env, "PYTHONUNBUFFERED": "1"}

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log_path = self.work_dir / f"{name}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                env=self._process_env(env),
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = LocalProcess(name, argv, env, log_path, proc)

    # -- waiting -------------------------------------------------------------------------

    def describe(self) -> str:
        """State and log tail of every process, for failure messages."""
        parts = []
        for p in self.processes.values():
            status = p.proc.poll()
            state = "running" if status is None else f"exited with {status}"
            parts.append(f"--- {p.name} ({state}) {' '.join(p.argv[:3])}\n{p.log_tail()}")
        return "\n".join(parts)

    def _check_alive(self) -> None:
        for p in self.processes.values():
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited early\n{self.describe()}")

    def wait_redis(self, port: int, password: str, timeout_s: float) -> None:
        """Wait until Redis answers PING after AUTH."""
        deadline = time.monotonic() + timeout_s
        secret = password.encode()
        auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(secret), secret)
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(auth)
                    reply = b""
                    while b"\r\n" not in reply.partition(b"\r\n")[2] and len(reply) < 512:
                        chunk = sock.recv(256)
                        if not chunk:
                            break
                        reply += chunk
                    if reply.endswith(b"+PONG\r\n"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Redis did not answer on port {port}\n{self.describe()}")

    def wait_http(self, name: str, url: str, timeout_s: float) -> None:
        """Wait until ``url`` answers 200."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                # Loopback URLs built from our own ports.
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError(f"{name}: {url} not ready ({last})\n{self.describe()}")

    # -- stopping ------------------------------------------------------------------------

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every process (services first, Redis last), SIGKILL what lingers."""
        for name in reversed(list(self.processes)):
            proc = self.processes[name].proc
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace_s)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()  # what did start must not outlive a failed start
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Render the chart with the given values files and run it here until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", "--values", action="append", default=[], help="values file")
    args = parser.parse_args(argv)
    docs = render(args.values)
    gateway = by_component(docs, "Deployment", "gateway")
    key_ref = next(
        (
            e["valueFrom"]["secretKeyRef"]
            for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"] == "TASKFORGE_BOOTSTRAP_API_KEY"
        ),
        None,
    )
    with ChartStack(docs) as stack:
        print(f"gateway: http://127.0.0.1:{stack.ports['gateway']}", flush=True)
        if key_ref is not None:
            print(f"api key: {secret_value(docs, key_ref['name'], key_ref['key'])}", flush=True)
        print(f"logs:    {stack.work_dir}", flush=True)
        try:
            while all(p.proc.poll() is None for p in stack.processes.values()):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        print(stack.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
