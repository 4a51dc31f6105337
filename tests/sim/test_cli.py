"""The `cloudify-manager-sim` command: the announcement line, signals, and the behaviour options."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest
import requests

from cloudify_manager_sim.harness import SimulatorProcess

from .support import Manager, form, new_key

OwnSim = Callable[..., SimulatorProcess]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_announces_one_json_line_and_exits_0_on_signal(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudify_manager_sim.cli", "--machines", "4", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        announced = json.loads(line)
        assert set(announced) == {"control", "machines"}
        assert announced["control"].startswith("http://127.0.0.1:") and announced["control"].endswith("/control")
        assert [m["host_ip"] for m in announced["machines"]] == ["127.1.0.1", "127.1.0.2", "127.1.0.3", "127.1.0.4"]
        ports = {m["endpoint"].rsplit(":", 1)[1] for m in announced["machines"]}
        assert len(ports) == 4
        assert requests.get(announced["control"] + "/health", timeout=5).status_code == 200
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert proc.stdout.read() == ""  # exactly one line
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_harness_stop_returns_the_exit_code() -> None:
    sim = SimulatorProcess(1)
    assert sim.health()
    assert sim.stop() == 0
    assert not sim.health()


def test_bad_users_option_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cloudify_manager_sim.cli", "--users", "admin:admin:root"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "role" in done.stderr


def test_default_delays_and_user_are_documented_values(own_sim: OwnSim) -> None:
    sim = own_sim(1, start_delay=None, join_delay=None, failover_delay=None)
    assert sim.set_delays() == {"start_delay": 1.5, "join_delay": 1.0, "failover_delay": 3.0}
    assert Manager(sim, sim.machines[0]).get(auth=("admin", "admin")).status_code == 200


def test_endpoint_prefix(own_sim: OwnSim) -> None:
    sim = own_sim(1, "--endpoint-prefix", "/m")
    m = Manager(sim, sim.machines[0])
    assert m.endpoint.endswith("/m")
    assert m.get().json() == {"initialized": False}
    root = m.endpoint.removesuffix("/m")
    form([m])
    assert requests.get(root + "/api/v3/cluster", auth=("admin", "admin"), timeout=5).status_code == 404
    assert requests.get(root + "/mx/api/v3/cluster", auth=("admin", "admin"), timeout=5).status_code == 404
    paths = {c["path"] for c in sim.requests_log()["counts"]}
    assert paths == {"/m/api/v3/cluster", "/api/v3/cluster", "/mx/api/v3/cluster"}  # logged as sent


def test_trailing_slash_option(own_sim: OwnSim) -> None:
    sim = own_sim(1, "--trailing-slash", "accept")
    m = Manager(sim, sim.machines[0])
    r = requests.put(
        m.url + "/",
        json={"host_ip": m.host_ip, "node_name": "n", "encryption_key": new_key()},
        auth=("admin", "admin"),
        timeout=5,
    )
    assert r.status_code == 200
    m.wait_state("master")
    assert m.get("/nodes/").status_code == 200


def test_status_code_options(own_sim: OwnSim) -> None:
    sim = own_sim(
        3, "--not-master-status", "409", "--removed-status", "410", "--not-found-status", "400", "--hide-joining"
    )
    a, b, c = (Manager(sim, x) for x in sim.machines)
    assert a.get("/nodes").status_code == 400
    key = form([a, b])
    assert b.get().status_code == 409
    sim.set_delays(join_delay=30)
    c.put(key, join=[a.host_ip])
    assert [n["name"] for n in a.nodes()] == [a.name, b.name]  # the joiner is hidden
    a.request("DELETE", "/nodes/" + b.name)
    assert b.get().status_code == 410


def test_node_gate_after_auth(own_sim: OwnSim) -> None:
    sim = own_sim(2, "--node-gate", "after-auth")
    a, b = (Manager(sim, x) for x in sim.machines)
    form([a, b])
    assert b.get(auth=None).status_code == 401
    assert b.get().json()["error_code"] == "not_cluster_master"


def test_node_gate_before_auth_is_the_default(own_sim: OwnSim) -> None:
    sim = own_sim(2)
    a, b = (Manager(sim, x) for x in sim.machines)
    form([a, b])
    assert b.get(auth=None).json()["error_code"] == "not_cluster_master"


def test_start_glitches(own_sim: OwnSim) -> None:
    sim = own_sim(1, "--start-glitches", "2", start_delay=30)
    m = Manager(sim, sim.machines[0])
    m.put(new_key())
    assert [m.get().status_code for _ in range(3)] == [502, 502, 200]


def test_advertise_host_goes_into_endpoints(own_sim: OwnSim) -> None:
    sim = own_sim(2, "--advertise-host", "localhost")
    assert sim.control.startswith("http://localhost:")
    assert all(m["endpoint"].startswith("http://localhost:") for m in sim.machines)
    assert requests.get(sim.machines[0]["endpoint"] + "/api/v3/cluster", auth=("admin", "admin"), timeout=5).ok


def test_deploy_manifests_match_the_cli() -> None:
    """deploy/simulator: the container args parse, and the Service exposes the control port and
    one port per machine (machine i on --machine-base-port + i - 1)."""
    from pathlib import Path

    import yaml

    from cloudify_manager_sim.cli import build_parser, options_from

    root = Path(__file__).resolve().parents[2] / "deploy" / "simulator"
    deployment = yaml.safe_load((root / "deployment.yaml").read_text())
    service, headless = yaml.safe_load_all((root / "service.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "cloudify-manager-sim:dev"  # make sim-image
    assert container["command"] == ["cloudify-manager-sim"]
    args = [a.replace("$(POD_NAMESPACE)", "ns") for a in container["args"]]
    options = options_from(build_parser().parse_args(args))
    assert options.host == "0.0.0.0" and options.advertise_host == "cloudify-manager-sim-machines.ns.svc"
    assert headless["metadata"]["name"] == "cloudify-manager-sim-machines"
    assert headless["spec"]["clusterIP"] == "None"  # the pod's own address: every machine port
    wanted = {options.port} | {options.base_port + i for i in range(options.machines)}
    assert {p["port"] for p in service["spec"]["ports"]} == wanted
    assert {p["containerPort"] for p in container["ports"]} == wanted
    assert service["metadata"]["name"] == "cloudify-manager-sim"
