"""Backfill: klines from the Binance stand-in (paged, a 429 waited out) or a kline file,
through the live job's transform in batch mode, into the history store and the aggregates
topic, equal to the oracle; joined with live data without overwriting or double counting;
Binance unreachable or the backfill off leaves the job to start without history."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.binance.klines import read_klines
from crypto_pipeline.core.history import open_history, sqlite_url
from crypto_pipeline.core.schema import format_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.backfill import SOURCE, Backfill, fill_starts
from support import DATA_DIR
from support.dashboard_support import aggregate
from support.fake_binance import FakeBinance
from support.helpers import (
    candles,
    free_port,
    history_by_key,
    history_candles,
    latest_by_key,
    read_topic,
    windows,
)
from support.oracle import candle_mismatches, mismatches

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

BTC_FILE = DATA_DIR / "BTCUSDT-1m-2025-08-01_2025-08-10.csv"
ETH_FILE = DATA_DIR / "ETHUSDT-1m-2022-08-15.csv"
# Mid-minute: the backfill ends at the start of this minute, where the live range begins.
NOW = datetime(2025, 8, 3, 0, 0, 40, tzinfo=timezone.utc)
UNTIL = datetime(2025, 8, 3, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


def backfill_ticks(klines) -> list:
    """What the backfill stands for: each kline's ticks, sharing its volume."""
    ticks = []
    for kline in klines:
        replayed = kline.ticks(SOURCE)
        ticks += [dataclasses.replace(tick, quantity=kline.volume / len(replayed))
                  for tick in replayed]
    return ticks


def oracle_windows(klines, since, until, settings):
    """The oracle's windows of the klines' ticks that lie whole in [since, until)."""
    return {key: window for key, window in windows(backfill_ticks(klines), settings).items()
            if window["window_start"] >= f"{since:%Y-%m-%dT%H:%M}"
            and window["window_end"] <= f"{until:%Y-%m-%dT%H:%M}:00.000000Z"}


def oracle_candles(klines, since, until, settings):
    """The oracle's candles of the klines' ticks from `since` to `until`."""
    return {key: candle for key, candle in candles(backfill_ticks(klines), settings).items()
            if f"{since:%Y-%m-%dT%H:%M}" <= candle["open_time"] < f"{until:%Y-%m-%dT%H:%M}"}


def real_klines() -> dict[str, list]:
    """Real klines of both symbols on the same days: ETHUSDT's of 2022 moved to 2025."""
    eth = list(read_klines(DATA_DIR / "ETHUSDT-1m-2022-08-14.csv")) + list(read_klines(ETH_FILE))
    shift = datetime(2025, 8, 2, tzinfo=timezone.utc) - eth[0].open_time
    return {"BTCUSDT": list(read_klines(BTC_FILE)),
            "ETHUSDT": [dataclasses.replace(k, open_time=k.open_time + shift,
                                            close_time=k.close_time + shift) for k in eth]}


@pytest.fixture
def binance():
    with FakeBinance() as fake:
        for symbol, klines in real_klines().items():
            fake.set_klines(symbol, klines)
        yield fake


def test_24_hours_of_two_symbols_from_the_rest_api_equal_the_oracle(spark, kafka, settings,
                                                                    binance):
    settings = settings.replace(backfill_enabled=True, binance_base_url=binance.url)
    ensure_topics(settings)
    binance.misbehave("429", times=1, retry_after=1)

    result = Backfill(spark, settings).run(now=NOW)

    log.info("backfill of 24 hours of BTCUSDT and ETHUSDT: %.1f s", result.seconds)
    since = UNTIL - timedelta(hours=24)
    klines = [k for klines in real_klines().values() for k in klines
              if since <= k.open_time < UNTIL]
    expected = oracle_windows(klines, since, UNTIL, settings)
    assert result.klines == len(klines) == 2 * 1440
    assert result.windows == len(expected) == 2 * (1440 - 4)
    assert mismatches(history_by_key(settings), expected) == []
    topic = latest_by_key(read_topic(kafka, settings.output_topic, min_records=len(expected),
                                     timeout=30, idle=0.3))
    assert mismatches(topic, expected) == []
    # The same candles as the live job makes of those ticks: one per kline.
    minutes = oracle_candles(klines, since, UNTIL, settings)
    assert result.candles == len(minutes) == 2 * 1440
    assert candle_mismatches(history_candles(settings), minutes) == []
    candle_topic = latest_by_key(read_topic(kafka, settings.candles_topic,
                                            min_records=len(minutes), timeout=30, idle=0.3))
    assert candle_mismatches(candle_topic, minutes) == []
    # Backfilled windows were "emitted" when a live job would have emitted them last.
    assert all(window["emitted_at"] == window["window_end"] for window in topic.values())

    requests = [r for r in binance.requests if r.path == "/api/v3/klines"]
    # 1440 klines a symbol: a page of 1000, then the rest; the first try was a 429.
    assert [r.status for r in requests] == [429, 200, 200, 200, 200]
    assert [len(r.body) > 2 for r in requests[1:]] == [True] * 4
    assert requests[1].arrived - requests[0].answered >= 1.0, "Retry-After not honoured"
    assert {r.params["limit"] for r in requests} == {"1000"}
    first_pages = [r for r in requests[1:] if r.params["startTime"] == str(
        int(since.timestamp() * 1000))]
    assert [r.params["symbol"] for r in first_pages] == ["BTCUSDT", "ETHUSDT"]


def test_a_kline_file_joins_live_data_without_overwriting_or_counting_twice(spark, settings):
    settings = settings.replace(backfill_enabled=True, backfill_file=ETH_FILE,
                                backfill_hours=2.0)
    history = open_history(settings.history_url)
    file_end = datetime(2022, 8, 16, tzinfo=timezone.utc)
    # The live job wrote these before (the store is that of a restart): an older window
    # and the newest one, at prices no kline has.
    live = [aggregate("ETHUSDT", file_end - 100 * MINUTE, 1.0),
            aggregate("ETHUSDT", file_end - 40 * MINUTE, 2.0)]
    history.upsert(live)

    result = Backfill(spark, settings).run(now=datetime.now(timezone.utc))

    # Only the gap after the newest live window is filled: its ticks from there on.
    gap_start = file_end - 39 * MINUTE
    klines = [k for k in read_klines(ETH_FILE) if k.open_time >= gap_start]
    expected = oracle_windows(klines, gap_start, file_end, settings)
    assert result.klines == 39 and result.windows == len(expected) == 35
    stored = history_by_key(settings)
    assert mismatches({k: v for k, v in stored.items() if k in expected}, expected) == []
    assert [(stored[key]["window_start"], stored[key]["avg_price"])
            for key in sorted(stored.keys() - expected.keys())] == [
        (format_time(w["window_start"]), w["avg_price"]) for w in live], "live windows kept"
    assert candle_mismatches(history_candles(settings),
                             oracle_candles(klines, gap_start, file_end, settings)) == []
    assert result.candles == 39

    # Run again (another restart): nothing left to fill, nothing written twice.
    assert Backfill(spark, settings).run(now=datetime.now(timezone.utc)) is None
    assert history_by_key(settings) == stored


def test_insert_absent_never_replaces_a_window(tmp_path):
    history = open_history(sqlite_url(tmp_path / "history.sqlite"))
    start = datetime(2025, 8, 2, tzinfo=timezone.utc)
    history.upsert([aggregate("BTCUSDT", start, 100.0)])
    written = history.insert_absent([aggregate("BTCUSDT", start, 1.0),
                                     aggregate("BTCUSDT", start + MINUTE, 2.0)])
    assert [w["avg_price"] for w in written] == [2.0]
    assert [w["avg_price"] for w in history.load()] == [100.0, 2.0]


def test_fill_starts_leave_room_for_whole_windows_only():
    settings = Settings.load(environ={}, env_file=None)
    since = UNTIL - timedelta(hours=1)
    newest = {"BTCUSDT": UNTIL - 10 * MINUTE, "ETHUSDT": UNTIL - 5 * MINUTE,
              "SOLUSDT": since - timedelta(days=1)}
    assert fill_starts(("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"), newest, since, UNTIL,
                       settings) == {"BTCUSDT": UNTIL - 9 * MINUTE, "SOLUSDT": since,
                                     "BNBUSDT": since}


def test_unreachable_binance_leaves_one_line_and_no_history(spark, settings, caplog):
    settings = settings.replace(backfill_enabled=True,
                                binance_base_url=f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.INFO, logger="crypto_pipeline"):
        assert Backfill(spark, settings).run(now=NOW) is None
    lines = [r for r in caplog.records if r.name.startswith("crypto_pipeline.streaming.backfill")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].getMessage().startswith("backfill skipped: cannot reach Binance at "
                                            "http://127.0.0.1:")
    assert open_history(settings.history_url).load() == []


def test_backfill_off_fetches_nothing(spark, settings, binance):
    settings = settings.replace(backfill_enabled=False, binance_base_url=binance.url)
    assert Backfill(spark, settings).run(now=NOW) is None
    assert binance.requests == []
