"""The benchmark keeps working: a tiny run of every part but the slow ones (the figures are not checked)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


def run_module(module: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` in a process group of its own; after 10 minutes the whole group is killed (the
    benchmark's consumer and relay processes too) and the test fails with the end of what it printed."""
    with subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"python -m {module} ran longer than 10 minutes; it printed:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="the benchmark runs on PostgreSQL; checked once, in the PostgreSQL run")
def test_a_tiny_benchmark_run_writes_every_key(tmp_path, bootstrap_servers):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
           "BENCH_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/gc_bench_smoke"}
    # 5,000 events: the steady rates need two batches (up to 1,000 events in a quick run) or more in each of 2
    # processes. A step that hangs fails with the traceback of where it waited (the whole run takes about a minute).
    run = run_module("bench", [
        "--quick", "--users", "300", "--events", "5000", "--latency-events", "200", "--rate", "500", "--scaling",
        "200", "--scaling-events", "200", "--full-sync-users", "300", "--naive-users", "200", "--naive-events", "20",
        "--naive-budget", "2", "--skip", "peer", "--step-timeout", "240", "--results", str(tmp_path)], env)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "quick" / "latest.json").read_text())
    from bench.report import KEYS

    assert set(KEYS) <= set(results)
    assert results["end_to_end_events_per_s"] > 0 and results["latency_p99_ms"] is not None
    assert results["end_to_end_publishing_events_per_s"] > 0 and results["publishing_cost_ratio"] is not None
    # Publishing is on only while measured: only those runs write the outbox.
    assert [run["outbox_rows"] > 0 for run in results["publishing_runs"]] == [False, True]
    assert set(results["replay_events_per_s"]) == {"1", "2"} and min(results["replay_events_per_s"].values()) > 0
    assert set(results["replay_steady_events_per_s"]) == {"1", "2"}
    # Each population twice: a stream about any of its users, then one about the same active users everywhere.
    assert set(results["scaling"]) == {"200", "300"} and set(results["scaling_same_traffic"]) == {"200"}
    assert results["scaling_active_users"] == 200 and results["scaling_changes_per_event"]["200"] > 0
    assert all(in_halves <= batches for in_halves, batches in results["scaling_batches_in_halves"].values())
    assert results["peer_events_per_s"] is None  # skipped parts are null
    assert "end to end, groups-consumer consume" in run.stdout


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="the benchmark runs on PostgreSQL; checked once, in the PostgreSQL run")
def test_a_tiny_comparison_alternates_the_two_values(tmp_path, bootstrap_servers):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers}
    run = run_module("bench.compare", ["--env", "CONSUMER_BATCH_SIZE=500,1000", "--rounds", "1", "--users", "300",
                                       "--events", "4000", "--groups", "20", "--database-url",
                                       "postgres://postgres@127.0.0.1:5432/gc_compare_smoke",
                                       "--results", str(tmp_path)], env)
    assert run.returncode == 0, run.stderr[-3000:]
    [saved] = tmp_path.glob("compare-CONSUMER_BATCH_SIZE-*.json")
    results = json.loads(saved.read_text())
    assert [r["value"] for r in results["runs"]] == ["500", "1000"]
    assert all(r["events_per_s"] > 0 and r["cpu_s"]["consumer"] > 0 for r in results["runs"])
    assert results["ratio_after_to_before"] > 0


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="the benchmark runs on PostgreSQL; checked once, in the PostgreSQL run")
def test_a_comparison_can_run_several_consumer_processes(tmp_path, bootstrap_servers):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers}
    run = run_module("bench.compare", ["--env", "CONSUMER_BATCH_SIZE=500,1000", "--rounds", "1", "--processes", "2",
                                       "--users", "300", "--events", "4000", "--groups", "20", "--database-url",
                                       "postgres://postgres@127.0.0.1:5432/gc_compare_smoke",
                                       "--results", str(tmp_path)], env)
    assert run.returncode == 0, run.stderr[-3000:]
    [saved] = tmp_path.glob("compare-CONSUMER_BATCH_SIZE-*.json")
    results = json.loads(saved.read_text())
    assert results["processes"] == 2
    assert [(r["value"], r["processes"]) for r in results["runs"]] == [("500", 2), ("1000", 2)]
    assert all(r["events_per_s"] > 0 for r in results["runs"])


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="the profiler runs on PostgreSQL; checked once, in the PostgreSQL run")
def test_a_reused_profile_streams_over_the_population_loaded_not_the_users_option():
    env = dict(os.environ)
    database = ["--database-url", "postgres://postgres@127.0.0.1:5432/gc_profile_smoke", "--groups", "10"]
    loaded = run_module("bench.profile", ["--users", "300", "--events", "400", "--batch", "200", "--seed", "1",
                                          *database], env)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "the stream is about users 1 to 300\n" in loaded.stdout and "write differences" in loaded.stdout
    assert re.search(r"CPU per event while applying: this process [\d.]+ µs, its PostgreSQL backend [\d.]+ µs",
                     loaded.stdout)
    reused = run_module("bench.profile", ["--reuse", "--users", "10", "--events", "400", "--batch", "200",
                                          "--seed", "2", *database], env)
    assert reused.returncode == 0, reused.stderr[-3000:]
    [population] = re.findall(r"the stream is about users 1 to ([\d,]+)", reused.stdout)
    assert int(population.replace(",", "")) >= 300  # the first run's registrations may have added users


def test_a_step_over_its_timeout_fails_where_it_waited():
    from bench.timeout import StepTimeout, within

    started = time.monotonic()
    with pytest.raises(StepTimeout, match=r"'waiting' ran longer than 0\.2 s") as raised:
        within(0.2, "waiting", lambda: time.sleep(30))
    assert time.monotonic() - started < 5
    assert raised.traceback[-2].name == "<lambda>"  # the handler raised inside the sleeping step
    assert within(5, "quick", lambda: 42) == 42


def test_the_commit_recorded_with_the_figures_says_when_the_code_is_not_committed(tmp_path, monkeypatch):
    from bench.report import _commit

    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "latest.json").write_text("{}\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()

    (tmp_path / "bench" / "results" / "latest.json").write_text('{"a": 1}\n')  # results do not count
    assert _commit() == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert _commit() == f"{head}+uncommitted"
