"""A local Kubernetes control plane on loopback ports, envtest style: etcd, kube-apiserver and
kube-controller-manager as child processes, with their own CA, an admin client certificate and a
kubeconfig written into the test bed's work folder.

Lives here: certificates (made with the `openssl` command), process start/stop without orphans,
readiness, `TestBed` (a pytest fixture uses it) and `ExistingCluster` (the same interface over a
cluster named by a kubeconfig, for running the e2e suite on kind), and the CLI
`python -m clusterop_dev.testbed up|down|status|run`.

Must not: read or write any kubeconfig it did not write itself (never ~/.kube/config), or import
the kubernetes client at module level (the CLI works without it).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "DEFAULT_AUDIT_RESOURCES",
    "Cluster",
    "ExistingCluster",
    "TestBed",
    "TestBedError",
    "control_plane_binaries",
    "control_plane_version",
    "get_json",
    "local_mode",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROLPLANE_DIR = REPO_ROOT / "hack" / "controlplane"

# Writes the benchmark counts (the operator's own writes). Core group is "".
DEFAULT_AUDIT_RESOURCES: Mapping[str, tuple[str, ...]] = {
    "cloudify.co": ("managerclusters", "managerclusters/status"),
    "": ("events", "secrets", "configmaps"),
    "events.k8s.io": ("events",),
}
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

STOP_GRACE_SECONDS = 5.0
# Everything the test bed writes into its work folder (removed one by one when the folder is not its own).
_WORKDIR_ARTIFACTS = (
    "openssl.cnf", "ca.key", "ca.crt", "serving.key", "serving.csr", "serving.crt", "admin.key", "admin.csr",
    "admin.crt", "sa.key", "kubeconfig", "audit-policy.json", "audit.log", "pids.json", "etcd-data",
    "apiserver-certs", "etcd.log", "kube-apiserver.log", "kube-controller-manager.log",
)  # fmt: skip
ADMIN_USER = "testbed-admin"


class TestBedError(RuntimeError):
    """The control plane could not be found, built, started or reached."""

    __test__ = False  # not a pytest test class


def _say(message: str) -> None:
    print(f"testbed: {message}", file=sys.stderr, flush=True)


def control_plane_version() -> str:
    """The pinned Kubernetes version (hack/controlplane/versions.env)."""
    for line in (CONTROLPLANE_DIR / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise TestBedError(f"No K8S_VERSION in {CONTROLPLANE_DIR / 'versions.env'}")


def control_plane_binaries() -> Path:
    """The folder holding etcd and kube-apiserver (and usually kube-controller-manager).

    hack/controlplane/build.sh decides: it honours KUBEBUILDER_ASSETS, reuses the per-version
    cache, or builds (minutes, progress on stderr).
    """
    build = CONTROLPLANE_DIR / "build.sh"
    if not build.exists():
        assets = os.environ.get("KUBEBUILDER_ASSETS")
        if assets:
            return Path(assets)
        raise TestBedError(f"No {build} and no KUBEBUILDER_ASSETS: cannot find the control plane")
    done = subprocess.run(["bash", str(build)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise TestBedError(f"{build} failed (exit {done.returncode}); see its output above")
    return Path(done.stdout.strip().splitlines()[-1])


def local_mode() -> bool:
    """True unless E2E_CLUSTER names an existing cluster (kind): then nothing local is started."""
    return os.environ.get("E2E_CLUSTER", "local") in ("", "local")


def get_json(api: ApiClient, path: str) -> Any:
    """GET a raw API path (for example /version or /openapi/v3/...) with the client's credentials."""
    method, url, headers, body, post = api.param_serialize(
        "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, header_params=headers, body=body, post_params=post)
    data: bytes = response.response.data  # RESTResponse.read() is untyped
    if response.status >= 400:
        raise TestBedError(f"GET {path}: HTTP {response.status}: {data[:500]!r}")
    return json.loads(data)


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all are picked so the same port is never handed out twice.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL when the parent dies (Linux only).

    The last line of defence against orphans, for when the parent is SIGKILLed and no Python
    clean-up runs. Linux sends it when the forking *thread* exits, so it is only set when the
    process is started from the main thread.
    """
    parent = os.getppid()
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _kubeconfig(server: str, ca_pem_b64: str, user_name: str, user: Mapping[str, str]) -> str:
    # JSON is YAML: kubectl and the clients read it, and no YAML library is needed.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {"server": server, "certificate-authority-data": ca_pem_b64}}],
        "users": [{"name": user_name, "user": dict(user)}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user_name}}],
        "current-context": "testbed",
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class _ClusterAccess:
    """What TestBed and ExistingCluster share: a client, service-account tokens, token kubeconfigs."""

    kind: bool
    server: str
    kubeconfig: Path

    @property
    def has_controller_manager(self) -> bool:
        """Whether namespaces get deleted and owner references collected."""
        return True

    def api_client(self, connection_pool_maxsize: int | None = None) -> ApiClient:
        raise NotImplementedError

    def ca_pem(self) -> bytes:
        raise NotImplementedError

    def create_token(self, namespace: str, service_account: str, duration: float | timedelta = 3600) -> str:
        """A bound token for an existing ServiceAccount (TokenRequest API; at least 600 s)."""
        from kubernetes import client

        seconds = int(duration.total_seconds() if isinstance(duration, timedelta) else duration)
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        )
        with self.api_client() as api:
            answer = client.CoreV1Api(api).create_namespaced_service_account_token(service_account, namespace, request)
        if answer.status is None or not answer.status.token:
            raise TestBedError(f"TokenRequest for {namespace}/{service_account} returned no token")
        return answer.status.token

    def kubeconfig_for_token(self, token: str, path: str | os.PathLike[str]) -> Path:
        """Write a kubeconfig that authenticates with a bearer token; returns its path."""
        target = Path(path)
        ca = base64.b64encode(self.ca_pem()).decode()
        _write_private(target, _kubeconfig(self.server, ca, "token-user", {"token": token}))
        return target

    def token_client(self, token: str) -> ApiClient:
        """A kubernetes ApiClient that authenticates with a bearer token (close it when done)."""
        from kubernetes import client

        config = self._configuration()
        config.cert_file = None
        config.key_file = None
        config.api_key = {"BearerToken": token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(config)

    def _configuration(self) -> Any:
        raise NotImplementedError


@dataclass
class _Child:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class TestBed(_ClusterAccess):
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
    _children: dict[str, _Child] = field(default_factory=dict, init=False, repr=False)
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
                _say(f"Failed to start the control plane: {e}")
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
            _say(
                f"No kube-controller-manager in {binaries}: running without it "
                "(namespaces will not finish deleting, owner references will not be collected)"
            )
        self._make_certificates()
        etcd_port, peer_port, api_port = _free_ports(3)
        self.server = f"https://127.0.0.1:{api_port}"
        self._write_admin_kubeconfig()
        self._define_children(binaries, etcd_port, peer_port, api_port, run_kcm)

        began = time.monotonic()
        self._spawn(self._children["etcd"])
        self._spawn(self._children["kube-apiserver"])
        self._wait_ready(began + self.start_timeout)
        self.startup_seconds = time.monotonic() - began
        if "kube-controller-manager" in self._children:
            self._spawn(self._children["kube-controller-manager"])
        _say(f"Started control plane server={self.server} seconds={self.startup_seconds:.1f} dir={self.dir}")

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
                _say(f"Kept the control plane's work folder (logs, certificates): {self.workdir}")
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
            self._wait_ready(began + self.start_timeout)
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

    def api_client(self, connection_pool_maxsize: int | None = None) -> ApiClient:
        """A kubernetes ApiClient as the admin (system:masters); close it when done.

        connection_pool_maxsize: raise it for many concurrent requests (default: 5 per CPU).
        """
        from kubernetes import client

        config = self._configuration()
        if connection_pool_maxsize is not None:
            config.connection_pool_maxsize = connection_pool_maxsize
        return client.ApiClient(config)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context trusting the test bed's CA and presenting the admin certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    # ---- internals ---------------------------------------------------------------------------------

    def _openssl(self, *args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TestBedError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")

    def _make_certificates(self) -> None:
        if shutil.which("openssl") is None:
            raise TestBedError("The test bed needs the openssl command to make its certificates")
        (self.dir / "openssl.cnf").write_text(
            "[req]\ndistinguished_name = dn\n[dn]\n"
            "[ca]\nbasicConstraints = critical,CA:TRUE\n"
            "keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n"
            "subjectKeyIdentifier = hash\n"
            "[serving]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n"
            f"subjectAltName = {self._serving_alt_names()}\nauthorityKeyIdentifier = keyid\n"
            "[client]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = clientAuth\n"
            "authorityKeyIdentifier = keyid\n"
        )
        old_umask = os.umask(0o077)
        try:
            ec = ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
            for key in ("ca", "serving", "admin"):
                self._openssl("genpkey", *ec, "-out", f"{key}.key")
            # RSA for service-account tokens: RS256 is what every token reviewer understands.
            self._openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
            self._openssl(
                "req", "-x509", "-new", "-config", "openssl.cnf", "-extensions", "ca", "-key", "ca.key",
                "-subj", "/CN=clusterop-testbed-ca", "-days", "3650", "-out", "ca.crt",
            )  # fmt: skip
            self._issue("serving", "/CN=kube-apiserver", "serving")
            self._issue("admin", f"/O=system:masters/CN={ADMIN_USER}", "client")
        finally:
            os.umask(old_umask)

    def _serving_alt_names(self) -> str:
        """The subjectAltName of the apiserver's serving certificate (openssl syntax)."""
        return "IP:127.0.0.1,DNS:localhost"

    def _issue(self, name: str, subject: str, extensions: str) -> None:
        """NAME.crt for the existing key NAME.key, signed by the test bed's CA (extensions: a
        section of openssl.cnf, "serving" or "client")."""
        if not (self.dir / f"{name}.key").exists():
            self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key")
        self._openssl(
            "req", "-new", "-config", "openssl.cnf", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr",
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(secrets.randbits(63)), "-days", "3650",
            "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt",
        )  # fmt: skip

    def _write_admin_kubeconfig(self) -> None:
        user = {"client-certificate-data": _b64(self.client_cert), "client-key-data": _b64(self.client_key)}
        _write_private(self.kubeconfig, _kubeconfig(self.server, _b64(self.ca_file), ADMIN_USER, user))

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
            "etcd": _Child("etcd", etcd, d / "etcd.log"),
            "kube-apiserver": _Child("kube-apiserver", apiserver, d / "kube-apiserver.log"),
        }
        if kcm:
            self._children["kube-controller-manager"] = _Child(
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

    def _spawn(self, child: _Child) -> None:
        if child.alive():
            return
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        in_main_thread = threading.current_thread() is threading.main_thread()
        with open(child.log, "ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} started: {' '.join(child.argv)}\n".encode())
            log.flush()
            child.popen = subprocess.Popen(
                child.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=env,
                process_group=0,  # Ctrl-C in a terminal reaches us, not them: we stop them in order
                preexec_fn=_die_with_parent if in_main_thread else None,
            )
        self._write_pids()

    def _write_pids(self) -> None:
        pids = {c.name: c.popen.pid for c in self._children.values() if c.popen is not None}
        (self.dir / "pids.json").write_text(json.dumps(pids) + "\n")

    @staticmethod
    def _stop_children(children: Sequence[_Child]) -> None:
        running = [c for c in children if c.alive()]
        for c in running:
            assert c.popen is not None
            c.popen.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for c in running:
            assert c.popen is not None
            try:
                c.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.popen.pid, signal.SIGKILL)
                c.popen.wait()

    def _log_tail(self, child: _Child, lines: int = 15) -> str:
        try:
            text = child.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def _wait_ready(self, deadline: float) -> None:
        context = self.ssl_context()
        last_error = "no answer yet"
        for path in ("/readyz", "/api/v1/namespaces/default"):
            while True:
                for child in self._children.values():
                    if child.popen is not None and child.popen.poll() is not None:
                        raise TestBedError(
                            f"{child.name} exited with code {child.popen.returncode}; "
                            f"last lines of {child.log}:\n{self._log_tail(child)}"
                        )
                try:
                    with urllib.request.urlopen(self.server + path, context=context, timeout=5) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, OSError) as e:
                    last_error = str(e)
                if time.monotonic() > deadline:
                    raise TestBedError(f"{self.server}{path} not ready after {self.start_timeout:.0f}s: {last_error}")
                time.sleep(0.1)


class ExistingCluster(_ClusterAccess):
    """A cluster the test bed did not start (kind): the kubeconfig named by $KUBECONFIG."""

    kind = True
    audit_log: Path | None = None
    startup_seconds: float | None = None

    def __init__(self, kubeconfig: str | os.PathLike[str]) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.server = self._configuration().host

    def _configuration(self) -> Any:
        from kubernetes import client, config

        configuration = client.Configuration()
        load: Any = config.load_kube_config  # untyped
        load(config_file=str(self.kubeconfig), client_configuration=configuration)
        return configuration

    def api_client(self, connection_pool_maxsize: int | None = None) -> ApiClient:
        from kubernetes import client

        config = self._configuration()
        if connection_pool_maxsize is not None:
            config.connection_pool_maxsize = connection_pool_maxsize
        return client.ApiClient(config)

    def ca_pem(self) -> bytes:
        return Path(self._configuration().ssl_ca_cert).read_bytes()

    def start(self) -> ExistingCluster:
        return self

    def stop(self, keep: bool | None = None) -> None:
        pass


# What the pytest fixture hands out: the local test bed, or the cluster E2E_CLUSTER names.
Cluster = TestBed | ExistingCluster


# ---- CLI ---------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    # Once stopping has begun, further signals must not interrupt the clean-up.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def _process_alive(pid: int, marker: str) -> bool:
    """pid runs and its command line contains marker (a recycled pid does not count); zombies are gone."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return marker in cmdline and state != "Z"


def _read_pid(folder: Path) -> int | None:
    try:
        return int((folder / "pid").read_text().strip())
    except (OSError, ValueError):
        return None


def serve(folder: Path, bed: TestBed, what: str) -> int:
    """Foreground: start `bed`, print the export line, hold its children until a signal or until one
    of them dies. `folder` holds the pid and ready files that `up`, `down` and `status` read."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_stop)
    (folder / "pid").write_text(f"{os.getpid()}\n")
    try:
        bed.start()
        (folder / "ready").write_text(f"{bed.server}\n")
        print(f"export KUBECONFIG={bed.kubeconfig}", flush=True)
        while True:
            time.sleep(1)
            dead = [c for c in bed._children.values() if not c.alive()]
            if dead:
                _say(f"{dead[0].name} exited unexpectedly; stopping the {what} (logs kept in {bed.dir})")
                bed.stop(keep=True)
                return 1
    except _Stop as e:
        _say(f"Stopping the {what} signal={e}")
        bed.stop()
        return 0
    except TestBedError as e:
        _say(str(e))
        return 1
    finally:
        bed.stop(keep=True)  # no-op after a clean stop
        for name in ("ready", "pid"):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()


def _cmd_run(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    bed = TestBed(
        workdir=folder / "run",
        kubeconfig_path=folder / "kubeconfig",
        audit=args.audit,
        binaries=args.binaries,
        controller_manager=not args.no_controller_manager,
    )
    return serve(folder, bed, "control plane")


def _cmd_up(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = _read_pid(folder)
    if pid is not None and _process_alive(pid, "clusterop_dev.testbed"):
        _say(f"Already running pid={pid}")
        print(f"export KUBECONFIG={folder / 'kubeconfig'}")
        return 0
    binaries = control_plane_binaries()  # builds in the foreground, so progress is visible
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "pid", "kubeconfig"):
        with contextlib.suppress(FileNotFoundError):
            (folder / stale).unlink()
    shutil.rmtree(folder / "run", ignore_errors=True)
    argv = [sys.executable, "-m", "clusterop_dev.testbed", "run", "--dir", str(folder), "--binaries", str(binaries)]
    if args.audit:
        argv.append("--audit")
    if args.no_controller_manager:
        argv.append("--no-controller-manager")
    with open(folder / "supervisor.log", "ab") as log:
        supervisor = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while not (folder / "ready").exists():
            if supervisor.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(supervisor.pid, signal.SIGTERM)
                _say(f"The control plane did not start; see {folder / 'supervisor.log'}:")
                print((folder / "supervisor.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        os.killpg(supervisor.pid, signal.SIGTERM)
        supervisor.wait(30)
        return 130
    _say(f"Started control plane pid={supervisor.pid} server={(folder / 'ready').read_text().strip()}")
    print(f"export KUBECONFIG={folder / 'kubeconfig'}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = _read_pid(folder)
    if pid is not None and _process_alive(pid, "clusterop_dev.testbed"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3 * STOP_GRACE_SECONDS + 5
        while _process_alive(pid, "clusterop_dev.testbed") and time.monotonic() < deadline:
            time.sleep(0.1)
        if _process_alive(pid, "clusterop_dev.testbed"):
            _say(f"The supervisor did not stop in time; killing pid={pid}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    # Children die with the supervisor (PDEATHSIG); this catches any the kernel could not, and waits
    # until they are gone: "down" means nothing of it runs any more.
    for child in _recorded_children(folder):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(True for _ in _recorded_children(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name in ("ready", "pid", "kubeconfig", "supervisor.log"):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    shutil.rmtree(folder / "run", ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.rmdir()
    _say("Stopped the control plane" if pid is not None else "Not running")
    return 0


def _recorded_children(folder: Path) -> Iterator[int]:
    try:
        pids: dict[str, int] = json.loads((folder / "run" / "pids.json").read_text())
    except (OSError, ValueError):
        return
    for name, child in pids.items():
        if _process_alive(child, name):
            yield child


def _cmd_status(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = _read_pid(folder)
    if pid is None or not _process_alive(pid, "clusterop_dev.testbed"):
        print("Not running")
        return 1
    ready = folder / "ready"
    if not ready.exists():
        print(f"Starting pid={pid}")
        return 1
    server = ready.read_text().strip()
    run = folder / "run"
    context = ssl.create_default_context(cafile=str(run / "ca.crt"))
    context.load_cert_chain(str(run / "admin.crt"), str(run / "admin.key"))
    try:
        with urllib.request.urlopen(server + "/readyz", context=context, timeout=5) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError):
        healthy = False
    children = " ".join(f"{n}={p}" for n, p in json.loads((run / "pids.json").read_text()).items())
    print(f"Running pid={pid} server={server} ready={str(healthy).lower()} {children}")
    print(f"export KUBECONFIG={folder / 'kubeconfig'}")
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clusterop_dev.testbed", description="A local Kubernetes control plane for development."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start in the background and print `export KUBECONFIG=...`"),
        ("run", "start in the foreground until Ctrl-C"),
        ("down", "stop what `up` started and delete its folder"),
        ("status", "say whether it runs and answers"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--dir", type=Path, default=Path(".testbed"), help="state folder (default .testbed)")
        if name in ("up", "run"):
            command.add_argument("--audit", action="store_true", help="write an audit log of writes")
            command.add_argument("--no-controller-manager", action="store_true")
            command.add_argument("--binaries", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    handler = {"up": _cmd_up, "run": _cmd_run, "down": _cmd_down, "status": _cmd_status}[args.command]
    try:
        return handler(args)
    except TestBedError as e:
        _say(str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
