"""The demo's Ctrl-C: SIGINT to the demo's whole process group (what a terminal sends) tears
everything down in order: the resource goes while the operator still runs to release its
finalizer, then every process the demo started is gone. Also when the demo was started with
SIGINT ignored (a script's `nohup ... &`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clusterop_dev.testbed import local_mode

pytestmark = pytest.mark.e2e


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stuck(demo: subprocess.Popen[str], started: set[int]) -> str:
    """What the demo printed since the SIGINT, then the worker's threads (its faulthandler writes
    them to the same pipe on SIGUSR1)."""
    for pid in started:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"clusterop_dev.demo" in command:
            os.kill(pid, signal.SIGUSR1)
    try:
        rest, _ = demo.communicate(timeout=3)
    except subprocess.TimeoutExpired as e:  # the output read so far, the first wait's too
        out = e.output
        rest = out.decode(errors="replace") if isinstance(out, bytes) else (out or "")
    for pid in started:  # the worker and its children: a session of their own, not in the group
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    return rest


def test_sigint_to_the_process_group_tears_down_promptly_and_completely(tmp_path: Path) -> None:
    if not local_mode():
        pytest.skip("E2E_CLUSTER is set: the demo starts its own local control plane")
    timeline = tmp_path / "timeline.csv"
    demo = subprocess.Popen(
        [sys.executable, "-m", "clusterop_dev.demo", "--keep", "--timeline", str(timeline)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job
        # and started with SIGINT ignored, as `nohup make demo &` from a script starts it: the
        # terminal's Ctrl-C must still tear down (the worker sets SIGINT's handler itself)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:  # the test's timeout bounds the wait for the steady state
            lines.append(line)
            if "Keeping everything up" in line:
                break
        else:
            pytest.fail("the demo ended before keeping everything up:\n" + "".join(lines))
        started = _descendants(demo.pid)
        assert len(started) >= 5  # worker, etcd, kube-apiserver, simulator, operator (and more)
        os.killpg(demo.pid, signal.SIGINT)
        try:
            rest, _ = demo.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no teardown 120 s after the SIGINT:\n{''.join(lines)}---\n{_stuck(demo, started)}")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        demo.stdout.close()
    out = "".join(lines) + rest
    assert "kubectl mgrc status example -n default:" in out
    assert "ManagerCluster default/example: Ready (ClusterReady)" in out  # the plugin's status, at the end
    assert "The resource is gone (the operator released its finalizer)" in rest, out
    assert rest.rstrip().endswith("Stopped the control plane. Done."), out
    assert demo.returncode == 0
    assert [pid for pid in started if _alive(pid)] == []  # nothing left behind
    # The terminal's SIGINT never reached the operator: it was stopped in order, after the resource went.
    log = Path(re.search(r"Operator started \(pid \d+; log (\S+)\)", out).group(1))  # type: ignore[union-attr]
    text = log.read_text()
    assert "Signal SIGINT is received" not in text and "Signal SIGTERM is received" in text
    rows = timeline.read_text().splitlines()
    assert rows[0] == "seconds,online,desired" and len(rows) > 10
