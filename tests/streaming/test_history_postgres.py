"""The whole pipeline with its history in a real PostgreSQL: the Spark job (real Kafka,
real Spark) writes exactly the oracle's windows there and a dashboard started afterwards
shows them; the database stopped and started again while ticks stream in loses and
repeats nothing (the failed batch fails the job, its supervisor restarts it, the batch
runs again from the checkpoint)."""

from __future__ import annotations

import math
import threading

import pytest

from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.core.processes import free_port
from crypto_pipeline.core.settings import Duration
from crypto_pipeline.dashboard import feed as feed_module
from crypto_pipeline.dashboard.feed import KafkaFeed
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.job import StreamingJob
from support.dashboard_support import metric_value, shows
from support.helpers import (
    by_key,
    eventually,
    history_by_key,
    latest_by_key,
    processed,
    produce_ticks,
    read_topic,
    wait_for,
    windows,
)
from support.oracle import mismatches
from support.postgres import PASSWORD
from support.supervised import Supervised
from support.tick_scenarios import replay_ticks, shifted

pytestmark = pytest.mark.integration

MINUTES = 30
FEED_SECONDS = 10


def real_ticks():
    """BTCUSDT and ETHUSDT klines (ETHUSDT moved to the same minutes): 240 ticks."""
    btc = replay_ticks("BTCUSDT-1m-2025-08-01_2025-08-10.csv", minutes=MINUTES)
    eth = replay_ticks("ETHUSDT-1m-2022-08-14.csv", minutes=MINUTES, with_quantity=True)
    eth = shifted(eth, btc[0].event_time - eth[0].event_time)
    return sorted(btc + eth, key=lambda t: t.event_time)


def test_the_job_writes_the_history_to_postgres_and_a_dashboard_shows_it(
        spark, settings, postgres_url, dashboard):
    # One partition: ticks are read in the order sent, none later than the watermark.
    settings = settings.replace(history_url=postgres_url, topic_partitions=1,
                                max_offsets_per_trigger=80,
                                trigger_interval=Duration.parse("200 milliseconds"))
    ensure_topics(settings)
    ticks = real_ticks()
    produce_ticks(settings, ticks)
    expected = windows(ticks, settings)

    job = StreamingJob(spark, settings)
    job.start()
    try:
        wait_for(lambda: processed(job) == len(ticks), 120, "every tick processed")
        wait_for(lambda: not mismatches(history_by_key(settings), expected), 30,
                 "the history to equal the oracle")
    finally:
        assert job.stop() == 0

    # Kafka is down for this dashboard: what it shows comes from PostgreSQL.
    offline = settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    at = dashboard(offline)
    latest = max((w for w in expected.values() if w["symbol"] == "BTCUSDT"),
                 key=lambda w: w["window_start"])
    shown = fmt.price(latest["avg_price"], fmt.price_decimals(latest["avg_price"]))
    wait_for(lambda: shows(at, lambda at: metric_value(at, "kpi-BTCUSDT-avg_price") == shown),
             30, "the newest BTCUSDT window from the history")
    assert metric_value(at, "kpi-ETHUSDT-avg_price") is not None
    assert not [text for text in (w.value for w in at.warning) if "history store" in text]


def feed(settings, ticks, stop: threading.Event) -> None:
    """The ticks stream in, a chunk a second for FEED_SECONDS."""
    chunk = math.ceil(len(ticks) / FEED_SECONDS)
    for start in range(0, len(ticks), chunk):
        if stop.wait(0 if start == 0 else 1.0):
            return
        produce_ticks(settings, ticks[start:start + chunk])


def test_postgres_stopped_and_started_mid_stream_loses_and_repeats_nothing(
        settings, postgres, postgres_url, tmp_path, monkeypatch):
    monkeypatch.setattr(feed_module, "HISTORY_CHECK_SECONDS", 0.5)
    settings = settings.replace(
        history_url=postgres_url, topic_partitions=1, max_offsets_per_trigger=40,
        trigger_interval=Duration.parse("500 milliseconds"), spark_master="local[2]",
        spark_ui_port=free_port(), history_connect_timeout=Duration.parse("3 minutes"))
    ensure_topics(settings)
    ticks = real_ticks()
    delivered = ticks
    before, during = delivered[:len(delivered) // 3], delivered[len(delivered) // 3:]
    expected = windows(ticks, settings)

    job = Supervised("spark", settings, tmp_path,
                     SPARK_LOCAL_DIRS=str(tmp_path / "spark-local")).start()
    dashboard = KafkaFeed(settings).start()
    stop_feeding = threading.Event()
    # The rest of the ticks stream in while the database is down and comes back.
    feeder = threading.Thread(target=feed, args=(settings, during, stop_feeding),
                              name="feeder", daemon=True)
    try:
        job.wait_healthy(240)
        produce_ticks(settings, before)
        wait_for(lambda: history_by_key(settings), 120, "the first windows in PostgreSQL")

        postgres.stop("immediate")  # a crash: no goodbye to the connected job
        try:
            feeder.start()
            wait_for(lambda: job.restarts >= 1, 120, "the job to fail and be restarted")
            error = wait_for(lambda: dashboard.health().history_error, 30,
                             "the dashboard to say the history is unavailable")
            assert error.startswith("HISTORY_URL=postgresql://pipeline:***@") \
                and PASSWORD not in error
            # The restarted job waits for the database instead of giving up.
            wait_for(lambda: "the history database does not answer" in job.tail(), 120,
                     "the restarted job to wait for PostgreSQL")
        finally:
            postgres.start()
        wait_for(lambda: dashboard.health().history_error is None, 30,
                 "the dashboard to see the history again")
        feeder.join(60)
        assert not feeder.is_alive(), "the feeder did not finish"

        done = eventually(lambda: not mismatches(history_by_key(settings), expected), 240)
        assert done, mismatches(history_by_key(settings), expected)
        actual = latest_by_key(read_topic(settings.kafka_bootstrap_servers,
                                          settings.output_topic, idle=0.5, timeout=60))
        assert mismatches(actual, expected) == []
        # What the dashboard got from Kafka meanwhile is the same.
        shown = by_key(w for ws in dashboard.store.snapshot().windows.values() for w in ws)
        assert mismatches(shown, expected) == []
        assert job.running_child() and job.restarts == 1, "the restarted job runs on"
        log = job.log_file.read_text(errors="replace")
        assert "a query failed: psycopg.OperationalError: " in log and PASSWORD not in log
    finally:
        stop_feeding.set()
        if feeder.ident:
            feeder.join(30)
        dashboard.stop()
        job.stop()
        if not postgres.running:
            postgres.start()
