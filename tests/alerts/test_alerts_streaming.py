"""Spike alerts end to end: ticks with real jumps through the Spark job and a real broker.
A single 6 % jump gives exactly one alert for its symbol, a second, larger jump within the
cooldown one more, each the one the rules choose on the oracle's windows; an update of an
alerted window sends nothing again; the backtest over the history the job wrote counts
what the live rules raised."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.alerts import backtest
from crypto_pipeline.alerts import rules as alerts
from crypto_pipeline.alerts.rules import MOVE, AlertRules
from crypto_pipeline.core.history import open_history
from crypto_pipeline.core.schema import Tick, parse_alert, parse_time
from crypto_pipeline.core.settings import Duration
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.job import StreamingJob
from support.helpers import processed, produce_ticks, read_topic, wait_for, windows

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 1, tzinfo=timezone.utc)
# Up 6 % at minute 36, then 8 % more at minute 42: within the cooldown of the first
# alert, and more than the threshold beyond its move.
JUMPS = {36: 0.06, 42: 0.08}
MINUTES = 50


def ticks_with_jumps() -> list[Tick]:
    """A calm random walk, four ticks a minute, with the jumps: the windows starting at
    minutes 32 to 35 open before the first and close after it, 38 to 41 the second."""
    rng = random.Random(5)
    price, ticks = 100.0, []
    for minute in range(MINUTES):
        for second in (0, 15, 30, 45):
            price *= 1 + rng.gauss(0, 0.0005) + (JUMPS.get(minute, 0) if second == 0 else 0)
            ticks.append(Tick("BTCUSDT", round(price, 6),
                              START + timedelta(minutes=minute, seconds=second), "test"))
    return ticks


def expected_alerts(ticks: list[Tick], settings) -> dict[str, float]:
    """{key: value} the rules choose on the oracle's windows, each z-score against the
    returns of the windows that ended by its start, newest first."""
    oracle = sorted(({**w, "window_start": parse_time(w["window_start"]),
                      "window_end": parse_time(w["window_end"])}
                     for w in windows(ticks, settings).values()),
                    key=lambda w: w["window_start"])
    rules = AlertRules.from_settings(settings)
    found = []
    for window in oracle:
        recent = [w["pct_change"] for w in reversed(oracle)
                  if w["window_end"] <= window["window_start"]]
        found += alerts.detect(window, recent, rules, START)
    return {alerts.key(alert): alert["value"] for alert in alerts.choose(found, [], rules)}


def test_one_jump_one_alert_a_larger_one_within_the_cooldown_one_more(spark, kafka,
                                                                      settings):
    # Small batches: the job sees the jumps' windows while they are still open.
    settings = settings.replace(topic_partitions=1, alert_zscore_min_windows=10,
                                max_offsets_per_trigger=40,
                                trigger_interval=Duration.parse("200 milliseconds"))
    ensure_topics(settings)
    ticks = ticks_with_jumps()
    first_part = [t for t in ticks if t.event_time < START + timedelta(minutes=41)]
    expected_first = expected_alerts(first_part, settings)
    expected = expected_alerts(ticks, settings)
    assert len(expected_first) == 1 and len(expected) == 2, "the scenario as described"

    produce_ticks(settings, first_part)
    job = StreamingJob(spark, settings)
    job.start()
    try:
        wait_for(lambda: processed(job) == len(first_part), 120, "the first jump processed")
        records = read_topic(kafka, settings.alerts_topic, min_records=1, timeout=60, idle=0.5)
        assert [r.key.decode() for r in records] == list(expected_first)
        first = parse_alert(records[0].value)
        assert (first["kind"], first["windows"]) == (MOVE, 4), "one alert for four windows"

        produce_ticks(settings, ticks[len(first_part):])
        wait_for(lambda: processed(job) == len(ticks), 120, "every tick processed")
        # An alerted window updated by a later tick (at the same price: its move stays).
        last = ticks[-1]
        produce_ticks(settings, [Tick("BTCUSDT", last.price,
                                      last.event_time + timedelta(seconds=5), "test")])
        wait_for(lambda: processed(job) == len(ticks) + 1, 60, "the update")
        assert job.queries[0].exception() is None
    finally:
        job.stop()

    records = read_topic(kafka, settings.alerts_topic, min_records=2, timeout=30, idle=0.5)
    got = {record.key.decode(): parse_alert(record.value)["value"] for record in records}
    assert len(records) == len(got) == 2, "an alert was sent twice"
    assert got == {key: pytest.approx(value, rel=0.05) for key, value in expected.items()}

    with open_history(settings.history_url) as history:
        results, raised = backtest.backtest(history, AlertRules.from_settings(settings),
                                            START)
    assert {symbol: result.total for symbol, result in results.items()} == {"BTCUSDT": 2}
    assert {alerts.key(alert) for alert in raised} == set(got)
