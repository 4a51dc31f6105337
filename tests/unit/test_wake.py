"""When a watch event wakes a cluster's loop (handlers.wake_on_change): a change of spec, or
someone else changing status; never this process's own status writes, even delivered late."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from clusterop.handlers import _signature, wake_on_change
from clusterop.reconciler import ObjectState


def body(version: str, st: dict[str, Any], generation: int = 1) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "cloudify.co/v1alpha1",
            "kind": "ManagerCluster",
            "metadata": {"name": "mc", "namespace": "ns", "resourceVersion": version, "generation": generation},
            "spec": {"nodes": [{"name": "a"}]},
            "status": st,
        }
    )


def woken(memo: kopf.Memo, event: kopf.Body) -> bool:
    memo.wake.clear()
    asyncio.run(wake_on_change(body=event, memo=memo))
    return bool(memo.wake.is_set())


def memo_after_writes() -> kopf.Memo:
    state = ObjectState()
    memo = kopf.Memo(wake=asyncio.Event(), signature=_signature(body("1", {})), state=state)
    state.wrote({"phase": "Bootstrapping", "pending": {"op": "bootstrap"}}, "2")
    state.wrote({"phase": "Joining", "pending": {"op": "join"}}, "3")
    return memo


def test_an_own_write_delivered_after_a_later_one_does_not_wake() -> None:
    """Under load the watch lags: the event of the pass-before-last's write arrives after the
    last write; it differs from the last status, but it is ours (an extra pass per event)."""
    memo = memo_after_writes()
    assert not woken(memo, body("2", {"phase": "Bootstrapping", "pending": {"op": "bootstrap"}}))
    assert not woken(memo, body("3", {"phase": "Joining", "pending": {"op": "join"}}))
    # kopf's own patch (its finalizer) on top of an older status of ours: not someone else either
    assert not woken(memo, body("4", {"phase": "Bootstrapping", "pending": {"op": "bootstrap"}}))


def test_someone_elses_status_and_a_spec_change_wake() -> None:
    memo = memo_after_writes()
    assert woken(memo, body("5", {}))  # status cleared by someone
    assert woken(memo, body("6", {"phase": "Ready"}))  # or edited
    memo = memo_after_writes()
    assert woken(memo, body("7", {"phase": "Joining", "pending": {"op": "join"}}, generation=2))  # spec edited


def test_a_new_objects_first_pass_waits_for_kopfs_finalizer_event() -> None:
    """The loop's first pass starts once the watch shows kopf's finalizer (its patch would
    otherwise win the intent's compare-and-swap), not before, and without polling."""
    from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter

    from clusterop.handlers import FINALIZER, _until_finalized

    async def scenario() -> tuple[bool, bool]:
        memo = kopf.Memo()
        new = body("1", {})
        waiting = asyncio.ensure_future(_until_finalized(new, memo, stopped=AsyncFlagWaiter(FlagSetter()), timeout=10))
        await asyncio.sleep(0.05)
        before = waiting.done()
        patched = body("2", {})
        patched["metadata"]["finalizers"] = [FINALIZER]
        await wake_on_change(body=kopf.Body(dict(patched)), memo=memo)
        await asyncio.wait_for(waiting, timeout=1)
        return before, waiting.done()

    assert asyncio.run(scenario()) == (False, True)


def test_events_during_a_pass_are_judged_after_it() -> None:
    """The event of a pass's own intent write can arrive before the pass has recorded that
    write: it is judged once the pass is over (an extra pass per stage at 1,000 clusters), and
    someone else's change in that time still wakes the loop then."""
    from clusterop.handlers import recheck

    async def scenario(theirs: bool) -> tuple[bool, bool]:
        memo = memo_after_writes()
        memo.lock = asyncio.Lock()
        async with memo.lock:  # the pass in flight writes its intent (version 4) ...
            intent = {"phase": "Joining", "pending": {"op": "join", "node": "c"}}
            event = body("4", {"phase": "Ready"} if theirs else intent)
            memo.wake.clear()
            await wake_on_change(body=event, memo=memo)
            during = memo.wake.is_set()
            if not theirs:
                memo.state.wrote(intent, "4")  # ... and records it as it ends
        recheck(event, memo)
        return during, memo.wake.is_set()

    assert asyncio.run(scenario(theirs=False)) == (False, False)
    assert asyncio.run(scenario(theirs=True)) == (False, True)


def _loop_passes(policy: str, finalize_after: float | None, watch: float = 0.4) -> tuple[int, int]:
    """Runs `reconcile_loop` on a new object with no finalizer, its passes recorded by a fake
    reconciler; kopf's finalizer arrives on the watch after `finalize_after` s (None: never).
    Returns the passes run before the finalizer and in all, within `watch` s."""
    from concurrent.futures import ThreadPoolExecutor
    from unittest import mock

    from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter

    from clusterop import handlers
    from clusterop.reconciler import Outcome

    runs: list[float] = []

    class Reconciler:
        def run(self, snapshot: Any, state: Any, deleting: bool = False) -> Outcome:
            runs.append(loop.time())
            return Outcome({}, [], 0.05)

        def forget(self, key: Any) -> None:
            pass

    async def scenario() -> tuple[int, int]:
        nonlocal loop
        loop = asyncio.get_running_loop()
        new = body("1", {})
        new["spec"]["deletionPolicy"] = policy
        memo = kopf.Memo()
        memo.runtime = handlers.Runtime(reconciler=Reconciler(), kube=None, passes=pool)  # type: ignore[arg-type]
        setter: FlagSetter[Any] = FlagSetter()
        task = asyncio.ensure_future(handlers.reconcile_loop(body=new, memo=memo, stopped=AsyncFlagWaiter(setter)))
        before = len(runs)
        if finalize_after is not None:
            await asyncio.sleep(finalize_after)
            before = len(runs)
            new["metadata"]["finalizers"] = [handlers.FINALIZER]  # kopf's patch, as the watch shows it
            await wake_on_change(body=new, memo=memo)
        await asyncio.sleep(watch)
        setter.set()
        memo.wake.set()
        await asyncio.wait_for(task, timeout=2)
        return before, len(runs)

    loop: asyncio.AbstractEventLoop
    with ThreadPoolExecutor(2) as pool, mock.patch.object(handlers, "FINALIZER_WAIT", 0.05):
        return asyncio.run(scenario())


def test_a_remove_nodes_object_runs_no_pass_until_kopfs_finalizer_is_on_it() -> None:
    """Deleted before kopf's finalizer is on it, a RemoveNodes object is gone without its
    removals: so no pass (no manager write) runs before then, however late the finalizer is.
    An Orphan object needs no finalizer for its deletion and goes on after the first wait."""
    before, total = _loop_passes("RemoveNodes", finalize_after=0.4)
    assert before == 0 and total >= 1, (before, total)
    assert _loop_passes("RemoveNodes", finalize_after=None) == (0, 0)
    before, _ = _loop_passes("Orphan", finalize_after=0.4)
    assert before >= 1
