"""Growth across runs: the scale levels of several bench.json files (each level a separate
`make bench` run, e.g. 3,000 and 10,000 on their own), one line per shard count.

    python -m clusterop_dev.benchkit.growth OUT.png RUN.json [RUN.json ...]

Prints the merged table (clusters, shards, Ready after the apply, peak RSS of the largest
process, steady CPU summed over the processes, GETs per cluster per resync) and draws the PNG.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .report import TARGET_CPU_SHARE, TARGET_RSS_MIB


def levels(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every level of every run, with its run's date and shard count; a later file's level of the
    same (clusters, shards) replaces an earlier one's."""
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for path in paths:
        run = json.loads(path.read_text())
        shards = int((run.get("settings") or {}).get("shards") or 1)
        for lv in run.get("scale") or []:
            found[(lv["clusters"], int(lv.get("shards") or shards))] = {**lv, "date": run["date"], "file": path.name}
    return [found[k] for k in sorted(found)]


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| clusters | processes (shards) | Ready after the apply | peak RSS, largest process | RSS at rest | "
        "steady CPU (sum) | busiest process | GETs / cluster / resync | run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in rows:
        steady = lv["steady"]
        out.append(
            f"| {lv['clusters']:,} | {lv.get('shards', 1)} | {lv['ready_after_apply_seconds']} s"
            f"{'' if lv['all_ready'] else ' (not all Ready)'} | {lv['rss_peak_mib']} MiB"
            f" | {lv.get('rss_end_mib', '?')} MiB"
            f" | {100 * steady['cpu_share']:.1f}% | {busiest(lv):.1f}% | {steady['gets_per_cluster_per_resync']}"
            f" | {lv['date']} |"
        )
    return "\n".join(out)


def busiest(lv: dict[str, Any]) -> float:
    """Steady CPU share of the busiest operator process of a level, in percent of a core."""
    return 100 * float(max(lv["steady"].get("cpu_share_each") or [lv["steady"]["cpu_share"]]))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[int, list[dict[str, Any]]] = {}
    for lv in rows:
        series.setdefault(int(lv.get("shards", 1)), []).append(lv)
    panels: list[tuple[str, Callable[[dict[str, Any]], float], float | None]] = [
        ("Ready after the apply (s)", lambda lv: float(lv["ready_after_apply_seconds"]), None),
        ("peak RSS of the largest process (MiB)", lambda lv: float(lv["rss_peak_mib"]), TARGET_RSS_MIB),
        ("steady CPU, all processes (% of a core)", lambda lv: 100 * lv["steady"]["cpu_share"], 100 * TARGET_CPU_SHARE),
        ("steady CPU, the busiest process (% of a core)", busiest, 100 * TARGET_CPU_SHARE),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.5))
    xs_all = sorted({lv["clusters"] for lv in rows})
    for ax, (title, value, target) in zip(axes.flat, panels, strict=True):
        for shards, lvs in sorted(series.items()):
            label = "one process" if shards == 1 else f"{shards} shards, a process each"
            ax.plot([lv["clusters"] for lv in lvs], [value(lv) for lv in lvs], marker="o", label=label)
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", linewidth=1, label="target at 1,000")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs_all, [f"{x:,}" for x in xs_all])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ManagerClusters (3 nodes each)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("cloudify-cluster-operator: growth on 2 cores, resync 30 s (separate runs per level)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clusterop_dev.benchkit.growth", description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("runs", type=Path, nargs="+")
    a = p.parse_args(argv)
    rows = levels(a.runs)
    print(table(rows))
    plot(rows, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
