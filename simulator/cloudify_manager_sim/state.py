"""The simulated machines and the shared "consul": a pure state machine.

No I/O and no clock of its own: every mutating call takes `now` (monotonic seconds), log
timestamps come from an injected wall clock, and timed work (a start or join finishing,
a failover) sits in a heap that the server drains with `advance(now)` at `next_due()`.
HTTP semantics live in `api.py`; sockets live in `server.py`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cloudify_manager_sim.config import Behaviour, Delays


class NodeState(enum.Enum):
    UNINITIALIZED = "uninitialized"
    INITIALIZING = "initializing"
    JOINING = "joining"
    MASTER = "master"
    REPLICA = "replica"
    FAILED = "failed"
    REMOVED = "removed"


CLUSTERED = (NodeState.MASTER, NodeState.REPLICA)
BUSY = (NodeState.INITIALIZING, NodeState.JOINING)


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    message: str
    timestamp: int  # microseconds since the epoch

    @property
    def cursor(self) -> str:
        return f"c{self.seq:x}"

    def as_json(self) -> dict[str, Any]:
        return {"message": self.message, "timestamp": self.timestamp, "cursor": self.cursor}


def parse_cursor(cursor: str) -> int | None:
    if not cursor.startswith("c"):
        return None
    try:
        return int(cursor[1:], 16)
    except ValueError:
        return None


def valid_key(key: object) -> bool:
    """A key is the standard base64 of exactly 16 bytes."""
    if not isinstance(key, str):
        return False
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


@dataclass(eq=False, slots=True)
class Machine:
    host_ip: str
    state: NodeState = NodeState.UNINITIALIZED
    online: bool = True
    node_name: str | None = None
    registered_ip: str | None = None  # host_ip sent in the PUT
    key: str | None = None
    cluster: Cluster | None = None
    error: str | None = None
    logs: list[LogEntry] = field(default_factory=list)
    op: int = 0  # bumped whenever pending timed work for this machine must be ignored
    pending_error: str | None = None
    fail_next: dict[str, str] = field(default_factory=dict)  # "start"/"join" -> error text
    glitches_left: int = 0
    removed_seq: int | None = None  # order of removals across the simulator (tests judge "master last")

    @property
    def initialized(self) -> bool:
        return self.state in CLUSTERED


@dataclass(eq=False, slots=True)
class Cluster:
    id: str
    key: str
    members: list[Machine] = field(default_factory=list)  # join order; removed ones stay, flagged
    master: Machine | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    leaderless_since: float | None = None
    election_due: float | None = None
    bootstraps: int = 1

    def live_members(self) -> list[Machine]:
        return [m for m in self.members if m.state in CLUSTERED]

    def has_quorum(self) -> bool:
        voters = self.live_members()
        return 2 * sum(1 for m in voters if m.online) > len(voters)

    def find(self, name: str) -> Machine | None:
        for m in self.members:
            if m.node_name == name and (m.state is NodeState.JOINING or m.state in CLUSTERED):
                return m
        return None


class Registry:
    """All machines of one simulator process and the clusters they form."""

    def __init__(self, delays: Delays, behaviour: Behaviour, wall: Callable[[], float]) -> None:
        self.delays = delays
        self.behaviour = behaviour
        self._wall = wall
        self.machines: dict[str, Machine] = {}
        self.clusters: dict[str, Cluster] = {}
        self._seq = itertools.count(1)
        self._cluster_ids = itertools.count(1)
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []

    # -- machines -------------------------------------------------------------------------------

    def add_machine(self, host_ip: str) -> Machine:
        machine = Machine(host_ip)
        self.machines[host_ip] = machine
        return machine

    def log(self, machine: Machine, message: str) -> None:
        machine.logs.append(LogEntry(next(self._seq), message, int(self._wall() * 1_000_000)))

    # -- timers ---------------------------------------------------------------------------------

    def _at(self, due: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), action))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def advance(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, _, action = heapq.heappop(self._heap)
            action(now)

    # -- start and join -------------------------------------------------------------------------

    def start(self, machine: Machine, body: dict[str, Any], now: float) -> None:
        """PUT without join_addrs: bootstrap a new cluster after the start delay."""
        self._begin(machine, body, NodeState.INITIALIZING)
        self.log(machine, f"Starting Cloudify Manager cluster on node {machine.node_name}")
        machine.pending_error = self._start_error(machine, body)
        machine.glitches_left = self.behaviour.start_glitches
        op = machine.op
        delay = self.delays.start
        self._at(now + delay / 2, lambda t: self._progress(machine, op, "Consul agent started (bootstrap)"))
        self._at(now + delay, lambda t: self._finish_start(machine, op, t))

    def join(self, machine: Machine, body: dict[str, Any], join_addrs: list[Any], now: float) -> None:
        """PUT with join_addrs: join the cluster of a live member after the join delay."""
        self._begin(machine, body, NodeState.JOINING)
        self.log(machine, f"Joining Cloudify Manager cluster as node {machine.node_name}")
        machine.pending_error = self._join_error(machine, body, join_addrs)
        op = machine.op
        delay = self.delays.join
        self._at(now + delay / 2, lambda t: self._progress(machine, op, "Consul agent joined the cluster"))
        self._at(now + delay, lambda t: self._finish_join(machine, op, t))

    def _begin(self, machine: Machine, body: dict[str, Any], state: NodeState) -> None:
        machine.op += 1
        machine.state = state
        machine.error = None
        machine.cluster = None
        name, ip, key = body.get("node_name"), body.get("host_ip"), body.get("encryption_key")
        machine.node_name = name if isinstance(name, str) else str(name)
        machine.registered_ip = ip if isinstance(ip, str) else None
        machine.key = key if isinstance(key, str) else None

    def _common_error(self, machine: Machine, body: dict[str, Any], op: str) -> str | None:
        if op in machine.fail_next:
            return machine.fail_next.pop(op)
        if not valid_key(body.get("encryption_key")):
            return "Invalid encryption key: expected the base64 encoding of exactly 16 bytes"
        ip = body.get("host_ip")
        if not isinstance(ip, str) or (self.behaviour.strict_host_ip and ip != machine.host_ip):
            return f"host_ip {ip!r} is not an address of this manager machine ({machine.host_ip})"
        if not isinstance(body.get("node_name"), str) or not body.get("node_name"):
            return "node_name must be a non-empty string"
        return None

    def _start_error(self, machine: Machine, body: dict[str, Any]) -> str | None:
        return self._common_error(machine, body, "start")

    def _join_error(self, machine: Machine, body: dict[str, Any], join_addrs: list[Any]) -> str | None:
        error = self._common_error(machine, body, "join")
        if error:
            return error
        target = self._live_member(join_addrs, exclude=machine)
        if target is None or target.cluster is None:
            return f"Could not join the cluster: no live cluster member among join_addrs {join_addrs!r}"
        cluster = target.cluster
        if body.get("encryption_key") != cluster.key:
            return "Could not join the cluster: the encryption key does not match the cluster's key"
        if cluster.find(str(body.get("node_name"))) is not None:
            return f"Could not join the cluster: node name {body.get('node_name')!r} is already in use"
        machine.cluster = cluster
        cluster.members.append(machine)
        return None

    def _live_member(self, join_addrs: list[Any], exclude: Machine) -> Machine | None:
        for addr in join_addrs:
            if not isinstance(addr, str):
                continue
            for candidate in self._machines_at(addr):
                if candidate is not exclude and candidate.online and candidate.initialized:
                    return candidate
        return None

    def _machines_at(self, addr: str) -> Iterator[Machine]:
        machine = self.machines.get(addr)
        if machine is not None:
            yield machine
        if not self.behaviour.strict_host_ip:
            for other in self.machines.values():
                if other.registered_ip == addr and other is not machine:
                    yield other

    def _progress(self, machine: Machine, op: int, message: str) -> None:
        if machine.op == op and machine.state in BUSY:
            self.log(machine, message)

    def _fail(self, machine: Machine, error: str) -> None:
        machine.state = NodeState.FAILED
        machine.error = error
        if machine.cluster is not None:
            if machine in machine.cluster.members:
                machine.cluster.members.remove(machine)
            machine.cluster = None
        self.log(machine, f"Cluster configuration failed: {error}")

    def _finish_start(self, machine: Machine, op: int, now: float) -> None:
        if machine.op != op or machine.state is not NodeState.INITIALIZING:
            return
        if machine.pending_error:
            self._fail(machine, machine.pending_error)
            return
        cluster = Cluster(id=f"cluster-{next(self._cluster_ids)}", key=machine.key or "")
        cluster.members.append(machine)
        cluster.master = machine
        self.clusters[cluster.id] = cluster
        machine.cluster = cluster
        machine.state = NodeState.MASTER
        self.log(machine, "HA Cluster configuration complete")

    def _finish_join(self, machine: Machine, op: int, now: float) -> None:
        if machine.op != op or machine.state is not NodeState.JOINING:
            return
        if machine.pending_error:
            self._fail(machine, machine.pending_error)
            return
        if "join" in machine.fail_next:  # set while the join was already running
            self._fail(machine, machine.fail_next.pop("join"))
            return
        machine.state = NodeState.REPLICA
        self.log(machine, "Node joined the cluster; database replication is up")
        self.log(machine, "HA Cluster configuration complete")
        if machine.cluster is not None:
            self._consider_election(machine.cluster, now)

    # -- membership changes ---------------------------------------------------------------------

    def remove(self, machine: Machine, now: float) -> None:
        """DELETE /cluster/nodes/<name> or the control API's remove: terminal."""
        machine.op += 1
        was_master = machine.state is NodeState.MASTER
        machine.state = NodeState.REMOVED
        machine.removed_seq = next(self._seq)
        self.log(machine, "This node was removed from the Cloudify Manager cluster")
        cluster = machine.cluster
        if cluster is None:
            return
        if was_master and cluster.master is machine:
            cluster.master = None
            cluster.leaderless_since = now
        if cluster.master is None or not cluster.master.online:  # fewer voters may make a majority
            self._consider_election(cluster, now)

    def set_master(self, cluster: Cluster, target: Machine, now: float) -> None:
        old = cluster.master
        if old is target:
            return
        if old is not None and old.state is NodeState.MASTER:
            old.state = NodeState.REPLICA
            self.log(old, f"Active role moved to node {target.node_name}")
        target.state = NodeState.MASTER
        cluster.master = target
        cluster.leaderless_since = None
        cluster.election_due = None
        self.log(target, "This node is now the active manager")

    def set_online(self, machine: Machine, online: bool, now: float) -> None:
        if machine.online == online:
            return
        machine.online = online
        cluster = machine.cluster
        if cluster is None or machine.state not in CLUSTERED:
            return
        if cluster.master is machine:
            cluster.leaderless_since = None if online else now
            cluster.election_due = None
        self._consider_election(cluster, now)

    def _consider_election(self, cluster: Cluster, now: float) -> None:
        master = cluster.master
        if master is not None and master.online:
            cluster.leaderless_since = None
            return
        if cluster.leaderless_since is None:
            cluster.leaderless_since = now
        if not cluster.has_quorum():
            return
        due = cluster.leaderless_since + self.delays.failover
        if due <= now:
            self._elect(cluster, now)
        elif cluster.election_due is None or cluster.election_due > due:
            cluster.election_due = due
            self._at(due, lambda t: self._election_timer(cluster, t))

    def _election_timer(self, cluster: Cluster, now: float) -> None:
        if cluster.election_due is None or cluster.election_due > now:
            return
        cluster.election_due = None
        self._consider_election(cluster, now)

    def _elect(self, cluster: Cluster, now: float) -> None:
        candidates = [m for m in cluster.members if m.state is NodeState.REPLICA and m.online]
        if not candidates:
            return
        old = cluster.master
        new = candidates[0]
        if old is not None and old.state is NodeState.MASTER:
            old.state = NodeState.REPLICA
        new.state = NodeState.MASTER
        cluster.master = new
        cluster.leaderless_since = None
        cluster.election_due = None
        self.log(new, "Failover: this node was elected the active manager")

    # -- views ----------------------------------------------------------------------------------

    def node_view(self, cluster: Cluster, machine: Machine) -> dict[str, Any]:
        return {
            "initialized": machine.initialized,
            "online": machine.online and machine.initialized,
            "master": cluster.master is machine and machine.state is NodeState.MASTER,
            "host_ip": machine.registered_ip,
            "name": machine.node_name,
        }

    def listed_members(self, cluster: Cluster) -> list[Machine]:
        listed = []
        for m in cluster.members:
            if m.state in CLUSTERED or (m.state is NodeState.JOINING and self.behaviour.list_joining):
                listed.append(m)
        return listed
