"""Summaries of a py-spy `raw` (collapsed stacks) profile: where the samples went.

    python -m clusterop_dev.benchkit.profile bench-results/profile-1000.txt [--top 30]

The bench records with `py-spy record --gil` (only the thread holding the GIL is sampled, idle
samples dropped): in a CPU-bound Python process that is where the time goes. Prints the samples
per thread group, then the functions with the most samples of their own (self) and in total
(inclusive). Frames of a thread waiting (`select`, `wait`, a pool worker waiting for work) are
counted apart as idle, in case a profile was recorded with `--idle`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

IDLE = re.compile(
    r"^(\S*select|\S*wait|_worker|SSLSocket.read|SocketIO.readinto|trim_every.<locals>.loop) "
    r"\((selectors|threading|concurrent|ssl|socket|clusterop/memory)"
)
_THREAD = re.compile(r"^(thread|process) \(([^)]*)\)")


def _group(frame: str) -> str:
    """`pass_3` -> `pass`: threads of one pool count together."""
    m = _THREAD.match(frame)
    name = m.group(2) if m else frame
    name = name.split('"')[1] if '"' in name else name
    return re.sub(r"[_-]?\d+$", "", name.split()[-1] if name.split() else name)


def summarise(path: Path, top: int = 30) -> str:
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = (frames[0], frames[1:]) if _THREAD.match(frames[0]) else ("?", frames)
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        total += count
        if not frames or IDLE.match(frames[-1]):
            idle += count
            continue
        threads[_group(thread)] += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    busy = max(total - idle, 1)
    out = [f"{path.name}: {total} samples, {total - idle} busy ({idle} idle)", "", "busy samples per thread group"]
    out += [f"{n:8d} {100 * n / busy:5.1f}%  {t}" for t, n in threads.most_common()]
    for title, table in (("self", own), ("inclusive", inclusive)):
        out += ["", f"top {top} functions, {title} (share of busy samples)"]
        out += [f"{n:8d} {100 * n / busy:5.1f}%  {f}" for f, n in table.most_common(top)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clusterop_dev.benchkit.profile", description=__doc__)
    p.add_argument("raw", type=Path)
    p.add_argument("--top", type=int, default=30)
    a = p.parse_args(argv)
    sys.stdout.write(summarise(a.raw, a.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
