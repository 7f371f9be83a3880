"""The Spark job end to end with a real broker: exact aggregates across a restart, poison
to the dead-letter topic, a failing batch stops the job, the entry point stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.history import open_history, sqlite_url
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.schema import Tick, candle_key, format_time
from crypto_pipeline.core.settings import EXIT_CONFIG_ERROR, Duration
from crypto_pipeline.dashboard import views
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.job import StreamingJob, kafka_backlog
from support.dashboard_support import aggregate
from support.helpers import (
    as_text,
    candles,
    free_port,
    history_by_key,
    history_candles,
    latest_by_key,
    processed,
    produce,
    produce_ticks,
    read_topic,
    run_to_the_end,
    spark_status,
    wait_for,
    windows,
)
from support.oracle import candle_mismatches, mismatches
from support.tick_scenarios import POISON, out_of_order, replay_ticks, shifted

pytestmark = pytest.mark.integration

FAST = Duration.parse("200 milliseconds")


def test_restart_from_the_checkpoint_loses_and_double_counts_nothing(spark, kafka, settings):
    # One partition: the ticks arrive in exactly the order sent, so none is later than
    # the watermark allows (with several partitions Spark may read one ahead of another).
    settings = settings.replace(topic_partitions=1, max_offsets_per_trigger=150,
                                trigger_interval=FAST)
    ensure_topics(settings)
    btc = replay_ticks("BTCUSDT-1m-2025-08-01_2025-08-10.csv", minutes=45)
    eth = replay_ticks("ETHUSDT-1m-2022-08-14.csv", minutes=45, with_quantity=True)
    eth = shifted(eth, btc[0].event_time - eth[0].event_time)
    ticks = sorted(btc + eth, key=lambda t: t.event_time)
    delivered = out_of_order(ticks, 60, seed=1)
    produce_ticks(settings, delivered)
    # Beyond HISTORY_RETENTION (counted back from the newest window): the second start
    # prunes it, when the first run's windows are in the store.
    with open_history(settings.history_url) as history:
        history.upsert([aggregate("OLDUSDT", ticks[0].event_time - timedelta(days=31), 1.0)])

    first = StreamingJob(spark, settings)
    first.start()
    try:
        wait_for(lambda: processed(first) > 0, 120, "the first micro-batch")
    finally:
        assert first.stop() == 0
    assert spark_status(settings.run_dir).state == "stopped"
    assert 0 < processed(first) < len(delivered), "stopped mid-stream"

    second = StreamingJob(spark, settings)
    second.start()
    try:
        wait_for(lambda: processed(second) == len(delivered), 120, "every tick processed")
        wait_for(lambda: not any(key.startswith("OLDUSDT|") for key in history_by_key(settings)),
                 30, "the retention's prune on start")
        actual = latest_by_key(read_topic(kafka, settings.output_topic, idle=0.3))
        assert mismatches(actual, windows(ticks, settings)) == []
        assert mismatches(history_by_key(settings), windows(ticks, settings)) == []
        minutes = candles(ticks, settings)
        got = latest_by_key(read_topic(kafka, settings.candles_topic, idle=0.3))
        assert candle_mismatches(got, minutes) == []
        assert candle_mismatches(history_candles(settings), minutes) == []
        # Every timeframe the dashboard offers, rolled up from the job's candles.
        with open_history(settings.history_url) as history:
            stored = history.load_candles()
        for timeframe in views.TIMEFRAMES.values():
            rolled = {candle_key(c["symbol"], format_time(c["open_time"])): as_text(c)
                      for c in views.rollup(stored, timeframe, settings.poll_interval_seconds)}
            assert candle_mismatches(rolled, candles(ticks, settings, timeframe)) == []

        # A tick ten minutes on moves the watermark past every window so far; a tick
        # older than the watermark after that is dropped and counted, not aggregated.
        later = Tick("BTCUSDT", 120000.0, ticks[-1].event_time + timedelta(minutes=10), "late")
        produce_ticks(settings, [later])
        wait_for(lambda: processed(second) == len(delivered) + 1, 60, "the later tick")
        too_late = Tick("BTCUSDT", 1.0, ticks[-1].event_time, "late")
        windows_per_tick = round(settings.window_duration.seconds / settings.window_slide.seconds)
        produce_ticks(settings, [too_late])
        # Spark drops it from each of its windows: a late row per window it falls in.
        wait_for(lambda: spark_status(settings.run_dir).late_rows == windows_per_tick, 60,
                 "the late tick to be dropped")
        expected = windows(ticks + [later], settings)
        assert mismatches(latest_by_key(read_topic(kafka, settings.output_topic, idle=0.3)),
                          expected) == []
        assert mismatches(history_by_key(settings), expected) == []
        assert candle_mismatches(history_candles(settings),
                                 candles(ticks + [later], settings)) == []
        assert len(open_history(settings.history_url).load()) == len(expected)
        status = spark_status(settings.run_dir)
        assert status.state == "active" and status.backlog == 0
        assert status.query_id == str(second.queries[0].id) == str(first.queries[0].id)
        assert status.dlq_rows == 0 and status.state_rows > 0
    finally:
        second.stop()


def test_poison_goes_to_the_dead_letter_topic_and_the_job_keeps_running(spark, kafka, settings):
    settings = settings.replace(trigger_interval=FAST)
    ensure_topics(settings)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    good = [Tick("BTCUSDT", 97000.0, now - timedelta(seconds=2), "test"),
            Tick("BTCUSDT", 97010.0, now - timedelta(seconds=1), "test")]
    produce_ticks(settings, good[:1])
    sent = produce(settings, [(b"BTCUSDT", value.encode() if isinstance(value, str) else value)
                              for value, _ in POISON.values()])
    produce_ticks(settings, good[1:])
    origins = {(meta.partition, meta.offset): poison
               for meta, poison in zip(sent, POISON.values())}

    job = StreamingJob(spark, settings)
    job.start()
    try:
        letters = read_topic(kafka, settings.dlq_topic, min_records=len(POISON), timeout=120,
                             idle=0.5)
        assert len(letters) == len(POISON)
        for record in letters:
            letter = json.loads(record.value)
            assert record.key == b"BTCUSDT" and letter["source_topic"] == settings.input_topic
            value, reason = origins[(letter["source_partition"], letter["source_offset"])]
            assert letter["reason"] == reason
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            assert letter["value"] == text

        aggregates = wait_for(lambda: latest_by_key(read_topic(
            kafka, settings.output_topic, idle=0.2, timeout=5)), 60, "aggregates")
        assert {a["count"] for a in aggregates.values()} == {2}
        assert all(query.isActive and query.exception() is None for query in job.queries)
        wait_for(lambda: spark_status(settings.run_dir).dlq_rows == len(POISON), 30,
                 "the status to count the dead letters")
    finally:
        job.stop()


def test_a_failing_batch_stops_the_job_with_its_error(spark, settings, tmp_path):
    # A directory where the history database should be: every batch's upsert fails.
    settings = settings.replace(history_url=sqlite_url(tmp_path), trigger_interval=FAST)
    ensure_topics(settings)
    produce_ticks(settings, [Tick("BTCUSDT", 97000.0, datetime.now(timezone.utc), "test")])
    exit_code = run_to_the_end(StreamingJob(spark, settings), 120)
    assert exit_code == 1
    status = spark_status(settings.run_dir)
    assert status.state == "failed"
    assert status.last_error == "sqlite3.OperationalError: unable to open database file"


def test_a_checkpoint_of_the_deduplicating_version_stops_the_job_with_advice(
        spark, settings, caplog):
    """The version before kept a dropDuplicates of every tick in its state; its checkpoint
    cannot be resumed by a job without it. The job says what to move away and exits with
    the configuration-error code, which its supervisor does not restart."""
    from pyspark.sql import functions as F

    from crypto_pipeline.kafka_io.clients import spark_options
    from crypto_pipeline.streaming.transforms import parse_records, valid_ticks

    settings = settings.replace(trigger_interval=FAST)
    ensure_topics(settings)
    produce_ticks(settings, [Tick("BTCUSDT", 97000.0, datetime.now(timezone.utc), "test")])
    source = (spark.readStream.format("kafka").options(**spark_options(settings))
              .option("subscribe", settings.input_topic)
              .option("startingOffsets", "earliest").load())
    ticks = valid_ticks(parse_records(source, settings.max_clock_skew))
    previous = (ticks.withWatermark("event_time", settings.watermark_delay.spark)
                .dropDuplicates(["symbol", "event_time", "source", "event_id"])
                .groupBy(F.window("event_time", settings.window_duration.spark,
                                  settings.window_slide.spark), "symbol")
                .agg(F.count("price").alias("count")))
    old = (previous.writeStream.outputMode("update").format("noop")
           .option("checkpointLocation", str(settings.checkpoint_dir)).start())
    try:
        wait_for(lambda: old.lastProgress and old.lastProgress["numInputRows"], 120,
                 "the old version's first batch")
    finally:
        old.stop()

    exit_code = run_to_the_end(StreamingJob(spark, settings), 120)
    assert exit_code == EXIT_CONFIG_ERROR
    assert "STATEFUL_OPERATOR" in spark_status(settings.run_dir).last_error
    assert any("another version of the aggregation" in m and "move" in m
               and str(settings.checkpoint_dir) in m for m in caplog.messages)


def test_the_entry_point_reports_status_and_stops_cleanly_on_sigterm(kafka, settings, tmp_path):
    ensure_topics(settings)
    produce_ticks(settings, [Tick("ETHUSDT", 3000.5, datetime.now(timezone.utc), "test")])
    ui_port = free_port()
    env = {**os.environ,
           **{name.upper(): str(value) for name, value in {
               "kafka_bootstrap_servers": kafka, "input_topic": settings.input_topic,
               "output_topic": settings.output_topic, "dlq_topic": settings.dlq_topic,
               "checkpoint_dir": settings.checkpoint_dir, "history_url": settings.history_url,
               "run_dir": settings.run_dir, "spark_ui_port": ui_port, "spark_master": "local[2]",
               "trigger_interval": "500 milliseconds", "shuffle_partitions": 2}.items()}}
    log_file = tmp_path / "streaming_app.log"
    with open(log_file, "wb") as log:
        app = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "src" / "streaming_app.py")],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def active():
            assert app.poll() is None, log_file.read_text()[-3000:]
            status = spark_status(settings.run_dir)
            return status.state == "active" and status.batch_id >= 0 and status

        status = wait_for(active, 120, "the job to report an active query")
        assert status.input_rows >= 1 and status.last_error is None
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/", timeout=10) as page:
            assert page.status == 200
        assert read_topic(kafka, settings.output_topic, min_records=1, timeout=30)

        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=60) == 0, log_file.read_text()[-3000:]
        assert spark_status(settings.run_dir).state == "stopped"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()


def test_backlog_and_error_lines():
    assert kafka_backlog('{"t": {"0": 5, "1": 7}}', '{"t": {"0": 9, "1": 7}}') == 4
    assert kafka_backlog(None, '{"t": {"0": 9}}') is None
    assert one_line(RuntimeError("\n  first line\nsecond")) == "first line"
    assert one_line(RuntimeError("")) == "RuntimeError"
    python_error = ("An exception was raised by the Python Proxy. Return Message: Traceback "
                    "(most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n"
                    "ValueError: bad\n\n=== Streaming Query ===\nIdentifier: q\n")
    assert one_line(python_error) == "ValueError: bad"
