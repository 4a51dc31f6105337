"""Child processes without orphans: start with a log and PDEATHSIG, stop in a bounded time, tell a
live process from a recycled pid."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_SECONDS = 5.0


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL when the parent dies (Linux only).

    The last line of defence against orphans, for when the parent is SIGKILLed and no Python
    clean-up runs. Linux sends it when the forking *thread* exits, so it is only set when the
    process is started from the main thread.
    """
    parent = os.getppid()
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def spawn(child: Child, cwd: Path, env: Mapping[str, str]) -> None:
    """Start `child` (unless it runs) in its own process group, output appended to its log."""
    if child.alive():
        return
    in_main_thread = threading.current_thread() is threading.main_thread()
    with open(child.log, "ab") as log:
        log.write(f"==== {time.strftime('%H:%M:%S')} started: {' '.join(child.argv)}\n".encode())
        log.flush()
        child.popen = subprocess.Popen(
            child.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            process_group=0,  # Ctrl-C in a terminal reaches us, not them: we stop them in order
            preexec_fn=die_with_parent if in_main_thread else None,
        )


def stop_children(children: Sequence[Child], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every running child, SIGKILL its group after `grace` seconds, wait for each."""
    running = [c for c in children if c.alive()]
    for c in running:
        assert c.popen is not None
        c.popen.terminate()
    deadline = time.monotonic() + grace
    for c in running:
        assert c.popen is not None
        try:
            c.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.popen.pid, signal.SIGKILL)
            c.popen.wait()


def process_alive(pid: int, marker: str) -> bool:
    """pid runs and its command line contains marker (a recycled pid does not count); zombies are gone."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return marker in cmdline and state != "Z"


def read_pid(folder: Path) -> int | None:
    try:
        return int((folder / "pid").read_text().strip())
    except (OSError, ValueError):
        return None
