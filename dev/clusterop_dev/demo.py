"""`make demo`: the whole product on one machine, narrated.

Starts the local control plane (etcd, kube-apiserver, kube-controller-manager), a simulator of
5 Cloudify Manager machines and the operator as a separate process; applies the sample
ManagerCluster from deploy/samples/ (its nodes pointed at the simulated machines), shows the
cluster forming (status and events) as it happens, scales 3 -> 5 -> 3 (the last step removes the
master), changes the config, shows `kubectl mgrc status`, then tears everything down.

Ctrl-C tears down promptly at any point. The terminal sends SIGINT to its whole foreground process
group, so the demo runs as two processes: this one, in the terminal's group, only waits and
forwards the first SIGINT (or SIGTERM) to a worker started in a session of its own; the worker and
its children (control plane, simulator, operator) never see the terminal's signal, and the worker
tears down in order: the resource first (while the operator still runs to release its finalizer),
then the operator, the simulator and the control plane.
"""

from __future__ import annotations

import argparse
import copy
import csv
import faulthandler
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from cloudify_manager_sim.harness import SimulatorProcess
from clusterop_dev.harness import REPO, Clusters, OperatorProcess, apply_crd, node_specs
from clusterop_dev.testbed import TestBed

SAMPLES = REPO / "deploy" / "samples"
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def load_sample(folder: Path = SAMPLES) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sample ManagerCluster and the Secrets beside it, from deploy/samples/*.yaml."""
    cluster: dict[str, Any] | None = None
    secrets: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "ManagerCluster" and cluster is None:
                cluster = doc
            elif doc.get("kind") == "Secret":
                secrets.append(doc)
    if cluster is None:
        sys.exit(f"demo: no ManagerCluster sample in {folder}")
    return cluster, secrets


class Narrator:
    """Prints what changed in status and every new Event, as a person would want to read it."""

    def __init__(self, clusters: Clusters, name: str) -> None:
        self.clusters, self.name = clusters, name
        self.last_line = ""
        self.seen_events: set[tuple[str, str, str]] = set()
        self.timeline: list[tuple[float, int, int]] = []  # (seconds, nodes online, nodes desired)

    def poll(self) -> dict[str, Any]:
        status = self.clusters.status(self.name) if self.clusters.exists(self.name) else {}
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        nodes = " ".join(f"{n['name']}:{n['state']}{'*' if n.get('master') else ''}" for n in status.get("nodes") or [])
        line = (
            f"phase={status.get('phase', '-'):<13} ready={conds.get('Ready', '-'):<5} "
            f"leader={status.get('leader') or '-':<10} nodes={status.get('nodeSummary', '-'):<4} {nodes}"
        )
        online = sum(1 for n in status.get("nodes") or [] if n.get("online") and n.get("member"))
        desired = len(((self.clusters.get(self.name) or {}).get("spec") or {}).get("nodes") or []) if status else 0
        self.timeline.append((round(time.monotonic() - T0, 2), online, desired))
        if line != self.last_line:
            say(line)
            self.last_line = line
        for e in self.clusters.events(self.name):
            key = (e["reason"] or "", e["message"] or "", e["type"] or "")
            if key not in self.seen_events:
                self.seen_events.add(key)
                say(f"  event {e['type']:<7} {e['reason']}: {e['message']}")
        return status

    def until_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.clusters.is_ready(self.name):
                self.poll()
                return
            self.poll()
            time.sleep(0.15)
        raise SystemExit(f"demo: {self.name} did not become Ready within {timeout:.0f}s")


WORKER_ENV = "CLUSTEROP_DEMO_WORKER"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep", action="store_true", help="keep everything running at the end (Ctrl-C to stop)")
    p.add_argument("--samples", type=Path, default=SAMPLES, help="folder holding the sample (deploy/samples)")
    p.add_argument("--timeline", type=Path, help="write seconds,online,desired of every look to this CSV file")
    args = p.parse_args(argv)
    if os.environ.get(WORKER_ENV) != "1":
        return supervise(sys.argv[1:] if argv is None else argv)
    # Python raises KeyboardInterrupt on SIGINT only when SIGINT was not ignored when it started;
    # a shell without job control starts `cmd &` with SIGINT ignored, and the worker inherited
    # that: the forwarded Ctrl-C then did nothing and the demo kept running (seen under `nohup
    # ... &`). The worker says itself what SIGINT does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: where the worker is stuck
    try:
        return run(args)
    except KeyboardInterrupt:
        say("Interrupted; torn down")
        return 130


def supervise(argv: list[str]) -> int:
    """Run the demo in a worker of its own session; forward the first SIGINT/SIGTERM to it alone."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "clusterop_dev.demo", *argv], env={**os.environ, WORKER_ENV: "1"}, start_new_session=True
    )
    forwarded = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal forwarded
        if not forwarded and worker.poll() is None:
            forwarded = True
            worker.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return worker.wait()


def run(args: argparse.Namespace) -> int:
    sample, secrets = load_sample(args.samples)
    name, ns = sample["metadata"]["name"], sample["metadata"].get("namespace", "default")
    say("Starting the local control plane (etcd, kube-apiserver, kube-controller-manager)")
    with TestBed() as bed:
        say(f"Control plane ready in {bed.startup_seconds:.1f}s: export KUBECONFIG={bed.kubeconfig}")
        with bed.api_client() as api, SimulatorProcess(machines=5) as sim:
            say(f"Simulator serving 5 manager machines; control API {sim.control}")
            apply_crd(api)
            say("Applied crds/cloudify.co_managerclusters.yaml")
            with OperatorProcess(bed.kubeconfig, resync_seconds=10, log_level="info") as op:
                say(f"Operator started (pid {op.proc.pid if op.proc else '?'}; log {op.log_path})")
                clusters = Clusters(api, ns)
                narrator = Narrator(clusters, name)
                try:
                    for secret in secrets:
                        data = {k: str(v) for k, v in (secret.get("stringData") or {}).items()}
                        clusters.put_secret(secret["metadata"]["name"], data)
                    nodes = node_specs(sim.machines)
                    body = copy.deepcopy(sample)
                    body["metadata"].pop("namespace", None)
                    body["spec"]["nodes"] = nodes[:3]
                    clusters.create(body)
                    say(f"Applied the sample ManagerCluster {ns}/{name} with 3 nodes; watching it form")
                    narrator.until_ready()
                    say("Scaling up to 5 nodes")
                    clusters.set_nodes(name, nodes)
                    narrator.until_ready()
                    leader = clusters.status(name)["leader"]
                    keep = [n for n in nodes if n["name"] != leader][-3:]
                    say(f"Scaling down to 3 nodes, removing the master {leader} too: {[n['name'] for n in keep]}")
                    clusters.set_nodes(name, keep)
                    narrator.until_ready(timeout=90)
                    config = {**(sample["spec"].get("config") or {}), "demo_setting": "changed"}
                    say(f"Changing spec.config to {config}")
                    clusters.patch(name, {"spec": {"config": config}})
                    narrator.until_ready()
                    managers = sim.clusters()
                    say(
                        f"The simulator's view: {len(managers)} cluster, {managers[0]['bootstraps']} bootstrap, "
                        f"master {managers[0]['master']}, settings {managers[0]['settings']}"
                    )
                    show_plugin_status(bed.kubeconfig, ns, name)
                    if args.keep:
                        say("Keeping everything up; Ctrl-C to tear down")
                        while True:
                            narrator.poll()
                            time.sleep(1)
                except KeyboardInterrupt:
                    say("Ctrl-C")
                finally:
                    if args.timeline:
                        write_timeline(args.timeline, narrator.timeline)
                    tear_down(clusters, name)
        say("Stopped the operator and the simulator")
    say("Stopped the control plane. Done.")
    return 0


def show_plugin_status(kubeconfig: Path, namespace: str, name: str) -> None:
    say(f"kubectl mgrc status {name} -n {namespace}:")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    command = [sys.executable, "-m", "clusterop.plugin.cli", "status", name, "-n", namespace]
    subprocess.run(command, env=env, check=False)


def write_timeline(path: Path, timeline: list[tuple[float, int, int]]) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["seconds", "online", "desired"])
        out.writerows(timeline)
    say(f"Wrote the formation timeline to {path}")


def tear_down(clusters: Clusters, name: str) -> None:
    """The resource goes first, while the operator runs to release its finalizer; a second Ctrl-C
    is not delivered here (the supervisor forwards only the first)."""
    say("Tearing down: deleting the resource (deletionPolicy Orphan leaves the managers alone)")
    if clusters.exists(name):
        clusters.delete(name)
    deadline = time.monotonic() + 30
    while clusters.exists(name) and time.monotonic() < deadline:
        time.sleep(0.2)
    if clusters.exists(name):
        say(f"The resource {name} is still there after 30s: its finalizer was not released")
    else:
        say("The resource is gone (the operator released its finalizer)")


if __name__ == "__main__":
    sys.exit(main())
