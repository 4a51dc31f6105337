"""The CRD's words and the operator's enums are the same sets (values are byte-identical)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from clusterop.model import Op, Phase, Policy

CRD = Path(__file__).resolve().parents[2] / "crds" / "cloudify.co_managerclusters.yaml"


def schema() -> dict[str, Any]:
    doc = yaml.safe_load(CRD.read_text())
    props: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    return props


def test_management_policies_enum_is_the_policy_enum() -> None:
    items = schema()["spec"]["properties"]["managementPolicies"]["items"]
    assert set(items["enum"]) == {"*", "Observe", *(str(p) for p in Policy)}


def test_the_phase_description_lists_every_phase() -> None:
    described = schema()["status"]["properties"]["phase"]["description"]
    words = re.search(r"\(([^)]*)\)", described)
    assert words is not None
    assert {w.strip() for w in words.group(1).split(",")} == {str(p) for p in Phase}


def test_the_pending_op_description_lists_every_op() -> None:
    described = schema()["status"]["properties"]["pending"]["properties"]["op"]["description"]
    assert set(re.findall(r"[a-z]+", described)) - {"or"} == {str(o) for o in Op}
