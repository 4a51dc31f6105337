"""ClusterSpec.parse, field by field and refusal by refusal: every bad input gets its own exact
message (the user reads it in status), and every accepted one is kept as written."""

from __future__ import annotations

from typing import Any

import pytest

from clusterop.errors import InvalidSpec
from clusterop.model import MAX_NODES, PAUSE_ANNOTATION, ClusterSpec, Policy, canonical_json, config_hash, rfc3339

N1 = {"name": "n1", "hostIP": "127.1.0.1", "endpoint": "http://127.0.0.1:9001"}
N2 = {"name": "n2", "hostIP": "127.1.0.2", "endpoint": "https://m2.example:443/"}


def body(meta: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    full = {"nodes": [N1, N2], "encryptionKeySecretRef": {"name": "k"}, "credentialsSecretRef": {"name": "c"}}
    full.update(spec)
    return {"metadata": {"name": "mc", "namespace": "ns", **(meta or {})}, "spec": full}


def test_every_field_is_kept_as_written() -> None:
    s = ClusterSpec.parse(
        body(
            {"generation": 7, "annotations": {PAUSE_ANNOTATION: "TRUE"}},
            encryptionKeySecretRef={"name": "k", "key": "the-key", "generate": True},
            tenant="t1",
            tls={"caSecretRef": {"name": "ca"}, "insecureSkipVerify": True},
            config={"b": 2, "a": "é"},
            deletionPolicy="RemoveNodes",
            managementPolicies=["Join", "Observe"],
        )
    )
    assert [(n.name, n.host_ip, n.endpoint) for n in s.nodes] == [
        ("n1", "127.1.0.1", "http://127.0.0.1:9001"),
        ("n2", "127.1.0.2", "https://m2.example:443"),  # trailing slash dropped
    ]
    assert (s.key_ref.name, s.key_ref.key, s.generate_key) == ("k", "the-key", True)
    assert (s.credentials_secret, s.tenant, s.deletion_policy, s.paused, s.generation) == (
        "c",
        "t1",
        "RemoveNodes",
        True,
        7,
    )
    assert s.tls.ca_secret is not None and (s.tls.ca_secret.name, s.tls.ca_secret.key) == ("ca", "ca.crt")
    assert s.tls.ca_config_map is None and s.tls.insecure_skip_verify is True
    assert s.config_json == '{"a":"é","b":2}' and s.config_hash == config_hash('{"a":"é","b":2}')
    assert set(s.policies) == {"Join"}
    assert s.names == {"n1", "n2"}


def test_defaults() -> None:
    s = ClusterSpec.parse(body())
    assert (s.key_ref.key, s.generate_key, s.tenant, s.deletion_policy, s.paused, s.generation) == (
        "encryptionKey",
        False,
        None,
        "Orphan",
        False,
        0,
    )
    assert (s.tls.ca_secret, s.tls.ca_config_map, s.tls.insecure_skip_verify) == (None, None, False)
    assert s.config_json == "{}" and set(s.policies) == set(Policy)
    cm = ClusterSpec.parse(body(tls={"caConfigMapRef": {"name": "cm", "key": "bundle.pem"}})).tls.ca_config_map
    assert cm is not None and (cm.name, cm.key) == ("cm", "bundle.pem")
    assert ClusterSpec.parse(body({"annotations": {PAUSE_ANNOTATION: "false"}})).paused is False
    assert ClusterSpec.parse(body(managementPolicies=["*"])).policies == frozenset(Policy)
    assert ClusterSpec.parse(body(managementPolicies=["Observe"])).policies == frozenset()


def nodes(*raw: Any) -> dict[str, Any]:
    return body(nodes=list(raw))


@pytest.mark.parametrize(
    ("b", "message"),
    [
        (nodes(), "spec.nodes must name at least one manager"),
        (body(nodes="n1"), "spec.nodes must be a list"),
        (
            nodes(
                *(
                    {**N1, "name": f"n{i}", "hostIP": f"127.1.1.{i}", "endpoint": f"http://h{i}"}
                    for i in range(MAX_NODES + 1)
                )
            ),
            f"spec.nodes holds {MAX_NODES + 1} nodes; at most {MAX_NODES}",
        ),
        (nodes("n1"), "spec.nodes[0] must be an object with name, hostIP and endpoint"),
        (nodes(N1, {**N2, "name": "-bad"}), "spec.nodes[1].name '-bad' is not a valid node name"),
        (nodes({**N1, "hostIP": "1.2.3"}), "spec.nodes[0].hostIP '1.2.3' is not an IP address"),
        (nodes({**N1, "endpoint": "ftp://h"}), "spec.nodes[0].endpoint must be an http(s) URL"),
        (nodes({**N1, "endpoint": "http://"}), "spec.nodes[0].endpoint must be an http(s) URL"),
        (nodes({**N1, "endpoint": "http://u:p@h"}), "spec.nodes[0].endpoint must not carry credentials"),
        (nodes({**N1, "endpoint": "http://@h/"}), "spec.nodes[0].endpoint must not carry credentials"),
        (nodes({**N1, "endpoint": "http://h/?a=1"}), "spec.nodes[0].endpoint must not carry a query or fragment"),
        (nodes({**N1, "endpoint": "http://h/#x"}), "spec.nodes[0].endpoint must not carry a query or fragment"),
        (nodes({**N1, "endpoint": "http://h/?"}), "spec.nodes[0].endpoint must not carry a query or fragment"),
        (nodes(N1, {**N2, "name": "n1"}), "spec.nodes: name 'n1' appears twice"),
        (nodes(N1, {**N2, "hostIP": "127.1.0.1"}), "spec.nodes: hostIP '127.1.0.1' appears twice"),
        (
            nodes(N1, {**N2, "endpoint": "http://127.0.0.1:9001/"}),
            "spec.nodes: endpoint 'http://127.0.0.1:9001' appears twice",
        ),
        (body(encryptionKeySecretRef=None), "spec.encryptionKeySecretRef.name is required"),
        (body(encryptionKeySecretRef={"name": 5}), "spec.encryptionKeySecretRef.name is required"),
        (body(credentialsSecretRef="c"), "spec.credentialsSecretRef.name is required"),
        (body(credentialsSecretRef={"name": ""}), "spec.credentialsSecretRef.name is required"),
        (body(config=["a"]), "spec.config must be an object of settings"),
        (
            body(config={"master": "n1"}),
            "spec.config.master is not a setting: the cluster elects its active manager",
        ),
        (body(deletionPolicy="Delete"), "spec.deletionPolicy must be Orphan or RemoveNodes"),
        (body(tls="yes"), "spec.tls must be an object"),
        (body(tls={"caSecretRef": {"key": "x"}}), "spec.tls.caSecretRef.name is required"),
        (body(tls={"caConfigMapRef": "cm"}), "spec.tls.caConfigMapRef.name is required"),
        (
            body(tls={"caSecretRef": {"name": "a"}, "caConfigMapRef": {"name": "b"}}),
            "spec.tls: set caSecretRef or caConfigMapRef, not both",
        ),
        (body(managementPolicies="Join"), "spec.managementPolicies must be a list"),
        (body(managementPolicies=["*", "Join"]), "spec.managementPolicies: '*' stands alone"),
        (
            body(managementPolicies=["Join", "Fly"]),
            f"spec.managementPolicies: unknown policy 'Fly' (allowed: *, Observe, {', '.join(Policy)})",
        ),
    ],
)
def test_each_refusal_says_exactly_what_is_wrong(b: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        ClusterSpec.parse(b)
    assert (e.value.reason, e.value.message, str(e.value)) == ("InvalidSpec", message, message)


def test_a_body_without_spec_or_metadata_is_refused_not_crashed() -> None:
    with pytest.raises(InvalidSpec, match="at least one manager"):
        ClusterSpec.parse({})


def test_helpers_render_stable_text() -> None:
    assert rfc3339(1796119201.123456) == "2026-12-01T10:00:01.123Z"
    assert canonical_json({"b": [1, {"d": 1, "c": 2}], "a": None}) == '{"a":null,"b":[1,{"c":2,"d":1}]}'
    assert len(config_hash("{}")) == 16 and config_hash("{}") != config_hash('{"a":1}')


def test_exactly_the_most_nodes_is_accepted() -> None:
    most = [{"name": f"n{i}", "hostIP": f"127.1.1.{i}", "endpoint": f"http://h{i}"} for i in range(MAX_NODES)]
    assert len(ClusterSpec.parse(nodes(*most)).nodes) == MAX_NODES
