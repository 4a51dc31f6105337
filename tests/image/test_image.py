"""The built images, run: `make image` and `make sim-image` build them (as CI does), then the
operator and the simulator start from their images as users' pods start them (uid 65532, read-only
root filesystem, every capability dropped, no POD_ID or USER), against the real local control
plane; and the operator's layers hold no file of the build machine (its CA, the wheels, the
sources), no simulator and no dev tooling.

The containers use the host's network (`--network host`): the control plane and the simulator
listen on 127.0.0.1 only, so all traffic stays on loopback.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes.client import ApiClient

from cloudify_manager_sim.harness import SimulatorControl
from clusterop_dev.harness import Clusters, manager_cluster, node_specs
from clusterop_dev.testbed import Cluster
from clusterop_dev.testkit import Timeout, free_port, free_ports, wait_for

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("IMAGE", "cloudify-cluster-operator:dev")
SIM_IMAGE = os.environ.get("SIM_IMAGE", "cloudify-manager-sim:dev")
UID = "65532"
# What a restricted pod gets (deploy/manager/deployment.yaml): uid/gid 65532, read-only root, an
# emptyDir on /tmp, no capabilities, no privilege escalation; and no environment of the host.
AS_A_POD = [
    "--user", f"{UID}:{UID}", "--read-only", "--tmpfs", "/tmp:size=16m", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges", "--network", "host",
]  # fmt: skip
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
# Paths only the build may see: its sources and wheels, pip's cache, the machine's extra CAs.
BUILD_ONLY = re.compile(r"/(src|wheels|root/\.cache)(/|$)|/usr/local/share/ca-certificates/.")

pytestmark = pytest.mark.image


def _docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def _make_image(target: str, variable: str, image: str) -> str:
    if shutil.which("docker") is None or _docker("info", check=False, timeout=30).returncode != 0:
        pytest.skip("no Docker engine here (docker info failed): the image cannot be built or run")
    done = subprocess.run(["make", "-s", target, f"{variable}={image}"], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, check=False)  # fmt: skip
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return image


@pytest.fixture(scope="session")
def image() -> str:
    """The operator's image as `make image` builds it (offline, on the local Debian base)."""
    return _make_image("image", "IMAGE", IMAGE)


@pytest.fixture(scope="session")
def sim_image() -> str:
    """The simulator's own image as `make sim-image` builds it (offline, the same base)."""
    return _make_image("sim-image", "SIM_IMAGE", SIM_IMAGE)


class Container:
    """One `docker run -d` of the image, removed at the end."""

    def __init__(self, image: str, args: Sequence[str], *, entrypoint: str | None = None,
                 mounts: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.name = f"clusterop-test-{secrets.token_hex(4)}"
        argv = ["run", "-d", "--name", self.name, *AS_A_POD]
        for m in mounts:
            argv += ["-v", m]
        for k, v in (env or {}).items():
            argv += ["-e", f"{k}={v}"]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        _docker(*argv, image, *args)

    def logs(self) -> str:
        done = _docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(_docker("inspect", "--format", "{{json .State}}", self.name).stdout)
        return state

    def running(self) -> bool:
        return bool(self.state()["Running"])

    def remove(self) -> None:
        _docker("rm", "-f", self.name, check=False)


def _wait_alive(c: Container, ready: Callable[[], bool], what: str, timeout: float = 90) -> None:
    """Wait until `ready()`; fail at once, with the container's log, if the container exits."""

    def check() -> bool | None:
        if not c.running():
            raise AssertionError(f"{what}: the container exited ({c.state()['ExitCode']}):\n{c.logs()[-6000:]}")
        return ready() or None

    try:
        wait_for(check, timeout=timeout, interval=0.5, message=what)
    except Timeout as e:
        raise AssertionError(f"{e}\n{c.logs()[-6000:]}") from None


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def simulator(sim_image: str) -> Iterator[SimulatorControl]:
    """`cloudify-manager-sim` from its own image (its entrypoint), as a restricted pod runs it; its
    announcement (first line of its output) names its control API."""
    port = free_port()
    c = Container(sim_image, ["--machines=0", "--host=127.0.0.1", f"--port={port}", "--start-delay=0.3",
                              "--join-delay=0.3"])  # fmt: skip
    try:
        _wait_alive(c, lambda: _answers(f"http://127.0.0.1:{port}/control/health"), "the simulator's control API")
        announcement = json.loads(next(line for line in c.logs().splitlines() if line.startswith("{")))
        assert announcement["control"] == f"http://127.0.0.1:{port}/control"
        with SimulatorControl(announcement["control"]) as control:
            yield control
        assert c.running(), f"the simulator exited:\n{c.logs()[-6000:]}"
    finally:
        c.remove()


def test_image_runs_as_nonroot_65532_without_pod_id_or_user(image: str):
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["cloudify-cluster-operator"]
    names = {e.split("=", 1)[0] for e in config["Env"]}
    assert not names & {"POD_ID", "USER"}, "the test below must prove start-up without them"


def test_simulator_from_the_image_serves_machines(simulator: SimulatorControl):
    (machine,) = simulator.add_machines(1)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", machine["endpoint"]), machine
    answer = requests.get(machine["endpoint"] + "/api/v3/cluster", timeout=5, auth=("admin", "admin"))
    assert answer.status_code == 200 and answer.json()["initialized"] is False, answer.text


def test_operator_from_the_image_starts_and_forms_a_cluster(
    image: str, simulator: SimulatorControl, testbed: Cluster, kube_api: ApiClient, namespace: str, crd: None,
    tmp_path: Path,
):  # fmt: skip
    """Started as in the pod (but without POD_ID, as an older manifest or `docker run` does), the
    operator answers /healthz, says it started, forms a cluster, and is still running after it
    (no restart policy: the one process started is the one that formed the cluster)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(testbed.kubeconfig.read_bytes())
    kubeconfig.chmod(0o644)  # the container's uid is not the file's owner; the mount is read-only
    health, metrics = free_ports(2)
    c = Container(image, [f"--namespace={namespace}", f"--liveness=http://127.0.0.1:{health}/healthz",
                          f"--metrics-port={metrics}", "--metrics-addr=127.0.0.1", "--resync-seconds=2"],
                  mounts=[f"{kubeconfig}:/kubeconfig:ro"], env={"KUBECONFIG": "/kubeconfig"})  # fmt: skip
    try:
        _wait_alive(c, lambda: "Starting operator" in c.logs(), "the operator's start-up line")
        _wait_alive(c, lambda: _answers(f"http://127.0.0.1:{health}/healthz"), "the operator's /healthz")
        clusters = Clusters(kube_api, namespace)
        clusters.put_credentials()
        clusters.put_key()
        clusters.create(manager_cluster("from-image", node_specs(simulator.add_machines(3))))
        status = clusters.wait_ready("from-image", timeout=90)
        assert status["leader"] and len(status["nodes"]) == 3, status
        assert _answers(f"http://127.0.0.1:{metrics}/metrics")
        assert c.running(), f"the operator exited after the cluster formed:\n{c.logs()[-6000:]}"
        log = c.logs()
        assert "Traceback" not in log and "getpwuid" not in log, log[-6000:]
    finally:
        c.remove()


def _layer_files(image: str, tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """Every regular file of every layer of the image (a file deleted in a later layer still ships)."""
    archive = tmp_path / "image.tar"
    with open(archive, "wb") as out:
        subprocess.run(["docker", "save", image], stdout=out, check=True, timeout=600)
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer_name in manifest[0]["Layers"]:
            layer = outer.extractfile(layer_name)
            assert layer is not None
            with tarfile.open(fileobj=io.BytesIO(layer.read())) as tar:
                for member in tar:
                    if member.isfile():
                        data = tar.extractfile(member)
                        yield member.name, data.read() if data else b""


def _pem_bodies(path: Path) -> list[bytes]:
    """A distinctive line (64 base64 characters) from the middle of each certificate in a PEM file."""
    out = []
    for block in re.findall(rb"-----BEGIN CERTIFICATE-----\s*(.*?)-----END", path.read_bytes(), re.S):
        lines = [line.strip() for line in block.splitlines() if len(line.strip()) == 64]
        if lines:
            out.append(lines[len(lines) // 2])
    return out


def test_image_holds_no_build_time_ca_wheels_or_sources(image: str, tmp_path: Path):
    host_cas = sorted(HOST_CA_DIR.glob("*.crt"))
    bodies = [b for ca in host_cas for b in _pem_bodies(ca)]
    if host_cas:
        assert bodies, f"no certificate read from {host_cas}"
    seen, leaks = 0, []
    for name, data in _layer_files(image, tmp_path):
        seen += 1
        path = "/" + name.removeprefix("./")
        if BUILD_ONLY.match(path) or path.endswith(".whl"):
            leaks.append(path)
        if path in ("/etc/pip.conf", "/etc/resolv.conf", "/etc/hostname") and data.strip():
            leaks.append(f"{path} has content: {data[:80]!r}")
        leaks += [f"{path} holds the build machine's CA" for b in bodies if b in data]
    assert seen > 1000, f"only {seen} files read from the image"
    assert not leaks, "\n".join(leaks)


def _python_packages(image: str, tmp_path: Path) -> set[str]:
    """The top-level names in every site-packages of every layer of the image."""
    found = set()
    for name, _ in _layer_files(image, tmp_path):
        _, sep, rest = name.partition("site-packages/")
        if sep and "/" in rest:
            found.add(rest.split("/", 1)[0])
    return found


def test_operator_image_holds_the_operator_alone(image: str, tmp_path: Path):
    """The operator's image ships `clusterop` (and its plugin), never the simulator (its code, its
    console script, its default admin user) nor the dev tooling."""
    packages = _python_packages(image, tmp_path)
    assert "clusterop" in packages and "kopf" in packages, sorted(packages)
    assert not {p for p in packages if p.startswith(("cloudify_manager_sim", "clusterop_dev"))}, sorted(packages)
    scripts = {n.rsplit("/", 1)[1] for n, _ in _layer_files(image, tmp_path) if "/opt/venv/bin/" in "/" + n}
    assert {"cloudify-cluster-operator", "kubectl-mgrc"} <= scripts and "cloudify-manager-sim" not in scripts


def test_simulator_image_holds_the_simulator_alone(sim_image: str, tmp_path: Path):
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config}}", sim_image).stdout)
    assert config["User"] == f"{UID}:{UID}" and config["Entrypoint"] == ["cloudify-manager-sim"]
    packages = _python_packages(sim_image, tmp_path)
    assert "cloudify_manager_sim" in packages and "aiohttp" in packages, sorted(packages)
    assert not {p for p in packages if p.startswith(("clusterop", "kopf", "pykube"))}, sorted(packages)
