"""`kubectl mgrc`: status, pause, resume, logs and plan of ManagerCluster objects."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from ..model import PAUSE_ANNOTATION
from . import view
from .api import Api, PluginError

EPILOG = """examples:
  kubectl mgrc status example            the cluster at a glance
  kubectl mgrc status -A                 every ManagerCluster, one line each
  kubectl mgrc status example -o json    the same data for scripts
  kubectl mgrc pause example             stop changing the managers (status keeps being mirrored)
  kubectl mgrc logs example -f           the managers' cluster logs, as they arrive
  kubectl mgrc plan example              what the operator would do next, and why
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="the namespace (default: the kubeconfig context's, or default)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context to use")
    common.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="colour (auto: on a TTY)")
    p = argparse.ArgumentParser(
        prog="kubectl mgrc",
        description="Look at and steer Cloudify ManagerCluster objects.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("status", parents=[common], help="the cluster at a glance (no NAME: a table of all)")
    s.add_argument("name", nargs="?")
    s.add_argument("-A", "--all-namespaces", action="store_true", help="look in every namespace")
    s.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    s.add_argument("--log-lines", type=int, default=view.STATUS_LOG_LINES, help="cluster log lines to show")
    for verb, text in (("pause", "stop changing the managers"), ("resume", "let the operator act again")):
        v = sub.add_parser(verb, parents=[common], help=f"{text} (the {PAUSE_ANNOTATION} annotation)")
        v.add_argument("name")
    lg = sub.add_parser("logs", parents=[common], help="the managers' cluster logs, as the operator mirrors them")
    lg.add_argument("name")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C to stop)")
    lg.add_argument("--interval", type=float, default=1.0, help="seconds between looks with -f")
    pl = sub.add_parser("plan", parents=[common], help="what the operator would do next, and why")
    pl.add_argument("name")
    pl.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    return p


def _dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


def _paint(choice: str) -> view.Paint:
    if choice == "auto":
        return view.Paint(sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb")
    return view.Paint(choice == "always")


class Command:
    def __init__(self, args: argparse.Namespace, out: Callable[[str], None]) -> None:
        self.args, self.out = args, out
        self.api = Api(args.kubeconfig, args.context)
        self.namespace = args.namespace or self.api.default_namespace
        self.paint = _paint(args.color)

    def one(self, name: str) -> dict[str, Any]:
        if getattr(self.args, "all_namespaces", False):
            return self.api.find(name)
        return self.api.get(self.namespace, name)

    def status(self) -> int:
        a = self.args
        if a.name is None:
            objs = self.api.list(None if a.all_namespaces else self.namespace)
            items = [view.summary(o, time.time(), a.log_lines) for o in objs]
            self.out(_dump(items, a.output) if a.output != "text" else view.render_list(items, self.paint))
            return 0
        s = view.summary(self.one(a.name), time.time(), a.log_lines)
        self.out(_dump(s, a.output) if a.output != "text" else view.render_status(s, self.paint))
        return 0

    def pause(self, paused: bool = True) -> int:
        before = view.summary(self.api.get(self.namespace, self.args.name), time.time())
        word = "paused" if paused else "resumed"
        if before["paused"] == paused:
            self.out(f"managercluster {self.namespace}/{self.args.name} is already {'paused' if paused else 'active'}")
            return 0
        self.api.set_paused(self.namespace, self.args.name, paused)
        then = (
            "the operator keeps mirroring status and changes nothing; `kubectl mgrc plan` says what it would do"
            if paused
            else "the operator acts on the spec again"
        )
        self.out(f"managercluster {self.namespace}/{self.args.name} {word}: {then}")
        return 0

    def resume(self) -> int:
        return self.pause(False)

    def logs(self) -> int:
        a = self.args
        seen: set[tuple[Any, ...]] = set()
        looked = False
        while True:
            try:
                obj = self.api.get(self.namespace, a.name)
            except PluginError:
                if looked:  # it was there: say it went, as `kubectl logs -f` ends when its pod goes
                    self.out(f"managercluster {self.namespace}/{a.name} is gone")
                    return 0
                raise
            looked = True
            for entry in (obj.get("status") or {}).get("logs") or []:
                key = (entry.get("timestamp"), entry.get("node"), entry.get("message"))
                if key not in seen:
                    seen.add(key)
                    self.out(view.log_line(view.log_entry(entry), self.paint))
            if not a.follow:
                return 0
            time.sleep(a.interval)

    def plan(self) -> int:
        s = view.summary(self.api.get(self.namespace, self.args.name), time.time())
        if self.args.output != "text":
            keys = ("namespace", "name", "paused", "inFlight", "plannedActions", "problems", "conditions")
            self.out(_dump({k: s[k] for k in keys}, self.args.output))
        else:
            self.out(view.render_plan(s, self.paint))
        return 0


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] | None = None) -> int:
    args = _parser().parse_args(argv)
    write = out or (lambda text: print(text, flush=True))
    try:
        cmd = Command(args, write)
        code: int = getattr(cmd, args.command)()
        return code
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kubectl mgrc logs x | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
