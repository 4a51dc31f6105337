"""The CLI `python -m clusterop_dev.testbed up|down|status|run` (make testbed-up/-down/-status), and
`serve`, the foreground loop that holds a test bed (or the node cluster) until a signal."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from clusterop_dev.testbed.bed import TestBed
from clusterop_dev.testbed.binaries import control_plane_binaries
from clusterop_dev.testbed.common import TestBedError, say
from clusterop_dev.testbed.processes import STOP_GRACE_SECONDS, process_alive, read_pid
from clusterop_dev.testbed.readiness import answers


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    # Once stopping has begun, further signals must not interrupt the clean-up.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def serve(folder: Path, bed: TestBed, what: str) -> int:
    """Foreground: start `bed`, print the export line, hold its children until a signal or until one
    of them dies. `folder` holds the pid and ready files that `up`, `down` and `status` read."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_stop)
    (folder / "pid").write_text(f"{os.getpid()}\n")
    try:
        bed.start()
        (folder / "ready").write_text(f"{bed.server}\n")
        print(f"export KUBECONFIG={bed.kubeconfig}", flush=True)
        while True:
            time.sleep(1)
            dead = [c for c in bed._children.values() if not c.alive()]
            if dead:
                say(f"{dead[0].name} exited unexpectedly; stopping the {what} (logs kept in {bed.dir})")
                bed.stop(keep=True)
                return 1
    except _Stop as e:
        say(f"Stopping the {what} signal={e}")
        bed.stop()
        return 0
    except TestBedError as e:
        say(str(e))
        return 1
    finally:
        bed.stop(keep=True)  # no-op after a clean stop
        for name in ("ready", "pid"):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()


def start_supervisor(folder: Path, argv: list[str], *, timeout: float, what: str) -> subprocess.Popen[bytes] | None:
    """Start `argv` (a `run` in the foreground) detached, logging to supervisor.log, and wait until
    it writes `ready`; on failure or timeout stop it, print its log's tail and return None."""
    with open(folder / "supervisor.log", "ab") as log:
        supervisor = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while not (folder / "ready").exists():
            if supervisor.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(supervisor.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    supervisor.wait(120)
                say(f"{what} did not start; see {folder / 'supervisor.log'}:")
                print((folder / "supervisor.log").read_text(errors="replace")[-4000:], file=sys.stderr)
                return None
            time.sleep(0.2)
    except KeyboardInterrupt:
        os.killpg(supervisor.pid, signal.SIGTERM)
        supervisor.wait(30)
        raise
    return supervisor


def stop_supervisor(folder: Path, marker: str, *, timeout: float, group: bool = True) -> int | None:
    """SIGTERM the supervisor recorded in `folder` (its whole process group, or with group=False
    the supervisor alone, which then stops its children in order), SIGKILL its group after
    `timeout`; returns its pid, or None when none was recorded."""
    pid = read_pid(folder)
    if pid is not None and process_alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if group else os.kill)(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(pid, marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(pid, marker):
            say(f"The supervisor did not stop in time; killing pid={pid}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    return pid


def kill_children(children: Iterable[int]) -> None:
    """SIGKILL the process group of each recorded child still alive (those PDEATHSIG missed)."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)


def clear_folder(folder: Path) -> None:
    """What `up` left in `folder`: its markers, the run folder, and the folder when empty."""
    for name in ("ready", "pid", "kubeconfig", "supervisor.log"):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    shutil.rmtree(folder / "run", ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _cmd_run(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    bed = TestBed(
        workdir=folder / "run",
        kubeconfig_path=folder / "kubeconfig",
        audit=args.audit,
        binaries=args.binaries,
        controller_manager=not args.no_controller_manager,
    )
    return serve(folder, bed, "control plane")


def _cmd_up(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = read_pid(folder)
    if pid is not None and process_alive(pid, "clusterop_dev.testbed"):
        say(f"Already running pid={pid}")
        print(f"export KUBECONFIG={folder / 'kubeconfig'}")
        return 0
    binaries = control_plane_binaries()  # builds in the foreground, so progress is visible
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "pid", "kubeconfig"):
        with contextlib.suppress(FileNotFoundError):
            (folder / stale).unlink()
    shutil.rmtree(folder / "run", ignore_errors=True)
    argv = [sys.executable, "-m", "clusterop_dev.testbed", "run", "--dir", str(folder), "--binaries", str(binaries)]
    if args.audit:
        argv.append("--audit")
    if args.no_controller_manager:
        argv.append("--no-controller-manager")
    try:
        supervisor = start_supervisor(folder, argv, timeout=120, what="The control plane")
    except KeyboardInterrupt:
        return 130
    if supervisor is None:
        return 1
    say(f"Started control plane pid={supervisor.pid} server={(folder / 'ready').read_text().strip()}")
    print(f"export KUBECONFIG={folder / 'kubeconfig'}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = stop_supervisor(folder, "clusterop_dev.testbed", timeout=3 * STOP_GRACE_SECONDS + 5)
    # Children die with the supervisor (PDEATHSIG); this catches any the kernel could not, and waits
    # until they are gone: "down" means nothing of it runs any more.
    kill_children(_recorded_children(folder))
    deadline = time.monotonic() + 10
    while any(True for _ in _recorded_children(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    clear_folder(folder)
    say("Stopped the control plane" if pid is not None else "Not running")
    return 0


def _recorded_children(folder: Path) -> Iterator[int]:
    try:
        pids: dict[str, int] = json.loads((folder / "run" / "pids.json").read_text())
    except (OSError, ValueError):
        return
    for name, child in pids.items():
        if process_alive(child, name):
            yield child


def _cmd_status(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    pid = read_pid(folder)
    if pid is None or not process_alive(pid, "clusterop_dev.testbed"):
        print("Not running")
        return 1
    ready = folder / "ready"
    if not ready.exists():
        print(f"Starting pid={pid}")
        return 1
    server = ready.read_text().strip()
    run = folder / "run"
    context = ssl.create_default_context(cafile=str(run / "ca.crt"))
    context.load_cert_chain(str(run / "admin.crt"), str(run / "admin.key"))
    healthy, _ = answers(server + "/readyz", context)
    children = " ".join(f"{n}={p}" for n, p in json.loads((run / "pids.json").read_text()).items())
    print(f"Running pid={pid} server={server} ready={str(healthy).lower()} {children}")
    print(f"export KUBECONFIG={folder / 'kubeconfig'}")
    return 0 if healthy else 1


#: (name, help, handler, add_arguments): one subcommand of a state-folder CLI
Command = tuple[str, str, Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None] | None]


def run_cli(prog: str, description: str, commands: Sequence[Command], argv: Sequence[str] | None) -> int:
    """The CLI shape the test bed and the node share: subcommands that each take `--dir`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = {}
    for name, help_text, handler, add_arguments in commands:
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--dir", type=Path, default=Path(".testbed"), help="state folder (default .testbed)")
        if add_arguments is not None:
            add_arguments(command)
        handlers[name] = handler
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except TestBedError as e:
        say(str(e))
        return 1


def _start_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--audit", action="store_true", help="write an audit log of writes")
    command.add_argument("--no-controller-manager", action="store_true")
    command.add_argument("--binaries", type=Path, default=None, help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        "python -m clusterop_dev.testbed",
        "A local Kubernetes control plane for development.",
        [
            ("up", "start in the background and print `export KUBECONFIG=...`", _cmd_up, _start_options),
            ("run", "start in the foreground until Ctrl-C", _cmd_run, _start_options),
            ("down", "stop what `up` started and delete its folder", _cmd_down, None),
            ("status", "say whether it runs and answers", _cmd_status, None),
        ],
        argv,
    )
