"""ClusterSpec.parse: the operator's own check of what the CRD should already have refused."""

from __future__ import annotations

from typing import Any

import pytest

from clusterop.errors import InvalidSpec
from clusterop.model import ClusterSpec, Pending


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nodes": [{"name": "n1", "hostIP": "127.1.0.1", "endpoint": "http://127.0.0.1:9001/prefix/"}],
        "encryptionKeySecretRef": {"name": "key"},
        "credentialsSecretRef": {"name": "admin"},
    }
    base.update(spec)
    return {"metadata": {"name": "c", "namespace": "ns", "generation": 3}, "spec": base}


def test_parses_defaults() -> None:
    s = ClusterSpec.parse(body())
    assert s.nodes[0].endpoint == "http://127.0.0.1:9001/prefix"
    assert s.key_ref.key == "encryptionKey"
    assert s.deletion_policy == "Orphan"
    assert not s.paused and s.generation == 3
    assert s.config_json == "{}"


def test_config_hash_ignores_key_order() -> None:
    a = ClusterSpec.parse(body(config={"a": 1, "b": {"c": 2, "d": 3}}))
    b = ClusterSpec.parse(body(config={"b": {"d": 3, "c": 2}, "a": 1}))
    assert a.config_hash == b.config_hash


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"nodes": []}, "at least one"),
        ({"nodes": [{"name": "n1", "hostIP": "x", "endpoint": "http://a"}]}, "not an IP address"),
        ({"nodes": [{"name": "n1", "hostIP": "127.0.0.1", "endpoint": "ftp://a"}]}, "http(s) URL"),
        ({"nodes": [{"name": "n1", "hostIP": "127.0.0.1", "endpoint": "http://u:p@a"}]}, "credentials"),
        ({"nodes": [{"name": "n1", "hostIP": "127.0.0.1", "endpoint": "http://a/?x=1"}]}, "query"),
        ({"nodes": [{"name": "bad name", "hostIP": "127.0.0.1", "endpoint": "http://a"}]}, "not a valid node name"),
        (
            {
                "nodes": [
                    {"name": "n1", "hostIP": "127.0.0.1", "endpoint": "http://a"},
                    {"name": "n2", "hostIP": "127.0.0.1", "endpoint": "http://b"},
                ]
            },
            "appears twice",
        ),
        ({"config": {"master": "n1"}}, "spec.config.master"),
        ({"config": [1]}, "object of settings"),
        ({"deletionPolicy": "Explode"}, "Orphan or RemoveNodes"),
        ({"encryptionKeySecretRef": {}}, "encryptionKeySecretRef.name"),
        ({"tls": {"caSecretRef": {"name": "a"}, "caConfigMapRef": {"name": "b"}}}, "not both"),
    ],
)
def test_invalid(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        ClusterSpec.parse(body(**spec))
    assert message in e.value.message


def test_pending_round_trips_through_status() -> None:
    p = Pending("join", "n2", "127.1.0.2", "http://x", 12.5, 2)
    assert Pending.from_status(p.to_status()) == p
    assert Pending.from_status(None) is None
    assert Pending.from_status({"op": "explode"}) is None
