"""Which symbols trade (exchangeInfo), every price in one request, request weight paced per
minute, connection attempts within Binance's limit, SUBSCRIBE on an open connection: the
client's rules on their own, and the stand-ins answering as Binance does."""

import json
import threading

import pytest
import requests
from websockets.sync.client import connect

from crypto_pipeline.binance.listing import resolve_symbols
from crypto_pipeline.binance.rest import (
    BinanceError,
    BinanceRestClient,
    WeightPacer,
    parse_exchange_info,
)
from crypto_pipeline.binance.ws import (
    ConnectionAttempts,
    control_answer,
    control_message,
    shown_url,
)
from support.fake_binance import FakeBinance, market
from support.fake_binance_ws import FakeBinanceWs
from support.helpers import wait_for

JSON = "application/json;charset=UTF-8"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- pure rules ------------------------------------------------------------------------

def test_the_pacer_holds_a_request_that_would_pass_the_budget_until_the_minute_ends():
    clock = Clock(6000.0)  # the start of a minute
    pacer = WeightPacer(100, share=0.8, clock=clock)
    assert [pacer.reserve(20) for _ in range(4)] == [0, 0, 0, 0]
    clock.now += 15
    assert pacer.reserve(20) == 45.0  # 80 used: the next waits for the minute's end
    assert pacer.used == 80
    pacer.observe(30)  # Binance counts less (a request of the old minute): the higher holds
    assert pacer.used == 80
    clock.now += 45
    assert pacer.used is None and pacer.reserve(20) == 0  # a new minute
    pacer.observe(75)  # another client of this IP used weight too
    assert pacer.reserve(20) > 0


def test_connection_attempts_wait_once_the_limit_is_reached():
    clock = Clock(0.0)
    attempts = ConnectionAttempts(limit=3, period=300, clock=clock)
    stop = threading.Event()
    waits = []
    stop.wait = lambda seconds: (waits.append(seconds), setattr(clock, "now",
                                                               clock.now + seconds))[0]
    for moment in (0, 10, 20):
        clock.now = moment
        assert attempts.acquire(stop)
    clock.now = 100
    assert attempts.acquire(stop) and waits == [200] and attempts.waits == 1
    stop.set()
    assert not attempts.acquire(stop)


def test_control_messages_and_their_answers():
    assert control_message("SUBSCRIBE", ["XRPUSDT", "SOLUSDT"], 7) == (
        '{"method":"SUBSCRIBE","params":["xrpusdt@trade","solusdt@trade"],"id":7}')
    assert control_answer('{"result":null,"id":7}', {7}) == {"result": None, "id": 7}
    assert control_answer('{"code":2,"msg":"Invalid request","id":7}', {7})["code"] == 2
    assert control_answer('{"result":null,"id":1}', {7}) is None  # not asked: a bad message
    assert control_answer('{"stream":"btcusdt@trade","data":{}}', {7}) is None
    assert control_answer("not json", {7}) is None


def test_a_url_of_a_thousand_streams_is_shown_short():
    url = "ws://h:1/stream?streams=" + "/".join(f"s{i:04d}usdt@trade" for i in range(1000))
    assert shown_url(url) == ("ws://h:1/stream?streams=s0000usdt@trade/s0001usdt@trade/"
                              "s0002usdt@trade/... (1000 streams)")
    assert shown_url("ws://h:1/stream?streams=btcusdt@trade") == \
        "ws://h:1/stream?streams=btcusdt@trade"


def test_exchange_info_that_is_not_one_is_malformed():
    with pytest.raises(BinanceError, match="without a list of symbols"):
        parse_exchange_info(b'{"symbols": 3}', JSON)
    with pytest.raises(BinanceError, match="instead of JSON"):
        parse_exchange_info(b"<html></html>", "text/html")


# --- the REST stand-in and the client --------------------------------------------------

def test_exchange_info_lists_statuses_quote_assets_and_permission_sets_as_binance_does():
    prices, statuses = market(200)
    with FakeBinance(prices=prices, statuses=statuses) as fake:
        url = fake.url + "/api/v3/exchangeInfo"
        every = requests.get(url, timeout=5)
        assert every.status_code == 200 and every.headers["X-MBX-USED-WEIGHT-1M"] == "20"
        listed = every.json()["symbols"]
        assert len(listed) == 200 and {s["status"] for s in listed} == {"TRADING", "BREAK",
                                                                       "HALT"}
        btc = next(s for s in listed if s["symbol"].endswith("BTC"))
        assert btc["quoteAsset"] == "BTC" and btc["baseAsset"] == btc["symbol"][:-3]
        assert btc["permissions"] == [] and btc["permissionSets"][0][0] == "SPOT"
        trading = requests.get(url, params={"symbolStatus": "TRADING",
                                            "showPermissionSets": "false"}, timeout=5).json()
        assert {s["status"] for s in trading["symbols"]} == {"TRADING"}
        assert len(trading["symbols"]) == 200 - len(statuses)
        assert all(s["permissionSets"] == [] for s in trading["symbols"])
        halted = requests.get(url, params={"symbolStatus": "HALT"}, timeout=5).json()
        assert {s["symbol"] for s in halted["symbols"]} == {
            s for s, status in statuses.items() if status == "HALT"}
        mixed = requests.get(url, params={"symbolStatus": "TRADING", "symbol": "M0001USDT"},
                             timeout=5)
        assert mixed.status_code == 400 and mixed.json()["code"] == -1128
        assert requests.get(url, params={"symbolStatus": "OPEN"}, timeout=5).json()["code"] \
            == -1130
        assert requests.get(url, params={"symbol": "NOPEUSDT"}, timeout=5).json()["code"] \
            == -1121
        two = [btc["symbol"], "M0001USDT"]
        one = requests.get(url, params={"symbols": json.dumps(two, separators=(",", ":"))},
                           timeout=5)
        assert [s["symbol"] for s in one.json()["symbols"]] == two


def test_the_client_resolves_patterns_and_polls_every_price_in_one_request():
    prices, statuses = market(300)
    with FakeBinance(prices=prices, statuses=statuses) as fake:
        client = BinanceRestClient(fake.url, 3, 10)
        resolved = resolve_symbols(["*BTC", "M0001USDT"], client)
        expected = sorted(s for s in prices if s.endswith("BTC") and s not in statuses)
        assert resolved.symbols == ("M0001USDT", *expected)
        fake.halt(expected[0])
        fake.list_symbol("NEWBTC", 0.0001)
        assert resolve_symbols(["*BTC"], client).symbols == tuple(sorted(expected[1:]
                                                                          + ["NEWBTC"]))
        batch = client.ticker_prices(expected, every=True)
        assert sorted(t.symbol for t in batch.ticks) == expected
        assert batch.bad_entries == [] and batch.missing == []
        assert fake.requests[-1].params == {}  # no list in the URL, however many
        client.close()


def test_past_6000_weight_in_a_minute_the_stand_in_answers_429_with_retry_after():
    with FakeBinance(weight_limit=40) as fake:
        url = fake.url + "/api/v3/ticker/price"
        answers = [requests.get(url, timeout=5) for _ in range(11)]  # weight 4 each
        assert [a.status_code for a in answers[:10]] == [200] * 10
        refused = answers[10]
        assert refused.status_code == 429 and refused.json()["code"] == -1003
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["X-MBX-USED-WEIGHT-1M"] == "44" and fake.rate_limited == 1
        assert requests.get(fake.url + "/fake/weight", timeout=5).json() == {
            "used": 44, "rate_limited": 1}


# --- the WebSocket stand-in ------------------------------------------------------------

def test_subscribe_and_unsubscribe_change_what_an_open_connection_carries():
    with FakeBinanceWs(trades_per_second=0) as fake:
        with connect(fake.url + "/stream?streams=btcusdt@trade") as ws:
            ws.send(control_message("SUBSCRIBE", ["ETHUSDT"], 1))
            assert json.loads(ws.recv(5)) == {"result": None, "id": 1}
            ws.send(control_message("UNSUBSCRIBE", ["BTCUSDT"], 2))
            assert json.loads(ws.recv(5)) == {"result": None, "id": 2}
            ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["BAD STREAM"], "id": 3}))
            assert json.loads(ws.recv(5))["code"] == 2
            fake.publish("BTCUSDT")
            eth = fake.publish("ETHUSDT")
            assert json.loads(ws.recv(5))["data"]["t"] == eth["t"]  # BTCUSDT's never came
        assert fake.connections[0].streams == ("ethusdt@trade",)


def test_more_than_five_messages_a_second_end_the_connection():
    with FakeBinanceWs(trades_per_second=0) as fake:
        with connect(fake.url + "/stream?streams=btcusdt@trade") as ws:
            for number in range(7):
                ws.send(control_message("SUBSCRIBE", ["ETHUSDT"], number))
            wait_for(lambda: fake.connections[0].end == "too many messages", 10, "the cut")


def test_past_the_connection_attempt_limit_a_handshake_is_refused():
    with FakeBinanceWs(trades_per_second=0, connection_attempts=2) as fake:
        for _ in range(2):
            with connect(fake.url + "/stream?streams=btcusdt@trade"):
                pass
        with pytest.raises(Exception, match="429"):
            connect(fake.url + "/stream?streams=btcusdt@trade")
        assert fake.refused_attempts == 1
