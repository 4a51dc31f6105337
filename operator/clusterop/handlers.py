"""The only kopf-aware module: registration, settings, and translation to kopf.

One reconcile loop per ManagerCluster, as a kopf daemon: it runs a pass (in a worker thread),
writes the status diff, posts events, then sleeps for as long as the pass asked, or until the
object or a Secret it references changes. Only that loop talks to managers, so passes of one
object are serialized by construction. Nothing here writes `spec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import kopf

# kopf internals: for its resource scan (until_watched), the Insights it fills, passed to
# kopf.run, and the rescan it runs itself when a CRD changes; for SlimDiffBase, its field picker.
from kopf._cogs.structs import dicts
from kopf._cogs.structs.references import Insights
from kopf._core.reactor import observation

from . import errors, metrics, pacing, status
from .kube import Kube
from .leader import Elector
from .model import GROUP, PAUSE_ANNOTATION, PLURAL, VERSION
from .reconciler import ObjectState, Outcome, Reconciler
from .shards import Shards

log = logging.getLogger("clusterop.handlers")
RESOURCE = (GROUP, VERSION, PLURAL)
FINALIZER = f"{GROUP}/finalizer"
#: how long a new object's first pass waits for kopf's finalizer (see `_until_finalized`); a RemoveNodes
#: object waits in steps of this until it is there (`_may_write`)
FINALIZER_WAIT = 2.0


@dataclass
class Runtime:
    """Shared by every object: built once by the CLI and put in kopf's memo."""

    reconciler: Reconciler
    kube: Kube
    passes: ThreadPoolExecutor
    watch_secrets: bool = False
    delete_timeout: float = 300.0
    #: (namespace, secret name) -> wake events of the objects that reference it
    secret_refs: dict[tuple[str, str], set[asyncio.Event]] = field(default_factory=dict)
    #: (namespace, name) -> monotonic time of the last finished pass (for liveness)
    last_pass: dict[tuple[str, str], float] = field(default_factory=dict)
    stall_after: float = 120.0
    #: connections to the apiserver kopf may hold at once (watch streams included)
    api_connections: int = 48
    #: leader election (--leader-elect) or shard leases (--shards); None: this process owns all
    elector: Elector | Shards | None = None
    #: set, then replaced, whenever what this process claims changes; made in kopf's loop
    changed: asyncio.Event | None = None

    def claims(self, key: tuple[str, str]) -> bool:
        """The object's passes run here: this process leads, or holds the object's shard. Each
        manager write is fenced again, more strictly (Elector.owns, Shards.owns)."""
        return self.elector is None or self.elector.claims(*key)

    def pulse(self) -> None:
        """In kopf's loop: wake every loop waiting for a claim."""
        old, self.changed = self.changed, asyncio.Event()
        if old is not None:
            old.set()

    async def next_change(self, timeout: float, stopped: Any = None) -> None:
        """Until the next pulse, `stopped` (a kopf daemon's flag), or `timeout` seconds."""
        if self.changed is None:
            self.changed = asyncio.Event()
        waits = [asyncio.ensure_future(self.changed.wait())]
        if stopped is not None:
            waits.append(asyncio.ensure_future(stopped.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def wait_claimed(self, key: tuple[str, str], stopped: Any = None) -> bool:
        """Until this process claims the object (True) or `stopped` / the loop's end (False).
        Claims change with a pulse. The timeout only bounds a missed pulse, so it is long: 10,000
        waiting loops wake 10,000 / timeout times a second."""
        while not self.claims(key):
            if stopped is not None and stopped:
                return False
            await self.next_change(timeout=30.0, stopped=stopped)
        return True


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.AiohttpSession | None:
    """kopf's own login, with a bounded connection pool to the apiserver.

    kopf's default session allows unlimited connections: with 1,000 objects it opens hundreds at
    once (an event poster and a patch per object), each with a 256 KiB TLS buffer, which was most
    of the operator's peak memory. Watch streams each hold one connection, so the bound leaves
    room for them (see `Runtime.api_connections`)."""
    info = kopf.login_via_pykube(**kwargs) or kopf.login_via_client(**kwargs)
    if info is None:
        return None
    shared: Runtime = memo.runtime
    auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=shared.api_connections, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=auth,
        trust_env=False,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
        priority=info.priority,
        aiohttp_session=session,
    )


def _signature(body: kopf.Body) -> tuple[Any, ...]:
    meta = body.get("metadata", {})
    return (
        meta.get("generation"),
        (meta.get("annotations") or {}).get(PAUSE_ANNOTATION),
        meta.get("deletionTimestamp"),
    )


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    """A plain copy of the live body for a worker thread (kopf updates the live one meanwhile)."""
    return {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}


def _secret_names(body: kopf.Body) -> set[str]:
    spec = body.get("spec") or {}
    names = set()
    for ref in (spec.get("encryptionKeySecretRef"), spec.get("credentialsSecretRef")):
        if isinstance(ref, dict) and ref.get("name"):
            names.add(str(ref["name"]))
    tls = spec.get("tls") or {}
    for ref in (tls.get("caSecretRef"), tls.get("caConfigMapRef")):
        if isinstance(ref, dict) and ref.get("name"):
            names.add(str(ref["name"]))
    return names


@kopf.daemon(*RESOURCE, cancellation_timeout=3.0)
async def reconcile_loop(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Level-based reconcile of one ManagerCluster until it is deleted or the operator stops."""
    runtime: Runtime = memo.runtime
    loop = asyncio.get_running_loop()
    key = (str(body.metadata.namespace), str(body.metadata.name))
    wake = asyncio.Event()
    memo.wake = wake
    memo.signature = _signature(body)
    state = memo.state = ObjectState()
    lock = memo.lock = asyncio.Lock()  # orders a deletion's pass after any pass in flight
    refs: set[tuple[str, str]] = set()
    waited_for_finalizer = False
    await _until_finalized(body, memo, stopped)
    if _finalized(body):  # the watch's copy carries kopf's patch: the first pass plans from it, no GET
        state.resource_version = str(body.metadata.get("resourceVersion") or "") or None
    try:
        while not stopped and not body.metadata.get("deletionTimestamp"):
            if not runtime.claims(key):
                # Only the Lease's holder (of the object's shard) runs passes; a new holder reads
                # every object afresh. A loop waiting here is not stalled: liveness skips it.
                runtime.last_pass.pop(key, None)
                if not await runtime.wait_claimed(key, stopped):
                    break
                state.forget()
                continue
            if not _may_write(body):
                # A RemoveNodes object deleted before kopf's finalizer is on it would be gone
                # without its removals: no pass (no manager write) until the watch shows it.
                # At 10,000 objects kopf's patch lagged minutes. Not a stall (liveness skips it).
                runtime.last_pass.pop(key, None)
                if not waited_for_finalizer:
                    log.info("Waiting for kopf's finalizer (deletionPolicy RemoveNodes) namespace=%s name=%s", *key)
                    waited_for_finalizer = True
                await _until_finalized(body, memo, stopped)
                continue
            wake.clear()
            refs = _track_secrets(runtime, key[0], body, wake, refs)
            started = time.monotonic()
            async with lock:
                delay = await _one_pass(runtime, loop, body, state, key)
            recheck(body, memo)
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            runtime.last_pass[key] = time.monotonic()
            try:
                await asyncio.wait_for(wake.wait(), timeout=delay)
            except TimeoutError:
                pass
    finally:
        for ref in refs:
            runtime.secret_refs.get(ref, set()).discard(wake)
        runtime.last_pass.pop(key, None)
        runtime.reconciler.forget(key)  # its CA file (a RemoveNodes deletion's passes make it again)
        metrics.forget(*key)


async def _until_finalized(
    body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, timeout: float | None = None
) -> None:
    """kopf patches its finalizer onto a new object while its daemon starts. A first pass
    racing that patch lost its intent's compare-and-swap on the resourceVersion: a held
    bootstrap, one wasted pass and ~80 ms per new object. Wait (up to `timeout`) until the
    watch event of that patch has arrived (`wake_on_change` sets `memo.finalized`)."""
    if _finalized(body) or stopped:
        return
    finalized = memo.finalized = asyncio.Event()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finalized.wait(), timeout=FINALIZER_WAIT if timeout is None else timeout)


def _finalized(body: kopf.Body) -> bool:
    return FINALIZER in (body.get("metadata", {}).get("finalizers") or ())


def _may_write(body: kopf.Body) -> bool:
    """Whether a pass may run: under deletionPolicy RemoveNodes only once kopf's finalizer is on
    the object, since a deletion does its removals only while the finalizer holds it."""
    return _finalized(body) or (body.get("spec") or {}).get("deletionPolicy") != "RemoveNodes"


async def _one_pass(
    runtime: Runtime,
    loop: asyncio.AbstractEventLoop,
    body: kopf.Body,
    state: ObjectState,
    key: tuple[str, str],
    deleting: bool = False,
) -> float:
    outcome = await _run_pass(runtime, loop, body, state, key, deleting)
    return 60.0 if outcome is None else outcome.requeue_after


async def _run_pass(
    runtime: Runtime,
    loop: asyncio.AbstractEventLoop,
    body: kopf.Body,
    state: ObjectState,
    key: tuple[str, str],
    deleting: bool,
) -> Outcome | None:
    """One pass and its status write (a compare-and-swap); None when the object is gone."""
    snapshot = _snapshot(body)
    try:
        outcome = await loop.run_in_executor(
            runtime.passes, functools.partial(runtime.reconciler.run, snapshot, state, deleting=deleting)
        )
        if outcome.base_status is not None:
            state.wrote(outcome.base_status, outcome.resource_version, outcome.base_body)
        if outcome.status_patch:
            written = await loop.run_in_executor(
                runtime.passes,
                runtime.kube.patch_status,
                key[0],
                key[1],
                outcome.status_patch,
                outcome.resource_version,
            )
            state.wrote(
                written.get("status") or {}, str(written["metadata"].get("resourceVersion") or "") or None, written
            )
        if state.problems_seen is not None:  # the pass's status landed: its Events are posted below
            state.last_problems, state.problems_seen = state.problems_seen, None
    except errors.KubeNotFound:
        return None  # deleted meanwhile; the daemon is being stopped
    except errors.KubeConflict:
        log.info("Status changed meanwhile namespace=%s name=%s; observing again", *key)
        state.forget()
        return Outcome({}, [], 0.1)
    except Exception as e:
        metrics.RECONCILES.labels("error").inc()
        metrics.RECONCILE_ERRORS.inc()
        if isinstance(e, errors.KubeError):  # the apiserver's answer says it all: no traceback
            log.warning("Reconcile failed namespace=%s name=%s error=%s", *key, e)
        else:
            log.exception("Reconcile failed namespace=%s name=%s", *key)
        state.forget()  # re-read status from the apiserver next time
        return Outcome({}, [], pacing.after_crash(state.pacing))
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        if event.type == "Warning":
            log.warning("%s namespace=%s name=%s: %s", event.reason, key[0], key[1], event.message)
        else:
            log.info("%s namespace=%s name=%s: %s", event.reason, key[0], key[1], event.message)
    metrics.RECONCILES.labels("ok").inc()
    metrics.CLUSTERS.set(
        *key, ready=outcome.ready, online=outcome.members_online, desired=len(body.spec.get("nodes") or [])
    )
    return outcome


def _track_secrets(
    runtime: Runtime, namespace: str, body: kopf.Body, wake: asyncio.Event, old: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    if not runtime.watch_secrets:
        return old
    new = {(namespace, n) for n in _secret_names(body)}
    for ref in old - new:
        runtime.secret_refs.get(ref, set()).discard(wake)
    for ref in new - old:
        runtime.secret_refs.setdefault(ref, set()).add(wake)
    return new


@kopf.on.event(*RESOURCE)
async def wake_on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Wake the loop when spec, the pause annotation or deletion changed, or when someone else
    changed status (not on our own status writes)."""
    finalized: asyncio.Event | None = memo.get("finalized")
    if finalized is not None and not finalized.is_set() and _finalized(body):
        finalized.set()
    signature = _signature(body)
    if memo.get("wake") is None:
        return
    if memo.get("signature") != signature:
        memo.signature = signature
        memo.wake.set()
        return
    lock: asyncio.Lock | None = memo.get("lock")
    if lock is not None and lock.locked():
        # A pass is in flight: this may be its own intent write, which it has not recorded yet
        # (an extra pass per stage at 1,000 clusters). Decided when the pass is over (recheck).
        memo.recheck = True
        return
    if _changed_by_others(body, memo.get("state")):
        memo.wake.set()


def _changed_by_others(body: kopf.Body, state: ObjectState | None) -> bool:
    """Whether the watch's copy shows a status someone else wrote (not one of this process's)."""
    version = body.metadata.get("resourceVersion")
    if state is None or state.last_status is None:
        return False
    if version == state.resource_version:
        state.caught_up(version)  # the last write's body, kept for the next pass, is not needed now
        return False
    theirs = body.get("status") or {}
    if state.is_own(version, theirs):  # one of our writes, delivered late (the watch lags under load)
        return False
    return status.owned(state.last_status) != status.owned(theirs)


def recheck(body: kopf.Body, memo: kopf.Memo) -> None:
    """After a pass: the watch events that came during it, judged now that its writes are known."""
    if memo.pop("recheck", False) and _changed_by_others(body, memo.get("state")):
        memo.wake.set()


async def wake_on_secret(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    runtime.kube.forget_secret(str(body.metadata.namespace), str(body.metadata.name))
    for wake in runtime.secret_refs.get((str(body.metadata.namespace), str(body.metadata.name)), ()):
        wake.set()


def register_secret_watch() -> None:
    """Only where asked (namespaced mode by default): a cluster-wide Secret watch is costly."""
    kopf.on.event("v1", "secrets")(wake_on_secret)
    kopf.on.event("v1", "configmaps")(wake_on_secret)


@kopf.on.delete(*RESOURCE, field="spec.deletionPolicy", value="RemoveNodes")
async def delete(body: kopf.Body, memo: kopf.Memo, retry: int, runtime: datetime.timedelta, **_: Any) -> None:
    """deletionPolicy RemoveNodes: passes of the object's loop that plan its removals (the
    planner's rules, the executor's writes), one removal per call, after any pass in flight.

    Only RemoveNodes objects match. kopf tracks every object a change handler matches: a diff-base
    annotation written at creation, then up to 5 s of waiting for its own patch to come back on
    each event. Under Orphan (the default) a deletion needs no work, so those objects skip all
    of that; the daemon's finalizer still keeps them until their loop has stopped."""
    shared: Runtime = memo.runtime
    loop = asyncio.get_running_loop()
    key = (str(body.metadata.namespace), str(body.metadata.name))
    while not shared.claims(key):  # only the leader (of its shard) removes nodes; the others wait
        try:
            await loop.run_in_executor(shared.passes, shared.kube.cluster, *key)
        except errors.KubeNotFound:
            return
        await shared.next_change(timeout=1.0)
    state: ObjectState = memo.get("state") or ObjectState()
    lock: asyncio.Lock = memo.get("lock") or asyncio.Lock()
    memo.state, memo.lock = state, lock
    async with lock:
        outcome = await _run_pass(shared, loop, body, state, key, deleting=True)
    if outcome is None:
        return
    if outcome.finished is not None:
        shared.reconciler.forget(key)
        kopf.event(body, type="Normal", reason="Deleted", message=outcome.finished)
        return
    message = "; ".join(e.message for e in outcome.events) or "removing nodes"
    if runtime.total_seconds() > shared.delete_timeout:  # never hold the finalizer forever
        kopf.event(body, type="Warning", reason="DeleteGaveUp", message=f"Released without finishing: {message}")
        log.warning("Deletion gave up namespace=%s name=%s: %s", *key, message)
        return
    raise kopf.TemporaryError(message, delay=max(0.1, min(outcome.requeue_after, 0.5 if retry < 20 else 5.0)))


@kopf.on.probe(id="reconcile_age", errors=kopf.ErrorsMode.PERMANENT, timeout=5)
def reconcile_age(memo: kopf.Memo, **_: Any) -> float:
    """Seconds since the stalest object's last pass; raises (liveness fails) when passes stall."""
    runtime: Runtime = memo.runtime
    if not runtime.last_pass:
        return 0.0
    age = time.monotonic() - min(runtime.last_pass.values())
    if age > runtime.stall_after:
        raise RuntimeError(f"reconcile passes stalled for {age:.0f}s")
    return round(age, 3)


# -- how kopf runs (the CLI builds the Runtime and calls `run`) ------------------------------


def configure_logging(debug: bool, quiet: bool, json_format: bool) -> None:
    """kopf's log format and verbosity; kopf logs every event handler call at INFO, ours log what matters."""
    kopf.configure(
        debug=debug,
        verbose=debug,
        quiet=quiet,
        log_format=kopf.LogFormat.JSON if json_format else kopf.LogFormat.FULL,
        log_prefix=not json_format,
    )
    if not debug:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


@dataclass(frozen=True)
class RunOptions:
    """What the command line says about kopf: scope, peering and the liveness endpoint."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    peering: str | None = None  # None: standalone
    priority: int = 0
    peering_lifetime: int = 60
    liveness: str | None = None


def run(
    runtime: Runtime,
    options: RunOptions,
    started: Callable[[], None] = lambda: None,
    watching: Callable[[], None] = lambda: None,
    stop_flag: asyncio.Event | None = None,
) -> None:
    """Run kopf until it stops. In kopf's loop: `started` when kopf starts (an exception stops
    it), `watching` once kopf watches ManagerClusters (the election)."""
    insights = Insights()  # what kopf's scans found: until_watched reads it
    kopf.run(
        clusterwide=not options.namespaces,
        namespaces=list(options.namespaces),
        standalone=options.peering is None,
        peering_name=options.peering,
        priority=options.priority,
        liveness_endpoint=options.liveness,
        memo=kopf.Memo(runtime=runtime, options=options, started=started, watching=watching, insights=insights),
        stop_flag=stop_flag,
        insights=insights,
    )


class SlimDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base (the essence it compares on every watch event), built from what it keeps.

    kopf deep-copies the whole body and then drops the status and the system metadata; a
    ManagerCluster's status (nodes, conditions) is most of its body, and that copy was 3.5% of the
    operator's CPU while 1,000 clusters formed (py-spy). Here the status and the metadata kopf
    drops are left out before kopf's own build runs, so the essence is the same as kopf's (what
    the annotation holds stays comparable across versions); extra fields are picked from the whole
    body, as kopf does."""

    _META = ("labels", "annotations", "ownerReferences")  # what kopf keeps, and what its keys read

    def build(self, *, body: kopf.Body, extra_fields: Iterable[dicts.FieldSpec] | None = None) -> kopf.BodyEssence:
        meta = body.get("metadata") or {}
        slim = {k: v for k, v in body.items() if k not in ("status", "metadata")}
        slim["metadata"] = {k: meta[k] for k in self._META if k in meta}
        essence = super().build(body=kopf.Body(cast(kopf.RawBody, slim)), extra_fields=None)
        if extra_fields:
            dicts.cherrypick(src=body, dst=cast(dict[str, Any], essence), fields=extra_fields, picker=copy.deepcopy)
            self.remove_empty_stanzas(essence)
        return essence


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    options: RunOptions = memo.options
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="cloudify.co")
    settings.persistence.diffbase_storage = SlimDiffBase(prefix="cloudify.co", key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # kopf's own events: only problems
    settings.execution.max_workers = 4  # kopf's sync handlers are tiny; passes have their own pool
    settings.networking.request_timeout = 30
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # kopf keeps a worker per object for this long after the object's last watch event, and the
    # worker holds that event's body meanwhile. When the watch catches up after a burst (1,000
    # clusters forming), hundreds of objects get an event within a second: at kopf's default
    # of 5 s (and still at 0.5 s) about 600-900 bodies stayed alive at once. A worker per
    # event costs one task.
    settings.queueing.idle_timeout = 0.1
    settings.peering.standalone = options.peering is None
    if options.peering:
        settings.peering.name = options.peering
        settings.peering.priority = options.priority
        settings.peering.lifetime = options.peering_lifetime
        settings.peering.clusterwide = not options.namespaces
        settings.peering.mandatory = True
    try:
        memo.started()  # the metrics server
    except OSError as e:
        # kopf retries a failed start-up activity every 60 s, forever: the process lived on,
        # serving nothing and never starting its election. A permanent error stops the operator.
        raise kopf.PermanentError(f"cannot serve metrics: {e}") from None
    # kopf scans the apiserver's resources once, right after this handler: wait until the
    # apiserver serves what that scan needs, then (in a task, as the scan starts only after this
    # handler) until kopf watches ManagerClusters. The election starts only then (memo.watching),
    # so no process leads while it serves nothing.
    await until_served(memo.runtime.kube)
    memo.watched = asyncio.create_task(_when_watched(memo, settings), name="until watched")


async def _when_watched(memo: kopf.Memo, settings: kopf.OperatorSettings) -> None:
    await until_watched(memo.insights, memo.runtime.kube, functools.partial(_rescan, memo.insights, settings))
    try:
        memo.watching()
    except Exception:  # in a task: said here, or nowhere
        log.exception("Starting the election failed")
        raise


def watches(insights: Insights) -> bool:
    """True once kopf's scans have found the ManagerCluster resource, so kopf watches it."""
    return any(r.group == GROUP and r.plural == PLURAL for r in insights.watched_resources)


async def _rescan(insights: Insights, settings: kopf.OperatorSettings) -> None:
    """Scan our group again, as kopf itself does when one of its CRDs changes."""
    event = {"type": "MODIFIED", "object": {"spec": {"group": GROUP}}}
    await observation.process_discovered_resource_event(
        raw_event=event,  # type: ignore[arg-type]
        settings=settings,
        registry=kopf.get_default_registry(),
        insights=insights,
    )


async def until_watched(
    insights: Insights,
    kube: Kube,
    rescan: Callable[[], Any],
    first: float = 0.2,
    longest: float = 2.0,
) -> None:
    """After kopf's start-up scan: until kopf watches ManagerClusters. An apiserver that restarts
    between until_served and that scan makes the scan miss our CRD ("Unresolved resources cannot
    be served"), and kopf scans again only when a CRD changes: it would serve nothing until
    restarted. While the apiserver serves the resource and kopf does not watch it, scan again."""
    await insights.ready_resources.wait()
    loop = asyncio.get_running_loop()
    delay, said = first, False
    while not watches(insights):
        try:
            served = await loop.run_in_executor(None, kube.serves_managerclusters)
        except errors.KubeError:
            served = False
        if served:
            log.warning("kopf's start-up scan missed %s.%s (apiserver restarting): scanning again", PLURAL, GROUP)
            try:
                await rescan()
            except Exception as e:  # kopf retries its requests; a scan that still fails is tried again
                log.warning("Scanning for %s.%s failed: %s", PLURAL, GROUP, e)
        elif not said:
            log.warning("Waiting for the apiserver to serve %s.%s before leading", PLURAL, GROUP)
            said = True
        if watches(insights):
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, longest)
    log.info("kopf watches %s.%s", PLURAL, GROUP)


async def until_served(kube: Kube, first: float = 0.2, longest: float = 2.0) -> None:
    """Wait until the apiserver serves what kopf's start-up scan needs (Kube.unserved)."""
    loop = asyncio.get_running_loop()
    delay, said = first, None
    while True:
        try:
            missing = await loop.run_in_executor(None, kube.unserved)
        except errors.KubeError as e:
            missing = f"discovery ({e})"
        if missing is None:
            if said is not None:
                log.info("The apiserver serves what kopf needs now")
            return
        if missing != said:
            log.warning("Waiting for the apiserver to serve %s before watching", missing)
            said = missing
        await asyncio.sleep(delay)
        delay = min(delay * 2, longest)
