"""The alert rules and the dashboard: promtool's unit tests of every alert, the copies in the chart
and the kustomize component equal to the one source, and every dashboard query valid PromQL that
names only metrics the operator exports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from clusterop import metrics

from .tools import ALERTS, DASHBOARD, REPO, tool

sys.path.insert(0, str(REPO / "hack" / "monitoring"))
import generate

HERE = Path(__file__).parent


def test_promtool_unit_tests_of_every_alert() -> None:
    r = subprocess.run(
        [tool("promtool"), "test", "rules", "alerts_test.yaml"], cwd=HERE, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    tested = set(re.findall(r"alertname: (\w+)", (HERE / "alerts_test.yaml").read_text()))
    shipped = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert tested == shipped  # no alert without a unit test


def test_the_copies_are_the_one_source(tmp_path: Path) -> None:
    for path, text in generate.outputs().items():
        assert path.read_text() == text, f"{path} is out of date: run `make manifests`"
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    from deploy.deploytools import helm_binary

    rendered = subprocess.run(
        [
            helm_binary(),
            "template",
            "r",
            str(REPO / "charts" / "cloudify-cluster-operator"),
            "--set",
            "monitoring.serviceMonitor.enabled=true",
            "--set",
            "monitoring.prometheusRule.enabled=true",
            "--set",
            "monitoring.dashboard.enabled=true",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    chart = {d["kind"]: d for d in yaml.safe_load_all(rendered) if d}
    kustomized = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "deploy" / "monitoring")], capture_output=True, text=True, check=True
    ).stdout
    component = {d["kind"]: d for d in yaml.safe_load_all(kustomized) if d}
    for objs in (chart, component):
        assert objs["PrometheusRule"]["spec"]["groups"] == groups
        dashboard = next(iter(objs["ConfigMap"]["data"].values()))
        assert json.loads(dashboard) == json.loads(DASHBOARD.read_text())
        assert objs["ConfigMap"]["metadata"]["labels"]["grafana_dashboard"] == "1"
        relabel = objs["ServiceMonitor"]["spec"]["endpoints"][0]["relabelings"]
        assert {"action": "replace", "targetLabel": "job", "replacement": "cloudify-cluster-operator"} in relabel
    off = subprocess.run(
        [helm_binary(), "template", "r", str(REPO / "charts" / "cloudify-cluster-operator")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "monitoring.coreos.com" not in off and "grafana_dashboard" not in off  # off by default


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def exported_metric_names() -> set[str]:
    """The metric names a scrape of the operator shows: its metrics endpoint's exposition
    (prometheus_client's registry and the per-cluster gauges), read by Prometheus's text parser."""
    names = {"up"}  # Prometheus's own, per scrape target
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name.startswith("clusterop_"):
            names.add(family.name)
            names.update(s.name for s in family.samples)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "and", "or", "unless", "group_left", "group_right", "bool"}


def names_in(expr: str) -> set[str]:
    """Metric names of a query: identifiers that are neither functions, keywords, label names
    (inside {...} or by (...)) nor durations."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    found = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare))
    return {n for n in found if n not in PROMQL_WORDS}


def test_every_dashboard_query_parses_and_names_an_exported_metric(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": q} for i, q in enumerate(queries)]}
        ]
    }
    (tmp_path / "dashboard_rules.yaml").write_text(yaml.safe_dump(rules))
    r = subprocess.run(
        [tool("promtool"), "check", "rules", "dashboard_rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    exported = exported_metric_names()
    for q in queries:
        used = names_in(q)
        assert used, q
        assert used <= exported, f"{q} names {used - exported}, which the operator does not export"
    alert_exprs = [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    for q in alert_exprs:
        assert names_in(q) <= exported, q


def test_the_name_check_catches_a_misspelt_metric() -> None:
    assert names_in("sum by (le) (rate(clusterop_reconcile_duration_seconds_bucket[5m]))") == {
        "clusterop_reconcile_duration_seconds_bucket"
    }
    assert not names_in("rate(clusterop_reconcile_eror_total[5m])") <= exported_metric_names()
