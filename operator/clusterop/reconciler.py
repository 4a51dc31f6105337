"""One reconcile pass: read Secrets -> observe the managers -> plan -> execute one write -> status.

kopf-free and synchronous (it runs in a worker thread). A pass never sleeps waiting for a
manager: it returns how soon it wants to look again. Before a start, join or removal leaves,
its intent is written to status, so a crash between the request and the next status write can
never lead to a second bootstrap: the next pass (of this process or another) finds the intent.

`Reconciler.run` orchestrates; each concern lives in its own module: `materials` (Secrets,
credentials, TLS), `observe` (the manager reads), `planner` (pure rules), `executor` (the one
place for writes), `status` (pure status), `events` (which Events) and `pacing` (how soon again).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor as Pool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from . import events, pacing, planner, status
from .client import Connection, ManagerClient, Observer, Session
from .errors import InvalidSpec, Refusal
from .executor import Executor
from .kube import Kube
from .materials import Materials
from .model import (
    Action,
    ClusterSpec,
    Configure,
    Event,
    Memory,
    Observed,
    Phase,
    Policy,
    Problem,
    Wait,
    Write,
)
from .model import is_write as _is_write
from .observe import Reader
from .pacing import Pacing, PacingSettings

__all__ = ["Event", "ObjectState", "Outcome", "Reconciler", "Settings"]


@dataclass
class Outcome:
    status_patch: dict[str, Any]
    events: list[Event]
    requeue_after: float
    ready: bool = False
    members_online: int = 0
    base_status: dict[str, Any] | None = None  # status as a write inside the pass left it
    base_body: dict[str, Any] | None = None  # the object as that write left it
    #: the object's resourceVersion the status patch is based on (its compare-and-swap)
    resource_version: str | None = None
    #: deletion (RemoveNodes): why nothing is left to do, None while something is
    finished: str | None = None


@dataclass
class ObjectState:
    """Per-object memory of the running process (not crash-safe: pacing and skipping work only)."""

    pacing: Pacing = field(default_factory=Pacing)  # how soon to look again
    last_status: dict[str, Any] | None = None  # status at `resource_version`, as last read or written
    resource_version: str | None = None
    last_problems: frozenset[Problem] = frozenset()  # problems whose Events were posted
    problems_seen: frozenset[Problem] | None = None  # the last pass's, until its write lands
    #: what the last steady pass saw, and the resourceVersion at which status was right; the same
    #: again needs no status work (any edit of status, by anyone, changes the resourceVersion)
    steady_key: Any = None
    #: the spec as parsed at a resourceVersion: a steady pass (the same version) parses nothing
    parsed: tuple[str, ClusterSpec] | None = None
    #: this process's own last status writes (resourceVersion, fingerprint of the owned fields): a
    #: watch event showing one of them, even after a later write (the watch lags under load), is
    #: not someone else changing status and needs no pass. Fingerprints, not copies: 1,000
    #: objects x 8 statuses would be ~10 MiB.
    own_writes: deque[tuple[str | None, str]] = field(default_factory=lambda: deque(maxlen=8))
    #: the object as this process's last status write left it (the apiserver's answer), kept
    #: until the watch shows that version: the next pass plans from it instead of reading the
    #: object again while the watch lags behind this process's own writes
    last_body: Mapping[str, Any] | None = None
    #: the versions this process's own writes replaced, and those writes' own: a watch copy at
    #: one of them is behind `last_body`, not ahead of it (no one else wrote since, as far as
    #: the watch knows; each write is a compare-and-swap, so one that did is refused)
    superseded: deque[str] = field(default_factory=lambda: deque(maxlen=16))

    def wrote(
        self, written_status: Mapping[str, Any], resource_version: str | None, body: Mapping[str, Any] | None = None
    ) -> None:
        """A status write of this process landed at `resource_version` (`body`: the object after it)."""
        if self.resource_version is not None:
            self.superseded.append(self.resource_version)
        self.last_status, self.resource_version = dict(written_status), resource_version
        self.own_writes.append((resource_version, status.fingerprint(written_status)))
        self.last_body = body if resource_version is not None else None

    def caught_up(self, resource_version: str | None) -> None:
        """The watch shows `resource_version`: the last write's body is no longer needed."""
        if resource_version is not None and resource_version == self.resource_version:
            self.last_body = None

    def is_own(self, resource_version: str | None, seen_status: Mapping[str, Any]) -> bool:
        """Whether a watch event shows one of this process's own writes (or its status)."""
        if any(rv == resource_version for rv, _ in self.own_writes):
            return True
        seen = status.fingerprint(seen_status)
        return any(mine == seen for _, mine in self.own_writes)

    def forget(self) -> None:
        """Read the object again before the next pass (a write conflicted, or leadership changed)."""
        self.last_status, self.resource_version, self.steady_key, self.problems_seen = None, None, None, None
        self.last_body = None
        self.superseded.clear()


@dataclass(frozen=True)
class Settings:
    request_timeout: tuple[float, float] = (2.0, 5.0)
    pacing: PacingSettings = field(default_factory=PacingSettings)


@dataclass(frozen=True)
class _Step:
    """What the executor did with the pass's first action (nothing, when it is not a write)."""

    memory: Memory
    executed: Write | None = None
    events: tuple[Event, ...] = ()
    written: dict[str, Any] | None = None
    resource_version: str | None = None
    body: dict[str, Any] | None = None
    held: bool = False


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        session: Session,
        pool: Pool,
        settings: Settings,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        steady_session: Session | None = None,
        fence: Callable[[str, str], bool] = lambda ns, name: True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.session = session
        #: for the steady pass's one request (the leader's node list); default: `session`
        self.steady_session = steady_session or session
        self.settings = settings
        self.observer = observer
        self.clock = clock
        self.monotonic = monotonic  # the poll schedule's clock (pacing.next_look)
        self.materials = Materials(kube, settings.request_timeout)
        self.reader = Reader(self._client, pool)
        self.executor = Executor(kube, lambda endpoint, conn: self._client(endpoint, conn, False), fence, clock)

    def run(self, body: Mapping[str, Any], state: ObjectState, *, deleting: bool = False) -> Outcome:
        """One pass. `deleting`: the object is being deleted with deletionPolicy RemoveNodes."""
        meta = body.get("metadata") or {}
        cluster = (str(meta.get("namespace")), str(meta.get("name")))
        body = self._live(cluster, body, state)
        previous, version = state.last_status or {}, state.resource_version
        try:
            spec = _parsed(body, state)
            conn, key = self.materials.load(cluster, spec)
        except InvalidSpec as e:
            return self._refused(previous, body, e, state, deleting)
        if deleting and Policy.REMOVE not in spec.policies:
            return Outcome({}, [], 1.0, finished="nothing removed: managementPolicies do not allow Remove")
        memory = status.memory_of(previous)
        seen = self.reader.observe(spec, replace(memory, leader=None) if deleting else memory, conn)
        self.materials.observed(cluster, spec, seen)
        steady_key = (seen.members, spec.generation, spec.paused, spec.config_hash, version) if seen.fast else None
        if steady_key is not None and state.steady_key == steady_key and not deleting:
            return self._unchanged(state, seen)
        memory = replace(memory, pending=planner.settle(memory.pending, seen))
        actions = (planner.plan_deletion if deleting else planner.plan)(spec, seen, memory, self.clock())
        step = self._execute(cluster, version, spec, memory, conn, key, actions)
        if step.held:  # someone else moved, or this process is not the leader: observe again
            state.forget()
            return Outcome({}, [], self.settings.pacing.fast_first, resource_version=version)
        problems = status.problems_of(seen, actions, spec, step.memory.pending)
        desired = status.build(
            previous=previous, spec=spec, seen=seen, memory=step.memory, actions=actions,
            executed=step.executed, now=_now_iso(), problems=problems,
        )  # fmt: skip
        state.problems_seen = frozenset(problems)  # committed once this pass's status write landed
        found = [
            *step.events,
            *events.new_problems(state.last_problems, problems, paused=spec.paused),
            *events.became_ready(previous, desired, len(spec.nodes)),
        ]
        patch, written = _status_write(previous, desired, step, actions)
        ready = desired["phase"] == Phase.READY
        state.steady_key = steady_key if not patch and not found and ready else None
        return Outcome(
            status_patch=patch,
            events=found,
            requeue_after=self._pace(state, desired, step.executed, actions),
            ready=ready,
            members_online=sum(1 for n in desired["nodes"] if n["online"]),
            base_status=written,
            base_body=step.body if written is not None else None,
            resource_version=step.resource_version or version,
            finished=planner.deletion_finished(seen, step.memory.pending) if deleting else None,
        )

    def forget(self, cluster: tuple[str, str]) -> None:
        """The cluster's loop ended (deleted, or the operator stops): let go of its materials."""
        self.materials.forget(cluster)

    def close(self) -> None:
        self.materials.close()

    # -- the parts of a pass ----------------------------------------------------------------

    def _client(self, endpoint: str, conn: Connection, steady: bool) -> ManagerClient:
        return ManagerClient(endpoint, conn, self.steady_session if steady else self.session, self.observer)

    def _live(self, cluster: tuple[str, str], body: Mapping[str, Any], state: ObjectState) -> Mapping[str, Any]:
        """The body to plan from, with `state` holding its status and resourceVersion.

        The watch's copy is used when it is at the version this loop last read or wrote; else
        (our own write not yet seen by the watch, or someone else changed the object) the
        object is read from the apiserver. Planning from the live status, not from what this
        loop last wrote, is what makes an edited or cleared status heal.

        When the watch's copy is at a version this loop's own writes replaced, the watch lags
        behind them: the object as the last write left it (the apiserver's answer) is newer than
        the watch's and is used instead of a GET (10% of the operator's CPU while 1,000 clusters
        formed). Someone else's change the watch has not shown yet is not seen either way
        without a GET; the pass's writes are compare-and-swaps on this version, so a plan made
        from it before such a change is refused, never sent."""
        seen_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if state.resource_version is not None and seen_version == state.resource_version:
            state.last_status = dict(body.get("status") or {})
            state.last_body = None
            return body
        mine = state.last_body
        if mine is not None and seen_version in state.superseded:
            state.last_status = dict(mine.get("status") or {})
            return mine
        fresh = self.kube.cluster(*cluster)
        state.last_status = dict(fresh.get("status") or {})
        state.resource_version = str(fresh["metadata"].get("resourceVersion") or "") or None
        if seen_version and seen_version != state.resource_version:
            # what the watch showed before this read is older: until it shows more, plan from this
            state.superseded.append(seen_version)
            state.last_body = fresh
        return fresh

    def _unchanged(self, state: ObjectState, seen: Observed) -> Outcome:
        """The leader's list is what it was on the last pass, which wrote nothing, and nobody has
        touched the object since (same resourceVersion): so would this pass."""
        state.pacing.streak = 0
        online = len(seen.members or ())
        return Outcome({}, [], pacing.resync(self.settings.pacing), ready=True, members_online=online)

    def _refused(
        self, previous: Mapping[str, Any], body: Mapping[str, Any], e: InvalidSpec, state: ObjectState, deleting: bool
    ) -> Outcome:
        """The pass stopped before any manager call: the spec or its Secrets are refused."""
        waiting = Refusal(e.reason).waits_for_a_secret if e.reason in tuple(Refusal) else False
        desired = status.blocked_before_managers(
            previous=previous,
            generation=int((body.get("metadata") or {}).get("generation") or 0),
            phase=str(Phase.PENDING if waiting else Phase.INVALID),
            reason=str(e.reason),
            message=e.message,
            now=_now_iso(),
        )
        outcome = Outcome(
            status.merge_patch(previous, desired), events.refused(previous, e), pacing.after_refusal(state.pacing)
        )
        if deleting:
            outcome.finished = f"nothing removed: {e.message}"
        return outcome

    def _execute(
        self,
        cluster: tuple[str, str],
        version: str | None,
        spec: ClusterSpec,
        memory: Memory,
        conn: Connection,
        key: str,
        actions: tuple[Action, ...],
    ) -> _Step:
        first = actions[0] if actions else None
        if not _is_write(first) or spec.paused:
            return _Step(memory)
        result = self.executor.execute(*cluster, version, spec, memory, conn, key, first)
        if result.held is not None and result.written is None:
            return _Step(memory, held=True)
        return _Step(
            result.memory,
            executed=first if result.sent else None,
            events=result.events,
            written=result.written,
            resource_version=result.resource_version,
            body=result.body,
        )

    def _pace(
        self, state: ObjectState, desired: Mapping[str, Any], executed: Write | None, actions: tuple[Action, ...]
    ) -> float:
        in_flight = desired.get("pending") is not None or any(
            isinstance(a, Wait) and a.reason.in_flight for a in actions
        )
        return pacing.next_look(
            state.pacing,
            self.settings.pacing,
            wrote=executed is not None,
            in_flight=in_flight,
            settled=desired["phase"] in (Phase.READY, Phase.PAUSED),
            now=self.monotonic(),
        )


def _parsed(body: Mapping[str, Any], state: ObjectState) -> ClusterSpec:
    """ClusterSpec.parse, once per resourceVersion of the object (9% of a steady pass's CPU)."""
    version = str((body.get("metadata") or {}).get("resourceVersion") or "")
    if version and state.parsed is not None and state.parsed[0] == version:
        return state.parsed[1]
    spec = ClusterSpec.parse(body)  # InvalidSpec is not kept: a refused spec is parsed again
    state.parsed = (version, spec) if version else None
    return spec


def _status_write(
    previous: Mapping[str, Any], desired: dict[str, Any], step: _Step, actions: tuple[Action, ...]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The pass's status patch, and the status a write inside the pass left (if any)."""
    written = step.written
    if written is None:
        return status.merge_patch(previous, desired), None
    if isinstance(step.executed or (actions[0] if actions else None), Configure):
        # A config PATCH's outcome is known at once: write it on top of the intent.
        patch = status.merge_patch(written, desired)
        return patch, None if patch else written
    # The intent written before the request is this pass's status write; the next pass, a
    # moment later, observes the outcome and writes the rest.
    return {}, written
