"""The Binance client's pure rules, and the client against the stand-in (no Kafka)."""

import json
import random
import signal
from datetime import datetime, timezone
from email.utils import formatdate

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from crypto_pipeline.binance.rest import (
    BinanceError,
    BinanceRestClient,
    UnknownSymbolError,
    error_for,
    parse_prices,
    retry_after_seconds,
    symbols_param,
    weight_limit,
    weight_pause_seconds,
)
from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.producer.sources.base import FixedRate
from support.fake_binance import fake_binance_process
from support.helpers import free_port

RECEIVED = datetime(2025, 1, 15, 14, 32, 1, 123456, tzinfo=timezone.utc)
JSON = "application/json;charset=UTF-8"


def body(entries) -> bytes:
    return json.dumps(entries).encode()


# --- request encoding ------------------------------------------------------------------

def test_symbols_are_a_json_array_without_spaces():
    assert symbols_param(("BTCUSDT", "ETHUSDT")) == '["BTCUSDT","ETHUSDT"]'
    assert symbols_param(["BNBUSDT"]) == '["BNBUSDT"]'


def test_the_stand_in_rejects_what_binance_rejects(fake_binance):
    """The stand-in is only useful if it is as strict as Binance about `symbols`."""
    url = fake_binance.url + "/api/v3/ticker/price"
    spaced = requests.get(url, params={"symbols": '["BTCUSDT", "ETHUSDT"]'}, timeout=5)
    assert spaced.status_code == 400 and spaced.json()["code"] == -1100
    both = requests.get(url, params={"symbol": "BTCUSDT", "symbols": '["ETHUSDT"]'}, timeout=5)
    assert both.json()["code"] == -1128
    twice = requests.get(url, params={"symbols": '["BTCUSDT","BTCUSDT"]'}, timeout=5)
    assert twice.json()["code"] == -1151
    empty = requests.get(url, params={"symbols": ""}, timeout=5)
    assert empty.json()["code"] == -1102
    ok = requests.get(url, params={"symbols": symbols_param(["BTCUSDT", "ETHUSDT"])}, timeout=5)
    assert ok.status_code == 200
    assert ok.headers["Content-Type"] == JSON
    assert [e["symbol"] for e in ok.json()] == ["BTCUSDT", "ETHUSDT"]
    assert all(isinstance(e["price"], str) for e in ok.json())
    weights = [int(r.headers["X-MBX-USED-WEIGHT-1M"]) for r in (spaced, both, twice, empty, ok)]
    assert weights == sorted(weights) and weights[-1] - weights[-2] == 4


# --- normalization and validation ------------------------------------------------------

def test_prices_arrive_as_strings_and_become_floats_stamped_with_receipt_time():
    batch = parse_prices(body([{"symbol": "BTCUSDT", "price": "97432.15000000"},
                               {"symbol": "ETHUSDT", "price": "3312.40000000"}]),
                         JSON, ["BTCUSDT", "ETHUSDT"], RECEIVED)
    assert [(t.symbol, t.price, t.event_time, t.source) for t in batch.ticks] == [
        ("BTCUSDT", 97432.15, RECEIVED, "binance"), ("ETHUSDT", 3312.4, RECEIVED, "binance")]
    assert batch.bad_entries == [] and batch.missing == []
    assert json.loads(batch.ticks[0].to_json()) == {
        "symbol": "BTCUSDT", "price": 97432.15, "event_time": "2025-01-15T14:32:01.123456Z",
        "source": "binance"}


@pytest.mark.parametrize("price", ["abc", "-1", "0", "NaN", "inf", "", None, True, [1]])
def test_an_entry_with_a_bad_price_is_skipped_and_described(price):
    batch = parse_prices(body([{"symbol": "BTCUSDT", "price": price},
                               {"symbol": "ETHUSDT", "price": "3312.4"}]),
                         JSON, ["BTCUSDT", "ETHUSDT"], RECEIVED)
    assert [t.symbol for t in batch.ticks] == ["ETHUSDT"]
    assert len(batch.bad_entries) == 1 and batch.bad_entries[0].startswith("BTCUSDT price")


def test_unexpected_and_missing_symbols_are_reported():
    batch = parse_prices(body([{"symbol": "XRPUSDT", "price": "1"}, "junk",
                               {"symbol": "BTCUSDT", "price": "2"}]),
                         JSON, ["BTCUSDT", "ETHUSDT"], RECEIVED)
    assert [t.symbol for t in batch.ticks] == ["BTCUSDT"]
    assert len(batch.bad_entries) == 2
    assert batch.missing == ["ETHUSDT"]


@pytest.mark.parametrize("raw, content_type, says", [
    (b'[{"symbol":"BTCUSDT","pri', JSON, "broken JSON"),
    (b"<html>Maintenance</html>", "text/html", "text/html instead of JSON"),
    (b'{"symbol":"BTCUSDT","price":"1"}', JSON, "dict where a list"),
    (b"", "", "no type"),
])
def test_a_malformed_body_is_an_error_not_ticks(raw, content_type, says):
    with pytest.raises(BinanceError) as caught:
        parse_prices(raw, content_type, ["BTCUSDT"], RECEIVED)
    assert caught.value.kind == "malformed-body"
    assert says in str(caught.value)


@given(st.lists(st.fixed_dictionaries({
    "symbol": st.sampled_from(["BTCUSDT", "ETHUSDT", "XRPUSDT"]),
    "price": st.one_of(st.text(max_size=12), st.floats(allow_nan=True).map(str))})))
def test_whatever_the_entries_only_valid_prices_become_ticks(entries):
    batch = parse_prices(body(entries), JSON, ["BTCUSDT", "ETHUSDT"], RECEIVED)
    assert all(t.price > 0 and t.price != float("inf") for t in batch.ticks)
    assert len(batch.ticks) + len(batch.bad_entries) == len(entries)


# --- error classification --------------------------------------------------------------

@pytest.mark.parametrize("status, headers, raw, kind, retry_after", [
    (429, {"Retry-After": "3"}, b'{"code":-1003,"msg":"Too much request weight used"}',
     "rate-limited", 3.0),
    (418, {"Retry-After": "120"}, b'{"code":-1003,"msg":"IP banned until 1"}', "banned",
     120.0),
    (451, {}, b'{"code":0,"msg":"Service unavailable from a restricted location"}',
     "restricted-location", None),
    (503, {}, b'{"code":-1008,"msg":"Server is currently overloaded"}', "server-error", None),
    (502, {}, b"<html>Bad Gateway</html>", "server-error", None),
    (400, {}, b'{"code":-1100,"msg":"Illegal characters found"}', "rejected", None),
    (403, {}, b"", "rejected", None),
])
def test_http_errors_are_classified(status, headers, raw, kind, retry_after):
    err = error_for(status, headers, raw)
    assert (err.kind, err.retry_after, err.status) == (kind, retry_after, status)


def test_a_binance_error_body_is_logged_with_its_code_and_message():
    err = error_for(400, {}, b'{"code":-1100,"msg":"Illegal characters found in parameter"}')
    assert err.code == -1100
    assert "code -1100: Illegal characters found in parameter" in str(err)


def test_451_names_the_alternative_base_urls():
    message = str(error_for(451, {}, b'{"code":0,"msg":"restricted location"}'))
    assert "BINANCE_BASE_URL" in message
    assert "https://data-api.binance.vision" in message and "https://api.binance.us" in message


# --- waiting: Retry-After, backoff, weight ---------------------------------------------

def test_retry_after_is_read_in_seconds_or_as_a_date():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 120 ") == 120.0
    in_a_minute = formatdate(datetime.now(timezone.utc).timestamp() + 60, usegmt=True)
    assert 55 <= retry_after_seconds(in_a_minute) <= 60
    assert retry_after_seconds("259200") == 259200.0  # a three-day 418 ban is obeyed in full
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None


def test_backoff_doubles_up_to_the_cap_with_jitter_below_each_ceiling():
    low = [backoff_seconds(n, base=1.0, cap=60.0, rng=lambda: 0.0) for n in range(1, 10)]
    high = [backoff_seconds(n, base=1.0, cap=60.0, rng=lambda: 1.0) for n in range(1, 10)]
    assert high == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert low == [h / 2 for h in high]
    rng = random.Random(1).random
    for n in range(1, 12):
        ceiling = min(60.0, 2 ** (n - 1))
        assert ceiling / 2 <= backoff_seconds(n, base=1.0, cap=60.0, rng=rng) <= ceiling


def test_weight_pause_starts_before_the_limit_and_lasts_until_the_minute_resets():
    limit = weight_limit("https://api.binance.com")
    assert limit == 6000 and weight_limit("https://api.binance.us") == 1200
    minute = 1_700_000_040.0  # a minute boundary
    assert weight_pause_seconds(None, limit, minute + 10) == 0
    assert weight_pause_seconds(4799, limit, minute + 10) == 0
    assert weight_pause_seconds(4800, limit, minute + 10) == pytest.approx(50)
    assert weight_pause_seconds(5999, limit, minute + 59.5) == pytest.approx(0.5)


def test_fixed_rate_slots_do_not_drift_and_overruns_skip_slots():
    schedule = FixedRate(5.0, start=100.0)
    assert schedule.due == 100.0
    schedule.advance(now=101.2)  # a slow poll does not push the next one back
    assert schedule.due == 105.0
    schedule.advance(now=105.1)
    assert schedule.due == 110.0
    schedule.advance(now=121.0)  # a poll that overran two slots: no burst to catch up
    assert schedule.due == 125.0


# --- the real client against the stand-in ----------------------------------------------

def test_client_reads_prices_and_the_used_weight(fake_binance):
    fake_binance.set_price("BTCUSDT", 50000.5)
    fake_binance.drift = False
    client = BinanceRestClient(fake_binance.url, 1.0, 1.0)
    batch = client.ticker_prices(["BTCUSDT", "ETHUSDT"])
    assert [(t.symbol, t.price) for t in batch.ticks] == [
        ("BTCUSDT", 50000.5), ("ETHUSDT", fake_binance.prices["ETHUSDT"])]
    assert client.last_used_weight == 4
    [request] = fake_binance.ticker_requests()
    assert request.params == {"symbols": '["BTCUSDT","ETHUSDT"]'}


def test_client_names_the_unknown_symbol(fake_binance):
    client = BinanceRestClient(fake_binance.url, 1.0, 1.0)
    with pytest.raises(UnknownSymbolError) as caught:
        client.ticker_prices(["BTCUSDT", "NOPEUSDT", "ETHUSDT"])
    assert caught.value.symbols == ("NOPEUSDT",)
    assert "NOPEUSDT" in str(caught.value) and "-1121" in str(caught.value)


@pytest.mark.parametrize("fault, options, kind", [
    ("slow", {"delay": 1.5}, "timeout"),
    ("truncated", {}, "malformed-body"),
    ("cut", {}, "malformed-body"),
    ("html", {}, "malformed-body"),
    ("5xx", {"status": 504}, "server-error"),
])
def test_client_turns_transport_faults_into_errors(fake_binance, fault, options, kind):
    client = BinanceRestClient(fake_binance.url, 1.0, 0.5)
    fake_binance.misbehave(fault, **options)
    with pytest.raises(BinanceError) as caught:
        client.ticker_prices(["BTCUSDT"])
    assert caught.value.kind == kind
    assert len(client.ticker_prices(["BTCUSDT"]).ticks) == 1  # the same session goes on


def test_client_reports_an_unreachable_host_with_its_cause():
    client = BinanceRestClient(f"http://127.0.0.1:{free_port()}", 1.0, 1.0)
    with pytest.raises(BinanceError) as caught:
        client.ticker_prices(["BTCUSDT"])
    assert caught.value.kind == "connection"
    assert "ConnectionRefusedError" in str(caught.value)


# --- the stand-in's klines and its standalone mode -------------------------------------

def klines(fake, **params) -> requests.Response:
    return requests.get(fake.url + "/api/v3/klines", params=params, timeout=5)


def test_stand_in_serves_real_klines_as_binance_selects_them(fake_binance):
    start = 1660435200000  # 2022-08-14 00:00 UTC, the first row of the ETHUSDT file
    rows = klines(fake_binance, symbol="ETHUSDT", interval="1m", startTime=start + 1,
                  limit=3).json()
    assert [r[0] for r in rows] == [start + 60_000 * i for i in (1, 2, 3)]
    assert rows[0][1:5] == ["1982.30000000", "1983.28000000", "1982.01000000", "1983.15000000"]
    assert rows[0][6] == start + 2 * 60_000 - 1 and rows[0][8] == 217
    newest = klines(fake_binance, symbol="ETHUSDT", interval="1m", endTime=start + 120_000,
                    limit=2).json()
    assert [r[0] for r in newest] == [start + 60_000, start + 120_000]


def test_stand_in_makes_flat_klines_for_other_symbols_and_rejects_bad_parameters(fake_binance):
    fake_binance.set_price("SOLUSDT", 150.0)
    fake_binance.drift = False
    rows = klines(fake_binance, symbol="SOLUSDT", interval="1m", limit=5).json()
    assert len(rows) == 5 and {r[4] for r in rows} == {"150.00000000"}
    assert all(b[0] - a[0] == 60_000 for a, b in zip(rows, rows[1:]))
    assert klines(fake_binance, symbol="SOLUSDT", interval="5m").json()["code"] == -1120
    assert klines(fake_binance, symbol="SOLUSDT", interval="1m",
                  limit=1001).json()["code"] == -1130
    assert klines(fake_binance, symbol="NOPEUSDT", interval="1m").json()["code"] == -1121
    assert klines(fake_binance, interval="1m").json()["code"] == -1102


def test_stand_in_runs_as_a_process_and_takes_faults_over_http():
    with fake_binance_process() as (process, url):
        assert url.startswith("http://127.0.0.1:")
        requests.post(url + "/fake/misbehave", params={"fault": "429", "retry_after": 7},
                      timeout=5).raise_for_status()
        limited = requests.get(url + "/api/v3/ticker/price", params={"symbol": "BTCUSDT"},
                               timeout=5)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
        assert requests.get(url + "/api/v3/ticker/price", params={"symbol": "BTCUSDT"},
                            timeout=5).status_code == 200
        recorded = requests.get(url + "/fake/requests", timeout=5).json()
        assert [r["status"] for r in recorded] == [429, 200]
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
