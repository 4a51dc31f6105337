"""Figures of a process from /proc, and the small system helpers of the bench."""

from __future__ import annotations

import os
import resource
import subprocess
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def has_module(python: str, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", probe], check=False).returncode == 0


def scrape(metrics_url: str, prefix: str, timeout: float = 120.0) -> float:
    """The sum of the operator's Prometheus samples whose line starts with `prefix`. The timeout
    is long: at 10,000 clusters (40,000 per-cluster series per process) a scrape of a process
    that is forming its share took more than 10 s, which ended the first 10,000 run."""
    with urllib.request.urlopen(metrics_url, timeout=timeout) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def passes(metrics_url: str) -> int:
    """Reconcile passes the operator has finished (its Prometheus counter)."""
    return int(scrape(metrics_url, "clusterop_reconcile_total{"))


def raise_fd_limit(wanted: int = 65536) -> int:
    """Thousands of keep-alive connections (simulator, operator, clients) need more than 1024 fds;
    children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
