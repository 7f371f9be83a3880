"""Replay and simulated sources on their own (no Kafka, no Binance)."""

import json
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from itertools import chain, islice
from pathlib import Path

import pytest

from crypto_pipeline.binance.klines import read_klines, ticks_of
from crypto_pipeline.binance.ws import trade_tick
from crypto_pipeline.core.schema import Tick
from crypto_pipeline.core.settings import Settings, SettingsError
from crypto_pipeline.producer.app import build_source
from crypto_pipeline.producer.sources.replay import ReplayFileError, ReplaySource
from crypto_pipeline.producer.sources.simulated import SimulatedSource
from crypto_pipeline.producer.sources.trade_stream import with_missed_counts
from support import DATA_DIR

DATA = DATA_DIR
ETH_ARCHIVE = DATA / "ETHUSDT-1m-2022-08-14.csv"  # bulk-archive layout, epoch ms
BTC_EXPORT = DATA / "BTCUSDT-1m-2025-08-01_2025-08-10.csv"  # header row, ISO times


def settings_for(**values) -> Settings:
    return Settings.load(environ={}, env_file=None).replace(**values)


def replay(path: Path, speed: float = 0.0) -> ReplaySource:
    return ReplaySource(settings_for(price_source="replay", replay_file=path,
                                     replay_speed=speed))


def drain(source, stop=None) -> list:
    return list(chain.from_iterable(source.batches(stop or threading.Event())))


def test_replay_of_a_binance_archive_file_yields_four_ticks_per_candle():
    source = replay(ETH_ARCHIVE)
    ticks = drain(source)
    assert len(ticks) == 4 * 1440
    assert [tick.position for tick in ticks] == list(range(len(ticks)))
    assert [replace(tick, position=None) for tick in ticks] == \
        list(ticks_of(read_klines(ETH_ARCHIVE)))
    # The first candle of the file: open 1983.55, high 1983.90, low 1982.14, close 1982.29.
    first = ticks[:4]
    assert [t.price for t in first] == [1983.55, 1983.9, 1982.14, 1982.29]
    assert first[0].event_time == datetime(2022, 8, 14, tzinfo=timezone.utc)
    assert first[3].event_time == datetime(2022, 8, 14, 0, 0, 59, tzinfo=timezone.utc)
    assert {t.source for t in ticks} == {"replay"} and {t.symbol for t in ticks} == {"ETHUSDT"}
    assert len({t.event_id for t in ticks}) == len(ticks)
    assert source.status.state == "finished"


def test_replay_reads_the_export_layout_with_a_header_too():
    first = list(islice(replay(BTC_EXPORT).ticks(), 4))
    # 2025-08-01 00:00: open 115764.07, high 115764.08, low 115704.78, close 115729.0 (falling)
    assert [t.price for t in first] == [115764.07, 115764.08, 115704.78, 115729.0]
    assert first[0].event_time == datetime(2025, 8, 1, tzinfo=timezone.utc)
    assert first[0].symbol == "BTCUSDT"


def test_replay_of_a_tick_file_keeps_its_data_and_skips_bad_lines(tmp_path):
    path = tmp_path / "ticks.jsonl"
    lines = [
        {"symbol": "BTCUSDT", "price": 97000.5, "event_time": "2025-01-15T14:32:01.5Z",
         "source": "binance", "event_id": "a"},
        {"symbol": "ETHUSDT", "price": "not a price", "event_time": "2025-01-15T14:32:02Z"},
        {"symbol": "ETHUSDT", "price": 3300, "event_time": "2025-01-15T16:32:03+02:00",
         "quantity": 0.5},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\nnot json\n")
    source = replay(path)
    ticks = drain(source)
    assert [(t.symbol, t.price, t.source, t.event_id, t.quantity) for t in ticks] == [
        ("BTCUSDT", 97000.5, "replay", "a", None), ("ETHUSDT", 3300.0, "replay", None, 0.5)]
    assert ticks[1].event_time == datetime(2025, 1, 15, 14, 32, 3, tzinfo=timezone.utc)
    assert source.status.bad_entries == 2
    assert "line 5" in source.status.last_error


def test_replay_paces_ticks_by_their_event_times():
    """At 300x, the 4 ticks of a candle (0, 15, 30, 59 s) come 0, 50, 100, 197 ms apart."""
    source = replay(ETH_ARCHIVE, speed=300)
    stop = threading.Event()
    sent_at = []
    for batch in source.batches(stop):
        sent_at += [(time.monotonic(), t) for t in batch]
        if len(sent_at) >= 8:
            stop.set()
    start, first = sent_at[0]
    for moment, tick in sent_at:
        due = (tick.event_time - first.event_time).total_seconds() / 300
        assert moment - start >= due - 0.005, f"{tick} came early"
    assert sent_at[7][0] - start < 1.0  # and not much later: 8 ticks span 0.397 s
    assert source.status.state != "finished"


def test_a_file_that_is_not_klines_stops_the_replay_with_its_name(tmp_path):
    path = tmp_path / "ETHUSDT-1m-broken.csv"
    path.write_text("1660435200000,1983.55,1983.90\n")
    with pytest.raises(ReplayFileError, match="ETHUSDT-1m-broken.csv, line 1"):
        drain(replay(path))


def test_a_missing_replay_file_is_a_setting_error(tmp_path):
    with pytest.raises(SettingsError, match="REPLAY_FILE=.*no such file"):
        build_source(settings_for(price_source="replay", replay_file=tmp_path / "none.csv"))


def test_simulated_prices_walk_for_any_symbols_at_the_poll_interval():
    source = SimulatedSource(settings_for(price_source="simulated", symbols=("AAAUSDT", "ZZ9"),
                                          poll_interval_seconds=0.05), seed=3)
    stop = threading.Event()
    batches = []
    for batch in source.batches(stop):
        if batch:
            batches.append((time.monotonic(), batch))
        if len(batches) == 5:
            stop.set()
    assert all([t.symbol for t in batch] == ["AAAUSDT", "ZZ9"] for _, batch in batches)
    assert all(t.source == "simulated" and t.price > 0 for _, b in batches for t in b)
    assert len({t.price for _, b in batches for t in b}) == 10  # it moves
    assert batches[-1][0] - batches[0][0] >= 4 * 0.05 - 0.01
    assert source.status.polls == 5


def test_trades_the_stream_and_the_history_both_missed_are_counted_on_the_next_tick():
    def trade(trade_id: int) -> Tick:
        return trade_tick("BTCUSDT", trade_id, 97000.0 + trade_id, 0.5, 1_700_000_000_000)

    # After trade 10 the stream delivers 20; the history had 11..13 and 16, not 14, 15
    # and 17..19.
    filled, streamed = with_missed_counts(10, [trade(i) for i in (11, 12, 13, 16)], trade(20))
    assert [(t.position, t.missed_before) for t in (*filled, streamed)] == [
        (11, None), (12, None), (13, None), (16, 2), (20, 3)]
    assert streamed.to_dict()["missed_before"] == 3 and "missed_before" not in trade(1).to_dict()
    # Nothing missed: nothing counted.
    assert with_missed_counts(19, [], trade(20)) == ([], trade(20))
