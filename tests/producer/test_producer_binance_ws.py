"""PRICE_SOURCE=binance-ws end to end: the WebSocket stand-in -> the real websockets client
-> the producer -> a real Kafka broker. Trade ids tell exactly what was lost or repeated."""

from __future__ import annotations

import json
import logging
import socket
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.core.schema import parse_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.producer.sources.trade_stream import BinanceTradeStream
from support.fake_binance_ws import FakeBinanceWs, fake_binance_ws_process
from support.helpers import free_port, producer_status, wait_for
from support.helpers import process_env as environment
from support.producing import landed, producer_process, running, sent_at_least

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def streaming(settings: Settings, fake: FakeBinanceWs, **changes) -> Settings:
    return settings.replace(**{"price_source": "binance-ws", "binance_ws_url": fake.url,
                               "binance_base_url": fake.rest_url,
                               "symbols": ("BTCUSDT", "ETHUSDT"), **changes})


def trade_ids(records) -> Counter:
    """(symbol, trade id) of each tick on the topic, counted; the key must be the symbol."""
    ids = Counter()
    for record in records:
        value = json.loads(record.value)
        assert record.key.decode() == value["symbol"]
        ids[(value["symbol"], int(value["event_id"]))] += 1
    return ids


def test_trades_land_as_ticks_with_their_trade_time_quantity_and_id(kafka, settings):
    with FakeBinanceWs(trades_per_second=0) as fake:
        live = streaming(settings, fake)
        with running(live):
            wait_for(lambda: producer_status(live.run_dir).state == "ok", 15, "the connection")
            trades = [fake.publish("BTCUSDT", 97432.15, 0.5), fake.publish("ETHUSDT", 3312.4, 2),
                      fake.publish("BTCUSDT", 97433.5, 0.0125)]
            wait_for(sent_at_least(live, 3), 15, "three ticks confirmed by Kafka")
        final = producer_status(live.run_dir)
    assert [c.streams for c in fake.connections] == [("btcusdt@trade", "ethusdt@trade")]
    records = landed(kafka, live, 3)
    assert len(records) == 3 and final.ticks_sent == 3
    by_trade = {(r.key.decode(), json.loads(r.value)["event_id"]): r for r in records}
    for trade in trades:
        record = by_trade[(trade["s"], str(trade["t"]))]
        value = json.loads(record.value)
        assert record.key == trade["s"].encode()
        assert (value["symbol"], value["price"], value["quantity"], value["source"]) == (
            trade["s"], float(trade["p"]), float(trade["q"]), "binance-ws")
        assert parse_time(value["event_time"]) == EPOCH + timedelta(milliseconds=trade["T"])
    assert final.source == "binance-ws" and final.state == "ok"
    assert final.symbols == ["BTCUSDT", "ETHUSDT"] and final.last_error is None
    assert final.polls == 3 and final.bad_entries == 0 and final.ticks_buffered == 0


def test_more_symbols_than_a_connection_carries_take_more_connections(kafka, settings):
    with FakeBinanceWs(trades_per_second=20) as fake:
        live = streaming(settings, fake, symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"))
        source = BinanceTradeStream(live, streams_per_connection=2)
        with running(live, source=source):
            wait_for(lambda: {s for s, _ in fake.sent_trades()} == set(live.symbols), 15,
                     "trades of all three symbols")
    assert sorted(c.streams for c in fake.connections) == [
        ("btcusdt@trade", "ethusdt@trade"), ("solusdt@trade",)]
    assert set(trade_ids(landed(kafka, live, 3))) == set(fake.sent_trades())


def test_pong_replies_keep_the_connection_alive_across_server_pings(settings):
    # The stand-in drops a connection whose pong is 0.5 s late; the client pongs by itself.
    with FakeBinanceWs(trades_per_second=5, ping_interval=0.3, ping_timeout=0.5) as fake:
        live = streaming(settings, fake)
        with running(live):
            wait_for(lambda: fake.connections and fake.connections[0].pongs >= 5, 15,
                     "five pings answered")
            assert producer_status(live.run_dir).state == "ok"
    first = fake.connections[0]
    assert len(fake.connections) == 1 and first.end == "client closed"
    assert first.pings - first.pongs <= 1  # the last ping may be in flight at the close
    assert "dropped" not in producer_status(live.run_dir).errors


def test_the_stand_in_drops_a_client_that_does_not_pong():
    """The rule the test above relies on: a client that never reads gets no second chance."""
    with FakeBinanceWs(trades_per_second=0, ping_interval=0.2, ping_timeout=0.3) as fake:
        host, port = fake.url.removeprefix("ws://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as client:
            client.sendall(b"GET /stream?streams=btcusdt@trade HTTP/1.1\r\nHost: x\r\n"
                           b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                           b"dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert client.recv(12) == b"HTTP/1.1 101"
            wait_for(lambda: fake.connections and fake.connections[0].end == "no pong", 10,
                     "the drop")
    assert fake.connections[0].pings == 1 and fake.connections[0].pongs == 0


def test_a_dropped_connection_is_reconnected_and_no_later_trade_is_lost(kafka, settings,
                                                                       caplog):
    caplog.set_level(logging.INFO)
    with FakeBinanceWs(trades_per_second=50) as fake:
        live = streaming(settings, fake)
        with running(live):
            wait_for(lambda: fake.connections and len(fake.connections[0].sent) >= 20, 15,
                     "trades on the first connection")
            fake.drop()
            wait_for(lambda: len(fake.connections) == 2 and len(fake.connections[1].sent) >= 40,
                     15, "trades on the second connection")
    first, second = fake.connections
    assert first.end == "dropped" and second.end == "client closed"
    ids = trade_ids(landed(kafka, live, len(second.sent)))
    assert max(ids.values()) == 1, "a trade was sent twice"
    assert set(second.sent) <= set(ids), "a trade sent after the reconnect was lost"
    for symbol in live.symbols:  # what the stream missed meanwhile came from the history
        numbers = sorted(n for s, n in ids if s == symbol)
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), f"a gap in {symbol}"
    assert any(symbol == s for s, _, rows in fake.history_requests if rows), \
        "the gap was not filled from the trade history"
    final = producer_status(live.run_dir)
    assert final.state == "ok" and final.errors["dropped"] == 1
    assert "dropped (ConnectionClosedError" in final.last_error
    assert any("dropped" in m and "next try in" in m for m in caplog.messages)
    assert any(m.startswith("connected again to ws://") for m in caplog.messages)


def test_the_lifetime_rollover_leaves_no_gap_and_no_duplicate(kafka, settings):
    # Connections live 2.5 s (Binance: 24 h); the client replaces each 1 s before.
    with FakeBinanceWs(trades_per_second=50, lifetime=2.5) as fake:
        live = streaming(settings, fake)
        source = BinanceTradeStream(live, lifetime=2.5, renew_before=1.0, overlap=0.3)
        with running(live, source=source):
            wait_for(lambda: len(fake.connections) >= 4, 20, "three rollovers")
            wait_for(lambda: len(fake.connections[3].sent) >= 10, 10, "the fourth connection")
    assert [c.end for c in fake.connections] == ["client closed"] * len(fake.connections), \
        "the server had to end a connection"
    sent = fake.sent_trades()
    ids = trade_ids(landed(kafka, live, len(sent)))
    assert max(ids.values()) == 1, "a trade was sent twice"
    assert sorted(ids) == sent, "a trade the server sent is not on the topic"
    for symbol in live.symbols:  # ids are consecutive: one missing would be a gap
        numbers = sorted(n for s, n in ids if s == symbol)
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), f"a gap in {symbol}"
    on_two = [trade for trade in sent
              if sum(trade in c.sent for c in fake.connections) == 2]
    assert on_two, "the connections did not overlap"


def test_a_failed_replacement_is_retried_while_the_old_connection_goes_on(kafka, settings,
                                                                         caplog):
    with FakeBinanceWs(trades_per_second=50) as fake:
        live = streaming(settings, fake)
        source = BinanceTradeStream(live, lifetime=3.0, renew_before=2.0, overlap=0.3)
        with running(live, source=source):
            wait_for(lambda: fake.connections, 15, "the first connection")
            fake.refuse(503)  # before the replacement is due, 1 s after the first opened
            wait_for(lambda: source.status.errors["connection"] >= 2, 15, "two failed tries")
            assert source.status.state == "ok", "trades still flow on the old connection"
            fake.refuse(None)
            wait_for(lambda: len(fake.connections) == 2 and len(fake.connections[1].sent) >= 20,
                     15, "the replacement")
    assert fake.connections[0].end == "client closed"
    sent = fake.sent_trades()
    ids = trade_ids(landed(kafka, live, len(sent)))
    assert max(ids.values()) == 1 and sorted(ids) == sent
    assert any("cannot open the connection to replace" in m and "HTTP 503" in m
               for m in caplog.messages)


GARBAGE = [
    "not json",
    json.dumps({"result": None, "id": 1}),
    json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "s": "BTCUSDT"}}),
    json.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "abc", "q": "1", "T": 1, "m": True,
        "M": True}}),
    json.dumps({"stream": "xrpusdt@trade", "data": {
        "e": "trade", "E": 1, "s": "XRPUSDT", "t": 1, "p": "2.1", "q": "1", "T": 1, "m": True,
        "M": True}}),
]


def test_garbage_is_skipped_counted_and_logged_once_in_a_while(kafka, settings, caplog):
    with FakeBinanceWs(trades_per_second=0) as fake:
        live = streaming(settings, fake)
        with running(live):
            wait_for(lambda: producer_status(live.run_dir).state == "ok", 15, "the connection")
            for text in GARBAGE:
                fake.send_raw(text)
            good = [fake.publish("BTCUSDT"), fake.publish("ETHUSDT")]
            wait_for(sent_at_least(live, 2), 15, "the good trades")
            wait_for(lambda: producer_status(live.run_dir).bad_entries == len(GARBAGE), 10,
                     "every bad message counted")
    final = producer_status(live.run_dir)
    assert final.errors["bad-message"] == len(GARBAGE) and final.state == "ok"
    assert set(trade_ids(landed(kafka, live, 2))) == {(t["s"], t["t"]) for t in good}
    skipped = [m for m in caplog.messages if "bad message" in m]
    assert skipped == ["skipped 1 bad message from the trade stream (never sent); last: "
                       "not JSON: 'not json'"]


def test_an_unreachable_or_refusing_server_is_reported_and_then_recovered_from(settings):
    port = free_port()
    live = settings.replace(price_source="binance-ws", binance_ws_url=f"ws://127.0.0.1:{port}")
    with running(live):
        down = wait_for(lambda: producer_status(live.run_dir).state == "binance-unreachable"
                        and producer_status(live.run_dir), 15, "binance-unreachable")
        assert down.last_error.startswith(
            f"cannot connect to Binance's trade stream at ws://127.0.0.1:{port}/stream?streams="
            f"btcusdt@trade/ethusdt@trade (ConnectionRefusedError")
        with FakeBinanceWs(port=port, trades_per_second=20) as fake:
            fake.refuse(451)
            refused = wait_for(lambda: producer_status(live.run_dir).state == "restricted-location"
                               and producer_status(live.run_dir), 15, "restricted-location")
            assert "HTTP 451" in refused.last_error
            assert "BINANCE_WS_URL to wss://data-stream.binance.vision" in refused.last_error
            fake.refuse(None)
            wait_for(lambda: producer_status(live.run_dir).state == "ok" and
                     producer_status(live.run_dir).ticks_sent >= 5, 30, "trades after recovering")
    errors = producer_status(live.run_dir).errors
    assert errors["connection"] >= 1 and errors["restricted-location"] >= 1


def test_the_entry_point_streams_trades_and_stops_cleanly_on_sigterm(kafka, settings,
                                                                    tmp_path):
    with fake_binance_ws_process("--trades-per-second", "10") as (_, url):
        env = environment(settings, PRICE_SOURCE="binance-ws", BINANCE_WS_URL=url)
        with producer_process(env, tmp_path):
            wait_for(sent_at_least(settings, 10), 60, "ten ticks confirmed by Kafka")
    final = producer_status(settings.run_dir)
    assert final.source == "binance-ws" and final.ticks_buffered == 0
    ids = trade_ids(landed(kafka, settings, final.ticks_sent))
    assert sum(ids.values()) == final.ticks_sent and max(ids.values()) == 1
    log_text = (tmp_path / "producer.log").read_text()
    assert "streaming the trades of BTCUSDT,ETHUSDT" in log_text and "stopped:" in log_text
