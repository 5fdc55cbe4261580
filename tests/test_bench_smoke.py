"""The benchmark keeps working: a tiny run of every part but the slow ones (the figures are not checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="the benchmark runs on PostgreSQL; checked once, in the PostgreSQL run")
def test_a_tiny_benchmark_run_writes_every_key(tmp_path, bootstrap_servers):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
           "BENCH_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/gc_bench_smoke"}
    # 10,000 events: the steady rates need two batches (up to 2,000 events) or more in each of 2 processes.
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--users", "300", "--events", "10000",
                          "--latency-events", "200", "--rate", "500", "--scaling", "200", "--scaling-events", "200",
                          "--full-sync-users", "300", "--naive-users", "200", "--naive-events", "20",
                          "--naive-budget", "2", "--skip", "peer", "--results", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "quick" / "latest.json").read_text())
    from bench.report import KEYS

    assert set(KEYS) <= set(results)
    assert results["end_to_end_events_per_s"] > 0 and results["latency_p99_ms"] is not None
    assert results["end_to_end_publishing_events_per_s"] > 0 and results["publishing_cost_ratio"] is not None
    # Publishing is on only while measured: only those runs write the outbox.
    assert [run["outbox_rows"] > 0 for run in results["publishing_runs"]] == [False, True]
    assert set(results["replay_events_per_s"]) == {"1", "2"} and min(results["replay_events_per_s"].values()) > 0
    assert results["peer_events_per_s"] is None  # skipped parts are null
    assert "end to end, groups-consumer consume" in run.stdout


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="the benchmark runs on PostgreSQL; checked once, in the PostgreSQL run")
def test_a_tiny_comparison_alternates_the_two_values(tmp_path, bootstrap_servers):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers}
    run = subprocess.run([sys.executable, "-m", "bench.compare", "--env", "CONSUMER_BATCH_SIZE=500,1000",
                          "--rounds", "1", "--users", "300", "--events", "4000", "--groups", "20",
                          "--database-url", "postgres://postgres@127.0.0.1:5432/gc_compare_smoke",
                          "--results", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    [saved] = tmp_path.glob("compare-CONSUMER_BATCH_SIZE-*.json")
    results = json.loads(saved.read_text())
    assert [r["value"] for r in results["runs"]] == ["500", "1000"]
    assert all(r["events_per_s"] > 0 and r["cpu_s"]["consumer"] > 0 for r in results["runs"])
    assert results["ratio_after_to_before"] > 0
