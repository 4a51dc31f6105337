"""The metrics endpoint: prometheus_client's registry plus the per-cluster gauges, which are
rendered when a cluster's values change and joined on a scrape (clusterop.metrics)."""

from __future__ import annotations

import requests
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from clusterop import metrics
from clusterop.metrics import ClusterGauges
from clusterop_dev.testkit import free_port


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{family: {sorted labels: value}} as Prometheus's text parser reads them."""
    return {
        f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
    }


def test_each_cluster_has_its_three_gauges_under_the_documented_names():
    g = ClusterGauges()
    g.set("ns-a", "one", ready=True, online=3, desired=3)
    g.set("ns-b", "two", ready=False, online=1, desired=5)
    families = _families(g.render().decode())
    one, two = (("name", "one"), ("namespace", "ns-a")), (("name", "two"), ("namespace", "ns-b"))
    assert families["clusterop_cluster_ready"] == {one: 1.0, two: 0.0}
    assert families["clusterop_cluster_nodes_online"] == {one: 3.0, two: 1.0}
    assert families["clusterop_cluster_nodes_desired"] == {one: 3.0, two: 5.0}
    text = g.render().decode()
    assert "# TYPE clusterop_cluster_ready gauge" in text
    assert "# HELP clusterop_cluster_nodes_desired Nodes in spec.nodes" in text


def test_a_change_replaces_the_cluster_lines_and_forget_drops_them():
    g = ClusterGauges()
    g.set("ns", "c", ready=False, online=1, desired=3)
    g.set("ns", "c", ready=True, online=3, desired=3)
    families = _families(g.render().decode())
    c = (("name", "c"), ("namespace", "ns"))
    assert [families[n] for n, _ in ClusterGauges.FAMILIES] == [{c: 1.0}, {c: 3.0}, {c: 3.0}]
    g.forget("ns", "c")
    g.forget("ns", "never-set")
    assert all(not samples for samples in _families(g.render().decode()).values())


def test_the_same_values_render_nothing_again():
    g = ClusterGauges()
    g.set("ns", "c", ready=True, online=3, desired=3)
    row = g._rows[("ns", "c")]
    g.set("ns", "c", ready=True, online=3, desired=3)
    assert g._rows[("ns", "c")] is row  # a steady pass renders no line


def test_label_values_are_escaped():
    g = ClusterGauges()
    g.set("ns", 'odd"name\\with\nbreak', ready=True, online=1, desired=1)
    (labels,) = _families(g.render().decode())["clusterop_cluster_ready"]
    assert dict(labels)["name"] == 'odd"name\\with\nbreak'


def test_the_endpoint_serves_the_registry_and_the_cluster_gauges_over_http():
    port = free_port()
    metrics.serve(port, "127.0.0.1")
    metrics.CLUSTERS.set("served-ns", "served", ready=True, online=2, desired=3)
    metrics.RECONCILES.labels("ok").inc()
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == CONTENT_TYPE_LATEST  # as prometheus_client serves it
        families = _families(answer.text)
        assert families["clusterop_cluster_nodes_online"][(("name", "served"), ("namespace", "served-ns"))] == 2.0
        assert families["clusterop_reconcile"][(("result", "ok"),)] >= 1.0  # prometheus_client's part
    finally:
        metrics.forget("served-ns", "served")
