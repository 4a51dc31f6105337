"""The kind path: its files are checked everywhere; the run itself (`make e2e-kind`: a kind
cluster, the image, the simulator and the operator in-cluster, tests/e2e) needs kind and a Docker
engine and skips, saying which is missing, where they are not."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def test_cluster_runs_kubernetes_1_37_pinned_by_digest():
    config = yaml.safe_load((REPO / "hack" / "kind" / "cluster.yaml").read_text())
    assert [n["image"] for n in config["nodes"]] == [NODE_IMAGE]


def test_in_cluster_operator_uses_the_loaded_image_at_the_suites_pace():
    objs = kustomize("hack/kind")
    c = container(objs)
    assert c["image"] == "cloudify-cluster-operator:dev" and c["imagePullPolicy"] == "Never"
    assert "--all-namespaces" in c["args"] and "--resync-seconds=2" in c["args"]
    (sim,) = [o for o in kustomize("deploy/simulator") if o["kind"] == "Deployment"]
    assert sim["spec"]["template"]["spec"]["containers"][0]["image"] == c["image"]


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
    kind = _kind()
    if kind is None:
        pytest.skip("kind is not installed (`make kind` installs it)")
    env = {**os.environ, "KIND": kind, "ARTIFACTS": str(tmp_path / "artifacts")}
    env.pop("E2E_CLUSTER", None)
    done = subprocess.run(["make", "-s", "e2e-kind"], cwd=REPO, env=env, check=False)
    assert done.returncode == 0, f"make e2e-kind failed; dumps in {tmp_path / 'artifacts'}"
