"""Spike alerts: the rules on known aggregates, sent once through a real broker (no repeat on
an update, nor after a restart), and the webhook against a local HTTP receiver."""

from __future__ import annotations

import json
import logging
import statistics
import time
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.alerts import rules as alerts
from crypto_pipeline.alerts.publisher import SpikeAlerts
from crypto_pipeline.alerts.rules import MOVE, ZSCORE, AlertRules, detect
from crypto_pipeline.alerts.webhook import AlertWebhook, slack_body
from crypto_pipeline.core.history import open_history
from crypto_pipeline.core.schema import ALERT_FIELDS, parse_alert
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.topics import ensure_topics
from support.dashboard_support import aggregate
from support.helpers import read_topic, wait_for

START = datetime(2025, 1, 15, 14, 30, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)
RULES = AlertRules(pct_threshold=1.0, zscore_threshold=3.0, zscore_windows=30,
                   zscore_min_windows=20)
# Twenty calm returns: mean 0, sample standard deviation 0.1 * sqrt(20 / 19).
CALM = [0.1, -0.1] * 10
CALM_SD = 0.1 * (20 / 19) ** 0.5


def window(pct: float, start: datetime = START, symbol: str = "BTCUSDT") -> dict:
    record = aggregate(symbol, start, 100.0)
    return {**record, "open_price": 100.0, "close_price": 100.0 + pct, "pct_change": pct}


def kinds(found: list[dict]) -> dict[str, float]:
    return {alert["kind"]: alert["value"] for alert in found}


@pytest.mark.parametrize("pct,alerted", [(1.5, True), (-1.5, True), (1.0, False),
                                         (-0.99, False), (0.0, False)])
def test_a_move_beyond_the_threshold_either_way_alerts(pct, alerted):
    found = detect(window(pct), [], RULES, START)
    assert kinds(found) == ({MOVE: pct} if alerted else {})
    if alerted:
        assert found[0]["threshold"] == 1.0
        assert [list(found[0])] == [[f.name for f in ALERT_FIELDS]]


def test_the_zscore_compares_with_recent_returns():
    # 0.35 % is no move alert, but 3.41 standard deviations of the calm returns.
    found = detect(window(0.35), CALM, RULES, START)
    assert kinds(found) == {ZSCORE: pytest.approx(0.35 / CALM_SD)}
    assert found[0]["value"] > 3.0 and found[0]["threshold"] == 3.0
    # A fall counts the same; within three deviations is no alert.
    assert kinds(detect(window(-0.35), CALM, RULES, START)) == {
        ZSCORE: pytest.approx(-0.35 / CALM_SD)}
    assert detect(window(0.3), CALM, RULES, START) == []
    # A big move after calm returns raises both kinds.
    assert set(kinds(detect(window(2.0), CALM, RULES, START))) == {MOVE, ZSCORE}


def test_the_zscore_needs_enough_varying_history_and_looks_only_so_far_back():
    assert detect(window(0.35), CALM[:19], RULES, START) == [], "19 of the 20 needed"
    assert detect(window(0.35), [0.05] * 25, RULES, START) == [], "flat: no volatility"
    # Only the newest 30 returns count: wild ones further back change nothing.
    recent = CALM + [0.0] * 10
    assert kinds(detect(window(0.35), recent + [9.0, -9.0] * 5, RULES, START)) == kinds(
        detect(window(0.35), recent, RULES, START))
    assert alerts.zscore(1.0, [1.0]) is None


def test_rules_come_from_the_settings():
    settings = Settings.load(environ={"ALERT_PCT_THRESHOLD": "0.5", "ALERT_ZSCORE_WINDOWS": "10",
                                      "ALERT_ZSCORE_MIN_WINDOWS": "40"}, env_file=None)
    # A minimum above the count could never be met: the count is the minimum then.
    assert AlertRules.from_settings(settings) == AlertRules(0.5, 3.0, 10, 10)


@pytest.mark.integration
def test_one_alert_per_window_and_kind_through_updates_and_restarts(settings, kafka,
                                                                    webhook_receiver):
    ensure_topics(settings)
    history = open_history(settings.history_url)
    # 25 calm windows that all ended before the spike window starts, and 4 that overlap
    # it with wild returns: those share ticks with it and must not count.
    calm = [window(CALM[i % 20] if i < 20 else 0.0, START + i * MINUTE) for i in range(25)]
    spike_start = START + 29 * MINUTE
    overlapping = [window(5.0, spike_start - k * MINUTE) for k in range(1, 4)]
    history.upsert(calm + overlapping)
    settings = settings.replace(alert_zscore_windows=20, alert_zscore_min_windows=20,
                                alert_webhook_url=webhook_receiver.url)
    spike = window(1.2, spike_start)
    history.upsert([spike])

    job = SpikeAlerts(settings, history)
    try:
        sent = job.check([spike] + overlapping)
        returns = [w["pct_change"] for w in calm[-20:]]
        expected_z = (1.2 - statistics.fmean(returns)) / statistics.stdev(returns)
        by_window = {(a["window_start"], a["kind"]): a["value"] for a in sent}
        assert by_window[(spike_start, ZSCORE)] == pytest.approx(expected_z)
        assert by_window[(spike_start, MOVE)] == 1.2
        # The overlapping windows moved 5 %: move alerts; their own z-scores see the calm
        # windows before them only.
        assert {(start, kind) for start, kind in by_window if start != spike_start} == {
            (w["window_start"], kind) for w in overlapping for kind in (MOVE, ZSCORE)}

        # The spike window updated by a later batch: still over both thresholds, no repeat.
        assert job.check([window(1.3, spike_start)]) == []
        texts = wait_for(lambda: len(webhook_receiver.received()) == 8
                         and [b["text"] for b in webhook_receiver.received()], 30,
                         "eight webhook messages")
        assert any("BTCUSDT moved +1.20% (threshold ±1%)" in text for text in texts)
    finally:
        job.close()
    # A restarted job (and a batch run again) remembers what was sent.
    restarted = SpikeAlerts(settings, open_history(settings.history_url))
    assert restarted.check([spike] + overlapping) == []

    records = read_topic(kafka, settings.alerts_topic, min_records=len(sent), idle=0.5)
    assert len(records) == len(sent) == 8
    assert len({r.key for r in records}) == 8
    record = next(r for r in records if r.key.decode().endswith("|zscore")
                  and parse_alert(r.value)["window_start"] == spike_start)
    assert record.key == f"BTCUSDT|{spike_start:%Y-%m-%dT%H:%M:%S}.000000Z|zscore".encode()
    message = json.loads(record.value)
    assert list(message) == [f.name for f in ALERT_FIELDS]
    assert message["value"] == pytest.approx(expected_z) and message["threshold"] == 3.0
    assert len(history.load_alerts()) == 8


def alert(value: float = 2.5) -> dict:
    return detect(window(value), [], RULES, START)[0]


def test_the_webhook_posts_a_slack_message(webhook_receiver):
    sender = AlertWebhook(webhook_receiver.url)
    try:
        assert sender.offer(alert())
        wait_for(lambda: sender.counters().delivered == 1, 10, "the delivery")
    finally:
        sender.close()
    assert webhook_receiver.received() == [slack_body(alert())]
    assert webhook_receiver.received()[0]["text"].endswith(
        "BTCUSDT moved +2.50% (threshold ±1%) in the window 2025-01-15 14:30–14:35 UTC")


def test_the_webhook_retries_after_a_server_error(webhook_receiver):
    webhook_receiver.fail(times=2)
    sender = AlertWebhook(webhook_receiver.url, retry_backoff={"base": 0.05, "cap": 0.1})
    try:
        sender.offer(alert())
        wait_for(lambda: sender.counters().delivered == 1, 10, "the delivery after retries")
    finally:
        sender.close()
    assert webhook_receiver.attempts == 3 and len(webhook_receiver.received()) == 1
    assert sender.counters().failed == 0


def test_a_hanging_webhook_never_blocks_and_drops_what_it_cannot_hold(webhook_receiver,
                                                                      caplog):
    webhook_receiver.hang()
    sender = AlertWebhook(webhook_receiver.url, queue_size=2, timeouts=(1.0, 0.3), attempts=2,
                          retry_backoff={"base": 0.05, "cap": 0.1})
    caplog.set_level(logging.INFO, logger="crypto_pipeline.alerts.webhook")
    try:
        began = time.monotonic()
        offered = [sender.offer(alert(2.0))]
        wait_for(lambda: webhook_receiver.arrived == 1, 10, "the first POST to hang")
        offered += [sender.offer(alert(3.0 + i)) for i in range(5)]
        assert time.monotonic() - began < 5, "offer() waited for the receiver"
        # One in the sender's hands, two queued, the rest dropped.
        assert offered == [True, True, True, False, False, False]
        counters = wait_for(lambda: (c := sender.counters()).failed >= 1 and c, 20,
                            "the first alert to be given up")
        assert counters.delivered == 0 and counters.dropped == 3
    finally:
        sender.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "no answer within" in logged and "dropped the alert BTCUSDT" in logged
    assert "s3cr3t" not in logged and "/services/" not in logged
