"""Plot the demo's formation timeline (seconds,online,desired CSV) as an SVG step chart."""

from __future__ import annotations

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(source: str, target: str) -> int:
    with open(source) as f:
        rows = [(float(r["seconds"]), int(r["online"]), int(r["desired"])) for r in csv.DictReader(f)]
    t0 = rows[0][0]
    xs = [r[0] - t0 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.step(xs, [r[2] for r in rows], where="post", label="nodes in spec", color="#7a8fb3", linestyle="--")
    ax.step(xs, [r[1] for r in rows], where="post", label="members online", color="#2a9d4b", linewidth=2)
    ax.set_xlabel("seconds since the sample was applied (make demo, simulated managers)")
    ax.set_ylabel("nodes")
    ax.set_yticks(range(0, max(r[2] for r in rows) + 2))
    ax.set_title("Formation timeline: form 3, scale to 5, scale to 3 (removing the master), reconfigure")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
