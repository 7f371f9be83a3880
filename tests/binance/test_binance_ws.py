"""Binance's trade-stream messages and URLs on their own (no server, no Kafka)."""

import json
import re
from datetime import datetime, timezone

import pytest

from crypto_pipeline.binance.ws import BadMessage, combined_stream_urls, parse_trade
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.producer.app import build_source

SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT"})
# A trade exactly as Binance's combined stream sends it.
TRADE = {"e": "trade", "E": 1736951521125, "s": "BTCUSDT", "t": 4_712_345_678,
         "p": "97432.15000000", "q": "0.00125000", "T": 1736951521123, "m": True, "M": True}


def message(data=None, stream="btcusdt@trade", **changes) -> str:
    data = {**TRADE, **changes} if data is None else data
    return json.dumps({"stream": stream, "data": data})


def test_a_trade_becomes_a_tick_stamped_with_its_trade_time():
    tick = parse_trade(message(), SYMBOLS)
    assert (tick.symbol, tick.price, tick.quantity, tick.event_id, tick.source) == (
        "BTCUSDT", 97432.15, 0.00125, "4712345678", "binance-ws")
    # T, not the event time E: 2025-01-15 14:32:01.123 UTC.
    assert tick.event_time == datetime(2025, 1, 15, 14, 32, 1, 123000, tzinfo=timezone.utc)
    assert tick.to_dict()["event_time"] == "2025-01-15T14:32:01.123000Z"
    assert parse_trade(message(stream="ethusdt@trade", s="ETHUSDT").encode(), SYMBOLS).symbol \
        == "ETHUSDT"


@pytest.mark.parametrize("raw, reason", [
    ("not json", "not JSON: 'not json'"),
    (b"\xff\xfe", "not JSON"),
    ("[1, 2]", "not a combined-stream message"),
    (json.dumps(TRADE), "not a combined-stream message"),
    (json.dumps({"stream": "btcusdt@trade"}), "not a combined-stream message"),
    (message(e="aggTrade"), "not a trade (e='aggTrade')"),
    (message(s="XRPUSDT", stream="xrpusdt@trade"), "trade of a symbol not subscribed: 'XRPUSDT'"),
    (message(stream="ethusdt@trade"), "BTCUSDT trade on stream 'ethusdt@trade'"),
    (message(p="abc"), "p is not a decimal string > 0: 'abc'"),
    (message(p="-1"), "p is not a decimal string > 0"),
    (message(p="NaN"), "p is not a decimal string > 0"),
    (message(p=97432.15), "p is not a decimal string > 0: 97432.15"),
    (message(q="0.00000000"), "q is not a decimal string > 0"),
    (message(data={k: v for k, v in TRADE.items() if k != "q"}), "q is not a decimal"),
    (message(data={k: v for k, v in TRADE.items() if k != "T"}), "T is not a whole number"),
    (message(T="1736951521123"), "T is not a whole number >= 0: '1736951521123'"),
    (message(t=True), "t is not a whole number"),
    (message(t=-5), "t is not a whole number"),
])
def test_what_is_not_a_trade_of_a_subscribed_symbol_is_a_bad_message(raw, reason):
    with pytest.raises(BadMessage, match="^" + re.escape(reason)):
        parse_trade(raw, SYMBOLS)


def test_one_combined_stream_per_1024_symbols_with_lower_case_names():
    assert combined_stream_urls("wss://stream.binance.com:9443/", ["BTCUSDT", "ETHUSDT"]) == [
        "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"]
    symbols = [f"S{i:04d}USDT" for i in range(2500)]
    urls = combined_stream_urls("ws://localhost:1", symbols)
    assert [url.count("@trade") for url in urls] == [1024, 1024, 452]
    assert urls[1].startswith("ws://localhost:1/stream?streams=s1024usdt@trade/")
    assert combined_stream_urls("ws://h:1", ["AUSDT", "BUSDT", "CUSDT"], 2) == [
        "ws://h:1/stream?streams=ausdt@trade/busdt@trade", "ws://h:1/stream?streams=cusdt@trade"]


def test_a_trade_is_positioned_by_its_id_per_symbol():
    btc, eth = parse_trade(message(), SYMBOLS), parse_trade(
        message(stream="ethusdt@trade", s="ETHUSDT"), SYMBOLS)
    assert btc.position == eth.position == int(btc.event_id)  # ids count per symbol
    assert parse_trade(message(t=7), SYMBOLS).position == 7


def test_the_producer_builds_the_trade_stream_for_binance_ws():
    settings = Settings.load(environ={"PRICE_SOURCE": "binance-ws", "SYMBOLS": "BTCUSDT,SOLUSDT",
                                      "BINANCE_WS_URL": "ws://localhost:9"}, env_file=None)
    source = build_source(settings)  # nothing connects before batches() runs
    assert (source.name, source.symbols, source.status.state) == (
        "binance-ws", ("BTCUSDT", "SOLUSDT"), "starting")
