"""The producer end to end: the Binance stand-in -> the real client -> a real Kafka broker."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter

import pytest

from crypto_pipeline.binance.klines import read_klines, ticks_of
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.schema import TICK_FIELDS, parse_time
from crypto_pipeline.producer.sources.rest_poller import BinancePoller
from support import DATA_DIR
from support.helpers import free_port, producer_status, wait_for
from support.helpers import process_env as environment
from support.producing import (
    assert_served_prices_landed,
    landed,
    producer_process,
    running,
    sent_at_least,
)

pytestmark = pytest.mark.integration

ETH_ARCHIVE = DATA_DIR / "ETHUSDT-1m-2022-08-14.csv"


def test_ticks_land_keyed_by_symbol_in_the_contract_schema(kafka, live, fake_binance):
    before = time.time()
    with running(live):
        wait_for(sent_at_least(live, 10), 30, "10 ticks confirmed by Kafka")
        state = producer_status(live.run_dir)
    after = time.time()
    assert state.state == "ok" and state.source == "binance" and state.polls >= 5
    assert state.last_error is None and state.ticks_failed == 0

    records = assert_served_prices_landed(kafka, live, fake_binance)
    names = {f.name for f in TICK_FIELDS}
    for record in records:
        value = json.loads(record.value)
        assert set(value) <= names
        assert all(value.get(f.name) is not None for f in TICK_FIELDS if f.required)
        assert record.key.decode() == value["symbol"]
        assert isinstance(value["price"], float) and value["source"] == "binance"
        assert value["event_time"].endswith("Z")
        assert before <= parse_time(value["event_time"]).timestamp() <= after
    final = producer_status(live.run_dir)
    assert final.ticks_sent == len(records) and final.ticks_buffered == 0

    requests = fake_binance.ticker_requests()
    assert all(r.params == {"symbols": '["BTCUSDT","ETHUSDT"]'} for r in requests)
    for earlier, later in zip(requests, requests[1:]):
        assert later.arrived >= earlier.answered, "two requests were in flight at once"


def test_a_slow_answer_does_not_push_later_polls_back(live, fake_binance):
    settings = live.replace(poll_interval_seconds=0.5, http_read_timeout_seconds=2.0)
    fake_binance.misbehave("slow", delay=0.8)
    with running(settings):
        wait_for(lambda: len(fake_binance.ticker_requests()) >= 6, 30, "six polls")
    arrivals = [r.arrived for r in fake_binance.ticker_requests()]
    # The first answer took 0.8 s: the 0.5 s slot passed while it was in flight, so the next
    # poll comes at 1.0 s, and every later one stays on the 0.5 s grid.
    offsets = [(a - arrivals[0]) / 0.5 for a in arrivals]
    assert offsets[1] > 1.5
    # Had the slow answer pushed the schedule back, every later poll would be 0.3 s off.
    assert all(abs(o - round(o)) < 0.35 for o in offsets), offsets


def test_after_429_no_request_comes_before_retry_after(kafka, live, fake_binance, caplog):
    caplog.set_level(logging.INFO)
    with running(live):
        wait_for(sent_at_least(live, 2), 30, "the first ticks")
        fake_binance.misbehave("429", retry_after=3)
        wait_for(lambda: producer_status(live.run_dir).state == "rate-limited", 10, "rate-limited")
        assert "HTTP 429" in producer_status(live.run_dir).last_error
        limited = wait_for(lambda: [r for r in fake_binance.ticker_requests()
                                    if r.status == 429], 10, "the 429")[0]
        wait_for(lambda: producer_status(live.run_dir).state == "ok", 15, "polling to resume")
        wait_for(sent_at_least(live, producer_status(live.run_dir).ticks_sent + 4), 10,
                 "ticks after the pause")
    later = [r for r in fake_binance.ticker_requests() if r.arrived > limited.arrived]
    assert later[0].arrived - limited.answered >= 3.0
    assert producer_status(live.run_dir).errors["rate-limited"] == 1
    assert any("Binance rate limit hit (HTTP 429, code -1003" in m and
               "next try in 3.0 s (Retry-After)" in m for m in caplog.messages)
    assert_served_prices_landed(kafka, live, fake_binance)


@pytest.mark.parametrize("fault, options, kind, state, says", [
    ("5xx", {"status": 503}, "server-error", "binance-unreachable", "HTTP 503, code -1008"),
    ("5xx", {"status": 502}, "server-error", "binance-unreachable", "HTTP 502"),
    ("slow", {"delay": 1.5}, "timeout", "binance-unreachable", "read timeout"),
    ("truncated", {}, "malformed-body", "binance-unreachable", "broken JSON"),
    ("html", {}, "malformed-body", "binance-unreachable", "text/html instead of JSON"),
    ("451", {}, "restricted-location", "restricted-location", "https://api.binance.us"),
    ("418", {"retry_after": 1}, "banned", "rate-limited", "banned this IP"),
])
def test_a_fault_leaves_the_producer_running_and_polling_resumes(
        kafka, live, fake_binance, caplog, fault, options, kind, state, says):
    caplog.set_level(logging.INFO)
    live = live.replace(http_read_timeout_seconds=0.5)  # below the slow answer's 1.5 s
    with running(live):
        wait_for(sent_at_least(live, 2), 30, "the first ticks")
        fake_binance.misbehave(fault, times=2, **options)
        seen = wait_for(lambda: producer_status(live.run_dir).state == state and
                        producer_status(live.run_dir), 15, f"state {state}")
        assert says in seen.last_error
        wait_for(lambda: producer_status(live.run_dir).errors.get(kind) == 2, 15, "both faults")
        resumed = producer_status(live.run_dir).ticks_sent + 4
        wait_for(sent_at_least(live, resumed), 15, "polling to resume")
    assert producer_status(live.run_dir).state == "ok"
    assert any(says in m and "next try in" in m for m in caplog.messages)
    assert any("Binance answers again after 2 failed polls" in m for m in caplog.messages)
    assert_served_prices_landed(kafka, live, fake_binance)


@pytest.mark.parametrize("value", ["abc", "-1", "NaN"])
def test_a_bad_price_is_skipped_and_counted_never_sent(kafka, live, fake_binance, caplog,
                                                       value):
    with running(live):
        wait_for(sent_at_least(live, 2), 30, "the first ticks")
        fake_binance.misbehave("bad-price", symbol="ETHUSDT", value=value)
        wait_for(lambda: producer_status(live.run_dir).bad_entries == 1, 10, "the bad entry")
        wait_for(sent_at_least(live, producer_status(live.run_dir).ticks_sent + 4), 10,
                 "more ticks")
    records = assert_served_prices_landed(kafka, live, fake_binance)
    assert all(json.loads(r.value)["price"] > 0 for r in records)
    assert producer_status(live.run_dir).errors["bad-entry"] == 1
    assert any(f"ETHUSDT price '{value}' is not a number > 0" in m for m in caplog.messages)


def test_high_request_weight_pauses_polling_until_the_minute_resets(live, fake_binance,
                                                                    caplog):
    # The poller's wall clock says 58 s into the minute: a weight pause lasts 2 s.
    poller = BinancePoller(live, wall_clock=lambda: 1_700_000_040.0 + 58)
    with running(live, source=poller):
        wait_for(sent_at_least(live, 2), 30, "the first ticks")
        fake_binance.misbehave("weight", used=5500)
        seen = wait_for(lambda: producer_status(live.run_dir).state == "rate-limited" and
                        producer_status(live.run_dir), 10, "the weight pause")
        assert "request weight 5500/6000" in seen.last_error
        wait_for(lambda: producer_status(live.run_dir).state == "ok", 10, "polling to resume")
    requests = fake_binance.ticker_requests()
    heavy = next(i for i, r in enumerate(requests) if r.fault == "weight")
    assert requests[heavy + 1].arrived - requests[heavy].answered >= 2.0
    assert any("X-MBX-USED-WEIGHT-1M" in m and "pausing 2 s" in m for m in caplog.messages)


def test_kafka_down_buffers_drops_the_oldest_and_catches_up(live, fake_binance, caplog,
                                                           tmp_path):
    from crypto_pipeline.kafka_io.embedded import EmbeddedKafka

    caplog.set_level(logging.INFO)
    port = free_port(consecutive=2)
    settings = live.replace(kafka_bootstrap_servers=f"127.0.0.1:{port}",
                            producer_buffer_ticks=6)
    broker = EmbeddedKafka(tmp_path / "kafka", tmp_path / "logs", port=port, heap="256m")
    try:
        with running(settings, progress_seconds=1.0):
            down = wait_for(lambda: producer_status(settings.run_dir).state == "kafka-unreachable"
                            and producer_status(settings.run_dir).ticks_dropped > 0 and
                            producer_status(settings.run_dir), 30, "the producer to notice")
            assert down.ticks_buffered == 6 and down.ticks_sent == 0
            assert f"127.0.0.1:{port} unreachable" in down.last_error
            broker.start(timeout=120)
            wait_for(lambda: producer_status(settings.run_dir).state == "ok" and
                     producer_status(settings.run_dir).ticks_sent >= 10, 60, "Kafka to catch up")
        final = producer_status(settings.run_dir)
        served = fake_binance.served_prices()
        # Nothing silently lost: what was not sent was dropped and counted, oldest first.
        assert final.ticks_sent + final.ticks_dropped == len(served)
        assert final.ticks_buffered == 0 and final.ticks_failed == 0
        records = landed(broker.bootstrap_servers, settings, final.ticks_sent)
        assert Counter((r.key.decode(), json.loads(r.value)["price"]) for r in records) == \
            Counter(served[final.ticks_dropped:])
    finally:
        broker.stop()
    messages = caplog.messages
    assert any(f"Kafka at 127.0.0.1:{port} unreachable" in m and "keeping new ticks" in m
               for m in messages)
    assert any("dropping the oldest ticks" in m for m in messages)
    assert any("reachable again" in m and "were dropped" in m for m in messages)
    assert any(m.startswith("last ") and "polls" in m and "errors: " in m for m in messages)


def test_sigterm_delivers_everything_accepted_and_exits_0(kafka, live, fake_binance, tmp_path):
    with producer_process(environment(live), tmp_path):
        wait_for(lambda: producer_status(live.run_dir).polls >= 5, 60, "five polls")
    final = producer_status(live.run_dir)
    assert final.ticks_buffered == 0 and final.ticks_failed == 0
    records = assert_served_prices_landed(kafka, live, fake_binance)
    assert final.ticks_sent == len(records) >= 10
    assert "stopped:" in (tmp_path / "producer.log").read_text()


def test_an_unknown_symbol_stops_the_producer_with_one_line_naming_it(live, fake_binance,
                                                                    tmp_path):
    env = environment(live, SYMBOLS="BTCUSDT,NOPEUSDT")
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "src" / "api_producer.py")],
                            cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: SYMBOLS: NOPEUSDT is not a symbol on {fake_binance.url}; "
                      f"Binance rejected the request (HTTP 400, code -1121: Invalid symbol.)"]
    assert "Traceback" not in result.stderr
    assert "NOPEUSDT" in producer_status(live.run_dir).last_error


def test_replay_of_a_real_kline_file_lands_the_expected_ticks_and_finishes(kafka, settings,
                                                                          tmp_path):
    env = environment(settings, PRICE_SOURCE="replay", REPLAY_FILE=str(ETH_ARCHIVE),
                      REPLAY_SPEED="0")
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "src" / "api_producer.py")],
                            cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = list(ticks_of(read_klines(ETH_ARCHIVE)))
    records = landed(kafka, settings, len(expected))
    assert sorted(json.loads(r.value)["event_id"] for r in records) == \
        sorted(t.event_id for t in expected)
    assert Counter(r.value for r in records) == Counter(t.to_json() for t in expected)
    assert {r.key for r in records} == {b"ETHUSDT"}
    final = producer_status(settings.run_dir)
    assert final.state == "finished" and final.source == "replay"
    assert final.ticks_sent == len(expected) == 5760
    assert "replay finished" in result.stderr

