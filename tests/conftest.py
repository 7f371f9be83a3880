"""Shared fixtures: a real Kafka broker and a real SparkSession, started once per run.

Every integration test gets its own topics and checkpoint directories (`settings`), so
tests share one broker without seeing each other's data. Set TEST_KAFKA_BOOTSTRAP to run
against a broker that is already up instead of starting one.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from crypto_pipeline.settings import Duration, Settings
from helpers import free_port


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """Bootstrap servers of a real single-node KRaft broker on a free port."""
    existing = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    from crypto_pipeline.embedded_kafka import EmbeddedKafka

    root = tmp_path_factory.mktemp("kafka")
    broker = EmbeddedKafka(root / "data", root / "logs", port=free_port(consecutive=2),
                           heap="384m")
    broker.start(timeout=120)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


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
        topic_partitions=2,
        checkpoint_dir=tmp_path / "checkpoints" / "aggregates",
        history_db=tmp_path / "history.sqlite",
        run_dir=tmp_path / "run",
        kafka_data_dir=tmp_path / "kafka-data",
        trigger_interval=Duration.parse("1 second"),
        backfill_enabled=False,
    )


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the run (starting one takes seconds)."""
    from crypto_pipeline.spark_session import build_session

    settings = Settings.load(environ={"SPARK_UI_PORT": str(free_port())}, env_file=None)
    session = build_session(settings, "tests", **{"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


@pytest.fixture
def chromium():
    """Headless Chromium (Playwright Browser); in CI a missing browser fails the test."""
    from crypto_pipeline import browser

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
    path = Path(__file__).resolve().parents[1] / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
