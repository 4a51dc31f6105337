"""Where the monitoring tests find promtool and prometheus (`make prometheus` builds them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TOOLS_BIN = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cloudify-cluster-operator" / "bin"
REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "monitoring" / "alerts.yaml"
DASHBOARD = REPO / "deploy" / "monitoring" / "dashboard.json"


def tool(name: str) -> Path:
    path = Path(os.environ.get(name.upper()) or TOOLS_BIN / name)
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make prometheus` (CI does)")
    return path
