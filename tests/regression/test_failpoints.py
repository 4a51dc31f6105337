"""Regression: a failpoint kill must say which point fired (crash trials count kills per point
from the operator's log) and must stay inert unless CLUSTEROP_FAILPOINTS names it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

CODE = "from clusterop import failpoints; failpoints.hit('after-write'); failpoints.hit('before-write'); print('alive')"


def run(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLUSTEROP_FAILPOINTS"}
    if env_value is not None:
        env["CLUSTEROP_FAILPOINTS"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=30)


def test_a_fired_failpoint_names_itself_then_sigkills() -> None:
    done = run("before-write=kill")
    assert done.returncode == -signal.SIGKILL
    assert done.stderr.strip().splitlines()[-1] == "FAILPOINT fired point=before-write"
    assert "alive" not in done.stdout


def test_failpoints_are_inert_without_the_variable() -> None:
    done = run(None)
    assert done.returncode == 0 and done.stdout.strip() == "alive" and "FAILPOINT" not in done.stderr


def test_probability_zero_never_fires() -> None:
    done = run("before-write=kill@0,after-write=kill@0")
    assert done.returncode == 0 and "FAILPOINT" not in done.stderr


def test_stop_at_the_nth_hit_pauses_there_and_resumes_on_sigcont() -> None:
    code = "from clusterop import failpoints\nfor _ in range(3): failpoints.hit('before-write')\nprint('resumed')"
    env = {**os.environ, "CLUSTEROP_FAILPOINTS": "before-write=stop#2"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once the child is stopped
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert out.strip() == "resumed"
    assert err.strip().splitlines() == ["FAILPOINT fired point=before-write action=stop"]  # the 2nd hit only
