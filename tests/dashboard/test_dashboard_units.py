"""The dashboard without Streamlit or Kafka: store, formatting, view models, login rules."""

import json
import math
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.core.schema import Tick, candle_key, format_time, parse_candle
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import ProducerStatus, SparkStatus
from crypto_pipeline.dashboard import charts, views
from crypto_pipeline.dashboard.feed import FeedHealth, parse_checked_aggregate
from crypto_pipeline.dashboard.store import (
    BYTES_PER_WINDOW,
    COLUMNS,
    AggregateStore,
    candle_store,
    to_row,
)
from support.dashboard_support import aggregate, message
from support.helpers import as_text
from support.oracle import candle_mismatches, expected_candles
from support.tick_scenarios import out_of_order, replay_ticks

T0 = datetime(2025, 1, 15, 14, 30, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)
SETTINGS = Settings.load(environ={"KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9092"},
                         env_file=None)


def store_of(*records):
    store = AggregateStore()
    store.put_many(records)
    return store


# --- store ---------------------------------------------------------------------------------

def test_windows_come_out_oldest_first_whatever_order_they_arrive_in():
    store = store_of(*(aggregate("BTCUSDT", T0 + i * MINUTE, 100.0 + i) for i in (3, 0, 2, 1)),
                     aggregate("ETHUSDT", T0, 3000.0))
    snapshot = store.snapshot()
    assert [r["window_start"] for r in snapshot.windows["BTCUSDT"]] == [
        T0, T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]
    assert snapshot.symbols == ("BTCUSDT", "ETHUSDT")
    assert len(snapshot) == len(store) == 5


def test_the_latest_arrival_for_a_window_wins_and_duplicates_count_once():
    first = aggregate("BTCUSDT", T0, 100.0)
    store = store_of(first, aggregate("BTCUSDT", T0, 101.0), aggregate("BTCUSDT", T0, 99.5))
    assert [r["avg_price"] for r in store.snapshot().windows["BTCUSDT"]] == [99.5]
    store.put(first)
    store.put(first)
    assert len(store) == 1 and store.snapshot().windows["BTCUSDT"][0] == first


def test_a_snapshot_does_not_change_when_the_store_does():
    store = store_of(aggregate("BTCUSDT", T0, 100.0))
    before = store.snapshot()
    store.put(aggregate("BTCUSDT", T0 + MINUTE, 101.0))
    assert len(before) == 1 and len(store.snapshot()) == 2
    assert store.snapshot().version > before.version


def test_newest_emitted_at_and_pruning():
    store = store_of(aggregate("BTCUSDT", T0, 1.0, emitted_at=T0 + 2 * MINUTE),
                     aggregate("BTCUSDT", T0 + MINUTE, 1.0, emitted_at=T0 + MINUTE),
                     aggregate("ETHUSDT", T0, 1.0, emitted_at=T0))
    assert store.snapshot().newest_emitted_at == T0 + 2 * MINUTE
    assert store.prune(before=T0 + MINUTE) == 2
    assert store.snapshot().symbols == ("BTCUSDT",) and len(store) == 1


@given(st.lists(st.tuples(st.sampled_from(["BTCUSDT", "ETHUSDT", "XRPUSDT"]),
                          st.integers(0, 20), st.floats(0.01, 1e6)), max_size=60))
@hypothesis_settings(max_examples=50, deadline=None)
def test_store_equals_last_value_per_key(puts):
    store = AggregateStore()
    expected = {}
    for symbol, minute, price in puts:
        store.put(aggregate(symbol, T0 + minute * MINUTE, price))
        expected[(symbol, T0 + minute * MINUTE)] = price
    got = {(s, r["window_start"]): r["avg_price"]
           for s, windows in store.snapshot().windows.items() for r in windows}
    assert got == expected


def test_concurrent_writers_and_readers_see_consistent_snapshots():
    store = AggregateStore()
    writers, per_writer = 4, 300
    done = threading.Event()
    problems = []

    def write(n):
        store.put_many(aggregate("BTCUSDT", T0 + (i % 100) * MINUTE, float(n * 1000 + i + 1))
                       for i in range(per_writer))
        for i in range(per_writer):
            store.put(aggregate(f"S{n}USDT", T0 + i * MINUTE, 1.0))

    def read():
        while not done.is_set():
            snapshot = store.snapshot()
            for windows in snapshot.windows.values():
                starts = [r["window_start"] for r in windows]
                if starts != sorted(starts) or len(set(starts)) != len(starts):
                    problems.append(starts)

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert problems == []
    snapshot = store.snapshot()
    assert len(snapshot.windows["BTCUSDT"]) == 100
    assert len(snapshot) == 100 + writers * per_writer


# --- formatting ----------------------------------------------------------------------------

@pytest.mark.parametrize("reference,decimals,shown", [
    (97432.15, 2, "97,432.15"), (3456.789, 2, "3,456.79"), (2.12345, 4, "2.1235"),
    (0.162361, 5, "0.16236"), (0.0000123456, 8, "0.00001235"), (0.0, 2, "0.00")])
def test_prices_get_decimals_that_fit_their_scale(reference, decimals, shown):
    assert fmt.price_decimals(reference) == decimals
    assert fmt.price(reference, decimals) == shown


def test_changes_counts_and_ages_read_naturally():
    assert fmt.price_change(-1234.5, 2) == "-1,234.50"
    assert fmt.price_change(0.5, 2) == "+0.50"
    assert fmt.count(1234567) == "1,234,567" and fmt.count_change(-3) == "-3"
    assert fmt.percent(0.12345) == "+0.12%"
    assert [fmt.age(s) for s in (-2, 4.9, 185, 7620, 3 * 86400 + 4 * 3600 + 59)] == [
        "0 s", "4 s", "3 min 05 s", "2 h 07 min", "3 d 4 h"]
    assert fmt.window(T0, T0 + 5 * MINUTE) == "2025-01-15 14:30–14:35 UTC"


# --- view models ---------------------------------------------------------------------------

def test_a_card_shows_the_latest_window_against_the_previous_one():
    snapshot = store_of(
        aggregate("BTCUSDT", T0, 97000.0, low=96900.0, high=97100.0, count=40),
        aggregate("BTCUSDT", T0 + MINUTE, 97432.15, low=97400.5, high=97500.25, count=42),
        aggregate("ETHUSDT", T0, 3456.789, low=3450.0, high=3460.0, count=7)).snapshot()
    btc, eth = views.cards(snapshot, ["BTCUSDT", "ETHUSDT", "XRPUSDT"])
    kpis = {k.name: k for k in btc.kpis}
    assert [k.label for k in btc.kpis] == [
        "Average price", "Spread", "Min price", "Max price", "Ticks"]
    assert (kpis["avg_price"].value, kpis["avg_price"].delta) == ("97,432.15", "+432.15")
    assert (kpis["spread"].value, kpis["spread"].delta) == ("99.75", "-100.25")
    assert (kpis["min_price"].value, kpis["max_price"].value) == ("97,400.50", "97,500.25")
    assert (kpis["count"].value, kpis["count"].delta) == ("42", "+2")
    assert kpis["spread"].delta_color == "off" and kpis["avg_price"].delta_color == "normal"
    assert btc.window == "2025-01-15 14:31–14:36 UTC"
    assert btc.move == "open 97,400.50 → close 97,500.25 (+0.10%)"
    assert btc.trend == (97000.0, 97432.15)
    assert eth.symbol == "ETHUSDT" and all(k.delta is None for k in eth.kpis)


def test_a_card_of_trades_shows_volume_and_vwap_and_others_stay_as_they_were():
    def traded(record, volume, vwap):
        return {**record, "volume": volume, "vwap": vwap}

    snapshot = store_of(
        traded(aggregate("BTCUSDT", T0, 97000.0), 10.5, 97010.0),
        traded(aggregate("BTCUSDT", T0 + MINUTE, 97432.15), 12.34567, 97440.5),
        aggregate("ETHUSDT", T0, 3440.0),  # before the trade stream: no quantities
        traded(aggregate("ETHUSDT", T0 + MINUTE, 3456.789), 1234.56789, 3456.1),
        aggregate("XRPUSDT", T0, 2.1234)).snapshot()
    btc, eth, xrp = views.cards(snapshot, ["BTCUSDT", "ETHUSDT", "XRPUSDT"])
    assert [k.label for k in btc.kpis] == [
        "Average price", "Spread", "Min price", "Max price", "Ticks", "Volume", "VWAP"]
    kpis = {k.name: k for k in btc.kpis}
    assert (kpis["volume"].value, kpis["volume"].delta, kpis["volume"].delta_color) == (
        "12.346", "+1.846", "off")
    assert (kpis["vwap"].value, kpis["vwap"].delta, kpis["vwap"].delta_color) == (
        "97,440.50", "+430.50", "normal")
    kpis = {k.name: k for k in eth.kpis}
    assert (kpis["volume"].value, kpis["volume"].delta) == ("1,234.57", None)
    assert (kpis["vwap"].value, kpis["vwap"].delta) == ("3,456.10", None)
    assert [k.name for k in xrp.kpis] == [name for name, _ in views.KPIS]


def test_frames_and_time_range_count_back_from_the_newest_window():
    snapshot = store_of(*(aggregate("BTCUSDT", T0 + i * MINUTE, 100.0 + i) for i in range(30)),
                        aggregate("ETHUSDT", T0, 5.0)).snapshot()
    since = views.range_start(snapshot, ["BTCUSDT"], timedelta(minutes=15))
    assert since == T0 + 29 * MINUTE + 5 * MINUTE - 15 * MINUTE
    frame = views.windows_frame(snapshot, ["BTCUSDT"], since)
    assert list(frame["avg_price"]) == [100.0 + i for i in range(19, 30)]
    assert views.range_start(snapshot, ["BTCUSDT"], None) is None
    assert len(views.windows_frame(snapshot, ["BTCUSDT", "ETHUSDT"])) == 31
    latest = views.latest_frame(snapshot, ["ETHUSDT", "BTCUSDT", "XRPUSDT"])
    assert list(latest["symbol"]) == ["ETHUSDT", "BTCUSDT"]
    assert list(latest["avg_price"]) == [5.0, 129.0]


def test_freshness_and_the_live_badge():
    now = T0 + 10 * MINUTE
    assert views.freshness(None, now, 60) == views.Freshness(None, False, "no data yet")
    fresh = views.freshness(now - timedelta(seconds=12), now, 60)
    assert (fresh.stale, fresh.text) == (False, "12 s old")
    stale = views.freshness(now - timedelta(seconds=61), now, 60)
    assert (stale.stale, stale.text) == (True, "STALE: 1 min 01 s old")
    ok = FeedHealth(kafka="ok", topic_exists=True)
    assert views.live_state(ok, fresh) == ("Live", "green")
    assert views.live_state(ok, stale) == ("Stale", "orange")
    assert views.live_state(ok, views.freshness(None, now, 60)) == ("No data", "gray")
    assert views.live_state(FeedHealth(kafka="unreachable"), fresh)[1] == "red"


OK = FeedHealth(kafka="ok", topic_exists=True, backlog=0, dead_letters=0)
def producer(alive: bool = True, **fields) -> views.Reported:
    return views.Reported(ProducerStatus(**fields), alive)


def spark(alive: bool = True, **fields) -> views.Reported:
    return views.Reported(SparkStatus(**fields), alive)


ALIVE = producer(state="ok")
SPARK_ACTIVE = spark(state="active")


def notices(health=OK, *, has_data=True, stale=False, producer=ALIVE, spark=SPARK_ACTIVE):
    found = views.diagnose(SETTINGS, health, has_data=has_data, stale=stale, producer=producer,
                           spark=spark)
    return [(n.level, n.text) for n in found]


def test_nothing_is_said_when_all_is_well():
    assert notices() == []


@pytest.mark.parametrize("case,kwargs,level,text", [
    ("kafka down", dict(health=FeedHealth(kafka="unreachable", kafka_error="KafkaTimeoutError"),
                        has_data=False),
     "error", "Kafka is not reachable at kafka.example:9092 — start it with ./start.sh kafka"),
    ("kafka down with data", dict(health=FeedHealth(kafka="unreachable")),
     "error", "it is not live"),
    ("connecting", dict(health=FeedHealth(), has_data=False),
     "info", "Connecting to Kafka at kafka.example:9092"),
    ("no topic", dict(health=FeedHealth(kafka="ok", topic_exists=False), has_data=False),
     "warning", "does not exist yet — is the Spark job running? Start it with ./start.sh spark"),
    ("no spark", dict(has_data=False, spark=spark(state="active")),
     "info", "first aggregates appear"),
    ("spark never ran", dict(has_data=False, spark=None),
     "warning", "No aggregates yet — is the Spark job running? Start it with ./start.sh spark"),
    ("spark died", dict(stale=True, spark=spark(state="active", alive=False)),
     "warning", "No new aggregates — is the Spark job running?"),
    ("spark failed", dict(spark=spark(state="failed", last_error="OutOfMemoryError")),
     "error", "The Spark job failed: OutOfMemoryError"),
    ("binance unreachable", dict(producer=producer(state="binance-unreachable",
                                                   last_error="ConnectTimeout")),
     "error", "The producer cannot reach Binance (api.binance.com): ConnectTimeout. Set "
              "BINANCE_BASE_URL to https://data-api.binance.vision"),
    ("451", dict(producer=producer(state="restricted-location", last_error="451")),
     "error", "(HTTP 451)"),
    ("rate limited", dict(producer=producer(state="rate-limited", last_error="429")),
     "warning", "rate-limiting"),
    ("producer gone", dict(producer=producer(state="ok", alive=False)),
     "warning", "The producer is not running (last state: ok) — start it with "
                "./start.sh producer"),
    ("no producer", dict(producer=None, stale=True),
     "warning", "The producer has not reported — is it running?"),
    ("replay done", dict(producer=producer(state="finished", alive=False)), "info", "finished"),
    ("malformed", dict(health=FeedHealth(kafka="ok", topic_exists=True, malformed=1234,
                                         last_malformed="offset 7: bad JSON")),
     "warning", "Skipped 1,234 malformed records"),
])
def test_each_problem_is_explained_with_what_to_run(case, kwargs, level, text):
    found = notices(**kwargs)
    assert any(lvl == level and text in said for lvl, said in found), found


def test_errors_come_before_warnings_and_hints():
    found = notices(FeedHealth(kafka="ok", topic_exists=True, malformed=1), has_data=False,
                    producer=producer(state="binance-unreachable", last_error="x"),
                    spark=spark(state="starting"))
    assert [level for level, _ in found] == ["error", "warning", "info"]


def test_the_banner_names_a_source_that_is_not_live():
    assert views.source_banner(SETTINGS) is None
    assert views.source_banner(SETTINGS.replace(price_source="binance-ws")) is None
    assert "Simulated prices" in views.source_banner(SETTINGS.replace(price_source="simulated"))
    replay = views.source_banner(SETTINGS.replace(
        price_source="replay", replay_file=Path("/data/BTCUSDT-1m.csv"), replay_speed=60.0))
    assert "PRICE_SOURCE=replay, REPLAY_FILE=/data/BTCUSDT-1m.csv at 60× speed" in replay


# --- charts --------------------------------------------------------------------------------

def test_charts_have_one_panel_per_symbol_with_the_data():
    snapshot = store_of(*(aggregate(s, T0 + i * MINUTE, p + i) for i in range(3)
                          for s, p in (("BTCUSDT", 97000.0), ("XRPUSDT", 2.1234)))).snapshot()
    frame = views.windows_frame(snapshot, ["BTCUSDT", "XRPUSDT"])
    band = charts.price_band(frame)
    assert [a.text for a in band.layout.annotations] == ["BTCUSDT", "XRPUSDT"]
    assert [t.name for t in band.data] == ["max", "min–max", "avg"] * 2
    assert list(band.data[2].y) == [97000.0, 97001.0, 97002.0]
    assert band.layout.yaxis2.tickformat == ",.4f"
    one_minute = candle_store()
    one_minute.put_many({"symbol": s, "open_time": T0 + i * MINUTE,
                         "close_time": T0 + (i + 1) * MINUTE, "open": p, "high": p + 2,
                         "low": p - 1, "close": p + i, "count": 4}
                        for i in range(3) for s, p in (("BTCUSDT", 97000.0), ("XRPUSDT", 2.1)))
    candle_frame = views.candles_frame(one_minute.snapshot(), ["BTCUSDT", "XRPUSDT"], None, 1,
                                       5.0, {}, 20.0)
    candles = charts.candles(candle_frame)
    assert [t.type for t in candles.data] == ["candlestick"] * 2
    assert list(candles.data[0].close) == [97000.0, 97001.0, 97002.0]
    bars = charts.latest_bars(views.latest_frame(snapshot, ["BTCUSDT", "XRPUSDT"]))
    assert list(bars.data[0].text) == ["96,905.00", "97,002.00", "97,099.00"]


# --- messages and login --------------------------------------------------------------------

def test_a_well_formed_aggregate_parses():
    record = aggregate("BTCUSDT", T0, 97432.15)
    assert parse_checked_aggregate(message(record)[1]) == record


@pytest.mark.parametrize("value,reason", [
    (None, "tombstone"), (b"not json", "Expecting value"), (b"[1, 2]", "JSON object"),
    (b'{"symbol": "BTCUSDT"}', "lacks"), (b'{"symbol": "\xff"}', "codec"),
    (message(aggregate("BTCUSDT", T0, 1.0))[1].replace(b'"avg_price": 1.0', b'"avg_price": "x"'),
     "avg_price is not a finite number"),
    (message(aggregate("BTCUSDT", T0, 1.0))[1].replace(b'"count": 10', b'"count": NaN'),
     "count is not a finite number"),
    (message(aggregate("BTCUSDT", T0, 1.0))[1].replace(b'"2025-01-15T14:30', b'"yesterday'),
     "Invalid isoformat"),
])
def test_a_malformed_aggregate_is_a_value_error(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_checked_aggregate(value)


# --- the market overview -------------------------------------------------------------------

def moved(symbol, start, opened, closed, count=10):
    """A window that moved from `opened` to `closed`."""
    record = aggregate(symbol, start, (opened + closed) / 2, low=min(opened, closed),
                       high=max(opened, closed), count=count)
    return {**record, "open_price": opened, "close_price": closed,
            "pct_change": 100 * (closed - opened) / opened}


def test_the_overview_prices_each_symbol_at_its_newest_close_and_its_move_over_5_minutes():
    # Windows of 5 minutes every minute: the newest starts at T0+4, the one that covers
    # the last 5 minutes up to it began at T0 (it overlaps the newest's start).
    windows = [moved("BTCUSDT", T0 + i * MINUTE, 100.0 + i, 101.0 + i, count=10 + i)
               for i in range(5)]
    snapshot = store_of(*windows, moved("ETHUSDT", T0, 10.0, 9.5),
                        {**aggregate("XRPUSDT", T0, 2.0), "open_price": None,
                         "close_price": None, "pct_change": None}).snapshot()
    frame = views.market_frame(snapshot).set_index("symbol")
    btc = frame.loc["BTCUSDT"]
    assert btc["last_price"] == 105.0  # close of the newest window
    assert btc["change_pct"] == pytest.approx(1.0)  # the covering window: 100 -> 101
    assert btc["ticks"] == 10 and btc["window_start"] == T0
    assert btc["spread"] == 1.0 and btc["spread_pct"] == pytest.approx(100 / 100.5)
    assert frame.loc["ETHUSDT", "change_pct"] == pytest.approx(-5.0)
    assert pd.isna(frame.loc["XRPUSDT", "change_pct"])  # no open and close: no move


def market(*moves):
    return views.market_frame(store_of(*(moved(s, T0, 100.0, 100.0 * (1 + pct / 100))
                                         for s, pct in moves)).snapshot())


def test_search_sort_and_the_movers_named_in_words():
    frame = market(("BTCUSDT", 1.5), ("ETHUSDT", -2.0), ("JUMPUSDT", 8.0), ("ETHBTC", 0.0),
                   ("SOLUSDT", -0.5))
    assert list(views.search(frame, "eth")["symbol"]) == ["ETHUSDT", "ETHBTC"]
    assert list(views.search(frame, "*BTC")["symbol"]) == ["ETHBTC"]
    assert len(views.search(frame, " ")) == 5
    order = lambda name: list(views.sort_market(frame, name)["symbol"])  # noqa: E731
    assert order(views.DEFAULT_SORT) == ["JUMPUSDT", "BTCUSDT", "ETHBTC", "SOLUSDT",
                                         "ETHUSDT"]
    assert order("Largest move either way")[:2] == ["JUMPUSDT", "ETHUSDT"]
    assert order("Symbol")[0] == "BTCUSDT"
    gainers, losers = views.movers(frame, 2)
    assert [m.text for m in gainers] == ["JUMPUSDT +8.00%", "BTCUSDT +1.50%"]
    assert [m.text for m in losers] == ["ETHUSDT -2.00%", "SOLUSDT -0.50%"]
    assert views.mover_symbols(frame, 1) == ("JUMPUSDT", "ETHUSDT")


def test_prices_in_the_overview_keep_the_decimals_the_cards_show():
    frame = views.market_frame(store_of(
        moved("BTCUSDT", T0, 97432.151234, 97432.151234),
        moved("PEPEUSDT", T0, 0.0000123456789, 0.0000123456789)).snapshot())
    assert list(frame.sort_values("symbol")["last_price"]) == [97432.15, 0.00001235]


def test_bulk_windows_from_the_history_land_as_single_ones_do():
    records = [aggregate("BTCUSDT", T0 + i * MINUTE, 100.0 + i) for i in range(3)] + [
        aggregate("ETHUSDT", T0, 5.0)]
    one_by_one = store_of(*records).snapshot()
    bulk = AggregateStore()
    rows = np.array([to_row(record) for record in records])
    assert bulk.put_arrays([r["symbol"] for r in records], rows) == 4
    assert {s: list(w) for s, w in bulk.snapshot().windows.items()} == \
        {s: list(w) for s, w in one_by_one.windows.items()}


def test_a_window_held_takes_136_bytes():
    assert len(COLUMNS) * 8 == BYTES_PER_WINDOW == 136


# --- candles, timeframes, completeness, gaps -------------------------------------------------

def parsed_candles(oracle: dict) -> list[dict]:
    """The oracle's candles (JSON as the topic has it) as the feed parses them."""
    return [parse_candle(json.dumps(candle)) for candle in oracle.values()]


@pytest.mark.parametrize("timeframe", list(views.TIMEFRAMES))
def test_every_timeframe_rolls_up_exactly_from_one_minute_candles(timeframe):
    """Real klines with quantities, delivered out of order: the roll-up of the oracle's
    1-minute candles equals the oracle's candles of the timeframe, computed from ticks."""
    ticks = out_of_order(replay_ticks("BTCUSDT-1m-2025-08-01_2025-08-10.csv", minutes=190,
                                      with_quantity=True)
                         + replay_ticks("ETHUSDT-1m-2022-08-14.csv", minutes=70), 60, seed=3)
    minutes = views.TIMEFRAMES[timeframe]
    rolled = views.rollup(parsed_candles(expected_candles(ticks)), minutes, 5.0)
    got = {candle_key(c["symbol"], format_time(c["open_time"])): as_text(c) for c in rolled}
    assert candle_mismatches(got, expected_candles(ticks, minutes)) == []


@pytest.mark.parametrize("timeframe", ["5m", "1h"])
def test_a_time_range_keeps_every_candle_that_ends_in_it_whole(timeframe):
    """The page reads only the 1-minute candles a time range needs: a candle of the
    timeframe that began before the range starts is still made of all its minutes."""
    ticks = replay_ticks("BTCUSDT-1m-2025-08-01_2025-08-10.csv", minutes=190, with_quantity=True)
    one_minute = candle_store()
    one_minute.put_many(parsed_candles(expected_candles(ticks)))
    first = min(t.event_time for t in ticks).replace(second=0, microsecond=0)
    since = first + timedelta(minutes=97, seconds=30)
    minutes = views.TIMEFRAMES[timeframe]
    frame = views.candles_frame(one_minute.snapshot(), ["BTCUSDT"], since, minutes, 5.0, {},
                                20.0)
    got = {candle_key(c["symbol"], format_time(c["open_time"])): as_text(c)
           for c in frame.drop(columns=["partial", "completeness"]).to_dict("records")}
    expected = {key: candle for key, candle in expected_candles(ticks, minutes).items()
                if parse_candle(json.dumps(candle))["close_time"] > since}
    assert len(got) < len(expected_candles(ticks, minutes))
    assert candle_mismatches(got, expected) == []


def test_a_timeframe_of_polls_expects_the_polls_of_its_whole_span():
    polls = [Tick("BTCUSDT", 100.0 + i, T0 + timedelta(seconds=7 * i), "binance")
             for i in range(60) if not 10 <= i < 20]
    rolled = views.rollup(parsed_candles(expected_candles(polls, 1, 7.0)), 5, 7.0)
    assert candle_mismatches(
        {candle_key(c["symbol"], format_time(c["open_time"])): as_text(c) for c in rolled},
        expected_candles(polls, 5, 7.0)) == []
    assert [(c["count"], c["expected_count"]) for c in rolled] == [(33, 42), (17, 42)]


def test_windows_missing_more_than_the_share_of_polls_are_partial_open_ones_by_what_is_due():
    start, end = T0, T0 + 5 * MINUTE
    window = {"count": 47, "expected_count": 60}
    assert views.completeness(window, start, end, end, 20.0) == views.Completeness(
        True, "47 of 60 polls")
    assert not views.completeness({**window, "count": 48}, start, end, end, 20.0).partial
    # Open: a minute in, 12 polls were due; 9 is within the share, 8 is not.
    assert not views.completeness({**window, "count": 10}, start, end, T0 + MINUTE, 20.0).partial
    assert views.completeness({**window, "count": 9}, start, end, T0 + MINUTE, 20.0).partial
    assert views.completeness({"count": 5, "missed_trades": 3}, start, end, end, 20.0) == (
        views.Completeness(True, "3 trades missed"))
    assert views.completeness({"count": 5, "missed_trades": 0}, start, end, end, 20.0) == (
        views.Completeness(False, None))
    assert views.completeness({"count": 5}, start, end, end, 20.0) == views.Completeness(
        False, None), "a replay: nothing expected"


def test_an_outage_breaks_the_line_and_partial_windows_are_marked():
    polled = {"expected_count": 60}
    records = [{**aggregate("BTCUSDT", T0 + i * MINUTE, 100.0 + i, count=60), **polled}
               for i in range(3)]
    records += [{**aggregate("BTCUSDT", T0 + i * MINUTE, 100.0 + i, count=30), **polled}
                for i in (6, 7)]
    snapshot = store_of(*records).snapshot()
    frame = views.windows_frame(snapshot, ["BTCUSDT"], slide=MINUTE, missing_pct=20.0)
    assert list(frame["window_start"]) == [T0 + i * MINUTE for i in (0, 1, 2, 3, 6, 7)]
    assert frame["avg_price"].isna().tolist() == [False, False, False, True, False, False]
    assert frame["partial"].tolist()[-2:] == [True, True]
    band = charts.price_band(frame)
    avg = next(t for t in band.data if t.name == "avg")
    assert avg.y[3] is None or math.isnan(avg.y[3]), "no line across the outage"
    partial = next(t for t in band.data if t.name == charts.PARTIAL_TRACE)
    assert [str(x)[:16] for x in partial.x] == ["2025-01-15T14:36", "2025-01-15T14:37"]
    assert list(partial.text) == ["30 of 60 polls"] * 2
    card = views.cards(snapshot, ["BTCUSDT"], 20.0)[0]
    assert card.partial == "30 of 60 polls"
    assert views.cards(snapshot, ["BTCUSDT"])[0].partial is None


def test_charts_keep_their_view_across_refreshes():
    """A figure's uirevision and its traces' uids are the same on every rerun, whatever
    the data: plotly then keeps the user's zoom, pan and legend choices."""
    def figures(extra_minutes):
        records = [aggregate("BTCUSDT", T0 + i * MINUTE, 100.0 + i)
                   for i in range(3 + extra_minutes)]
        snapshot = store_of(*records).snapshot()
        frame = views.windows_frame(snapshot, ["BTCUSDT"])
        candle_rows = [{"symbol": "BTCUSDT", "open_time": T0 + i * MINUTE,
                        "close_time": T0 + (i + 1) * MINUTE, "open": 1.0, "high": 2.0,
                        "low": 0.5, "close": 1.5, "count": 4} for i in range(3 + extra_minutes)]
        candle_snapshot = store_of_candles(candle_rows).snapshot()
        candles = views.candles_frame(candle_snapshot, ["BTCUSDT"], None, 5, 5.0, {}, 20.0)
        return charts.price_band(frame), charts.candles(candles)

    before, after = figures(0), figures(4)
    for old, new in zip(before, after):
        assert old.layout.uirevision == new.layout.uirevision
        assert [t.uid for t in old.data] == [t.uid for t in new.data]
    assert {f.layout.uirevision for f in before} == {"chart-band", "chart-candles"}
    rolled = after[1].data[0]
    assert len(rolled.x) == 2 and list(rolled.close) == [1.5, 1.5]


def store_of_candles(rows):
    store = candle_store()
    store.put_many(rows)
    return store
