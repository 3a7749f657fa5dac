"""Run the chart's workloads as podman containers of the built images, on this machine.

:class:`ContainerStack` is the chart-driven launch of ``scripts/chart_launch.py`` with one
difference: each component runs in a container of its image (``make images-build``) instead of
as a local process. Command, environment, security context and volumes all come from the
rendered objects; only what a cluster provides is mapped: every container shares the host's
network namespace (Service names become 127.0.0.1 and free ports, Redis binds loopback), an
``emptyDir`` becomes a tmpfs of its size limit, a ConfigMap volume a read-only directory of its
rendered files, and a PersistentVolumeClaim a host directory owned by the pod's ``fsGroup``.

Each container's ``podman run`` stays attached, so the inherited process bookkeeping (logs,
early-exit detection, SIGTERM on stop) works unchanged; every container is removed on stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.chart_launch import ChartStack, Doc, by_component, find, resolve_env

REPO = Path(__file__).resolve().parents[2]
PODMAN = str(REPO / "scripts" / "images" / "podman.sh")
#: securityContext fields security_args maps; any other stops the run rather than be ignored.
MAPPED_SECURITY = frozenset(
    {
        "runAsNonRoot",
        "runAsUser",
        "runAsGroup",
        "fsGroup",
        "seccompProfile",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "privileged",
        "capabilities",
    }
)


def podman(*args: str, check: bool = True, timeout_s: float = 120) -> str:
    """Run ``scripts/images/podman.sh <args>``; its standard output."""
    proc = subprocess.run(
        [PODMAN, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def security_args(pod: Doc, container: Doc) -> list[str]:
    """podman options for the pod's and container's securityContext (the container's wins).

    Raises:
        ValueError: a field or value this mapping does not know (it must not be dropped).
    """
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    unknown = set(context) - MAPPED_SECURITY
    if unknown:
        raise ValueError(f"securityContext fields not mapped to podman: {sorted(unknown)}")
    uid, gid = context.get("runAsUser"), context.get("runAsGroup")
    if context.get("runAsNonRoot") and uid in (None, 0):
        raise ValueError("runAsNonRoot needs a numeric non-zero runAsUser here")
    if context.get("privileged"):
        raise ValueError("privileged containers are not run")
    # Kubernetes runs without a seccomp filter unless one is asked for; podman's default profile
    # is the runtime default, so only that request can be honoured by passing nothing.
    if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        raise ValueError(f"seccompProfile {context.get('seccompProfile')} is not mapped")
    args: list[str] = []
    if uid is not None:
        args += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    if "fsGroup" in context:
        args += ["--group-add", str(context["fsGroup"])]
    if context.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    capabilities = context.get("capabilities", {})
    args += [f"--cap-drop={c}" for c in capabilities.get("drop", [])]
    args += [f"--cap-add={c}" for c in capabilities.get("add", [])]
    return args


def tmpfs_size(quantity: str | None) -> str:
    """A Kubernetes quantity (``64Mi``) as a tmpfs size option (``size=64m``), or nothing."""
    if not quantity:
        return ""
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, unit in units.items():
        if quantity.endswith(suffix):
            return f",size={quantity.removesuffix(suffix)}{unit}"
    return f",size={int(quantity)}"


@dataclass
class ContainerStack(ChartStack):
    """Redis and the four services as hardened containers, from rendered chart objects."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    #: component -> container name
    names: dict[str, str] = field(default_factory=dict)
    #: component -> image reference it runs
    images: dict[str, str] = field(default_factory=dict)

    def start_redis(self, timeout_s: float) -> None:
        """The chart's Redis container: its image, command, config and data volume."""
        statefulset = by_component(self.docs, "StatefulSet", "redis")
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        self.ports["redis"] = int(container["ports"][0]["containerPort"])
        env = resolve_env(self.docs, container)
        argv = self.run_argv("redis", statefulset, container, env)
        # Its own network namespace in a pod; the host's here, so listen on loopback only.
        conf = self.work_dir / "redis-config" / "redis.conf"
        lines = conf.read_text().splitlines()
        conf.write_text("\n".join("bind 127.0.0.1" if x.startswith("bind ") else x for x in lines))
        self._spawn("redis", argv, env)
        self.wait_redis(self.ports["redis"], env["REDISCLI_AUTH"], timeout_s)

    def start_service(self, service: str) -> None:
        """A service's container with its rendered, locally mapped environment."""
        deployment = by_component(self.docs, "Deployment", service)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = self.envs[service] = self.service_env(service)
        self._spawn(service, self.run_argv(service, deployment, container, env), env)

    def run_argv(
        self, component: str, workload: Doc, container: Doc, env: dict[str, str]
    ) -> list[str]:
        """``podman run`` (attached) of one container, its volumes prepared."""
        pod = workload["spec"]["template"]["spec"]
        name = self.names[component] = f"tf-images-{self.run_id}-{component}"
        self.images[component] = container["image"]
        argv = [PODMAN, "run", "--name", name, "--network=host"]
        argv += ["--label", f"io.taskforge.test-run={self.run_id}"]
        argv += ["--stop-timeout", str(pod.get("terminationGracePeriodSeconds", 30))]
        argv += security_args(pod, container)
        argv += self.volume_args(component, workload, container)
        # Values come from podman's own environment (see _spawn): no secret on a command line.
        for variable in sorted(env):
            argv += ["--env", variable]
        if container.get("command"):
            argv += ["--entrypoint", json.dumps(container["command"])]
        return [*argv, container["image"], *map(str, container.get("args", []))]

    def volume_args(self, component: str, workload: Doc, container: Doc) -> list[str]:
        """podman mounts for the container's volumeMounts."""
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        args: list[str] = []
        for mount in container.get("volumeMounts", []):
            path, volume = mount["mountPath"], volumes.get(mount["name"], {})
            host = self.work_dir / f"{component}-{mount['name']}"
            if "emptyDir" in volume:
                size = tmpfs_size(volume["emptyDir"].get("sizeLimit"))
                args += ["--tmpfs", f"{path}:rw,mode=1777{size}"]
            elif "configMap" in volume:
                self._write_config_map(volume["configMap"]["name"], host)
                args += ["--volume", f"{host}:{path}:ro"]
            elif mount["name"] in claims:
                host.mkdir(parents=True, exist_ok=True)
                fs_group = pod.get("securityContext", {}).get("fsGroup", os.getgid())
                os.chown(host, pod.get("securityContext", {}).get("runAsUser", 0), fs_group)
                args += ["--volume", f"{host}:{path}"]
            else:
                raise ValueError(f"{component}: volume {mount['name']} is not mapped: {volume}")
        return args

    def _write_config_map(self, name: str, directory: Path) -> None:
        config_map = find(self.docs, "ConfigMap", name)
        if config_map is None:
            raise LookupError(f"ConfigMap {name} is not rendered")
        directory.mkdir(parents=True, exist_ok=True)
        for key, value in config_map.get("data", {}).items():
            (directory / key).write_text(str(value))
        directory.chmod(0o755)

    # -- acting on running containers ----------------------------------------------------

    def exec(self, component: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the component's container (as its user)."""
        return subprocess.run(
            [PODMAN, "exec", self.names[component], *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def inspect(self, component: str) -> dict[str, Any]:
        """``podman inspect`` of the component's container."""
        found: list[dict[str, Any]] = json.loads(podman("inspect", self.names[component]))
        return found[0]

    def stop_container(self, component: str, timeout_s: int) -> int:
        """``podman stop -t`` (SIGTERM, SIGKILL after ``timeout_s``); the exit code."""
        podman("stop", "--time", str(timeout_s), self.names[component], timeout_s=timeout_s + 30)
        self.processes[component].proc.wait(30)
        return int(self.inspect(component)["State"]["ExitCode"])

    def restart(self, component: str) -> None:
        """Start the stopped container again, attached like the first run."""
        process = self.processes[component]
        self._spawn(component, [PODMAN, "start", "--attach", self.names[component]], process.env)

    def _process_env(self, env: Mapping[str, str]) -> dict[str, str]:
        # The inherited environment loses TASKFORGE_* (the services refuse unknown ones), but
        # podman.sh must see the same TASKFORGE_CACHE as every other podman call here; the
        # containers get only the variables named with --env.
        cache = {k: v for k, v in os.environ.items() if k == "TASKFORGE_CACHE"}
        return {**super()._process_env(env), **cache}

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every container (through its attached podman), then remove them all."""
        try:
            super().stop(grace_s)
        finally:
            if self.names:
                podman(
                    "rm", "--force", "--ignore", "--time", "0", *self.names.values(), check=False
                )
