"""When each ManagerCluster of a namespace first became Ready (and observedGeneration current)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from clusterop_dev.harness import GROUP, PLURAL, VERSION


def is_ready(obj: dict[str, Any]) -> bool:
    st = obj.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    return bool(
        ready and ready.get("status") == "True" and st.get("observedGeneration") == obj["metadata"].get("generation")
    )


class ReadyWatch:
    """A watch on the ManagerClusters of one namespace: when each first became Ready."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.ns = namespace
        self.ready_at: dict[str, float] = {}
        self.events = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._relist()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self._thread.start()

    def _relist(self) -> None:
        listing = cast(dict[str, Any], self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL))
        self._rv = str(listing["metadata"]["resourceVersion"])
        for obj in listing["items"]:
            self._see(obj)

    def _see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name not in self.ready_at and is_ready(obj):
            with self._cond:
                self.ready_at[name] = time.monotonic()
                self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, self.ns, PLURAL,
                    resource_version=self._rv, timeout_seconds=300, allow_watch_bookmarks=True,
                ):  # fmt: skip
                    obj = event["object"]
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.events += 1
                        self._see(obj)
                    if self._stop.is_set():
                        return
            except ApiException as e:
                if e.status == 410:  # expired: start over from a fresh list
                    self._relist()
                elif not self._stop.is_set():
                    time.sleep(0.2)
            except Exception:
                if not self._stop.is_set():
                    time.sleep(0.2)

    def wait(self, names: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(n in self.ready_at for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        self._stop.set()
        self._watch.stop()  # type: ignore[no-untyped-call]
