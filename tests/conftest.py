"""Shared fixtures: a real Kafka broker, a real SparkSession and a real PostgreSQL server,
each started once per run.

Every integration test gets its own topics and checkpoint directories (`settings`), so
tests share one broker without seeing each other's data. Set TEST_KAFKA_BOOTSTRAP to run
against a broker that is already up instead of starting one. A test asking for
PostgreSQL gets a database of its own on the shared server (`postgres_url`); without
PostgreSQL on the machine it is skipped, in CI it fails.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from crypto_pipeline.core.history import sqlite_url
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import Duration, Settings
from support.fake_binance import FakeBinance
from support.fake_binance_ws import FakeBinanceWs
from support.helpers import METRICS_OFF, free_port
from support.webhook_receiver import WebhookReceiver

DASHBOARD_SCRIPT = PROJECT_ROOT / "src" / "dashboard.py"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """Bootstrap servers of a real single-node KRaft broker on a free port."""
    existing = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    from crypto_pipeline.kafka_io.embedded import EmbeddedKafka

    root = tmp_path_factory.mktemp("kafka")
    broker = EmbeddedKafka(root / "data", root / "logs", port=free_port(consecutive=2),
                           heap="384m")
    broker.start(timeout=120)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server (support.postgres) for the run."""
    from support import postgres as pg

    reason = pg.missing_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with pg.PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres) -> Iterator[str]:
    """The URL of a new, empty database on the test server, dropped after the test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request, tmp_path) -> str:
    """A HISTORY_URL of each engine: the same test runs against both."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(kafka, tmp_path) -> Settings:
    """Settings pointing at the test broker, with topics and state private to this test."""
    tag = uuid.uuid4().hex[:8]
    return Settings.load(environ={}, env_file=None).replace(
        kafka_bootstrap_servers=kafka,
        input_topic=f"ticks-{tag}",
        output_topic=f"aggregates-{tag}",
        dlq_topic=f"dlq-{tag}",
        alerts_topic=f"alerts-{tag}",
        candles_topic=f"candles-{tag}",
        topic_partitions=2,
        checkpoint_dir=tmp_path / "checkpoints" / "aggregates",
        history_url=sqlite_url(tmp_path / "history.sqlite"),
        run_dir=tmp_path / "run",
        kafka_data_dir=tmp_path / "kafka-data",
        trigger_interval=Duration.parse("1 second"),
        backfill_enabled=False,
        **METRICS_OFF,
    )


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the run (starting one takes seconds)."""
    from crypto_pipeline.streaming.session import build_session

    settings = Settings.load(environ={"SPARK_UI_PORT": str(free_port())}, env_file=None)
    session = build_session(settings, "tests", **{"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


@pytest.fixture
def chromium():
    """Headless Chromium (Playwright Browser); in CI a missing browser fails the test."""
    from support import browser

    reason = browser.missing_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with browser.chromium() as opened:
        yield opened


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests keep what a person may want to look at after the run (screenshots)."""
    path = PROJECT_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def fake_binance() -> Iterator[FakeBinance]:
    """The Binance REST stand-in, running on a free port; its URL is `fake_binance.url`."""
    with FakeBinance() as server:
        yield server


@pytest.fixture
def fake_binance_ws() -> Iterator[FakeBinanceWs]:
    """The Binance WebSocket stand-in on a free port, trades flowing."""
    with FakeBinanceWs() as server:
        yield server


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A Slack-compatible webhook receiver on a free port."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def live(settings, fake_binance) -> Settings:
    """Settings polling the stand-in five times a second. The read timeout is generous: an
    answer the stand-in served but the client gave up on would count as lost."""
    return settings.replace(binance_base_url=fake_binance.url, poll_interval_seconds=0.2,
                            symbols=("BTCUSDT", "ETHUSDT"), http_read_timeout_seconds=5.0)


@pytest.fixture
def dashboard(monkeypatch):
    """Starts an AppTest of the dashboard script for given settings; the feed it starts is
    stopped after, its record of sign-ins and its metrics endpoint go, and the logging
    set-up the script does for its process is undone."""
    from streamlit.testing.v1 import AppTest

    from crypto_pipeline.dashboard import app, auth, page

    def start(settings: Settings) -> AppTest:
        for name, value in settings.to_environ().items():
            monkeypatch.setenv(name, value)
        return AppTest.from_file(DASHBOARD_SCRIPT, default_timeout=30)

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield start
    # Server-wide state lives as long as the process: each test starts a new "server".
    for cached in (page.shared_feed, auth.server_logins, app.metrics_server,
                   app.server_collector):
        cached.clear()
    root.handlers[:], root.level = handlers, level
