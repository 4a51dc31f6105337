"""deploy/argocd/ run as Argo CD runs it: health.lua and the actions under a Lua 5.1 interpreter
(lupa's lua51, as gopher-lua is 5.1), driven by health_test.yaml and actions/action_test.yaml in
the format of Argo CD's resource_customizations, plus the manifests beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .deploytools import REPO, argocd_cm_text, kustomize, load_all

lua51 = pytest.importorskip("lupa.lua51", reason="lupa without a Lua 5.1 runtime")

ARGOCD = REPO / "deploy" / "argocd"
HEALTH_TESTS = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]
ACTION_TESTS = yaml.safe_load((ARGOCD / "actions" / "action_test.yaml").read_text())["actionTests"]


def to_lua(rt: Any, value: Any) -> Any:
    """JSON-like Python -> Lua, as Argo CD hands `obj` over: maps and arrays (1-based) as tables."""
    if isinstance(value, dict):
        table = rt.table()
        for k, v in value.items():
            if v is not None:
                table[k] = to_lua(rt, v)
        return table
    if isinstance(value, list):
        table = rt.table()
        for i, v in enumerate(value, start=1):
            table[i] = to_lua(rt, v)
        return table
    return value


def from_lua(value: Any, like: Any = None) -> Any:
    """Lua -> JSON-like Python. Numbers come back as floats (Lua 5.1 has only doubles); an empty
    table takes the shape of what it replaced, as Argo CD's cleanReturnedObj does."""
    if lua51.lua_type(value) == "table":
        items = list(value.items())
        if not items:
            return [] if isinstance(like, list) else {}
        keys = [k for k, _ in items]
        if all(isinstance(k, int) for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
            old = like if isinstance(like, list) else []
            return [from_lua(value[i], old[i - 1] if i <= len(old) else None) for i in range(1, len(keys) + 1)]
        old_map = like if isinstance(like, dict) else {}
        return {str(k): from_lua(v, old_map.get(k)) for k, v in items}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def run_lua(script: Path, obj: dict[str, Any]) -> Any:
    rt = lua51.LuaRuntime(unpack_returned_tuples=False)
    # Argo CD's VM opens only the safe base libraries; no io/os for our scripts either.
    rt.execute("io = nil; os = nil; require = nil; dofile = nil; loadfile = nil")
    rt.globals()["obj"] = to_lua(rt, obj)
    return rt.execute(script.read_text())


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_interpreter_is_lua_5_1():
    assert lua51.LuaRuntime().eval("_VERSION") == "Lua 5.1"


@pytest.mark.parametrize("case", HEALTH_TESTS, ids=[Path(t["inputPath"]).stem for t in HEALTH_TESTS])
def test_health(case: dict[str, Any]):
    obj = load(ARGOCD / case["inputPath"])
    result = from_lua(run_lua(ARGOCD / "health.lua", obj))
    assert result == {"status": case["healthStatus"]["status"], "message": case["healthStatus"]["message"]}


def test_health_covers_every_status_argo_cd_shows():
    assert {t["healthStatus"]["status"] for t in HEALTH_TESTS} == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_every_testdata_file_is_used():
    used = {t["inputPath"] for t in HEALTH_TESTS}
    assert {f"testdata/{p.name}" for p in (ARGOCD / "testdata").glob("*.yaml")} == used
    action_files = {t["inputPath"] for t in ACTION_TESTS} | {t["expectedOutputPath"] for t in ACTION_TESTS}
    assert {f"testdata/{p.name}" for p in (ARGOCD / "actions" / "testdata").glob("*.yaml")} == action_files


@pytest.mark.parametrize("case", ACTION_TESTS, ids=[f"{t['action']}-{Path(t['inputPath']).stem}" for t in ACTION_TESTS])
def test_action(case: dict[str, Any]):
    obj = load(ARGOCD / "actions" / case["inputPath"])
    result = from_lua(run_lua(ARGOCD / "actions" / case["action"] / "action.lua", obj), like=obj)
    assert result == load(ARGOCD / "actions" / case["expectedOutputPath"])


@pytest.mark.parametrize(
    ("fixture", "suspend_disabled", "resume_disabled"),
    [
        ("managercluster.yaml", False, True),
        ("managercluster-no-annotations.yaml", False, True),
        ("managercluster-suspended.yaml", True, False),
    ],
)
def test_discovery_offers_the_action_that_applies(fixture: str, suspend_disabled: bool, resume_disabled: bool):
    obj = load(ARGOCD / "actions" / "testdata" / fixture)
    actions = from_lua(run_lua(ARGOCD / "actions" / "discovery.lua", obj))
    assert set(actions) == {"suspend", "resume"}
    assert actions["suspend"]["disabled"] is suspend_disabled
    assert actions["resume"]["disabled"] is resume_disabled


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
