"""`TestBed`: a local Kubernetes control plane on loopback ports, envtest style: etcd, kube-apiserver
and kube-controller-manager as child processes, with their own CA, an admin client certificate and
a kubeconfig written into the test bed's work folder. Certificates, processes and readiness are
their own modules beside this one; this one decides what runs, with which flags, in which order.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterop_dev.testbed import certs
from clusterop_dev.testbed.access import ClusterAccess
from clusterop_dev.testbed.binaries import control_plane_binaries
from clusterop_dev.testbed.common import TestBedError, say
from clusterop_dev.testbed.processes import Child, spawn, stop_children
from clusterop_dev.testbed.readiness import wait_ready
from clusterop_dev.testkit import free_ports

# Writes the benchmark counts (the operator's own writes). Core group is "".
DEFAULT_AUDIT_RESOURCES: Mapping[str, tuple[str, ...]] = {
    "cloudify.co": ("managerclusters", "managerclusters/status"),
    "": ("events", "secrets", "configmaps"),
    "events.k8s.io": ("events",),
}
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

# Everything the test bed writes into its work folder (removed one by one when the folder is not its own).
_WORKDIR_ARTIFACTS = (
    "openssl.cnf", "ca.key", "ca.crt", "serving.key", "serving.csr", "serving.crt", "admin.key", "admin.csr",
    "admin.crt", "sa.key", "kubeconfig", "audit-policy.json", "audit.log", "pids.json", "etcd-data",
    "apiserver-certs", "etcd.log", "kube-apiserver.log", "kube-controller-manager.log",
)  # fmt: skip
ADMIN_USER = "testbed-admin"


@dataclass
class TestBed(ClusterAccess):
    """etcd + kube-apiserver (+ kube-controller-manager) on free loopback ports.

    Use as a context manager or call start()/stop(). On a failed start every process is stopped
    and the work folder (certificates, kubeconfig, one log per process) is kept and named on
    stderr; after a clean stop it is deleted unless keep=True.
    """

    __test__ = False  # not a pytest test class

    workdir: Path | None = None
    audit: bool = False
    audit_resources: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(DEFAULT_AUDIT_RESOURCES))
    controller_manager: bool = True
    keep: bool = False
    kubeconfig_path: Path | None = None
    binaries: Path | None = None
    start_timeout: float = 60.0
    extra_apiserver_args: Sequence[str] = ()

    kind: bool = field(default=False, init=False)
    startup_seconds: float | None = field(default=None, init=False)
    server: str = field(default="", init=False)
    _children: dict[str, Child] = field(default_factory=dict, init=False, repr=False)
    _created_workdir: bool = field(default=False, init=False, repr=False)
    _stopped: bool = field(default=True, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    # ---- paths -------------------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        if self.workdir is None:
            raise TestBedError("The test bed has not been started")
        return self.workdir

    @property
    def kubeconfig(self) -> Path:  # type: ignore[override]
        return self.kubeconfig_path or self.dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def audit_log(self) -> Path | None:
        return self.dir / "audit.log" if self.audit else None

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the processes running now, by name."""
        return {c.name: c.popen.pid for c in self._children.values() if c.popen is not None and c.alive()}

    @property
    def has_controller_manager(self) -> bool:
        """Whether kube-controller-manager runs (it may be missing from KUBEBUILDER_ASSETS)."""
        return "kube-controller-manager" in self._children

    # ---- life cycle --------------------------------------------------------------------------------

    def __enter__(self) -> TestBed:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.stop(keep=True if exc_type is not None else None)

    def start(self) -> TestBed:
        with self._lock:
            if not self._stopped:
                return self
            self._stopped = False
            atexit.register(self._stop_at_exit)
            try:
                self._start()
            except BaseException as e:
                self.stop(keep=True)
                say(f"Failed to start the control plane: {e}")
                raise
            return self

    def _start(self) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="clusterop-testbed-"))
            self._created_workdir = True
        else:
            self.workdir = Path(self.workdir).resolve()
            self._created_workdir = not self.workdir.exists()
            self.workdir.mkdir(parents=True, exist_ok=True)
        binaries = self.binaries or control_plane_binaries()
        for b in ("etcd", "kube-apiserver"):
            if not os.access(binaries / b, os.X_OK):
                raise TestBedError(f"No executable {b} in {binaries}")
        kcm = binaries / "kube-controller-manager"
        run_kcm = self.controller_manager and os.access(kcm, os.X_OK)
        if self.controller_manager and not run_kcm:
            say(
                f"No kube-controller-manager in {binaries}: running without it "
                "(namespaces will not finish deleting, owner references will not be collected)"
            )
        self._make_certificates()
        etcd_port, peer_port, api_port = free_ports(3)
        self.server = f"https://127.0.0.1:{api_port}"
        self._write_admin_kubeconfig()
        self._define_children(binaries, etcd_port, peer_port, api_port, run_kcm)

        began = time.monotonic()
        self._spawn(self._children["etcd"])
        self._spawn(self._children["kube-apiserver"])
        self._wait_ready(self.start_timeout)
        self.startup_seconds = time.monotonic() - began
        if "kube-controller-manager" in self._children:
            self._spawn(self._children["kube-controller-manager"])
        say(f"Started control plane server={self.server} seconds={self.startup_seconds:.1f} dir={self.dir}")

    def stop(self, keep: bool | None = None) -> None:
        """Stop every process (SIGTERM, then SIGKILL after a bounded wait); idempotent.

        keep: keep the work folder (default: the constructor's keep).
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            atexit.unregister(self._stop_at_exit)
            order = ["kube-controller-manager", "kube-apiserver", "etcd"]
            self._stop_children([self._children[n] for n in order[:2] if n in self._children])
            if "etcd" in self._children:
                self._stop_children([self._children["etcd"]])
            keep = self.keep if keep is None else keep
            if self.workdir is None:
                return
            if keep:
                say(f"Kept the control plane's work folder (logs, certificates): {self.workdir}")
                return
            if self.kubeconfig_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.kubeconfig_path.unlink()
            if self._created_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            else:  # a folder someone else made: remove only what the test bed put there
                for name in _WORKDIR_ARTIFACTS:
                    target = self.workdir / name
                    if target.is_dir():
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            target.unlink()

    def _stop_at_exit(self) -> None:
        self.stop()

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver and etcd (a control plane outage); start_apiserver() brings them back."""
        with self._lock:
            self._stop_children([self._children["kube-apiserver"]])
            self._stop_children([self._children["etcd"]])

    def start_apiserver(self) -> float:
        """Start etcd and kube-apiserver again on the same ports and data; returns seconds to ready."""
        with self._lock:
            began = time.monotonic()
            self._spawn(self._children["etcd"])
            self._spawn(self._children["kube-apiserver"])
            self._wait_ready(self.start_timeout)
            return time.monotonic() - began

    def restart_apiserver(self, downtime: float = 0.0) -> float:
        """Stop kube-apiserver and etcd, wait `downtime` seconds, start both again on the same
        ports with the same data. kube-controller-manager keeps running. Returns seconds to ready."""
        self.stop_apiserver()
        time.sleep(downtime)
        return self.start_apiserver()

    # ---- clients -----------------------------------------------------------------------------------

    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    def _configuration(self) -> Any:
        from kubernetes import client

        config = client.Configuration(host=self.server)
        config.ssl_ca_cert = str(self.ca_file)
        config.cert_file = str(self.client_cert)
        config.key_file = str(self.client_key)
        return config

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context trusting the test bed's CA and presenting the admin certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    # ---- internals ---------------------------------------------------------------------------------

    def _make_certificates(self) -> None:
        certs.make_certificates(self.dir, self._serving_alt_names(), ADMIN_USER)

    def _serving_alt_names(self) -> str:
        """The subjectAltName of the apiserver's serving certificate (openssl syntax)."""
        return "IP:127.0.0.1,DNS:localhost"

    def _issue(self, name: str, subject: str, extensions: str) -> None:
        certs.issue(self.dir, name, subject, extensions)

    def _write_admin_kubeconfig(self) -> None:
        user = {"client-certificate-data": certs.b64(self.client_cert), "client-key-data": certs.b64(self.client_key)}
        certs.write_private(self.kubeconfig, certs.kubeconfig(self.server, certs.b64(self.ca_file), ADMIN_USER, user))

    def _write_audit_policy(self) -> Path:
        resources = [{"group": g, "resources": list(r)} for g, r in self.audit_resources.items()]
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [
                {"level": "Metadata", "verbs": list(WRITE_VERBS), "resources": resources},
                {"level": "None"},
            ],
        }
        path = self.dir / "audit-policy.json"
        path.write_text(json.dumps(policy, indent=2) + "\n")
        return path

    def _define_children(self, binaries: Path, etcd_port: int, peer_port: int, api_port: int, kcm: bool) -> None:
        d = self.dir
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        etcd = [
            str(binaries / "etcd"),
            "--name=testbed",
            f"--data-dir={d / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testbed={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
        apiserver = [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={d / 'apiserver-certs'}",
            f"--secure-port={api_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--tls-cert-file={d / 'serving.crt'}",
            f"--tls-private-key-file={d / 'serving.key'}",
            f"--client-ca-file={self.ca_file}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={d / 'sa.key'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
        ]
        if self.audit:
            apiserver += [
                f"--audit-policy-file={self._write_audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-maxsize=0",
            ]
        apiserver += list(self.extra_apiserver_args)
        self._children = {
            "etcd": Child("etcd", etcd, d / "etcd.log"),
            "kube-apiserver": Child("kube-apiserver", apiserver, d / "kube-apiserver.log"),
        }
        if kcm:
            self._children["kube-controller-manager"] = Child(
                "kube-controller-manager",
                [
                    str(binaries / "kube-controller-manager"),
                    f"--kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    # As in a real cluster, each namespace gets its `default` ServiceAccount and the
                    # admin/edit/view ClusterRoles are aggregated (empty without that controller).
                    "--controllers=namespace-controller,garbage-collector-controller,"
                    "serviceaccount-controller,clusterrole-aggregation-controller",
                    f"--root-ca-file={self.ca_file}",
                    f"--service-account-private-key-file={d / 'sa.key'}",
                    "--use-service-account-credentials=false",
                    "--secure-port=0",
                ],
                d / "kube-controller-manager.log",
            )

    def _spawn(self, child: Child) -> None:
        if child.alive():
            return
        spawn(child, self.dir, {k: v for k, v in os.environ.items() if k != "KUBECONFIG"})
        self._write_pids()

    def _write_pids(self) -> None:
        pids = {c.name: c.popen.pid for c in self._children.values() if c.popen is not None}
        (self.dir / "pids.json").write_text(json.dumps(pids) + "\n")

    @staticmethod
    def _stop_children(children: Sequence[Child]) -> None:
        stop_children(children)

    def _log_tail(self, child: Child, lines: int = 15) -> str:
        return child.log_tail(lines)

    def _wait_ready(self, timeout: float) -> None:
        wait_ready(self.server, self.ssl_context(), self._children.values(), timeout)
