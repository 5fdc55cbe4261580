"""``python -m bench.web`` keeps working: a tiny run (the figures are not checked)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
                    reason="the benchmark runs on PostgreSQL; checked once, in the PostgreSQL run")
@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed")
def test_a_tiny_web_benchmark_run_measures_both_endpoints_and_both_pages(tmp_path, bootstrap_servers):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
           "BENCH_WEB_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/gc_webbench_smoke"}
    run = subprocess.run([sys.executable, "-m", "bench.web", "--quick", "--users", "400", "--groups", "10",
                          "--page-size", "5", "--far-page", "50", "--duration", "1", "--warmup", "0",
                          "--connections", "4", "--page-samples", "5", "--results", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    [path] = (tmp_path / "quick").glob("web-*.json")
    results = json.loads(path.read_text())
    assert results["everyone_members"] == 400
    for endpoint in ("users_groups", "members"):
        assert results[endpoint]["requests"] > 0 and results[endpoint]["p99_ms"] > 0
    assert results["pages"]["far_page_after_user_id"] == 49 * 5  # members are users 1..400, five a page
    assert {"page_1", "page_50"} <= set(results["pages"]["explain"])
    assert results["consumer"]["consumed"] >= 1
