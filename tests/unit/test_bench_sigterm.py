"""`bench` stopped with SIGTERM unwinds: its `finally` blocks (which stop the operators, the
simulators and the control plane it started) run, and it exits 143."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os, signal, sys, time
from clusterop_dev.bench import stop_on_sigterm
stop_on_sigterm()
try:
    print("ready", flush=True)
    time.sleep(30)
finally:
    open(sys.argv[1], "w").write("cleaned up")
"""


def test_sigterm_runs_the_finally_blocks(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.terminate()
        assert proc.wait(10) == 143
    assert marker.read_text() == "cleaned up"
