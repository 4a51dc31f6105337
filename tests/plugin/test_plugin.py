"""`kubectl mgrc` against the local control plane: a formed, a paused and a Degraded cluster, a
join in flight, pause/resume, logs (-f), plan, and the errors a person can act on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from clusterop_dev.harness import manager_cluster, node_specs
from clusterop_dev.testbed import TestBed

from .conftest import PLUGIN, World

pytestmark = pytest.mark.e2e
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_status_of_a_ready_cluster(world: World, formed: str) -> None:
    r = world.run("status", formed)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    st = world.clusters.status(formed)
    assert out.splitlines()[0].startswith(f"ManagerCluster {world.namespace}/{formed}: Ready (ClusterReady)")
    assert f"Leader:  {st['leader']}" in out and "Nodes:   3/3 online" in out
    for n in st["nodes"]:  # one row per node: name, state, online, master mark, endpoint
        row = next(line for line in out.splitlines() if line.strip().startswith(n["name"] + " "))
        assert n["state"] in row and "yes" in row and n["endpoint"] in row
        assert ("*" in row) == n["master"]
    assert "In flight: nothing" in out
    assert RFC3339.search(out) and "Cluster log (latest):" in out
    assert "\033[" not in out  # piped: plain


def test_status_colours_on_request_and_machine_formats(world: World, formed: str) -> None:
    coloured = world.run("status", formed, "--color", "always").stdout
    assert "\033[32mReady\033[0m" in coloured
    data = json.loads(world.run("status", formed, "-o", "json").stdout)
    st = world.clusters.status(formed)
    assert data["ready"] is True and data["leader"] == st["leader"] and len(data["nodes"]) == 3
    assert all(RFC3339.fullmatch(line["time"]) for line in data["logs"])
    assert yaml.safe_load(world.run("status", formed, "-o", "yaml").stdout) == data | {"inFlight": None}


def test_status_of_a_paused_cluster_and_plan(world: World, paused: str) -> None:
    out = world.run("status", paused).stdout
    assert ": Paused" in out.splitlines()[0] and "(paused: observing only)" in out
    assert "paused, would bootstrap the cluster on manager-1" in out
    plan = world.run("plan", paused)
    assert plan.returncode == 0
    assert "Paused: the operator changes nothing" in plan.stdout
    assert "1. paused, would bootstrap the cluster on manager-1" in plan.stdout


def test_status_of_a_degraded_cluster(world: World, degraded: str) -> None:
    r = world.run("status", degraded)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert ": Not ready (NodeOffline)" in lines[0] or ": Not ready (NodeUnreachable)" in lines[0], lines[0]
    assert "Nodes:   1/2 online" in r.stdout
    assert "Problems:" in r.stdout
    problems = r.stdout.split("Problems:")[1]
    assert "offline" in problems or "unreachable" in problems
    offline_row = next(line for line in lines if " no " in f" {line} " and "manager-" in line)
    assert "Offline" in offline_row or "Unreachable" in offline_row


def test_status_without_name_lists_every_cluster(world: World, formed: str, paused: str, degraded: str) -> None:
    out = world.run("status").stdout.splitlines()
    assert out[0].split() == ["NAMESPACE", "NAME", "READY", "PHASE", "LEADER", "NODES", "IN", "FLIGHT", "PROBLEM"]
    rows = {line.split()[1]: line for line in out[1:]}
    assert {formed, paused, degraded} <= set(rows)
    assert rows[formed].split()[2:4] == ["True", "Ready"] and rows[paused].split()[3] == "Paused"
    everywhere = subprocess.run(
        [str(PLUGIN), "status", "-A", formed, "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(world.testbed.kubeconfig)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(everywhere.stdout)["namespace"] == world.namespace


def test_a_join_in_flight_says_what_and_for_how_long(world: World) -> None:
    world.sim.set_delays(join_delay=60.0)
    try:
        world.clusters.create(manager_cluster("joining", node_specs(world.sim.add_machines(2))))
        world.clusters.wait_status(
            "joining", lambda st: (st.get("pending") or {}).get("op") == "join", timeout=60, message="a join in flight"
        )
        time.sleep(1.1)
        out = world.run("status", "joining").stdout
        m = re.search(r"In flight: join manager-2 for (\d+)s \(since (\S+), attempt 1\)", out)
        assert m, out
        assert int(m.group(1)) >= 1 and RFC3339.fullmatch(m.group(2))
        assert world.clusters.status("joining")["pending"]["sinceTime"] == m.group(2)
        assert ": Not ready (Joining)" in out.splitlines()[0]
        assert "Waiting on: join manager-2 sent" in world.run("plan", "joining").stdout
    finally:
        world.sim.set_delays(join_delay=0.3)


def test_pause_and_resume_set_and_clear_the_annotation(world: World, formed: str) -> None:
    r = world.run("pause", formed)
    assert r.returncode == 0 and "paused" in r.stdout
    assert world.clusters.get(formed)["metadata"]["annotations"]["cloudify.co/paused"] == "true"
    world.clusters.wait_status(formed, lambda st: st.get("phase") == "Paused")
    assert "already paused" in world.run("pause", formed).stdout
    r = world.run("resume", formed)
    assert r.returncode == 0 and "resumed" in r.stdout
    assert "cloudify.co/paused" not in (world.clusters.get(formed)["metadata"].get("annotations") or {})
    world.clusters.wait_ready(formed)


def test_logs_and_follow(world: World, formed: str) -> None:
    r = world.run("logs", formed)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines and all(RFC3339.match(line) for line in lines)
    assert any("Starting Cloudify Manager cluster" in line for line in lines)
    # -f prints what arrives: the operator mirrors logs when it looks at every node (a join does).
    machines = node_specs(world.sim.add_machines(2))
    world.clusters.create(manager_cluster("followed", machines[:1]))
    world.clusters.wait_ready("followed", timeout=60)
    env = {**os.environ, "KUBECONFIG": str(world.testbed.kubeconfig)}
    follow = subprocess.Popen(
        [str(PLUGIN), "logs", "followed", "-f", "--interval", "0.2", "-n", world.namespace],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        first = follow.stdout.readline()
        assert RFC3339.match(first) and "manager-1: Starting Cloudify Manager cluster" in first
        world.clusters.set_nodes("followed", machines)
        while "manager-2" not in (line := follow.stdout.readline()):  # the test's timeout bounds this
            assert line, "kubectl mgrc logs -f ended"
        assert RFC3339.match(line) and "manager-2: Joining Cloudify Manager cluster as node manager-2" in line
    finally:
        follow.terminate()
        follow.wait(10)
        if follow.stdout is not None:
            follow.stdout.close()


def test_kubectl_finds_the_plugin_on_path(world: World, formed: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (CI requires it)")
    env = {
        **os.environ,
        "KUBECONFIG": str(world.testbed.kubeconfig),
        "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ['PATH']}",
    }
    r = subprocess.run(
        [kubectl, "mgrc", "status", formed, "-n", world.namespace], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"ManagerCluster {world.namespace}/{formed}:")


def test_no_such_object(world: World, crd: None) -> None:
    for verb in ("status", "pause", "resume", "logs", "plan"):
        r = world.run(verb, "nope")
        assert r.returncode == 1, verb
        assert r.stderr == f'error: managercluster "nope" in namespace "{world.namespace}" not found\n', verb
        assert r.stdout == ""


def test_no_access_is_one_line(world: World, kube_api: ApiClient, tmp_path: Path) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(world.namespace, client.V1ServiceAccount(metadata={"name": "nobody"}))
    token = world.testbed.create_token(world.namespace, "nobody", 600)
    kubeconfig = world.testbed.kubeconfig_for_token(token, tmp_path / "nobody.kubeconfig")
    r = world.run("status", "formed", kubeconfig=kubeconfig)
    assert r.returncode == 1
    assert r.stderr.startswith("error: no access: ") and r.stderr.count("\n") == 1
    assert f"system:serviceaccount:{world.namespace}:nobody" in r.stderr and "managerclusters" in r.stderr
    r = world.run("pause", "formed", kubeconfig=kubeconfig)
    assert r.returncode == 1 and r.stderr.startswith("error: no access: ")


def test_unreachable_api_and_no_crd(tmp_path: Path) -> None:
    with TestBed(controller_manager=False) as bare:  # an apiserver without the CRD
        env = {**os.environ, "KUBECONFIG": str(bare.kubeconfig)}
        r = subprocess.run([str(PLUGIN), "status", "x"], env=env, capture_output=True, text=True)
        assert r.returncode == 1
        assert r.stderr.startswith("error: the ManagerCluster CRD is not installed on https://127.0.0.1:")
        assert r.stderr.endswith("kubectl apply -f crds/ (or install the Helm chart)\n")
        kubeconfig = bare.kubeconfig.read_text()
    # The same kubeconfig once that apiserver is gone.
    stale = tmp_path / "stale.kubeconfig"
    stale.write_text(kubeconfig)
    r = subprocess.run(
        [str(PLUGIN), "status", "x"], env={**os.environ, "KUBECONFIG": str(stale)}, capture_output=True, text=True
    )
    assert r.returncode == 1
    assert re.fullmatch(r"error: cannot reach the Kubernetes API at https://127\.0\.0\.1:\d+: \w+\n", r.stderr)
