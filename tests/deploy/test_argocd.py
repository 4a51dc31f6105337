"""deploy/argocd/ run by Argo CD's own engine: `argocd admin settings resource-overrides` (health,
list-actions, run-action) of the pinned Argo CD (`make argocd`) reads the generated
deploy/argocd/argocd-cm.yaml, so a stale generated file fails as surely as a wrong script, on every
case of health_test.yaml and actions/action_test.yaml (the format of Argo CD's
resource_customizations); plus the manifests beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from argocd.argocdtools import Overrides, argocd_binary

from .deploytools import REPO, argocd_cm_text, kustomize, load_all

ARGOCD = REPO / "deploy" / "argocd"
HEALTH_TESTS = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]
ACTION_TESTS = yaml.safe_load((ARGOCD / "actions" / "action_test.yaml").read_text())["actionTests"]


@pytest.fixture(scope="module")
def overrides() -> Overrides:
    """Argo CD's engine reading deploy/argocd/argocd-cm.yaml (the binary is built if missing)."""
    return Overrides(argocd_binary())


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.mark.parametrize("case", HEALTH_TESTS, ids=[Path(t["inputPath"]).stem for t in HEALTH_TESTS])
def test_health(overrides: Overrides, case: dict[str, Any]):
    result = overrides.health(ARGOCD / case["inputPath"])
    assert result == {"status": case["healthStatus"]["status"], "message": case["healthStatus"]["message"]}


def test_health_covers_every_status_argo_cd_shows():
    assert {t["healthStatus"]["status"] for t in HEALTH_TESTS} == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_every_testdata_file_is_used():
    used = {t["inputPath"] for t in HEALTH_TESTS}
    assert {f"testdata/{p.name}" for p in (ARGOCD / "testdata").glob("*.yaml")} == used
    action_files = {t["inputPath"] for t in ACTION_TESTS} | {t["expectedOutputPath"] for t in ACTION_TESTS}
    assert {f"testdata/{p.name}" for p in (ARGOCD / "actions" / "testdata").glob("*.yaml")} == action_files


@pytest.mark.parametrize("case", ACTION_TESTS, ids=[f"{t['action']}-{Path(t['inputPath']).stem}" for t in ACTION_TESTS])
def test_action(overrides: Overrides, case: dict[str, Any]):
    result = overrides.run_action(ARGOCD / "actions" / case["inputPath"], case["action"])
    assert result == load(ARGOCD / "actions" / case["expectedOutputPath"])


@pytest.mark.parametrize(
    ("fixture", "suspend_disabled", "resume_disabled"),
    [
        ("managercluster.yaml", False, True),
        ("managercluster-no-annotations.yaml", False, True),
        ("managercluster-suspended.yaml", True, False),
    ],
)
def test_discovery_offers_the_action_that_applies(
    overrides: Overrides, fixture: str, suspend_disabled: bool, resume_disabled: bool
):
    actions = overrides.list_actions(ARGOCD / "actions" / "testdata" / fixture)
    assert actions == {"suspend": suspend_disabled, "resume": resume_disabled}


def test_health_agrees_with_the_operators_pause_annotation():
    from clusterop.model import PAUSE_ANNOTATION

    for script in ("health.lua", "actions/discovery.lua", "actions/suspend/action.lua", "actions/resume/action.lua"):
        assert f'"{PAUSE_ANNOTATION}"' in (ARGOCD / script).read_text(), script


def test_argocd_cm_holds_the_scripts_as_in_the_repository():
    """argocd-cm.yaml (what users apply to wire the checks in) embeds the same Lua files."""
    assert (ARGOCD / "argocd-cm.yaml").read_text() == argocd_cm_text(), "run `make manifests`"
    (cm,) = load_all((ARGOCD / "argocd-cm.yaml").read_text())
    data = cm["data"]
    assert cm["metadata"]["name"] == "argocd-cm"
    assert data["resource.customizations.health.cloudify.co_ManagerCluster"] == (ARGOCD / "health.lua").read_text()
    actions = yaml.safe_load(data["resource.customizations.actions.cloudify.co_ManagerCluster"])
    assert actions["discovery.lua"] == (ARGOCD / "actions" / "discovery.lua").read_text()
    defined = {d["name"]: d["action.lua"] for d in actions["definitions"]}
    assert defined == {name: (ARGOCD / "actions" / name / "action.lua").read_text() for name in ("suspend", "resume")}


def test_application_syncs_the_crd_first_and_manager_clusters_last():
    (app,) = load_all((ARGOCD / "application.yaml").read_text())
    assert app["kind"] == "Application"
    assert app["spec"]["source"]["path"] == "deploy/argocd/app"
    objs = kustomize(app["spec"]["source"]["path"])
    waves = {
        (o["kind"], o["metadata"]["name"]): int(
            (o["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0")
        )
        for o in objs
    }
    crd = waves[("CustomResourceDefinition", "managerclusters.cloudify.co")]
    cluster = waves[("ManagerCluster", "example")]
    assert crd == min(waves.values()) and crd < waves[("Deployment", "cloudify-cluster-operator")]
    assert cluster == max(waves.values()) and cluster > waves[("Deployment", "cloudify-cluster-operator")]
