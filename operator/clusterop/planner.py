"""Pure planning: (desired spec, what was observed, what status remembers) -> ordered actions.

No I/O and no clock of its own (`now` is passed in). The reconciler executes at most the first
action, and only when it is a write; every other action is what status shows as planned.
Rules (each guards something that cannot be undone):
  * bootstrap only when every node of the spec answered and none is initialized, joining, a
    member or removed, and no bootstrap is remembered; a remembered bootstrap is only ever
    resent to the same node, so there is never a second cluster;
  * one membership change at a time: nothing new is sent while a write is in flight;
  * joins before removals; removals through the master, replicas first, the master last,
    never the last member, never while another member is offline, never a node the spec wants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from .model import (
    EMPTY_CONFIG_HASH,
    Action,
    Blocked,
    Bootstrap,
    ClusterSpec,
    Configure,
    Join,
    Member,
    Memory,
    NodeKind,
    NodeSpec,
    Observed,
    Op,
    Pending,
    Policy,
    Reason,
    Remove,
    Wait,
    is_write,
)

#: Seconds a recorded write may take to show on the manager before it is resent (same node).
RESEND_AFTER = 5.0


def retry_delay(attempts: int) -> float:
    """Backoff before a failed start or join is tried again on the same node."""
    return float(min(300, 5 * 2 ** max(0, attempts - 1)))


def settle(pending: Pending | None, seen: Observed) -> Pending | None:
    """The remembered write, or None once its outcome is observed."""
    if pending is None or seen.fast:
        return pending
    member = seen.member(pending.node)
    kind = seen.kind(pending.node)
    if pending.op is Op.BOOTSTRAP:
        return None if kind is NodeKind.MASTER or member is not None else pending
    if pending.op is Op.JOIN:
        if member is not None and member.online and kind in (NodeKind.REPLICA, NodeKind.MASTER):
            return None
        return pending
    # remove: done once a master lists the cluster without it (a removed master first needs a
    # successor elected: until then the removal is still in progress)
    if seen.members is not None and member is None:
        return None
    return pending


def plan(spec: ClusterSpec, seen: Observed, memory: Memory, now: float) -> tuple[Action, ...]:
    return _by_policy(spec, _plan(spec, seen, memory, now))


def plan_deletion(spec: ClusterSpec, seen: Observed, memory: Memory, now: float) -> tuple[Action, ...]:
    """deletionPolicy RemoveNodes: every member but the master, one at a time, by the rules of a
    scale-down to the master alone (the only copy of the removal rules is `_removal`). The master
    is kept: the API cannot dissolve a cluster, so it stays a one-node cluster."""
    master = seen.member(seen.master) if seen.master else None
    if master is None:
        return tuple(a for a in plan(spec, seen, memory, now) if not is_write(a) or isinstance(a, Remove))
    own = spec.node(master.name)
    endpoint = own.endpoint if own is not None else memory.endpoints.get(master.name, "")
    alone = replace(spec, nodes=(NodeSpec(master.name, master.host_ip, endpoint),))
    return tuple(a for a in plan(alone, seen, memory, now) if not is_write(a) or isinstance(a, Remove))


def deletion_finished(seen: Observed, pending: Pending | None) -> str | None:
    """Why a RemoveNodes deletion has nothing left to do, or None while it has."""
    if pending is not None:
        return None
    if seen.master is not None and seen.members is not None:
        if len(seen.members) <= 1:
            return f"removed every node but the last ({seen.master}), which is never removed"
        return None
    if not any(n.kind in (NodeKind.MASTER, NodeKind.REPLICA) for n in seen.nodes.values()):
        return "no cluster found on the managers; nothing to remove"
    return None


def _by_policy(spec: ClusterSpec, actions: tuple[Action, ...]) -> tuple[Action, ...]:
    """Writes spec.managementPolicies do not allow become Blocked, after the allowed writes."""
    if spec.policies >= frozenset(Policy):
        return actions
    held: list[Action] = []
    kept: list[Action] = []
    for a in actions:
        if is_write(a) and a.policy not in spec.policies:
            held.append(
                Blocked(Reason.HELD_BY_POLICY, f"managementPolicies do not allow {a.policy}: held back {a.describe()}")
            )
        else:
            kept.append(a)
    writes = [a for a in kept if is_write(a)]
    return tuple(writes) + tuple(held) + tuple(a for a in kept if not is_write(a))


def _plan(spec: ClusterSpec, seen: Observed, memory: Memory, now: float) -> tuple[Action, ...]:
    unauthorized = [n for n in seen.nodes.values() if n.kind is NodeKind.UNAUTHORIZED]
    if unauthorized:
        names = ", ".join(sorted(n.name for n in unauthorized))
        return (
            Blocked(
                Reason.CREDENTIALS_REJECTED,
                f"the managers refused the admin credentials of Secret {spec.credentials_secret} "
                f"({unauthorized[0].detail}); nodes: {names}",
            ),
        )
    masters = seen.masters
    if len(masters) > 1:
        return (
            Blocked(
                Reason.SPLIT_BRAIN,
                f"several nodes answer as master ({', '.join(masters)}); the operator will not choose one",
            ),
        )
    rejoin = tuple(_cannot_rejoin(spec, seen))
    if not masters:
        return _without_master(spec, seen, memory, now) + rejoin
    master = masters[0]
    if seen.members is None:
        return (Wait(Reason.MASTER_UNREACHABLE, f"the node list of master {master} could not be read"),)
    if memory.pending is not None:
        return (_in_flight(spec, seen, memory.pending, master, now), *rejoin)
    return _with_master(spec, seen, memory, master, seen.members) + rejoin


def _cannot_rejoin(spec: ClusterSpec, seen: Observed) -> Iterable[Blocked]:
    for n in spec.nodes:
        if seen.kind(n.name) is NodeKind.REMOVED:
            yield Blocked(
                Reason.CANNOT_REJOIN,
                f"{n.name} was removed from the cluster and can never rejoin it: "
                "take it out of spec.nodes or give it a fresh manager",
                node=n.name,
            )


def _without_master(spec: ClusterSpec, seen: Observed, memory: Memory, now: float) -> tuple[Action, ...]:
    pending = memory.pending
    replicas = sorted(n.name for n in seen.nodes.values() if n.kind is NodeKind.REPLICA)
    if pending is not None and pending.op is Op.BOOTSTRAP:
        target = spec.node(pending.node) or NodeSpec(pending.node, pending.host_ip, pending.endpoint)
        return (_resend_or_wait(seen, pending, now, Bootstrap(target, retry=True), Reason.BOOTSTRAPPING),)
    if pending is not None and pending.op is Op.REMOVE and seen.kind(pending.node) is NodeKind.REMOVED:
        return (Wait(Reason.ELECTING, f"{pending.node} was removed; waiting for the cluster to elect a new master"),)
    if replicas or (pending is not None and pending.op in (Op.JOIN, Op.REMOVE)):
        known = ", ".join(replicas) or "none answering"
        return (Wait(Reason.NO_MASTER, f"no node answers as master (replicas: {known}); waiting for the failover"),)
    kinds = {n.name: seen.kind(n.name) for n in spec.nodes}
    if all(k is NodeKind.UNINITIALIZED for k in kinds.values()):
        return (Bootstrap(spec.nodes[0]),)
    unreachable = sorted(name for name, k in kinds.items() if k in (NodeKind.UNREACHABLE, NodeKind.UNKNOWN))
    if unreachable:
        return (
            Wait(
                Reason.NODE_UNREACHABLE,
                f"not bootstrapping while {', '.join(unreachable)} cannot be asked: it may already belong to a cluster",
            ),
        )
    busy = sorted(name for name, k in kinds.items() if k is NodeKind.INITIALIZING)
    if busy:
        return (Wait(Reason.NODE_BUSY, f"{', '.join(busy)} is starting a cluster the operator did not start"),)
    failed = [seen.nodes[name] for name, k in kinds.items() if k is NodeKind.FAILED]
    if failed:
        return (
            Blocked(
                Reason.NODE_FAILED,
                f"{failed[0].name} reports a failed cluster operation the operator did not start: {failed[0].detail}",
                node=failed[0].name,
            ),
        )
    return ()  # only removed nodes: reported by _cannot_rejoin


def _resend_or_wait(seen: Observed, pending: Pending, now: float, resend: Action, doing: Reason) -> Action:
    kind = seen.kind(pending.node)
    age = now - pending.since
    if kind is NodeKind.INITIALIZING:
        return Wait(doing, f"{pending.node}: {pending.op} in progress")
    if kind is NodeKind.FAILED:
        delay = retry_delay(pending.attempts)
        if age >= delay:
            return resend
        detail = seen.nodes[pending.node].detail
        return Wait(
            pending.op.failed,
            f"{pending.op} of {pending.node} failed ({detail}); retrying in {max(0, int(delay - age))}s",
        )
    if kind is NodeKind.UNINITIALIZED:
        # The write left no trace on the node: it never arrived. Resend to the same node only.
        return resend if age >= RESEND_AFTER else Wait(doing, f"{pending.node}: waiting for the {pending.op} to show")
    if kind is NodeKind.REMOVED:
        return Blocked(Reason.CANNOT_REJOIN, f"{pending.node} was removed from the cluster", node=pending.node)
    if kind is NodeKind.REPLICA:
        return Wait(doing, f"{pending.node} joined; waiting until the master lists it online")
    return Wait(Reason.NODE_UNREACHABLE, f"{pending.node} cannot be asked how its {pending.op} went")


def _in_flight(spec: ClusterSpec, seen: Observed, pending: Pending, master: str, now: float) -> Action:
    if pending.op is Op.BOOTSTRAP:
        return Wait(Reason.BOOTSTRAPPING, f"{pending.node}: bootstrap in progress")
    if pending.op is Op.JOIN:
        target = spec.node(pending.node)
        if target is None:
            return Wait(Reason.JOINING, f"{pending.node} left the spec while joining; waiting for the join to settle")
        addrs = _join_addrs(seen.members or ())
        return _resend_or_wait(seen, pending, now, Join(target, addrs, retry=True), Reason.JOINING)
    # remove
    if pending.node in spec.names:
        return Wait(Reason.REMOVING, f"{pending.node} is wanted again; waiting to see whether its removal landed")
    if now - pending.since < RESEND_AFTER:
        return Wait(Reason.REMOVING, f"{pending.node}: removal in progress")
    return Remove(pending.node, master)


def _join_addrs(members: Iterable[Member]) -> tuple[str, ...]:
    return tuple(m.host_ip for m in members)


def _with_master(
    spec: ClusterSpec, seen: Observed, memory: Memory, master: str, members: tuple[Member, ...]
) -> tuple[Action, ...]:
    writes: list[Action] = []
    notes: list[Action] = []
    listed = {m.name for m in members}
    missing = [n for n in spec.nodes if n.name not in listed]
    for n in missing:
        kind = seen.kind(n.name)
        if kind is NodeKind.UNINITIALIZED:
            writes.append(Join(n, _join_addrs(members)))
        elif kind is NodeKind.INITIALIZING:
            notes.append(Wait(Reason.NODE_BUSY, f"{n.name} is starting or joining; the operator did not ask it to"))
        elif kind is NodeKind.FAILED:
            notes.append(
                Blocked(
                    Reason.NODE_FAILED,
                    f"{n.name} reports a failed cluster operation: {seen.nodes[n.name].detail}",
                    node=n.name,
                )
            )
        elif kind in (NodeKind.REPLICA, NodeKind.MASTER):
            notes.append(
                Blocked(Reason.FOREIGN_CLUSTER, f"{n.name} belongs to another cluster than {master}'s", node=n.name)
            )
        elif kind in (NodeKind.UNREACHABLE, NodeKind.UNKNOWN):
            detail = seen.nodes[n.name].detail if n.name in seen.nodes else "not asked"
            notes.append(Wait(Reason.NODE_UNREACHABLE, f"cannot join {n.name}: {detail}"))
        # REMOVED is reported by _cannot_rejoin
    drops = sorted((m for m in members if m.name not in spec.names), key=lambda m: (m.master, m.name))
    if drops:
        writes.extend(_removal(spec, drops[0], members, master, joins_outstanding=bool(missing)))
    applied = memory.applied_config_hash or EMPTY_CONFIG_HASH
    if spec.config_hash != applied:
        writes.append(Configure(spec.config_json, master))
    return tuple(sorted(writes, key=lambda a: not is_write(a))) + tuple(notes)


def _removal(
    spec: ClusterSpec, drop: Member, members: tuple[Member, ...], master: str, joins_outstanding: bool
) -> list[Action]:
    """The rules of one removal, the two that keep a cluster alive first: each stands on its own
    and none relies on a later one (never the last member, never the master without an online
    wanted successor), then joins before removals, then no removal while another member is offline."""
    if len(members) <= 1:
        return [Blocked(Reason.LAST_NODE, f"{drop.name} is the last node of the cluster; it is never removed")]
    if drop.master and not any(m.online and m.name in spec.names for m in members if m.name != drop.name):
        return [
            Blocked(Reason.NO_SUCCESSOR, f"not removing master {drop.name}: no wanted member is online to take over")
        ]
    if joins_outstanding:
        return [Wait(Reason.WAITING_FOR_JOINS, f"removing {drop.name} waits until every node of the spec has joined")]
    offline = sorted(m.name for m in members if not m.online and m.name != drop.name)
    if offline:
        return [
            Blocked(
                Reason.MEMBER_OFFLINE, f"not removing {drop.name} while {', '.join(offline)} is offline", node=drop.name
            )
        ]
    return [Remove(drop.name, master)]
