"""Spike alerts: the rules on known aggregates, sent once through a real broker (no repeat on
an update, nor after a restart), and the webhook against a local HTTP receiver."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.alerts import rules as alerts
from crypto_pipeline.alerts.publisher import SpikeAlerts
from crypto_pipeline.alerts.rules import MOVE, ZSCORE, AlertRules, choose, detect
from crypto_pipeline.alerts.webhook import AlertWebhook, slack_body
from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.core.history import open_history, sqlite_url
from crypto_pipeline.core.schema import ALERT_FIELDS, parse_alert
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.ops import cli
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
    assert AlertRules.from_settings(settings) == AlertRules(0.5, 3.0, 10, 10, None,
                                                            timedelta(minutes=15))


def jump(pct: float, first: datetime, symbol: str = "BTCUSDT", windows: int = 5) -> list[dict]:
    """The windows one jump lies in: `windows` consecutive ones, each moving `pct`."""
    return [window(pct, first + k * MINUTE, symbol) for k in range(windows)]


def raised(windows: list[dict], sent=(), rules: AlertRules = RULES) -> list[dict]:
    """What the rules send for these windows, given the alerts sent before."""
    found = [a for w in windows for a in detect(w, [], rules, START)]
    return choose(found, list(sent), rules)


def test_one_move_in_five_windows_alerts_once_and_says_so():
    sent = raised(jump(6.0, START))
    assert len(sent) == 1
    first = sent[0]
    assert (first["kind"], first["window_start"], first["value"]) == (MOVE, START, 6.0)
    assert (first["windows"], first["first_window_start"], first["last_window_end"]) == (
        5, START, START + 9 * MINUTE)
    assert fmt.alert(first) == ("BTCUSDT moved +6.00% (threshold ±1%) in 5 windows "
                                "2025-01-15 14:30–14:39 UTC")
    # The same windows again (an update, a re-run batch, a restart): nothing new.
    assert raised(jump(6.2, START), sent) == []


def test_within_the_cooldown_only_a_move_grown_by_the_threshold_alerts_again():
    sent = raised(jump(6.0, START))
    assert raised(jump(6.9, START + 6 * MINUTE), sent) == [], "not 1 % more"
    again = raised(jump(7.5, START + 6 * MINUTE), sent)
    assert [(a["window_start"], a["value"]) for a in again] == [(START + 6 * MINUTE, 7.5)]
    # The cooldown (15 minutes of window time) over: the same move alerts again.
    assert raised(jump(6.0, START + 14 * MINUTE, windows=1), sent) == []
    assert len(raised(jump(6.0, START + 15 * MINUTE), sent)) == 1


def test_a_fall_waits_for_no_rise_and_each_symbol_for_its_own_alerts():
    sent = raised(jump(6.0, START))
    falls = raised(jump(-3.0, START + 2 * MINUTE) + jump(3.0, START + MINUTE, "ETHUSDT"), sent)
    assert sorted((a["symbol"], a["value"]) for a in falls) == [("BTCUSDT", -3.0),
                                                                 ("ETHUSDT", 3.0)]


def test_thresholds_per_symbol_pattern_first_match_wins():
    settings = Settings.load(environ={"ALERT_PCT_THRESHOLDS": "BTCUSDT=0.5,*USDT=2",
                                      "ALERT_COOLDOWN": "5 minutes"}, env_file=None)
    rules = AlertRules.from_settings(settings)
    assert rules.cooldown == timedelta(minutes=5)
    assert [rules.pct_threshold_for(s) for s in ("BTCUSDT", "ETHUSDT", "ETHBTC")] == [
        0.5, 2.0, 1.0]
    found = raised([window(0.7, START, "BTCUSDT"), window(1.5, START, "ETHUSDT"),
                    window(1.5, START, "ETHBTC")], rules=rules)
    assert sorted((a["symbol"], a["threshold"]) for a in found) == [("BTCUSDT", 0.5),
                                                                     ("ETHBTC", 1.0)]
    # Within the symbol's cooldown, a move 0.5 % larger is enough for BTCUSDT.
    assert len(raised([window(1.3, START + MINUTE)], found, rules)) == 1


@pytest.mark.integration
def test_the_cooldown_holds_through_updates_and_restarts(settings, kafka, webhook_receiver):
    ensure_topics(settings)
    history = open_history(settings.history_url)
    # 25 calm windows that all ended before the jump's windows start.
    calm = [window(CALM[i % 20] if i < 20 else 0.0, START + i * MINUTE) for i in range(25)]
    history.upsert(calm)
    settings = settings.replace(alert_zscore_windows=20, alert_zscore_min_windows=20,
                                alert_webhook_url=webhook_receiver.url)
    first = START + 30 * MINUTE
    jumped = jump(2.0, first, windows=4)
    history.upsert(jumped)

    job = SpikeAlerts(settings, history)
    try:
        sent = job.check(jumped)
        assert [(a["kind"], a["window_start"], a["windows"]) for a in sent] == [
            (MOVE, first, 4)]
        # The windows updated by a later batch: still moving, no repeat.
        assert job.check(jump(2.5, first, windows=4)) == []
        texts = wait_for(lambda: len(webhook_receiver.received()) == 1
                         and [b["text"] for b in webhook_receiver.received()], 30,
                         "the webhook message")
        assert "BTCUSDT moved +2.00% (threshold ±1%) in 4 windows" in texts[0]
    finally:
        job.close()
    # A restarted job (and a batch run again) remembers what was sent, from the history.
    restarted = SpikeAlerts(settings, open_history(settings.history_url))
    assert restarted.check(jumped) == []
    bigger = jump(5.0, first + 5 * MINUTE, windows=2)
    history.upsert(bigger)
    more = restarted.check(bigger)
    assert [(a["window_start"], a["value"]) for a in more] == [(first + 5 * MINUTE, 5.0)]

    records = read_topic(kafka, settings.alerts_topic, min_records=2, idle=0.5)
    assert len(records) == 2
    record = next(r for r in records if parse_alert(r.value)["window_start"] == first)
    assert record.key == f"BTCUSDT|{first:%Y-%m-%dT%H:%M:%S}.000000Z|move".encode()
    message = json.loads(record.value)
    assert list(message) == [f.name for f in ALERT_FIELDS]
    assert message["windows"] == 4 and message["pct_change"] == 2.0
    assert len(history.load_alerts()) == 2


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


def test_the_backtest_command_counts_per_symbol_what_the_settings_would_raise(
        tmp_path, monkeypatch, capsys):
    url = sqlite_url(tmp_path / "history.sqlite")
    with open_history(url) as history:
        history.upsert(jump(6.0, START) + jump(0.2, START + 6 * MINUTE, "ETHUSDT", 3)
                       + jump(8.0, START + 8 * MINUTE))
    monkeypatch.setenv("HISTORY_URL", url)
    monkeypatch.setenv("ALERT_PCT_THRESHOLDS", "ETH*=0.1")
    assert cli.main(["alerts-backtest", "--hours", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "alerts the current settings would have raised in the 1 hours of windows from "
        "2025-01-15 13:42 UTC:",
        "BTCUSDT     2 alerts (2 move, 0 z-score) in 10 windows",
        "ETHUSDT     1 alert (1 move, 0 z-score) in 3 windows"]
    # Only the last half hour: the first jump is out of range.
    assert cli.main(["alerts-backtest", "--hours", "0.1"]) == 0
    assert "BTCUSDT     1 alert " in capsys.readouterr().out
