"""The producer over a whole market: SYMBOLS' patterns against a stand-in listing more than a
thousand symbols (some in BREAK or HALT, some quoted in BTC), a listing and a halt while it
runs, over REST polls and over trade streams on several connections; and a pattern that
matches nothing stopping it with one line."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict

import pytest

from crypto_pipeline.core.schema import parse_time
from crypto_pipeline.core.settings import EXIT_CONFIG_ERROR
from crypto_pipeline.producer.sources.trade_stream import BinanceTradeStream
from support.fake_binance import FakeBinance, market
from support.fake_binance_ws import FakeBinanceWs
from support.helpers import process_env, producer_status, read_topic, wait_for
from support.producing import running, start_producer

pytestmark = pytest.mark.integration


def ticks_by_symbol(kafka, settings) -> dict[str, list[dict]]:
    ticks = defaultdict(list)
    for record in read_topic(kafka, settings.input_topic, min_records=1, timeout=30, idle=0.5):
        value = json.loads(record.value)
        assert record.key.decode() == value["symbol"]
        ticks[value["symbol"]].append(value)
    return ticks


def test_polls_bring_exactly_the_trading_matches_and_follow_a_listing_and_a_halt(
        kafka, settings):
    prices, statuses = market(1200)
    with FakeBinance(prices=prices, statuses=statuses) as fake:
        live = settings.replace(binance_base_url=fake.url, symbols=("*USDT",),
                                poll_interval_seconds=0.5, symbols_refresh_seconds=1.0,
                                http_read_timeout_seconds=5.0)
        trading = sorted(s for s in prices if s.endswith("USDT") and s not in statuses)
        assert len(trading) > 700 and any(s.endswith("BTC") for s in prices)
        with running(live):
            wait_for(lambda: producer_status(live.run_dir).ticks_sent >= 3 * len(trading), 60,
                     "three polls of every trading USDT symbol")
            halted = trading[0]
            fake.halt(halted)
            fake.list_symbol("NEWUSDT", 1.5)
            changed = wait_for(lambda: (s := producer_status(live.run_dir)).symbol_changes
                               and s, 30, "the change in the status")
            polls = len(fake.ticker_requests())
            wait_for(lambda: len(fake.ticker_requests()) >= polls + 3, 30, "three more polls")
        final = producer_status(live.run_dir)
    change = changed.symbol_changes[-1]
    assert (change.joined, change.left) == (["NEWUSDT"], [halted])
    assert (final.symbols_joined, final.symbols_left, final.symbol_patterns) == (1, 1,
                                                                                 ["*USDT"])
    assert len(final.symbols) == len(trading) and "NEWUSDT" in final.symbols
    # One request per poll, for every price (no list in the URL), whatever the count.
    assert final.polls == len(fake.ticker_requests())
    assert all(r.params == {} for r in fake.ticker_requests())
    exchange_info = [r for r in fake.requests if r.path == "/api/v3/exchangeInfo"]
    assert exchange_info and all(r.params["symbolStatus"] == "TRADING" for r in exchange_info)

    ticks = ticks_by_symbol(kafka, live)
    assert set(ticks) == set(trading) | {"NEWUSDT"}, "a symbol not trading or not USDT"
    changed_at = parse_time(change.at)
    assert all(parse_time(t["event_time"]) < changed_at for t in ticks[halted])
    assert all(parse_time(t["event_time"]) > changed_at for t in ticks["NEWUSDT"])
    counts = {len(ticks[s]) for s in trading[1:]}
    assert max(counts) - min(counts) <= 1, "a poll missed some symbols"


def test_trade_streams_on_several_connections_resubscribe_on_a_listing_change(kafka,
                                                                              settings):
    prices = {f"W{n:03d}USDT": 1.0 + n for n in range(42)}
    prices |= {"WBREAKUSDT": 3.0, "W001BTC": 0.0001}
    with FakeBinanceWs(prices=prices, statuses={"WBREAKUSDT": "BREAK"},
                       trades_per_second=4) as fake:
        live = settings.replace(price_source="binance-ws", binance_ws_url=fake.url,
                                binance_base_url=fake.rest_url, symbols=("*USDT",),
                                symbols_refresh_seconds=1.0)
        trading = sorted(s for s in prices if s.startswith("W0") and s.endswith("USDT"))
        source = BinanceTradeStream(live, streams_per_connection=10)
        with running(live, source=source):
            wait_for(lambda: {s for s, _ in fake.sent_trades()} == set(trading), 30,
                     "trades of every trading USDT symbol")
            assert len(fake.open_connections()) == 5  # 42 symbols, 10 a connection
            first = fake.connections[0]
            halted = sorted(first.symbols)[0]
            listed = [f"N{n:02d}USDT" for n in range(12)]
            fake.halt(halted)
            for symbol in listed:
                fake.list_symbol(symbol, 2.0)
            wait_for(lambda: set(listed) <= {s for s, _ in fake.sent_trades()}, 30,
                     "trades of the new listings")
            wait_for(lambda: all(halted not in c.symbols for c in fake.open_connections()),
                     10, "the halted symbol unsubscribed")
            after = {c.number: c.sent_count for c in fake.connections[:5]}
            wait_for(lambda: all(c.sent_count > after[c.number] for c in fake.connections[:5]),
                     10, "trades on every first connection after the change")
    # The five connections stayed up: room on them took 9 listings, the other 3 one more.
    assert len(fake.connections) == 6
    assert [c.end for c in fake.connections] == ["client closed"] * 6
    methods = [r["method"] for c in fake.connections for r in c.requests]
    assert sorted(methods) == ["SUBSCRIBE", "SUBSCRIBE", "UNSUBSCRIBE"]
    assert {s for c in fake.connections[:5] for s in c.symbols} | fake.connections[5].symbols \
        == set(trading) - {halted} | set(listed)
    # Unchanged streams were never interrupted: ids consecutive, nothing filled or doubled.
    ids = defaultdict(list)
    for symbol, ticks in ticks_by_symbol(kafka, live).items():
        ids[symbol] = sorted(int(t["event_id"]) for t in ticks)
    for symbol in set(trading) - {halted}:
        assert ids[symbol] == list(range(ids[symbol][0], ids[symbol][-1] + 1)), symbol
    assert source.status.errors["trades-filled"] == 0 and source.attempts.waits == 0


def test_a_pattern_that_matches_nothing_stops_the_producer_with_one_line(settings, tmp_path):
    with FakeBinance() as fake:
        env = process_env(settings, SYMBOLS="BTCUSDT,*DOGE", BINANCE_BASE_URL=fake.url)
        process = start_producer(env, tmp_path)
        try:
            assert process.wait(60) == EXIT_CONFIG_ERROR
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    errors = [line for line in (tmp_path / "producer.log").read_text().splitlines()
              if line.startswith("error:")]
    assert errors == [f"error: SYMBOLS: *DOGE matches no symbol trading on {fake.url} "
                      f"(exchangeInfo, symbolStatus=TRADING)"]
