"""What ships: both distributions built as wheels (offline, `pip wheel --no-deps
--no-build-isolation`, from a copy of the checkout so no build output lands in the repo), and the
file list of each. The operator's wheel holds `clusterop` alone (its kubectl plugin included); the
simulator's holds `cloudify_manager_sim` alone; neither holds the dev tooling or the tests. The
simulator's sources import nothing of the operator."""

from __future__ import annotations

import ast
import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a copy of the checkout leaves out: build output and anything the venv or a build made.
IGNORE = shutil.ignore_patterns(
    ".git", ".venv*", ".testbed", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", "bench-results"
)


def _build(source: Path, out: Path) -> zipfile.ZipFile:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"pip wheel {source}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("checkout") / "repo"
    shutil.copytree(REPO, copy, ignore=IGNORE, symlinks=True)
    return copy


def _top_levels(wheel: zipfile.ZipFile) -> set[str]:
    return {name.split("/", 1)[0] for name in wheel.namelist() if not name.split("/", 1)[0].endswith(".dist-info")}


def _entry_points(wheel: zipfile.ZipFile) -> str:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    return wheel.read(name).decode()


def test_operator_wheel_holds_the_operator_alone(checkout: Path, tmp_path: Path):
    wheel = _build(checkout, tmp_path)
    assert _top_levels(wheel) == {"clusterop"}, sorted(wheel.namelist())
    names = set(wheel.namelist())
    assert {"clusterop/cli.py", "clusterop/reconciler.py", "clusterop/plugin/cli.py", "clusterop/py.typed"} <= names
    assert not [n for n in names if "simulator" in n or "clusterop_dev" in n or "test" in n.split("/")[-1]]
    scripts = _entry_points(wheel)
    assert "cloudify-cluster-operator = clusterop.cli:main" in scripts
    assert "kubectl-mgrc = clusterop.plugin.cli:main" in scripts
    assert "cloudify-manager-sim" not in scripts
    metadata = email.parser.Parser().parsestr(wheel.read(next(n for n in names if n.endswith("/METADATA"))).decode())
    assert metadata["Name"] == "cloudify-cluster-operator"


def test_simulator_wheel_holds_the_simulator_alone(checkout: Path, tmp_path: Path):
    wheel = _build(checkout / "simulator", tmp_path)
    assert _top_levels(wheel) == {"cloudify_manager_sim"}, sorted(wheel.namelist())
    names = set(wheel.namelist())
    assert {"cloudify_manager_sim/cli.py", "cloudify_manager_sim/server.py", "cloudify_manager_sim/py.typed"} <= names
    assert _entry_points(wheel).split("\n", 1)[1].strip() == "cloudify-manager-sim = cloudify_manager_sim.cli:main"
    requires = [
        line.split(":", 1)[1].strip()
        for line in wheel.read(next(n for n in names if n.endswith("/METADATA"))).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert not [r for r in requires if r.startswith(("kopf", "pykube", "cloudify-cluster-operator"))], requires


def test_simulator_imports_nothing_of_the_operator_or_the_dev_tooling():
    sources = sorted((REPO / "simulator" / "cloudify_manager_sim").rglob("*.py"))
    assert len(sources) > 5, sources
    found = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("clusterop", "clusterop_dev")]
    assert not found, found
