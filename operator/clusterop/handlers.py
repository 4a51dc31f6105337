"""The only kopf-aware module: registration, settings, and translation to kopf.

One reconcile loop per ManagerCluster, as a kopf daemon: it runs a pass (in a worker thread),
writes the status diff, posts events, then sleeps for as long as the pass asked, or until the
object or a Secret it references changes. Only that loop talks to managers, so passes of one
object are serialized by construction. Nothing here writes `spec`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf

from . import metrics
from .kube import Kube, NotFoundError
from .model import GROUP, PAUSE_ANNOTATION, PLURAL, VERSION
from .reconciler import ObjectState, Reconciler

log = logging.getLogger("clusterop.handlers")
RESOURCE = (GROUP, VERSION, PLURAL)


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
    state = ObjectState()
    refs: set[tuple[str, str]] = set()
    try:
        while not stopped and not body.metadata.get("deletionTimestamp"):
            wake.clear()
            refs = _track_secrets(runtime, key[0], body, wake, refs)
            started = time.monotonic()
            delay = await _one_pass(runtime, loop, body, state, key)
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
        metrics.forget(*key)


async def _one_pass(
    runtime: Runtime, loop: asyncio.AbstractEventLoop, body: kopf.Body, state: ObjectState, key: tuple[str, str]
) -> float:
    snapshot = _snapshot(body)
    try:
        outcome = await loop.run_in_executor(runtime.passes, runtime.reconciler.run, snapshot, state)
        if outcome.base_status is not None:
            state.last_status = outcome.base_status
        if outcome.status_patch:
            written = await loop.run_in_executor(
                runtime.passes, runtime.kube.patch_status, key[0], key[1], outcome.status_patch
            )
            state.last_status = dict(written.get("status") or {})
        elif state.last_status is None:
            state.last_status = dict(snapshot["status"])
    except NotFoundError:
        return 60.0  # deleted meanwhile; the daemon is being stopped
    except Exception:
        metrics.RECONCILES.labels("error").inc()
        metrics.RECONCILE_ERRORS.inc()
        log.exception("Reconcile failed namespace=%s name=%s", *key)
        state.last_status = None  # re-read status from the apiserver next time
        state.streak += 1
        return float(min(60.0, 2 ** min(state.streak, 6)))
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        if event.type == "Warning":
            log.warning("%s namespace=%s name=%s: %s", event.reason, key[0], key[1], event.message)
        else:
            log.info("%s namespace=%s name=%s: %s", event.reason, key[0], key[1], event.message)
    metrics.RECONCILES.labels("ok").inc()
    metrics.CLUSTER_READY.labels(*key).set(1 if outcome.ready else 0)
    metrics.CLUSTER_NODES_ONLINE.labels(*key).set(outcome.members_online)
    metrics.CLUSTER_NODES_DESIRED.labels(*key).set(len(body.spec.get("nodes") or []))
    return outcome.requeue_after


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
    """Wake the loop when spec, the pause annotation or deletion changed (not on our status writes)."""
    signature = _signature(body)
    if memo.get("signature") != signature and memo.get("wake") is not None:
        memo.signature = signature
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
    """deletionPolicy RemoveNodes: remove every member but the last, one per call.

    Only RemoveNodes objects match. kopf tracks every object a change handler matches: a diff-base
    annotation written at creation, then up to 5 s of waiting for its own patch to come back on
    each event. Under Orphan (the default) a deletion needs no work, so those objects skip all
    of that; the daemon's finalizer still keeps them until their loop has stopped."""
    shared: Runtime = memo.runtime
    loop = asyncio.get_running_loop()
    snapshot = _snapshot(body)
    done, message = await loop.run_in_executor(shared.passes, shared.reconciler.dissolve, snapshot)
    if done:
        kopf.event(body, type="Normal", reason="Deleted", message=message)
        return
    if runtime.total_seconds() > shared.delete_timeout:  # never hold the finalizer forever
        kopf.event(body, type="Warning", reason="DeleteGaveUp", message=f"Released without finishing: {message}")
        log.warning("Deletion gave up namespace=%s name=%s: %s", body.metadata.namespace, body.metadata.name, message)
        return
    raise kopf.TemporaryError(message, delay=0.5 if retry < 20 else 5.0)


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
