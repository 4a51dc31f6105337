"""Observing a cluster's managers: the fan-out of reads and their classification into NodeSeen.

Reads only (GET): the one place for writes is the executor. In the steady state a pass asks one
question (the leader's node list); otherwise every known node is asked for its state, in parallel,
and the single master (if there is exactly one) for its node list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor

from . import errors
from .client import Connection, ManagerClient
from .model import EMPTY_CONFIG_HASH, ClusterSpec, LogLine, Member, Memory, NodeKind, NodeSeen, Observed

log = logging.getLogger("clusterop.observe")

#: endpoint, connection, steady -> a client (steady: the steady pass's own connection pool)
ClientFor = Callable[[str, Connection, bool], ManagerClient]


class Reader:
    def __init__(self, client: ClientFor, pool: Executor) -> None:
        self.client = client
        self.pool = pool  # fan-out of manager requests within a pass

    def observe(self, spec: ClusterSpec, memory: Memory, conn: Connection) -> Observed:
        fast = self.observe_fast(spec, memory, conn)
        if fast is not None:
            return fast
        endpoints = {**memory.endpoints, **{n.name: n.endpoint for n in spec.nodes}}
        if memory.pending is not None and memory.pending.endpoint:
            endpoints.setdefault(memory.pending.node, memory.pending.endpoint)
        names = list(endpoints)
        # The node list of the master the last pass saw is asked beside the nodes' states, not
        # after them: one round trip less per pass while a cluster forms. Used only if that node
        # is the single master now; else the master found is asked, as before.
        leader = memory.leader if memory.leader in endpoints else None
        listing = self.pool.submit(self._members, endpoints[leader], conn) if leader is not None else None
        seen_list = list(
            self.pool.map(lambda n: classify(n, self.client(endpoints[n], conn, False), memory.cursors.get(n)), names)
        )
        masters = [s.name for s in seen_list if s.kind is NodeKind.MASTER]
        master = masters[0] if len(masters) == 1 else None
        members: tuple[Member, ...] | None = None
        if master is not None:
            try:
                if listing is not None and master == leader:
                    members = listing.result()
                else:
                    members = self._members(endpoints[master], conn)
            except errors.ManagerError as e:
                log.info("Listing nodes failed master=%s error=%s", master, e)
        elif listing is not None:
            listing.cancel()
        return Observed(nodes={s.name: s for s in seen_list}, members=members, master=master)

    def _members(self, endpoint: str, conn: Connection) -> tuple[Member, ...]:
        return tuple(Member.of(i) for i in self.client(endpoint, conn, False).nodes())

    def observe_fast(self, spec: ClusterSpec, memory: Memory, conn: Connection) -> Observed | None:
        """One request in the steady state: the leader's node list, if it shows exactly the spec."""
        leader = spec.node(memory.leader) if memory.leader else None
        if leader is None or memory.pending is not None:
            return None
        if spec.config_hash != (memory.applied_config_hash or EMPTY_CONFIG_HASH):
            return None
        try:
            members = tuple(Member.of(i) for i in self.client(leader.endpoint, conn, True).nodes())
        except errors.ManagerError:
            return None
        want = {(n.name, n.host_ip) for n in spec.nodes}
        got = {(m.name, m.host_ip) for m in members}
        masters = [m.name for m in members if m.master]
        if got != want or masters != [leader.name] or not all(m.online and m.initialized for m in members):
            return None
        nodes = {m.name: NodeSeen(m.name, NodeKind.MASTER if m.master else NodeKind.REPLICA) for m in members}
        return Observed(nodes=nodes, members=members, master=leader.name, fast=True)


def classify(name: str, client: ManagerClient, cursor: str | None) -> NodeSeen:
    """What one node says it is (its state since `cursor`), or why it could not say."""
    try:
        state = client.state(since=cursor)
    except errors.NotMaster:
        return NodeSeen(name, NodeKind.REPLICA, cursor=cursor)
    except errors.RemovedNode:
        return NodeSeen(name, NodeKind.REMOVED, cursor=cursor)
    except errors.Unauthorized as e:
        return NodeSeen(name, NodeKind.UNAUTHORIZED, detail=f"HTTP {e.status}: {e.message}", cursor=cursor)
    except errors.ManagerError as e:
        return NodeSeen(name, NodeKind.UNREACHABLE, detail=str(e), cursor=cursor)
    entries = state.get("logs") or []
    logs = tuple(LogLine(name, int(e.get("timestamp", 0)), str(e.get("message", ""))) for e in entries)
    newest = str(entries[-1].get("cursor") or "") if entries else ""
    new_cursor = newest or cursor
    if state.get("initialized"):
        kind = NodeKind.MASTER
    elif state.get("error"):
        return NodeSeen(name, NodeKind.FAILED, detail=str(state["error"]), logs=logs, cursor=new_cursor)
    elif logs or cursor:
        kind = NodeKind.INITIALIZING
    else:
        kind = NodeKind.UNINITIALIZED
    return NodeSeen(name, kind, logs=logs, cursor=new_cursor)
