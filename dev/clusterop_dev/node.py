"""A local Kubernetes cluster with one real node: the test bed's control plane plus containerd,
kubelet, kube-scheduler, kube-proxy and CoreDNS, so the operator runs as a pod.

Layout (docs/node.md): two network namespaces of the project's own joined by one veth pair. The
control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) runs in NETNS_CP at
CP_IP; the node (containerd, kubelet, kube-proxy) runs in NETNS_NODE at NODE_IP, inside a private
mount namespace that over-mounts /var/lib, /var/log, /run and the three /proc/sys files kubelet
writes, so nothing lands on the host. Host processes (kubectl, pytest) reach the apiserver through a
forwarder: a socket listening on host loopback whose connections are dialled from a thread that
entered NETNS_CP. `down` (cleanup_host) removes every process, cgroup, namespace and file it made.

Lives here: NodeCluster (a TestBed subclass: same certificates, processes and clients) and the CLI
`python -m clusterop_dev.node up|down|status|run|load-image` (make cluster-up / cluster-down).
Must not: touch the host's network namespace, sysctls, /etc, iptables/nftables or cgroup mounts.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clusterop_dev.testbed import REPO_ROOT, TestBed, TestBedError, control_plane_binaries, serve
from clusterop_dev.testbed.certs import b64 as _b64
from clusterop_dev.testbed.certs import kubeconfig as _kubeconfig
from clusterop_dev.testbed.certs import write_private as _write_private
from clusterop_dev.testbed.cli import clear_folder, kill_children, run_cli, start_supervisor, stop_supervisor
from clusterop_dev.testbed.processes import Child as _Child
from clusterop_dev.testbed.processes import process_alive as _process_alive
from clusterop_dev.testbed.processes import read_pid as _read_pid
from clusterop_dev.testkit import free_ports as _free_ports

__all__ = ["NODE_NAME", "NodeCluster", "cleanup_host", "host_leftovers", "host_snapshot", "load_image", "node_binaries"]

NETNS_CP, NETNS_NODE = "clusterop-cp", "clusterop-node"
VETH_CP, VETH_NODE = "veth-cp", "veth-node"
CP_IP, NODE_IP, VETH_PREFIX = "192.0.2.1", "192.0.2.2", 24
POD_CIDR, POD_GATEWAY = "10.244.0.0/24", "10.244.0.1"
SERVICE_CIDR, DNS_IP = "10.96.0.0/16", "10.96.0.10"
NODE_NAME = "clusterop-node"
API_PORT = 6443
NODE_DIR = REPO_ROOT / "hack" / "node"
# The paths kubelet writes whatever its flags say; the node's mount namespace covers them.
KUBELET_HOST_PATHS = (
    "/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/var/lib/cni", "/etc/cni/net.d", "/opt/cni",
    "/usr/libexec/kubernetes", "/run/containerd/io.containerd.runtime.v2.task/k8s.io",
)  # fmt: skip
# What kubelet sets at start (it refuses protectKernelDefaults): these values are bind-mounted
# over the /proc/sys entries inside the node's mount namespace, so the host keeps its own.
KUBELET_SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
CONTROLLERS = (
    "serviceaccount-controller", "namespace-controller", "garbage-collector-controller",
    "deployment-controller", "replicaset-controller", "node-lifecycle-controller",
    "root-ca-certificate-publisher-controller", "endpointslice-controller",
    "endpointslice-mirroring-controller", "endpoints-controller", "taint-eviction-controller",
    "pod-garbage-collector-controller", "clusterrole-aggregation-controller", "ttl-controller",
    "disruption-controller",  # PodDisruptionBudget status (Argo CD waits for it: deploy/ has a PDB)
)  # fmt: skip
CLONE_NEWNET = 0x40000000


def _say(message: str) -> None:
    print(f"node: {message}", file=sys.stderr, flush=True)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise TestBedError(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()}")
    return done


def node_binaries() -> tuple[Path, Path]:
    """(control-plane binaries folder, node cache folder), building what is missing (hack/node/build.sh)."""
    done = subprocess.run(["bash", str(NODE_DIR / "build.sh")], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise TestBedError(f"{NODE_DIR / 'build.sh'} failed (exit {done.returncode}); see its output above")
    return control_plane_binaries(), Path(done.stdout.strip().splitlines()[-1])


def _versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (NODE_DIR / "versions.env").read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.startswith("#")}


# ---- the host: what the node makes and how it is all removed -------------------------------------


NETNS_DIR = Path("/run/netns")
#: there while a node runs, when `ip netns add` made /run/netns a mount of its own (it does on a
#: machine where no namespace was ever added; content "dir" when it also made the folder): the
#: node's removal undoes both, so the host's mounts are as they were found
NETNS_MOUNT_MARK = Path("/run/clusterop-node-made-netns-mount")


def _netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _is_mount(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/self/mounts").read_text().splitlines())


def _make_network() -> None:
    for ns in (NETNS_CP, NETNS_NODE):
        if _netns_exists(ns):
            raise TestBedError(f"Network namespace {ns} exists: a node runs already (make cluster-down removes it)")
    if not _is_mount(NETNS_DIR) and not NETNS_MOUNT_MARK.exists():
        NETNS_MOUNT_MARK.write_text("" if NETNS_DIR.exists() else "dir")
    try:
        _run("ip", "netns", "add", NETNS_CP)
        _run("ip", "netns", "add", NETNS_NODE)
        # Both ends are created inside the namespaces: the host's namespace never holds them.
        _run("ip", "link", "add", VETH_CP, "netns", NETNS_CP, "type", "veth", "peer", "name", VETH_NODE,
             "netns", NETNS_NODE)  # fmt: skip
        for ns, dev, ip in ((NETNS_CP, VETH_CP, CP_IP), (NETNS_NODE, VETH_NODE, NODE_IP)):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "addr", "add", f"{ip}/{VETH_PREFIX}", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        # Replies to pods (and Service traffic from the control plane) go through the node.
        _run("ip", "-n", NETNS_CP, "route", "add", POD_CIDR, "via", NODE_IP)
        _run("ip", "-n", NETNS_CP, "route", "add", SERVICE_CIDR, "via", NODE_IP)
        _run("nsenter", f"--net=/run/netns/{NETNS_NODE}", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    except BaseException:
        _remove_network()
        raise


def _remove_network() -> None:
    for ns in (NETNS_NODE, NETNS_CP):
        if _netns_exists(ns):
            _run("ip", "netns", "delete", ns, check=False)
    if not NETNS_MOUNT_MARK.exists() or (NETNS_DIR.is_dir() and any(NETNS_DIR.iterdir())):
        return  # the mount was there before the node, or someone else's namespaces use it now
    for _ in range(3):  # `ip netns add` bind-mounts the folder on itself (once, or once more if raced)
        if not _is_mount(NETNS_DIR):
            break
        _run("umount", str(NETNS_DIR), check=False)
    if not _is_mount(NETNS_DIR):
        if NETNS_MOUNT_MARK.read_text() == "dir":
            with contextlib.suppress(OSError):
                NETNS_DIR.rmdir()
        NETNS_MOUNT_MARK.unlink()


def _node_cgroups() -> list[Path]:
    """kubelet's pod cgroups (cgroupfs driver) in every hierarchy, deepest first."""
    found: list[Path] = []
    for top in Path("/sys/fs/cgroup").glob("*/kubepods*"):
        if top.is_dir():
            found += [Path(root) for root, _dirs, _files in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(group: Path) -> set[int]:
    with contextlib.suppress(OSError):
        return {int(p) for p in (group / "cgroup.procs").read_text().split()}
    return set()


def _shim_pids(state: Path) -> list[int]:
    """containerd shims of this node's containerd (they daemonize, so no parent kills them)."""
    sock = str(state / "containerd.sock")
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = proc.joinpath("cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in argv:
                pids.append(int(proc.name))
    return pids


def _kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cleanup_host(state: Path, timeout: float = 30.0) -> None:
    """Remove what a node left behind: pod processes and cgroups, shims, the namespaces, the state
    folder. Idempotent; safe when nothing runs. Raises TestBedError when something would not go."""
    deadline = time.monotonic() + timeout
    while True:
        groups = _node_cgroups()
        pids = set().union(*(_cgroup_pids(g) for g in groups)) if groups else set()
        _kill_all(sorted(pids) + _shim_pids(state))
        for group in groups:
            with contextlib.suppress(OSError):
                group.rmdir()
        if not _node_cgroups() and not _shim_pids(state):
            break
        if time.monotonic() > deadline:
            raise TestBedError(f"Pod cgroups would not go: {[str(g) for g in _node_cgroups()][:5]}")
        time.sleep(0.2)
    _remove_network()
    if state.exists():
        # Nothing is mounted on the host (the mounts lived in the node's mount namespace).
        mounted = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                   if line.split()[1].startswith(str(state))]  # fmt: skip
        if mounted:
            raise TestBedError(f"Still mounted under {state}: {mounted[:5]}")
        shutil.rmtree(state)


def host_leftovers() -> list[str]:
    """What of a node is still on the host (empty when the machine is as it was found)."""
    left = [f"netns {ns}" for ns in (NETNS_CP, NETNS_NODE) if _netns_exists(ns)]
    left += [f"mount {NETNS_DIR} (made by the node)"] if NETNS_MOUNT_MARK.exists() else []
    left += [f"cgroup {g}" for g in _node_cgroups()]
    left += [f"path {p}" for p in KUBELET_HOST_PATHS if Path(p).exists()]
    links = _run("ip", "-o", "link", "show", check=False).stdout
    left += [f"link {dev}" for dev in (VETH_CP, VETH_NODE, "cni0") if f" {dev}@" in links or f" {dev}:" in links]
    left += [f"mount {m}" for m in Path("/proc/self/mounts").read_text().splitlines() if "clusterop" in m]
    return left


def host_snapshot() -> dict[str, list[str]]:
    """What a node could change on the host, as sorted lists (compare before `up` and after `down`).

    Docker's own containers (other users of this machine) come and go: their host-side veths and
    their mounts under /var/lib/docker and /run/docker are left out."""
    links = [line.split(":")[1].strip().split("@")[0] for line in _run("ip", "-o", "link", "show").stdout.splitlines()]
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return {
        "netns": sorted(p.name for p in NETNS_DIR.glob("*")) if NETNS_DIR.is_dir() else [],
        "links": sorted(dev for dev in links if not re.fullmatch(r"veth[0-9a-f]{7}", dev)),
        "mounts": sorted(m for m in mounts if not m.startswith(("/var/lib/docker/", "/run/docker/"))),
        "cgroups": sorted(str(g) for g in _node_cgroups()),
        "paths": sorted(p for p in KUBELET_HOST_PATHS if Path(p).exists()),
        "sysctls": [f"{n}={Path('/proc/sys', n).read_text().strip()}" for n in KUBELET_SYSCTLS],
    }


# ---- the apiserver forwarder ------------------------------------------------------------------------


class _Forwarder:
    """Host 127.0.0.1:port -> CP_IP:API_PORT inside NETNS_CP. The listening socket is made in the
    host's namespace; a thread that entered NETNS_CP dials each upstream connection."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.thread = threading.Thread(target=self._serve, name="apiserver-forwarder", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{NETNS_CP}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:  # this thread only
                _say(f"setns {NETNS_CP} failed: errno {ctypes.get_errno()}")
                return
        finally:
            os.close(fd)
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection((CP_IP, API_PORT), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            source.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()


# ---- the cluster ------------------------------------------------------------------------------------


@dataclass
class NodeCluster(TestBed):
    """The test bed's control plane in NETNS_CP plus one real node in NETNS_NODE (see the module doc).

    workdir holds certificates, configs, logs and the node's state; stop() removes all of it and
    everything on the host (cleanup_host) unless keep=True, which keeps the logs only.
    """

    start_timeout: float = 120.0
    node_cache: Path | None = None

    _forwarder: _Forwarder | None = field(default=None, init=False, repr=False)
    _made_network: bool = field(default=False, init=False, repr=False)

    @property
    def state(self) -> Path:
        return self.dir / "node"

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd.sock"

    @property
    def internal_kubeconfig(self) -> Path:
        return self.dir / "internal.kubeconfig"

    # ---- life cycle ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self.workdir is None:
            raise TestBedError("NodeCluster needs a workdir")
        self.workdir = Path(self.workdir).resolve()
        self._created_workdir = not self.workdir.exists()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.binaries is None or self.node_cache is None:
            self.binaries, self.node_cache = node_binaries()
        began = time.monotonic()
        self._make_certificates()
        (port,) = _free_ports(1)
        self.server = f"https://127.0.0.1:{port}"
        self._write_admin_kubeconfig()
        _make_network()
        self._made_network = True
        self._forwarder = _Forwarder(port)
        self._write_node_files()
        self._define_children(self.binaries, 2379, 2380, API_PORT, False)
        for name in ("etcd", "kube-apiserver"):
            self._spawn(self._children[name])
        self._wait_ready(began + self.start_timeout)
        for name in ("kube-controller-manager", "kube-scheduler", "node-namespace"):
            self._spawn(self._children[name])
        self._wait_mount_namespace(began + self.start_timeout)
        self._spawn(self._children["containerd"])
        self._wait_file(self.containerd_socket, began + self.start_timeout)
        versions = _versions()
        for image in (versions["PAUSE_IMAGE"], versions["COREDNS_IMAGE"]):
            self.load_image(image)
        self._spawn(self._children["kubelet"])
        self._wait_node_ready(began + self.start_timeout)
        self._spawn(self._children["kube-proxy"])  # only now: it waits for its Node otherwise
        self.kubectl("apply", "-f", str(NODE_DIR / "manifests" / "coredns.yaml"))
        self.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s")
        self.startup_seconds = time.monotonic() - began
        _say(f"Started a cluster with node {NODE_NAME} server={self.server} seconds={self.startup_seconds:.1f}")

    def stop(self, keep: bool | None = None) -> None:
        """Stop the node, kill its pods, remove it from the host, then stop the control plane.
        keep: keep the logs and certificates (the node's state always goes)."""
        with self._lock:
            if self._stopped:
                return
            for names in (("kube-proxy", "kubelet"), ("containerd", "node-namespace"), ("kube-scheduler",)):
                self._stop_children([self._children[n] for n in names if n in self._children])
            try:
                if self._made_network:  # else the namespaces (and any pods) are another node's
                    cleanup_host(self.state)
            finally:
                if self._forwarder is not None:
                    self._forwarder.close()
                super().stop(keep=keep)  # the control plane, then the work folder
                if self._made_network:
                    _remove_network()

    # ---- clients ---------------------------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("kubectl", f"--kubeconfig={self.kubeconfig}", *args, check=check)

    def load_image(self, image: str) -> None:
        """Copy an image from docker into the node's containerd (docker save | ctr import)."""
        load_image(image, self.containerd_socket)

    # ---- internals -------------------------------------------------------------------------------

    def _serving_alt_names(self) -> str:
        names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
        return ",".join([f"IP:{ip}" for ip in ("127.0.0.1", CP_IP, "10.96.0.1")] + [f"DNS:{n}" for n in names])

    def _make_certificates(self) -> None:
        super()._make_certificates()
        old_umask = os.umask(0o077)
        try:
            self._issue("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "client")
            self._issue("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "client")
        finally:
            os.umask(old_umask)

    def _write_node_files(self) -> None:
        d, s = self.dir, self.state
        for sub in ("var-lib", "var-log", "cni-conf", "volume-plugins", "sysctl", "containerd-root"):
            (s / sub).mkdir(parents=True, exist_ok=True)
        ca = d / "ca.crt"

        def kubeconfig(path: Path, cert: str) -> None:
            user = {"client-certificate-data": _b64(d / f"{cert}.crt"), "client-key-data": _b64(d / f"{cert}.key")}
            _write_private(path, _kubeconfig(f"https://{CP_IP}:{API_PORT}", _b64(ca), cert, user))

        kubeconfig(self.internal_kubeconfig, "admin")
        kubeconfig(d / "kubelet.kubeconfig", "kubelet")
        for name, value in KUBELET_SYSCTLS.items():
            (s / "sysctl" / name.replace("/", "-")).write_text(value + "\n")
        (s / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        assert self.node_cache is not None
        (s / "cni-conf" / "10-clusterop.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "clusterop",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        versions = _versions()
        (d / "containerd.toml").write_text(
            f"""version = 2
root = "{s / "containerd-root"}"
state = "/run/containerd"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{s / "containerd-opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{versions["PAUSE_IMAGE"]}"
  # kubelet asks runc for oom_score_adj -998, which this machine refuses (nsexec EPERM).
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.node_cache / "cni" / "bin"}"
    conf_dir = "{s / "cni-conf"}"
"""
        )
        (d / "kubelet.json").write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "failCgroupV1": False,  # the host is on cgroup v1
                    "cgroupDriver": "cgroupfs",
                    "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(ca)},
                    },
                    "authorization": {"mode": "Webhook"},
                    "clusterDNS": [DNS_IP],
                    "clusterDomain": "cluster.local",
                    "resolvConf": str(s / "resolv.conf"),
                    "volumePluginDir": str(s / "volume-plugins"),
                    "failSwapOn": False,
                    "readOnlyPort": 0,
                    "staticPodPath": "",
                    "healthzBindAddress": "127.0.0.1",
                    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                    "imageGCHighThresholdPercent": 99,
                    "imageGCLowThresholdPercent": 98,
                    "shutdownGracePeriod": "0s",
                    "rotateCertificates": False,
                }
            )
        )
        (d / "kube-proxy.json").write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "mode": "nftables",
                    "clientConnection": {"kubeconfig": str(self.internal_kubeconfig)},
                    "hostnameOverride": NODE_NAME,
                    "clusterCIDR": POD_CIDR,
                    "metricsBindAddress": "127.0.0.1:10249",
                    "healthzBindAddress": "127.0.0.1:10256",
                    # 0: leave the (global) conntrack table size and timeouts as the host has them.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                }
            )
        )

    def _define_children(self, binaries: Path, etcd_port: int, peer_port: int, api_port: int, kcm: bool) -> None:
        super()._define_children(binaries, etcd_port, peer_port, api_port, False)
        d, s = self.dir, self.state
        assert self.node_cache is not None
        apiserver = self._children["kube-apiserver"].argv
        drop = ("--bind-address=", "--advertise-address=", "--endpoint-reconciler-type=", "--service-cluster-ip-range=",
                "--authorization-mode=", "--service-account-issuer=", "--disable-admission-plugins=")  # fmt: skip
        apiserver[:] = [a for a in apiserver if not a.startswith(drop)] + [
            "--bind-address=0.0.0.0",
            f"--advertise-address={CP_IP}",
            "--endpoint-reconciler-type=lease",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--kubelet-client-certificate={d / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]
        in_cp = ["nsenter", f"--net=/run/netns/{NETNS_CP}", "--"]
        for child in self._children.values():
            child.argv[:0] = in_cp
        cp = [
            ("kube-controller-manager", [
                str(binaries / "kube-controller-manager"), f"--kubeconfig={self.internal_kubeconfig}",
                "--leader-elect=false", f"--controllers={','.join(CONTROLLERS)}", f"--root-ca-file={self.ca_file}",
                f"--service-account-private-key-file={d / 'sa.key'}", "--use-service-account-credentials=false",
                "--secure-port=0",
            ]),
            ("kube-scheduler", [
                str(binaries / "kube-scheduler"), f"--kubeconfig={self.internal_kubeconfig}", "--leader-elect=false",
                "--bind-address=127.0.0.1",
            ]),
        ]  # fmt: skip
        for name, argv in cp:
            self._children[name] = _Child(name, in_cp + argv, d / f"{name}.log")
        mounts = [
            f"mount --bind {s / 'var-lib'} /var/lib",
            f"mount --bind {s / 'var-log'} /var/log",
            "mount -t tmpfs -o mode=0755 clusterop-run /run",
            "mkdir -p /run/netns /run/containerd",
        ] + [f"mount --bind {s / 'sysctl' / n.replace('/', '-')} /proc/sys/{n}" for n in KUBELET_SYSCTLS]
        script = "set -e; " + "; ".join(mounts) + f"; touch {s / 'mounts-ready'}; exec sleep infinity"
        self._children["node-namespace"] = _Child(
            "node-namespace",
            ["nsenter", f"--net=/run/netns/{NETNS_NODE}", "--", "unshare", "--mount", "--propagation", "private",
             "--", "sh", "-c", script],
            d / "node-namespace.log",
        )  # fmt: skip
        node = [
            ("containerd", ["containerd", f"--config={d / 'containerd.toml'}"]),
            ("kubelet", [
                str(binaries / "kubelet"), f"--config={d / 'kubelet.json'}", f"--kubeconfig={d / 'kubelet.kubeconfig'}",
                f"--node-ip={NODE_IP}", f"--hostname-override={NODE_NAME}", "--v=1",
            ]),
            ("kube-proxy", [str(binaries / "kube-proxy"), f"--config={d / 'kube-proxy.json'}"]),
        ]  # fmt: skip
        for name, argv in node:
            self._children[name] = _Child(name, self._in_node(argv), d / f"{name}.log")

    def _in_node(self, argv: list[str]) -> list[str]:
        """argv run in the node's network and mount namespaces (those of the node-namespace process).

        The pid is only known once that process runs, so the path is resolved at spawn time."""
        return ["sh", "-c", f'exec nsenter --mount=/proc/$(cat {self.state / "holder.pid"})/ns/mnt '
                f'--net=/run/netns/{NETNS_NODE} -- "$@"', "in-node", *argv]  # fmt: skip

    def _spawn(self, child: _Child) -> None:
        super()._spawn(child)
        if child.name == "node-namespace" and child.popen is not None:
            (self.state / "holder.pid").write_text(f"{child.popen.pid}\n")

    def _wait_file(self, path: Path, deadline: float) -> None:
        while not path.exists():
            self._check_children()
            if time.monotonic() > deadline:
                raise TestBedError(f"{path} did not appear in time")
            time.sleep(0.1)

    def _wait_mount_namespace(self, deadline: float) -> None:
        self._wait_file(self.state / "mounts-ready", deadline)

    def _check_children(self) -> None:
        for child in self._children.values():
            if child.popen is not None and child.popen.poll() is not None:
                raise TestBedError(
                    f"{child.name} exited with code {child.popen.returncode}; "
                    f"last lines of {child.log}:\n{self._log_tail(child)}"
                )

    def _wait_node_ready(self, deadline: float) -> None:
        context = self.ssl_context()
        last = "not registered"
        while True:
            self._check_children()
            try:
                url = f"{self.server}/api/v1/nodes/{NODE_NAME}"
                with urllib.request.urlopen(url, context=context, timeout=5) as response:
                    node = json.load(response)
                conditions = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
                ready = conditions.get("Ready", {})
                if ready.get("status") == "True" and not node.get("spec", {}).get("taints"):
                    return
                last = f"Ready={ready.get('status')} {ready.get('message', '')} taints={node['spec'].get('taints')}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise TestBedError(f"Node {NODE_NAME} not ready in time: {last}")
            time.sleep(0.5)


def load_image(image: str, socket_path: Path) -> None:
    """docker save IMAGE | ctr import, into the node's containerd (namespace k8s.io)."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    try:
        done = subprocess.run(
            ["ctr", f"--address={socket_path}", "-n", "k8s.io", "images", "import", "-"],
            stdin=save.stdout, capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        assert save.stdout is not None
        save.stdout.close()
        saved = save.wait()
    if saved != 0 or done.returncode != 0:
        raise TestBedError(
            f"Could not load {image} into the node: docker save exit {saved}; ctr: {done.stderr.strip()}"
        )


# ---- CLI ---------------------------------------------------------------------------------------------

MARKER = "clusterop_dev.node"


def _cmd_run(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    return serve(folder, NodeCluster(workdir=folder / "run", kubeconfig_path=folder / "kubeconfig"), "cluster")


def _cmd_up(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = _read_pid(folder)
    if pid is not None and _process_alive(pid, MARKER):
        _say(f"Already running pid={pid}")
        print(f"export KUBECONFIG={folder / 'kubeconfig'}")
        return 0
    if pid is not None and _process_alive(pid, "clusterop_dev.testbed"):
        _say(f"The host-process test bed runs in {folder} (make testbed-down first)")
        return 1
    node_binaries()  # builds in the foreground, so progress is visible
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "pid", "kubeconfig"):
        with contextlib.suppress(FileNotFoundError):
            (folder / stale).unlink()
    shutil.rmtree(folder / "run", ignore_errors=True)
    began = time.monotonic()
    argv = [sys.executable, "-m", MARKER, "run", "--dir", str(folder)]
    supervisor = start_supervisor(folder, argv, timeout=300, what="The cluster")
    if supervisor is None:
        return 1
    _say(f"Started a cluster with one node in {time.monotonic() - began:.0f}s (pid={supervisor.pid})")
    print(f"export KUBECONFIG={folder / 'kubeconfig'}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = stop_supervisor(folder, MARKER, timeout=120, group=False)
    kill_children(_recorded(folder / "run"))
    cleanup_host(folder / "run" / "node")
    clear_folder(folder)
    left = host_leftovers()
    if left:
        _say(f"Left on the host: {left}")
        return 1
    _say("Stopped the cluster; nothing of it is left on the host" if pid is not None else "Not running")
    return 0


def _recorded(run: Path) -> Iterator[int]:
    with contextlib.suppress(OSError, ValueError):
        pids: dict[str, int] = json.loads((run / "pids.json").read_text())
        for child in pids.values():
            if Path(f"/proc/{child}").exists() and str(run) in Path(f"/proc/{child}/cmdline").read_text(
                errors="replace"
            ):
                yield child


def _cmd_status(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = _read_pid(folder)
    if pid is None or not _process_alive(pid, MARKER):
        print("Not running")
        return 1
    if not (folder / "ready").exists():
        print(f"Starting pid={pid}")
        return 1
    done = _run("kubectl", f"--kubeconfig={folder / 'kubeconfig'}", "get", "nodes", "-o", "wide", check=False)
    print(done.stdout.rstrip() or done.stderr.rstrip())
    print(f"export KUBECONFIG={folder / 'kubeconfig'}")
    return done.returncode


def _cmd_snapshot(args: argparse.Namespace) -> int:
    print(json.dumps(host_snapshot(), indent=1))
    return 0


def _cmd_load_image(args: argparse.Namespace) -> int:
    sock = args.dir.resolve() / "run" / "node" / "containerd.sock"
    if not sock.exists():
        _say(f"No node runs in {args.dir} (no {sock}): nothing loaded")
        return 0
    for image in args.images:
        load_image(image, sock)
        _say(f"Loaded {image} into the node")
    return 0


def _image_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("images", nargs="+")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        f"python -m {MARKER}",
        "A local cluster with one real node.",
        [
            ("up", "start in the background and print `export KUBECONFIG=...`", _cmd_up, None),
            ("run", "start in the foreground until Ctrl-C", _cmd_run, None),
            ("down", "stop what `up` started and remove everything it made", _cmd_down, None),
            ("status", "say whether it runs; list the node", _cmd_status, None),
            (
                "load-image",
                "copy docker images into the node's containerd (no-op when no node runs)",
                _cmd_load_image,
                _image_arguments,
            ),
            (
                "snapshot",
                "print what a node could change on the host (compare before up and after down)",
                _cmd_snapshot,
                None,
            ),
        ],
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
