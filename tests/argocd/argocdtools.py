"""Argo CD for the tests: the pinned binary (built by `make argocd`), its engine run on our Lua by
`argocd admin settings resource-overrides`, its components as host processes on loopback, and a
local git repository for it to sync from.

The one binary acts as each component by its argv[0] name; `make argocd` lays out symlinks
(argocd-server, argocd-repo-server, argocd-application-controller) and the git/gpg wrappers the
repo-server runs, all in one folder that goes first on PATH.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from cloudify_manager_sim.harness import stop_process

REPO = Path(__file__).resolve().parents[2]
ARGOCD_CM = REPO / "deploy" / "argocd" / "argocd-cm.yaml"
ARGOCD_NAMESPACE = "argocd"


def argocd_binary() -> Path:
    """The argocd binary: `make argocd` builds it the first time (about 10 minutes) and prints its
    path as the last line; every later call finds it in the tools cache."""
    done = subprocess.run(["make", "-s", "argocd"], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"make argocd failed ({done.returncode}):\n{done.stderr[-4000:]}")
    binary = Path(done.stdout.strip().splitlines()[-1])
    assert binary.is_file() and os.access(binary, os.X_OK), f"`make argocd` printed {binary}, not an executable"
    return binary


def run(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        list(args), capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}, cwd=cwd
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}\n{done.stdout[-2000:]}")
    return done.stdout


# -- Argo CD's own engine on our Lua ------------------------------------------------------------


class Overrides:
    """`argocd admin settings resource-overrides ...` on a resource file, reading argocd-cm from a
    file (deploy/argocd/argocd-cm.yaml: the generated file users apply, so a stale one fails)."""

    def __init__(self, binary: Path, argocd_cm: Path = ARGOCD_CM) -> None:
        self.binary = binary
        self.argocd_cm = argocd_cm

    def _run(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        return run(
            [
                str(self.binary),
                "admin",
                "settings",
                "resource-overrides",
                *args,
                "--argocd-cm-path",
                str(self.argocd_cm),
            ],
            env=env,
        )

    def health(self, resource: Path) -> dict[str, str]:
        """{"status": ..., "message": ...} from the `STATUS:` and `MESSAGE:` lines."""
        out = self._run("health", str(resource))
        fields = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "") for line in out.splitlines())
        assert set(fields) >= {"STATUS", "MESSAGE"}, out
        return {"status": fields["STATUS"], "message": fields["MESSAGE"]}

    def list_actions(self, resource: Path) -> dict[str, bool]:
        """{action name: disabled} from the NAME/DISABLED table."""
        lines = self._run("list-actions", str(resource)).splitlines()
        assert lines and lines[0].split() == ["NAME", "DISABLED"], lines
        return {name: disabled == "true" for name, disabled in (line.split() for line in lines[1:] if line.strip())}

    def run_action(self, resource: Path, action: str) -> dict[str, Any]:
        """The object the action returns. The command prints a diff of the input and the result
        through KUBECTL_EXTERNAL_DIFF (`diff` by default); here that prints the result file itself."""
        out = self._run("run-action", str(resource), action, env={"KUBECTL_EXTERNAL_DIFF": "sh -c 'cat \"$2\"' diff"})
        _, sep, body = out.partition("Following fields have been changed:\n\n")
        assert sep, out
        result: dict[str, Any] = yaml.safe_load(body)
        return result


# -- the components as host processes -----------------------------------------------------------


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ArgoCD:
    """redis, argocd-repo-server, argocd-application-controller and argocd-server on loopback,
    against the cluster of `kubeconfig` (`ARGOCD_FAKE_IN_CLUSTER=true`: https://kubernetes.default.svc
    is that cluster), in namespace `argocd`. Each is stopped by its PID."""

    def __init__(self, binary: Path, kubeconfig: Path, workdir: Path, *, app_resync_seconds: int = 10) -> None:
        self.binary = binary
        self.bin_dir = binary.parent
        self.kubeconfig = kubeconfig
        self.dir = workdir
        self.app_resync_seconds = app_resync_seconds
        (
            self.redis_port,
            self.repo_port,
            self.repo_metrics_port,
            self.controller_metrics_port,
            self.server_port,
            self.server_metrics_port,
        ) = free_ports(6)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        (self.dir / "gnupg").mkdir(mode=0o700, exist_ok=True)
        (self.dir / "gpg-keys").mkdir(exist_ok=True)  # the repo-server exits without its key source folder
        self.env = {
            **os.environ,
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(kubeconfig),
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_GNUPGHOME": str(self.dir / "gnupg"),
            "ARGOCD_GPG_DATA_PATH": str(self.dir / "gpg-keys"),
            "TMPDIR": str(self.dir / "tmp"),
        }

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        with open(self.log(name), "ab") as log:
            self.procs[name] = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.dir
            )

    def _wait(self, name: str, port: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            proc = self.procs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not listening on {port} after {timeout}s:\n{self.tail(name)}")
            time.sleep(0.2)

    def tail(self, name: str, lines: int = 40) -> str:
        try:
            return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def start(self) -> ArgoCD:
        common = ["--loglevel", "info", "--redis", f"127.0.0.1:{self.redis_port}"]
        in_cluster = ["--namespace", ARGOCD_NAMESPACE]
        self._spawn(
            "redis",
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
        )
        self._wait("redis", self.redis_port)
        self._spawn(
            "repo-server",
            [
                str(self.bin_dir / "argocd-repo-server"),
                *common,
                "--address",
                "127.0.0.1",
                "--port",
                str(self.repo_port),
                "--metrics-address",
                "127.0.0.1",
                "--metrics-port",
                str(self.repo_metrics_port),
                "--disable-tls",
                "--client-ca-path",
                "",
            ],
        )
        repo = ["--repo-server", f"127.0.0.1:{self.repo_port}", "--repo-server-plaintext"]
        self._spawn(
            "application-controller",
            [
                str(self.bin_dir / "argocd-application-controller"),
                *common,
                *in_cluster,
                *repo,
                "--metrics-port",
                str(self.controller_metrics_port),
                "--app-resync",
                str(self.app_resync_seconds),
                "--persist-resource-health",
                "--self-heal-timeout-seconds",
                "2",
            ],
        )
        self._spawn(
            "server",
            [
                str(self.bin_dir / "argocd-server"),
                *common,
                *in_cluster,
                *repo,
                "--insecure",
                "--disable-auth",
                "--dex-server",
                "",
                "--address",
                "127.0.0.1",
                "--port",
                str(self.server_port),
                "--metrics-port",
                str(self.server_metrics_port),
            ],
        )
        for name, port in (
            ("repo-server", self.repo_port),
            ("application-controller", self.controller_metrics_port),
            ("server", self.server_port),
        ):
            self._wait(name, port)
        time.sleep(1)  # a component that exits right after binding its port is caught here
        dead = [name for name, alive in self.alive().items() if not alive]
        assert not dead, "\n".join(f"{name} exited:\n{self.tail(name)}" for name in dead)
        return self

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def stop(self) -> None:
        for name in ("server", "application-controller", "repo-server", "redis"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc)
        # The repo-server's gpg starts a gpg-agent that daemonizes (its parent is then init): ask
        # the agent of this GNUPGHOME, and only it, to exit.
        subprocess.run(
            ["gpgconf", "--homedir", str(self.dir / "gnupg"), "--kill", "gpg-agent"], capture_output=True, check=False
        )

    def cli(self, *args: str) -> str:
        """The argocd CLI against this argocd-server (plaintext, no auth)."""
        return run(
            [str(self.binary), *args, "--server", self.server, "--plaintext", "--config", str(self.dir / "cli-config")],
            env={"PATH": self.env["PATH"]},
        )

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = requests.request(method, f"http://{self.server}{path}", json=body, timeout=30)
        if response.status_code != 200:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()


# -- a git repository Argo CD syncs from --------------------------------------------------------


class GitRepo:
    """A local repository Argo CD reads as file://<path>; every commit is one step of a test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def git(self, *args: str) -> str:
        identity = {
            "GIT_AUTHOR_NAME": "clusterop-tests",
            "GIT_AUTHOR_EMAIL": "tests@example.invalid",
            "GIT_COMMITTER_NAME": "clusterop-tests",
            "GIT_COMMITTER_EMAIL": "tests@example.invalid",
        }
        return run(["git", "-C", str(self.path), *args], env=identity)

    def write(self, relpath: str, objs: Sequence[Mapping[str, Any]]) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump_all([dict(o) for o in objs], sort_keys=False))

    def remove(self, relpath: str) -> None:
        self.git("rm", "-q", relpath)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()
