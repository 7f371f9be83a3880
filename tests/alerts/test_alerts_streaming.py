"""Spike alerts end to end: ticks with a real jump through the Spark job and a real broker
give exactly one alert per symbol, window and kind on the alerts topic, the ones the rules
give on the oracle's windows, and an update of an alerted window sends nothing again."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.alerts import rules as alerts
from crypto_pipeline.alerts.rules import MOVE, ZSCORE, AlertRules
from crypto_pipeline.core.schema import Tick, parse_alert, parse_time
from crypto_pipeline.core.settings import Duration
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.job import StreamingJob
from support.helpers import processed, produce_ticks, read_topic, wait_for, windows

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 1, tzinfo=timezone.utc)
JUMP_MINUTE = 36


def ticks_with_a_jump() -> list[Tick]:
    """40 minutes of a calm random walk, four ticks a minute, up 3 % at minute 36: the
    windows starting at minutes 32 to 35 open before the jump and close after it."""
    rng = random.Random(5)
    price, ticks = 100.0, []
    for minute in range(40):
        for second in (0, 15, 30, 45):
            price *= 1 + rng.gauss(0, 0.0005) + (0.03 if (minute, second) == (JUMP_MINUTE, 0)
                                                 else 0)
            ticks.append(Tick("BTCUSDT", round(price, 6),
                              START + timedelta(minutes=minute, seconds=second), "test"))
    return ticks


def expected_alerts(ticks: list[Tick], settings) -> dict[str, float]:
    """{key: value} the rules give on the oracle's windows, each z-score against the
    returns of the windows that ended by its start, newest first."""
    oracle = sorted(({**w, "window_start": parse_time(w["window_start"]),
                      "window_end": parse_time(w["window_end"])}
                     for w in windows(ticks, settings).values()),
                    key=lambda w: w["window_start"])
    rules = AlertRules.from_settings(settings)
    found = {}
    for window in oracle:
        recent = [w["pct_change"] for w in reversed(oracle)
                  if w["window_end"] <= window["window_start"]]
        for alert in alerts.detect(window, recent, rules, START):
            found[alerts.key(alert)] = alert["value"]
    return found


def test_a_jump_alerts_once_per_window_and_kind(spark, kafka, settings):
    settings = settings.replace(topic_partitions=1, alert_zscore_min_windows=10,
                                trigger_interval=Duration.parse("200 milliseconds"))
    ensure_topics(settings)
    ticks = ticks_with_a_jump()
    expected = expected_alerts(ticks, settings)
    kinds = {key.rsplit("|", 1)[1] for key in expected}
    jump_windows = {key.split("|")[1] for key in expected}
    assert kinds == {MOVE, ZSCORE} and len(jump_windows) >= 4, "the scenario shows a spike"

    produce_ticks(settings, ticks)
    job = StreamingJob(spark, settings)
    job.start()
    try:
        wait_for(lambda: processed(job) == len(ticks), 120, "every tick processed")
        records = read_topic(kafka, settings.alerts_topic, min_records=len(expected),
                             timeout=60, idle=0.5)
        # An alerted window updated by a later tick (at the same price: its move stays).
        last = ticks[-1]
        produce_ticks(settings, [Tick("BTCUSDT", last.price,
                                      last.event_time + timedelta(seconds=5), "test")])
        wait_for(lambda: processed(job) == len(ticks) + 1, 60, "the update")
        assert job.queries[0].exception() is None
    finally:
        job.stop()

    got = {record.key.decode(): parse_alert(record.value)["value"] for record in records}
    assert len(records) == len(got), "an alert was sent twice"
    assert got == {key: pytest.approx(value) for key, value in expected.items()}
    after_update = read_topic(kafka, settings.alerts_topic, idle=0.5)
    assert len(after_update) == len(records), "the update sent an alert again"
