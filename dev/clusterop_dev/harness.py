"""What the e2e tests, the demo, the benchmark and the chaos suite share: the operator as a
separate process, ManagerCluster objects built from simulator machines, and explicit waits.

Speaks to Kubernetes with the `kubernetes` client (the operator itself uses pykube-ng).
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from cloudify_manager_sim.harness import stop_process
from clusterop_dev.testkit import condition, is_ready, put_secret, wait_for

GROUP, VERSION, PLURAL = "cloudify.co", "v1alpha1", "managerclusters"
REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "cloudify.co_managerclusters.yaml"
T = TypeVar("T")


# -- the operator as a process ------------------------------------------------------------------


class OperatorProcess:
    """`cloudify-cluster-operator` run as users run it, against a kubeconfig file."""

    local = True

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        namespaces: Sequence[str] = (),
        *,
        resync_seconds: float = 3.0,
        log_path: str | os.PathLike[str] | None = None,
        log_level: str = "debug",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.python = python  # e.g. the runtime-only venv of `make bench`
        self.namespaces = list(namespaces)
        self.resync_seconds = resync_seconds
        self.log_path = Path(log_path) if log_path else Path(f"/tmp/clusterop-operator-{os.getpid()}-{id(self)}.log")
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> list[str]:
        args = [self.python, "-m", "clusterop.cli", "--resync-seconds", str(self.resync_seconds)]
        args += ["--log-level", self.log_level, "--metrics-port", "0", "--liveness", ""]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        if not self.namespaces:
            args.append("--all-namespaces")
        return args + self.extra_args

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1", **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n=== operator start #{self.starts + 1}: {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: no cleanup of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        return stop_process(self.proc, timeout)

    def restart(self) -> OperatorProcess:
        self.stop()
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def digest(self, limit: int = 8000) -> str:
        """What a failed test shows of this process: how it runs or ended, its start lines, then
        the tail of its log above DEBUG, then the last few lines at any level."""
        if self.proc is None:
            state = "never started"
        elif self.proc.poll() is None:
            state = f"pid {self.proc.pid}, running"
        else:
            state = f"pid {self.proc.pid}, exited {self.proc.returncode}"
        lines = self.log_text().splitlines()
        starts = [line for line in lines if line.startswith("=== operator start")]
        above = "\n".join(line for line in lines if "[DEBUG" not in line)[-limit:]
        last = "\n".join(lines[-8:])
        return f"--- {self.log_path} ({state}) ---\n" + "\n".join(
            [*starts, "... above DEBUG:", above, "... last lines:", last]
        )

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# -- Kubernetes objects -------------------------------------------------------------------------


def apply_crd(api: ApiClient) -> None:
    """Server-side apply of the CRD from crds/, then wait until it is served."""
    import yaml

    body = yaml.safe_load(CRD_FILE.read_text())
    ext = client.ApiextensionsV1Api(api)
    ext.patch_custom_resource_definition(
        body["metadata"]["name"],
        body,
        field_manager="clusterop-tests",
        force=True,
        _content_type="application/apply-patch+yaml",
    )

    def established() -> bool:
        crd = ext.read_custom_resource_definition(body["metadata"]["name"])
        conditions = crd.status.conditions if crd.status else None
        return any(c.type == "Established" and c.status == "True" for c in conditions or [])

    wait_for(established, timeout=30, message="the CRD to be established")


def node_specs(machines: Sequence[Mapping[str, Any]], prefix: str = "manager") -> list[dict[str, str]]:
    return [
        {"name": f"{prefix}-{i + 1}", "hostIP": m["host_ip"], "endpoint": m["endpoint"]} for i, m in enumerate(machines)
    ]


def manager_cluster(
    name: str,
    nodes: Sequence[Mapping[str, str]],
    *,
    key_secret: str = "cluster-key",
    credentials_secret: str = "manager-admin",
    config: Mapping[str, Any] | None = None,
    deletion_policy: str | None = None,
    paused: bool = False,
    generate_key: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodes": [dict(n) for n in nodes],
        "encryptionKeySecretRef": {"name": key_secret, **({"generate": True} if generate_key else {})},
        "credentialsSecretRef": {"name": credentials_secret},
    }
    if config is not None:
        spec["config"] = dict(config)
    if deletion_policy:
        spec["deletionPolicy"] = deletion_policy
    meta: dict[str, Any] = {"name": name}
    if paused:
        meta["annotations"] = {"cloudify.co/paused": "true"}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ManagerCluster", "metadata": meta, "spec": spec}


class Clusters:
    """ManagerCluster objects of one namespace."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.api = api
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    # secrets
    def put_secret(self, name: str, data: Mapping[str, str]) -> None:
        put_secret(self.core, self.ns, name, data)

    def put_credentials(self, name: str = "manager-admin", username: str = "admin", password: str = "admin") -> None:
        self.put_secret(name, {"username": username, "password": password})

    def put_key(self, name: str = "cluster-key", key: str | None = None) -> str:
        value = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        self.put_secret(name, {"encryptionKey": value})
        return value

    # the custom resource
    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, dict(body))
        return cast(dict[str, Any], result)

    def get(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name))

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def patch(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        result = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, dict(patch), _content_type="application/merge-patch+json"
        )
        return cast(dict[str, Any], result)

    def set_nodes(self, name: str, nodes: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        return self.patch(name, {"spec": {"nodes": [dict(n) for n in nodes]}})

    def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        return self.patch(name, {"metadata": {"annotations": {"cloudify.co/paused": "true" if paused else None}}})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        return condition(self.get(name), type_)

    def is_ready(self, name: str) -> bool:
        return is_ready(self.get(name))

    def wait_ready(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        wait_for(lambda: self.is_ready(name), timeout=timeout, message=f"{self.ns}/{name} to be Ready")
        return self.status(name)

    def wait_status(
        self, name: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0, message: str = ""
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status(name)
            return st if pred(st) else None

        return wait_for(check, timeout=timeout, message=message or f"a status of {self.ns}/{name}")

    def events(self, name: str) -> list[dict[str, str | None]]:
        items = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        return [{"type": e.type, "reason": e.reason, "message": e.message} for e in items]

    def wait_events(
        self, name: str, pred: Callable[[list[dict[str, str | None]]], bool], timeout: float = 15.0, message: str = ""
    ) -> list[dict[str, str | None]]:
        """The object's Events once `pred` holds for them: kopf posts Events asynchronously, so a
        status that already says something does not mean its Event is there yet."""

        def check() -> list[dict[str, str | None]] | None:
            found = self.events(name)
            return found if pred(found) else None

        return wait_for(check, timeout=timeout, message=message or f"Events of {self.ns}/{name}")

    def wait_reasons(self, name: str, *reasons: str, timeout: float = 15.0) -> list[str]:
        """The reasons of the object's Events, once every one of `reasons` is among them."""
        found = self.wait_events(
            name,
            lambda es: set(reasons) <= {e["reason"] for e in es},
            timeout=timeout,
            message=f"Events {', '.join(reasons)} of {self.ns}/{name}",
        )
        return [str(e["reason"]) for e in found]
