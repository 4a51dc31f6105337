"""handlers.until_watched: the election waits until kopf watches ManagerClusters, and a start-up
scan that missed them (the apiserver restarting at that instant) is done again, only while the
apiserver serves them. And the loops' claims: a loop waiting for its object's Lease (or shard) wakes
on the pulse of a change."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kopf._cogs.structs.references import Insights

from clusterop import errors
from clusterop.handlers import until_watched, watches

OURS = kopf.Resource("cloudify.co", "v1alpha1", "managerclusters")


class Discovery:
    def __init__(self, answers: list[bool | Exception]) -> None:
        self.answers, self.asked = answers, 0

    def serves_managerclusters(self) -> bool:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(insights: Insights, kube: Discovery, rescan: object) -> None:
    asyncio.run(asyncio.wait_for(until_watched(insights, kube, rescan, first=0.01, longest=0.02), timeout=5))  # type: ignore[arg-type]


def test_a_scan_that_found_them_starts_at_once() -> None:
    insights = Insights(watched_resources={OURS})
    insights.ready_resources.set()
    scans: list[int] = []

    async def rescan() -> None:
        scans.append(1)

    kube = Discovery([True])
    run(insights, kube, rescan)
    assert scans == [] and kube.asked == 0


def test_a_missed_scan_is_done_again_once_the_apiserver_serves_them(caplog: pytest.LogCaptureFixture) -> None:
    insights = Insights(watched_resources={kopf.Resource("", "v1", "secrets")})
    insights.ready_resources.set()
    scans: list[int] = []

    async def rescan() -> None:
        scans.append(1)
        if len(scans) == 2:  # the first rescan still met a half-started apiserver
            insights.watched_resources.add(OURS)

    kube = Discovery([errors.KubeUnreachable("refused"), False, False, True])
    run(insights, kube, rescan)
    assert watches(insights)
    assert len(scans) == 2  # never while the apiserver did not serve them
    assert kube.asked == 5
    assert "scanning again" in caplog.text and "Waiting for the apiserver to serve" in caplog.text


def test_it_waits_for_kopfs_own_scan_first() -> None:
    insights = Insights(watched_resources={OURS})

    async def main() -> bool:
        task = asyncio.create_task(until_watched(insights, Discovery([True]), lambda: None))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        early = task.done()
        insights.ready_resources.set()
        await asyncio.wait_for(task, timeout=5)
        return early

    assert asyncio.run(main()) is False


# -- the loops' claim: who runs an object's passes (handlers.Runtime) -----------------------------


class Claims:
    def __init__(self) -> None:
        self.mine: set[tuple[str, str]] = set()

    def claims(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.mine


def test_a_loop_waiting_for_its_claim_wakes_on_the_pulse() -> None:
    from typing import cast

    from clusterop.handlers import Runtime

    elector = Claims()
    runtime = Runtime(reconciler=None, kube=None, passes=None, elector=cast(Any, elector))  # type: ignore[arg-type]
    key = ("ns", "mc")
    assert not runtime.claims(key)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        waiter = asyncio.create_task(runtime.wait_claimed(key))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        runtime.pulse()  # a pulse for a change elsewhere: still not ours, still waiting
        await asyncio.sleep(0.05)
        assert not waiter.done()
        started = loop.time()
        elector.mine.add(key)
        runtime.pulse()
        assert await asyncio.wait_for(waiter, timeout=5)
        return loop.time() - started

    assert asyncio.run(main()) < 1.0  # woken by the pulse, not by its 30 s timeout
    assert Runtime(reconciler=None, kube=None, passes=None).claims(key)  # type: ignore[arg-type]


def test_a_loop_waiting_for_its_claim_ends_at_once_when_its_daemon_is_stopped() -> None:
    """kopf stops an object's daemon on deletion: a loop waiting for its claim ends then, not at
    its 30 s timeout, nor by kopf's cancellation 3 s later ("cancelled. Will escalate")."""
    from typing import cast

    from clusterop.handlers import Runtime

    class Stopped:
        def __init__(self) -> None:
            self.event = asyncio.Event()

        def __bool__(self) -> bool:
            return self.event.is_set()

        def wait(self) -> Any:
            return self.event.wait()

    runtime = Runtime(reconciler=None, kube=None, passes=None, elector=cast(Any, Claims()))  # type: ignore[arg-type]

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        stopped = Stopped()
        waiter = asyncio.create_task(runtime.wait_claimed(("ns", "mc"), stopped))
        await asyncio.sleep(0.05)
        started = loop.time()
        stopped.event.set()
        return await asyncio.wait_for(waiter, timeout=5), loop.time() - started

    claimed, took = asyncio.run(main())
    assert claimed is False and took < 1.0
