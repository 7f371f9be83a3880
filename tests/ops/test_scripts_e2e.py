"""start.sh / status.sh / stop.sh end to end, in a temporary copy of the project, the way
a user runs them: the Binance stand-in as BINANCE_BASE_URL, the dashboard looked at in
headless Chromium, and a second start that resumes from the checkpoints."""

import logging
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import free_port, port_in_use
from support import browser
from support.fake_binance import fake_binance_process
from support.helpers import METRICS_OFF, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]
log = logging.getLogger(__name__)

SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture
def project(tmp_path):
    """A copy of the checkout (tracked and new files), sharing the installed .venv and .jvm
    so that set-up has nothing to fetch."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    copy = tmp_path / "project"
    for name in listed.stdout.splitlines():
        source = PROJECT_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    for shared in (".venv", ".jvm"):
        (copy / shared).symlink_to(PROJECT_ROOT / shared)
    yield copy
    # Whatever happened, nothing this test started may outlive it.
    subprocess.run([str(copy / "stop.sh")], cwd=copy, capture_output=True, timeout=180)


def run(project: Path, env: dict, *args: str, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=project, env=env, capture_output=True, text=True,
                          timeout=timeout)


def window_counts(project: Path) -> dict[tuple[str, str], int]:
    with sqlite3.connect(project / "data" / "history.sqlite") as db:
        return {(s, w): c for s, w, c in db.execute(
            "SELECT symbol, window_start, count FROM aggregates")}


def test_start_status_stop_and_resume(project, chromium):
    kafka_port, dashboard_port, spark_port = free_port(consecutive=2), free_port(), free_port()
    ports = (kafka_port, kafka_port + 1, dashboard_port, spark_port)
    with fake_binance_process() as (_, binance_url):
        env = {**{k: v for k, v in os.environ.items() if k != "CI"},
               "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{kafka_port}",
               "DASHBOARD_PORT": str(dashboard_port), "SPARK_UI_PORT": str(spark_port),
               "BINANCE_BASE_URL": binance_url, "SYMBOLS": ",".join(SYMBOLS),
               "POLL_INTERVAL_SECONDS": "1", "TRIGGER_INTERVAL": "1 second",
               "DASHBOARD_REFRESH_SECONDS": "1", "BACKFILL_ENABLED": "false",
               **{name.upper(): "0" for name in METRICS_OFF}}
        began = time.monotonic()
        started = run(project, env, "./start.sh")
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"Dashboard  http://127.0.0.1:{dashboard_port}" in started.stdout
        for step in ("Starting Kafka", "Creating topics", "Starting the producer",
                     "Starting the Spark job", "Starting the dashboard"):
            assert step in started.stdout

        status = run(project, env, "./status.sh", timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        for name in ("kafka", "producer", "spark", "dashboard"):
            assert any(line.startswith(name) and " running " in line
                       for line in status.stdout.splitlines()), status.stdout

        page = chromium.new_page()
        page.goto(f"http://127.0.0.1:{dashboard_port}")
        for symbol in SYMBOLS:
            page.locator(browser.kpi_selector(symbol, "count")).wait_for(timeout=120_000)
        log.info("./start.sh to KPIs on the page: %.1f s", time.monotonic() - began)
        page.close()

        before = wait_for(lambda: window_counts(project), 60, "windows in the history store")
        stopped = run(project, env, "./stop.sh", timeout=240)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not list((project / "logs" / "run").glob("*.pid"))
        wait_for(lambda: not any(port_in_use(p) for p in ports), 30, "no port to be listened on")
        after_stop = window_counts(project)

        again = run(project, env, "./start.sh")
        assert again.returncode == 0, again.stdout + again.stderr
        # The newest window was open when the pipeline stopped; after the restart it must
        # go on counting from its checkpointed state, not start again from the new ticks.
        newest = max(after_stop, key=lambda key: key[1])

        def grew():
            return window_counts(project).get(newest, 0) > after_stop[newest]

        wait_for(grew, 120, f"window {newest} to go on counting after the restart")
        counts = window_counts(project)
        assert all(counts[key] >= count for key, count in before.items()), \
            "a window was recomputed from scratch after the restart"
        assert run(project, env, "./stop.sh", timeout=240).returncode == 0
