"""The kind path: its files are checked everywhere; the run itself (`make e2e-kind`: a kind
cluster, the image, the simulator and the operator in-cluster, tests/e2e) needs kind and a Docker
engine and skips, saying which is missing, where they are not."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from .deploytools import REPO, TOOLS_BIN, container, kustomize

NODE_IMAGE = "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"


def _kind() -> str | None:
    found = shutil.which("kind")
    return found or (str(TOOLS_BIN / "kind") if (TOOLS_BIN / "kind").exists() else None)


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode == 0


def _privileged_containers() -> bool:
    """Whether the engine runs --privileged containers (kind's nodes are); tried with any local image."""
    images = subprocess.run(["docker", "images", "-q"], capture_output=True, text=True, check=False).stdout.split()
    if not images:
        return True  # nothing to try it with: let kind say
    done = subprocess.run(["docker", "run", "--rm", "--privileged", "--network", "none", "--entrypoint", "true",
                           images[0]], capture_output=True, check=False, timeout=60)  # fmt: skip
    return done.returncode == 0


def _cluster_config() -> dict:
    return yaml.safe_load((REPO / "hack" / "kind" / "cluster.yaml").read_text())


def test_cluster_runs_kubernetes_1_37_pinned_by_digest():
    assert [n["image"] for n in _cluster_config()["nodes"]] == [NODE_IMAGE]


def test_node_starts_on_a_cgroup_v1_host():
    """kubelet >= 1.35 refuses cgroup v1 unless failCgroupV1 is false; kind v0.33 leaves it unset.
    Pod sandboxes fail where oom_score_adj cannot be lowered unless containerd restricts it."""
    config = _cluster_config()
    kubelet = [p for p in map(yaml.safe_load, config["kubeadmConfigPatches"]) if p["kind"] == "KubeletConfiguration"]
    assert [p.get("failCgroupV1") for p in kubelet] == [False]
    (containerd,) = [tomllib.loads(p) for p in config["containerdConfigPatches"]]
    assert containerd["plugins"]["io.containerd.grpc.v1.cri"]["restrict_oom_score_adj"] is True


def test_kind_builds_the_image_on_the_dockerfiles_own_base():
    """kind's users have a registry: e2e.sh builds the Dockerfile as it is (debian:bookworm-slim),
    never on the local stand-in of `make image`, which exists only where it was made."""
    script = (REPO / "hack" / "kind" / "e2e.sh").read_text()
    assert 'docker build ${BASE_IMAGE:+--build-arg "BASE_IMAGE=$BASE_IMAGE"} -t "$IMAGE" .' in script
    env = {k: v for k, v in os.environ.items() if k != "BASE_IMAGE"}
    plan = subprocess.run(["make", "-n", "e2e-kind"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert "hack/kind/e2e.sh" in plan.stdout and "BASE_IMAGE" not in plan.stdout, plan.stdout


def test_in_cluster_operator_uses_the_loaded_image_at_the_suites_pace():
    objs = kustomize("hack/kind")
    c = container(objs)
    assert c["image"] == "cloudify-cluster-operator:dev" and c["imagePullPolicy"] == "Never"
    assert "--all-namespaces" in c["args"] and "--resync-seconds=2" in c["args"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    (sim,) = [o for o in kustomize("deploy/simulator") if o["kind"] == "Deployment"]
    assert sim["spec"]["template"]["spec"]["containers"][0]["image"] == "cloudify-manager-sim:dev"
    script = (REPO / "hack" / "kind" / "e2e.sh").read_text()
    assert "SIM_IMAGE=cloudify-manager-sim:dev" in script and '-t "$SIM_IMAGE" simulator' in script
    assert '"$KIND" load docker-image "$IMAGE" "$SIM_IMAGE"' in script


def test_script_and_workflows_parse():
    subprocess.run(["bash", "-n", str(REPO / "hack" / "kind" / "e2e.sh")], check=True)
    assert os.access(REPO / "hack" / "kind" / "e2e.sh", os.X_OK)
    for workflow in (REPO / ".github" / "workflows").glob("*.yaml"):
        doc = yaml.safe_load(workflow.read_text())
        assert doc["jobs"], workflow
    kind_flow = yaml.safe_load((REPO / ".github" / "workflows" / "e2e-kind.yaml").read_text())
    runs = [s.get("run", "") for s in kind_flow["jobs"]["e2e-kind"]["steps"]]
    assert any(r.startswith("make e2e-kind") for r in runs)


@pytest.mark.kind
def test_e2e_suite_on_kind(tmp_path: Path):
    if not _docker_engine():
        pytest.skip("no Docker engine (`docker info` failed): kind clusters cannot start here")
    if not _privileged_containers():
        pytest.skip("the Docker engine refuses --privileged containers: kind's nodes cannot start here")
    kind = _kind()
    if kind is None:
        pytest.skip("kind is not installed (`make kind` installs it)")
    env = {**os.environ, "KIND": kind, "ARTIFACTS": str(tmp_path / "artifacts")}
    env.pop("E2E_CLUSTER", None)
    done = subprocess.run(["make", "-s", "e2e-kind"], cwd=REPO, env=env, check=False)
    assert done.returncode == 0, f"make e2e-kind failed; dumps in {tmp_path / 'artifacts'}"
