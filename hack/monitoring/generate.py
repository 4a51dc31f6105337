"""`make manifests` (monitoring part): deploy/monitoring/alerts.yaml and dashboard.json are the
sources; the chart gets copies (files/), the kustomize component a PrometheusRule wrapping the
rules. tests/monitoring/test_manifests.py fails when these are out of date."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "deploy" / "monitoring"
CHART_FILES = REPO / "charts" / "cloudify-cluster-operator" / "files"


def prometheus_rule() -> str:
    groups = yaml.safe_load((SOURCE / "alerts.yaml").read_text())["groups"]
    body = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "cloudify-cluster-operator",
            "labels": {"app.kubernetes.io/name": "cloudify-cluster-operator"},
        },
        "spec": {"groups": groups},
    }
    head = "# Generated from alerts.yaml by `make manifests` (hack/monitoring/generate.py): do not edit.\n"
    return head + yaml.safe_dump(body, sort_keys=False, width=1000)


def outputs() -> dict[Path, str]:
    return {
        CHART_FILES / "alerts.yaml": (SOURCE / "alerts.yaml").read_text(),
        CHART_FILES / "dashboard.json": (SOURCE / "dashboard.json").read_text(),
        SOURCE / "prometheusrule.yaml": prometheus_rule(),
    }


def main() -> int:
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
