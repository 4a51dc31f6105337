"""The wrapper module's replace list is upstream's: every staging module that k8s.io/kubernetes
replaces with ./staging/... is replaced by its published v0.x.y, and nothing else."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "hack" / "controlplane"


def versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (HERE / "versions.env").read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.startswith("#")}


def replaces(gomod: str) -> dict[str, str]:
    block = re.search(r"^replace \((.*?)^\)", gomod, re.S | re.M)
    assert block, "no replace block"
    return {m[0]: m[1] for m in re.findall(r"^\s*(\S+) => (.+?)\s*$", block.group(1), re.M)}


def test_committed_gomod_pins_the_versions_of_versions_env() -> None:
    v = versions()
    gomod = (HERE / "go.mod").read_text()
    assert f"k8s.io/kubernetes {v['K8S_VERSION']}" in gomod
    assert f"go.etcd.io/etcd/server/v3 {v['ETCD_VERSION']}" in gomod
    staging = "v0." + v["K8S_VERSION"].removeprefix("v1.")
    assert replaces(gomod) and all(r == f"{name} {staging}" for name, r in replaces(gomod).items())


def test_replace_list_matches_upstream_gomod() -> None:
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain: the control plane comes from KUBEBUILDER_ASSETS here")
    v = versions()
    info = json.loads(
        subprocess.run(
            ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{v['K8S_VERSION']}"],
            check=True,
            capture_output=True,
            text=True,
            cwd=HERE,
        ).stdout
    )
    upstream = Path(info["GoMod"]).read_text()
    want = {name for name, target in replaces(upstream).items() if target.startswith("./staging/")}
    assert want and set(replaces((HERE / "go.mod").read_text())) == want
