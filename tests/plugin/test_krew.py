"""The krew archive (`make krew`): what deploy/krew/mgrc.yaml installs is in it, and its
executable is the plugin, runnable on its own against the control plane."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from clusterop_dev.testbed import Cluster

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_the_krew_archive_holds_what_the_manifest_installs_and_runs(testbed: Cluster, crd: None) -> None:
    import sys

    subprocess.run(
        [str(REPO / "deploy" / "krew" / "build.sh")], env={**os.environ, "PY": sys.executable}, check=True, cwd=REPO
    )
    manifest = yaml.safe_load((REPO / "deploy" / "krew" / "mgrc.yaml").read_text())
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "mgrc"
    with tarfile.open(REPO / "dist" / "kubectl-mgrc.tar.gz") as archive:
        names = set(archive.getnames())
    for platform in manifest["spec"]["platforms"]:
        assert {f["from"] for f in platform["files"]} <= names
        assert platform["bin"] in {f["from"] for f in platform["files"]}
    binary = REPO / "dist" / "kubectl-mgrc" / "kubectl-mgrc"
    env = {**os.environ, "KUBECONFIG": str(testbed.kubeconfig)}
    r = subprocess.run([str(binary), "status", "nope", "-n", "default"], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == 'error: managercluster "nope" in namespace "default" not found\n'
