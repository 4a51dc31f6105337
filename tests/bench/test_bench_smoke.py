"""A small run of the benchmark (make bench) so it cannot rot: a few clusters, short resync.

It checks what the benchmark reports, never how fast: timings are the benchmark's to print.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterop_dev.bench import Config, render_table, run
from clusterop_dev.benchkit import growth
from clusterop_dev.testbed import Cluster, TestBed

pytestmark = [pytest.mark.bench, pytest.mark.e2e]


def test_bench_smoke(testbed: Cluster, tmp_path: Path) -> None:
    if not isinstance(testbed, TestBed) or testbed.audit_log is None:
        pytest.skip("the benchmark needs the local test bed with its audit log")
    config = Config(levels=(2, 3), runs=2, resync_seconds=2.0, cli_poll=0.5, long_stage=2.0, out=tmp_path, floor=True)
    results = run(config, bed=testbed)

    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["targets"] == results["targets"]
    assert {"date", "machine", "settings", "latency", "scale", "targets"} <= saved.keys()
    assert (tmp_path / "bench.png").stat().st_size > 0

    latency = saved["latency"]
    for case in ("zero_delay", "operator", "cli40"):
        assert len(latency[case]["runs"]) == 2 and latency[case]["median"] > 0
    assert latency["ratio"] > 0
    # the same cases through the counting proxy: it saw the operator's and the CLI's requests
    for case in ("zero_delay", "operator", "cli40"):
        assert len(latency["proxied"][case]["runs"]) == 2 and latency["proxied"][case]["median"] > 0
    long = latency["long_stage"]
    assert long["start_delay"] == 2.0 and long["ready_seconds"] >= 2.0
    # a start and two joins were sent, and more than one look was needed to see the start end
    by_path = long["manager_requests_by_path"]
    puts = sum(c for k, c in by_path.items() if k.startswith("PUT ") and k.endswith("/cluster"))
    assert puts == 3, long
    assert long["manager_requests"] > 3 and len(latency["load"]["start"]) == 3

    assert [lv["clusters"] for lv in saved["scale"]] == [2, 3]
    # each level's figures are also kept on their own, written before its deletion
    assert json.loads((tmp_path / "level-3.json").read_text())["steady"] == saved["scale"][1]["steady"]
    for lv in saved["scale"]:
        assert lv["all_ready"] and lv["ready_count"] == lv["clusters"]
        assert lv["rss_peak_mib"] > 0 and lv["forming_cpu_seconds"] > 0
        # the machine's CPU while forming, by process: the operator's figure and the others'
        by = lv["forming_cpu_seconds_by_process"]
        assert by["operator"] == lv["forming_cpu_seconds"]
        assert {"etcd", "kube-apiserver", "simulator", "bench"} <= by.keys(), by
        assert by["kube-apiserver"] > 0 and by["bench"] > 0, by
        # the operator's own writes were seen while forming (audit log under its own identity)
        writes = lv["forming_apiserver_writes"]
        assert writes.get("patch managerclusters/status", 0) >= lv["clusters"]
        steady = lv["steady"]
        assert steady["passes"] > 0 and steady["manager_gets"] > 0
        # a steady cluster writes nothing, to the apiserver or to its managers
        assert steady["apiserver_writes"] == 0, steady["apiserver_writes_by_kind"]
        assert steady["manager_writes"] == 0, steady["manager_requests_by_path"]

    # --floor: each level formed again by hack/floor_operator.py, with one status write per cluster
    assert [lv["clusters"] for lv in saved["floor_scale"]] == [2, 3]
    for lv in saved["floor_scale"]:
        assert lv["all_ready"] and lv["ready_count"] == lv["clusters"] and "steady" not in lv, lv
        assert lv["forming_cpu_seconds_by_process"]["operator"] > 0
        assert lv["forming_apiserver_writes"].get("patch managerclusters/status", 0) == lv["clusters"], lv

    # the growth plot across runs reads the same file
    assert growth.main([str(tmp_path / "growth.png"), str(tmp_path / "bench.json")]) == 0
    assert (tmp_path / "growth.png").stat().st_size > 0
    merged = growth.levels([tmp_path / "bench.json"])
    assert [(lv["clusters"], lv.get("shards", 1)) for lv in merged] == [(2, 1), (3, 1)]

    table = render_table(saved)
    assert "4.0 CLI procedure" in table and "through the proxy" in table and "manager requests" in table
    assert "| 3 |" in table and "Targets" in table
    assert "3 clusters: CPU s while forming: " in table and "kube-apiserver" in table
    assert "The floor (hack/floor_operator.py" in table and "3 clusters, floor: CPU s while forming" in table


def test_bench_with_shards_runs_a_process_per_shard(testbed: Cluster, tmp_path: Path) -> None:
    """`--shards 2`: two operator processes, each holding one shard, form and hold one level;
    `--simulators 2`: the managers on two simulators, each on its own loopback address."""
    if not isinstance(testbed, TestBed) or testbed.audit_log is None:
        pytest.skip("the benchmark needs the local test bed with its audit log")
    config = Config(
        levels=(6,), runs=0, resync_seconds=2.0, steady_intervals=2.0, out=tmp_path, plot=False, shards=2,
        simulators=2, machine_batch=9,
    )  # fmt: skip
    (level,) = run(config, bed=testbed)["scale"]
    assert level["all_ready"] and level["shards"] == 2
    assert level["machines_by_address"] == {"127.0.0.2": 9, "127.0.0.3": 9}
    assert len(level["rss_peak_mib_each"]) == 2 and min(level["rss_peak_mib_each"]) > 0
    each = level["steady"]["cpu_share_each"]
    assert len(each) == 2 and level["steady"]["cpu_share"] == pytest.approx(sum(each), abs=1e-3)
    assert level["steady"]["apiserver_writes"] == 0 and level["steady"]["manager_writes"] == 0
    # both processes reconciled their share (these 6 names fall 5 / 1 into the shards)
    assert sorted(p > 0 for p in level["steady"]["passes_each"]) == [True, True]
