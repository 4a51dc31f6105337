"""handlers.SlimDiffBase: the essence kopf compares on every watch event, built without copying
the status, and equal to kopf's own (the last-handled-configuration annotation stays comparable)."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf
import pytest

from clusterop.handlers import SlimDiffBase


class NoCopy(dict[str, Any]):
    """A status part that fails the test when deep-copied."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise AssertionError("the status was deep-copied")


def body(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cloudify.co/v1alpha1",
        "kind": "ManagerCluster",
        "metadata": {
            "name": "a",
            "namespace": "ns",
            "uid": "u-1",
            "resourceVersion": "17",
            "generation": 3,
            "finalizers": ["cloudify.co/cluster-protection"],
            "labels": {"team": "x"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "cloudify.co/last-handled-configuration": json.dumps({"spec": {"replicas": 1}}),
                "cloudify.co/reconcile_loop": "{}",
                "cloudify.co/paused": "true",
                "note": "kept",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "ownerReferences": [{"kind": "Thing", "name": "o", "uid": "u-0", "apiVersion": "v1"}],
        },
        "spec": {"deletionPolicy": "RemoveNodes", "nodes": [{"name": "n1", "address": "10.0.0.1"}]},
        "status": status,
    }


@pytest.mark.parametrize("extra", [None, set(), {"spec.deletionPolicy"}, {"status.phase"}, {"metadata.generation"}])
def test_the_essence_is_kopfs_own(extra: set[str] | None) -> None:
    raw = body({"phase": "Ready", "nodes": [{"name": "n1", "online": True}], "conditions": []})
    ours = SlimDiffBase(prefix="cloudify.co", key="last-handled-configuration")
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="cloudify.co", key="last-handled-configuration")
    b = kopf.Body(copy.deepcopy(raw))
    assert ours.build(body=b, extra_fields=extra) == kopfs.build(body=b, extra_fields=extra)


def test_the_status_is_not_copied_and_the_body_is_left_as_it_was() -> None:
    raw = body(NoCopy(phase="Ready", nodes=[{"name": "n1"}]))
    before = copy.deepcopy({k: v for k, v in raw.items() if k != "status"})
    essence = SlimDiffBase(prefix="cloudify.co", key="last-handled-configuration").build(body=kopf.Body(raw))
    assert essence["spec"] == raw["spec"] and "status" not in essence
    assert {k: v for k, v in raw.items() if k != "status"} == before
    with pytest.raises(AssertionError, match="deep-copied"):
        kopf.AnnotationsDiffBaseStorage(prefix="cloudify.co", key="last-handled-configuration").build(
            body=kopf.Body(raw)
        )
