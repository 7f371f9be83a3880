"""A local stand-in for Binance's REST market-data API that can be told to misbehave.

It answers like the real API (see ../shared/notes/binance-api.md): the same paths,
parameter rules, error codes and bodies, status codes and headers (Content-Type,
X-MBX-USED-WEIGHT-1M counting request weight per minute, Retry-After), so the producer's
real HTTP client is tested against it.

    GET /api/v3/ticker/price   symbol=S | symbols=["A","B"] | nothing (every symbol)
    GET /api/v3/exchangeInfo   nothing | symbol | symbols | symbolStatus (TRADING, HALT,
                               BREAK; not with symbol/symbols) | showPermissionSets=false
    GET /api/v3/klines         symbol, interval=1m, startTime, endTime, limit <= 1000
    GET /api/v3/ping, /api/v3/time

Every symbol of `prices` is listed (exchangeInfo: status, base and quote asset,
permissionSets) as TRADING unless said otherwise; `list_symbol`, `delist` (BREAK) and
`halt` (HALT) change the listing while it runs. Prices start from `prices` and by default
move a little on every request (a symbol not TRADING keeps its last price, and ticker/price
still answers for it, as Binance does); klines come from the real files in
tests/data/binance/ or, for other symbols, are flat candles at the symbol's current price.
Request weight is counted per clock minute (X-MBX-USED-WEIGHT-1M); past `weight_limit`
(6,000) a request is answered 429 with Retry-After, until the minute ends.
`misbehave(fault, times)` spoils the next `times` answers; every request is recorded with
its monotonic arrival time. `market(count)` makes a listing like Binance's: mostly USDT
pairs, some quoted in BTC, FDUSD or EUR, a tenth in BREAK and a few halted.

In tests: the `fake_binance` fixture. As a process (for end-to-end tests of the scripts),
`fake_binance_process()` or

    PYTHONPATH=src:tests python -m support.fake_binance --port 8765 [--market 600 | --usdt 400]

(it prints its URL) and, from outside, `POST /fake/misbehave?fault=429&times=1&retry_after=3`,
`POST /fake/price?symbol=BTCUSDT&price=50000`, `POST /fake/list?symbol=NEWUSDT&price=1.5`,
`POST /fake/delist?symbol=S`, `POST /fake/halt?symbol=S`, `GET /fake/requests`,
`GET /fake/weight` (weight used this minute, 429s answered), `GET /fake/counts` (requests
by path).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from crypto_pipeline.binance.klines import Kline, read_klines
from support import DATA_DIR
from support.stand_ins import serve_until_signalled, stand_in_process

log = logging.getLogger("fake_binance")

DEFAULT_PRICES = {"BTCUSDT": 97432.15, "ETHUSDT": 3312.4, "BNBUSDT": 655.1, "SOLUSDT": 187.25}
JSON_TYPE = "application/json;charset=UTF-8"
WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/klines": 2,
           "/api/v3/exchangeInfo": 20}
SYMBOLS_RULE = r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$'
MINUTE_MS = 60_000
WEIGHT_LIMIT = 6000
STATUSES = ("TRADING", "HALT", "BREAK")
# Quote assets, longest first: BTCFDUSD is quoted in FDUSD, not in USD.
QUOTES = ("FDUSD", "USDT", "USDC", "BTC", "ETH", "BNB", "EUR", "TRY")
SPOT_PERMISSIONS = [["SPOT", "MARGIN", "TRD_GRP_004", "TRD_GRP_005", "TRD_GRP_006"]]

RATE_LIMITED = ("Too much request weight used; current limit is 6000 request weight per 1 "
                "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.")
BANNED = ("Way too much request weight used; IP banned until {until}. Please use WebSocket "
          "Streams for live updates to avoid bans.")
RESTRICTED_LOCATION = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error.")
ERRORS = {
    -1000: "An unknown error occurred while processing the request.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; "
           "execution status unknown.",
    -1008: "Server is currently overloaded with other requests. Please try again in a few "
           "minutes.",
    -1100: "Illegal characters found in parameter '{name}'; legal range is '{rule}'.",
    -1102: "Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
    -1120: "Invalid interval.",
    -1121: "Invalid symbol.",
    -1128: "Combination of optional parameters invalid.",
    -1130: "Data sent for parameter '{name}' is not valid.",
    -1151: "Symbol is present multiple times in the list.",
}
SERVER_ERROR_CODES = {500: -1000, 503: -1008, 504: -1007}
FAULTS = ("429", "418", "5xx", "slow", "truncated", "cut", "html", "451", "bad-price",
          "weight")


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base asset, quote asset) of a symbol named as Binance names them."""
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[:-len(quote)], quote
    return symbol[:-3], symbol[-3:]


@dataclass
class Listed:
    """A symbol as exchangeInfo lists it."""

    status: str = "TRADING"
    base: str = ""
    quote: str = ""


def market(count: int, seed: int = 7) -> tuple[dict[str, float], dict[str, str]]:
    """A listing like Binance's spot market of `count` symbols: (price by symbol, status of
    those not TRADING). About 70 % are quoted in USDT, 15 % in BTC, the rest in FDUSD or
    EUR; every tenth is in BREAK (delisted or paused) and every fiftieth halted. Names are
    M0001USDT, M0002BTC, ...: capital letters and digits, as Binance's."""
    rng = random.Random(seed)
    quotes = ["USDT"] * 14 + ["BTC"] * 3 + ["FDUSD", "EUR"]
    prices, statuses = {}, {}
    for number in range(1, count + 1):
        quote = quotes[number % len(quotes)]
        symbol = f"M{number:04d}{quote}"
        scale = 1e-5 if quote == "BTC" else 10.0 ** rng.randint(-3, 4)
        prices[symbol] = round(scale * rng.uniform(1, 9.99), 8)
        if number % 10 == 0:
            statuses[symbol] = "BREAK"
        elif number % 50 == 7:
            statuses[symbol] = "HALT"
    return prices, statuses


def usdt_market(trading: int, seed: int = 7) -> tuple[dict[str, float], dict[str, str]]:
    """`market` grown until exactly `trading` of its USDT pairs are TRADING (about 1.5
    times as many symbols in all)."""
    count = trading
    while True:
        prices, statuses = market(count, seed)
        found = sum(1 for s in prices if s.endswith("USDT") and s not in statuses)
        if found >= trading:
            break
        count += trading - found
    usdt = [s for s in prices if s.endswith("USDT") and s not in statuses]
    extra = set(usdt[trading:])
    return ({s: p for s, p in prices.items() if s not in extra},
            {s: v for s, v in statuses.items() if s not in extra})


def exchange_info(listing: dict[str, Listed], params: dict[str, str],
                  weight_limit: int = WEIGHT_LIMIT) -> dict[str, Any]:
    """Binance's exchangeInfo answer for `params`; ApiError as Binance answers a bad one."""
    status = params.get("symbolStatus")
    if status is not None and ("symbol" in params or "symbols" in params):
        raise ApiError(400, -1128)
    if status is not None and status not in STATUSES:
        raise ApiError(400, -1130, name="symbolStatus")
    if "symbol" in params and "symbols" in params:
        raise ApiError(400, -1128)
    if "symbol" in params:
        chosen = [params["symbol"]]
    elif "symbols" in params:
        if not re.match(SYMBOLS_RULE, params["symbols"]):
            raise ApiError(400, -1100, name="symbols", rule=SYMBOLS_RULE)
        chosen = json.loads(params["symbols"])
    else:
        chosen = [s for s, listed in listing.items() if status is None or listed.status == status]
    if any(symbol not in listing for symbol in chosen):
        raise ApiError(400, -1121)
    permissions = params.get("showPermissionSets", "true").lower() != "false"
    return {"timezone": "UTC", "serverTime": int(time.time() * 1000),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                            "intervalNum": 1, "limit": weight_limit},
                           {"rateLimitType": "ORDERS", "interval": "SECOND",
                            "intervalNum": 10, "limit": 100},
                           {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE",
                            "intervalNum": 5, "limit": 61000}],
            "exchangeFilters": [],
            "symbols": [_symbol_entry(symbol, listing[symbol], permissions)
                        for symbol in chosen]}


def _symbol_entry(symbol: str, listed: Listed, permissions: bool) -> dict[str, Any]:
    trading = listed.status == "TRADING"
    return {"symbol": symbol, "status": listed.status, "baseAsset": listed.base,
            "baseAssetPrecision": 8, "quoteAsset": listed.quote, "quotePrecision": 8,
            "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT",
                           "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
            "cancelReplaceAllowed": True, "isSpotTradingAllowed": trading,
            "isMarginTradingAllowed": False,
            "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.00000001",
                         "maxPrice": "1000000.00000000", "tickSize": "0.00000001"},
                        {"filterType": "LOT_SIZE", "minQty": "0.00001000",
                         "maxQty": "9000.00000000", "stepSize": "0.00001000"}],
            "permissions": [],
            "permissionSets": SPOT_PERMISSIONS if permissions else [],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER",
                                                "EXPIRE_BOTH"]}


class ApiError(Exception):
    def __init__(self, status: int, code: int, **fill: Any):
        self.status = status
        self.body = {"code": code, "msg": ERRORS[code].format(**fill)}


@dataclass
class RecordedRequest:
    path: str
    params: dict[str, str]
    arrived: float  # time.monotonic() when the request arrived
    answered: float = 0.0  # time.monotonic() when the answer was written
    status: int = 0
    body: bytes = field(default=b"", repr=False)
    fault: str | None = None

    @property
    def prices(self) -> dict[str, float]:
        """The valid prices a successful ticker answer served in time, by symbol."""
        if self.status != 200 or self.path != "/api/v3/ticker/price" or self.fault == "slow":
            return {}
        try:
            entries = json.loads(self.body)
        except ValueError:
            return {}
        entries = entries if isinstance(entries, list) else [entries]
        served = {}
        for entry in entries:
            try:
                price = float(entry["price"])
            except ValueError:
                continue
            if math.isfinite(price) and price > 0:
                served[entry["symbol"]] = price
        return served


@dataclass
class _Fault:
    kind: str
    times: int
    options: dict[str, Any]


class FakeBinance:
    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 prices: dict[str, float] | None = None, drift: bool = True, seed: int = 7,
                 statuses: dict[str, str] | None = None, weight_limit: int = WEIGHT_LIMIT,
                 record: bool = True, clock: Callable[[], float] = time.time):
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self.listing = {symbol: Listed(*(((statuses or {}).get(symbol, "TRADING"),)
                                         + split_symbol(symbol)))
                        for symbol in self.prices}
        self.drift = drift
        self.weight_limit = weight_limit
        self.clock = clock  # whose minutes the request weight is counted in
        self.rate_limited = 0  # requests answered 429 for too much weight
        self.counts: dict[str, int] = {}  # requests by path, recorded or not
        self.record = record  # False: keep no request (a long benchmark run)
        self.requests: list[RecordedRequest] = []
        self._klines: dict[str, list[Kline]] = {}
        self._faults: list[_Fault] = []
        self._weights: dict[int, int] = {}
        self._rng = random.Random(seed)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeBinance":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-binance")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeBinance":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests set ----------------------------------------------------------------

    def set_price(self, symbol: str, price: float) -> None:
        with self.lock:
            self.prices[symbol] = price
            self.listing.setdefault(symbol, Listed("TRADING", *split_symbol(symbol)))

    def list_symbol(self, symbol: str, price: float, status: str = "TRADING") -> None:
        """List a symbol (a new listing, or one back from BREAK/HALT)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        with self.lock:
            self.prices[symbol] = price
            self.listing[symbol] = Listed(status, *split_symbol(symbol))

    def set_status(self, symbol: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        with self.lock:
            self.listing[symbol].status = status

    def delist(self, symbol: str) -> None:
        """Binance keeps a delisted symbol in exchangeInfo, in BREAK."""
        self.set_status(symbol, "BREAK")

    def halt(self, symbol: str) -> None:
        self.set_status(symbol, "HALT")

    def trading(self) -> list[str]:
        with self.lock:
            return [s for s, listed in self.listing.items() if listed.status == "TRADING"]

    def used_weight(self) -> int:
        """Request weight counted in the current minute."""
        with self.lock:
            return self._weights.get(int(self.clock() // 60), 0)

    def set_klines(self, symbol: str, klines: list[Kline]) -> None:
        with self.lock:
            self._klines[symbol] = sorted(klines, key=lambda k: k.open_time)

    def misbehave(self, fault: str, times: int = 1, **options: Any) -> None:
        """Spoil the next `times` answers (after faults queued earlier). Faults and options:
        429 / 418 (retry_after=seconds), 5xx (status=500|502|503|504), slow (delay=seconds),
        truncated (JSON cut short), cut (connection closed mid-body), html (status=200),
        451, bad-price (symbol=, value="abc"), weight (used=request weight)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        with self.lock:
            self._faults.append(_Fault(fault, times, options))

    def ticker_requests(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == "/api/v3/ticker/price"]

    def served_prices(self) -> list[tuple[str, float]]:
        """Every (symbol, price) a successful ticker answer carried, in order."""
        return [(s, p) for r in self.ticker_requests() for s, p in r.prices.items()]

    # --- answering ---------------------------------------------------------------------

    def next_fault(self) -> _Fault | None:
        with self.lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(0)
            return fault

    def _used_weight(self, weight: int) -> int:
        minute = int(self.clock() // 60)
        with self.lock:
            self._weights = {minute: self._weights.get(minute, 0) + weight}
            return self._weights[minute]

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) for a request, before any fault."""
        if path == "/api/v3/ticker/price":
            weight = 2 if "symbol" in params else 4
            handler = self._ticker_price
        elif path in WEIGHTS:
            weight = WEIGHTS[path]
            handler = {"/api/v3/ping": lambda p: {},
                       "/api/v3/time": lambda p: {"serverTime": int(time.time() * 1000)},
                       "/api/v3/klines": self._klines_answer,
                       "/api/v3/exchangeInfo": self._exchange_info}[path]
        else:
            return 404, {}, None
        used = self._used_weight(weight)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if used > self.weight_limit:
            # Binance counts the refused request too, and says when the minute ends.
            with self.lock:
                self.rate_limited += 1
            retry_after = max(1, math.ceil(60 - self.clock() % 60))
            return 429, {**headers, "Retry-After": str(retry_after)}, {
                "code": -1003, "msg": RATE_LIMITED}
        try:
            return 200, headers, handler(params)
        except ApiError as err:
            return err.status, headers, err.body

    def _exchange_info(self, params: dict[str, str]) -> Any:
        with self.lock:
            listing = {s: Listed(x.status, x.base, x.quote) for s, x in self.listing.items()}
        return exchange_info(listing, params, self.weight_limit)

    def _known(self, symbol: str) -> None:
        if symbol not in self.prices and symbol not in self._klines \
                and not any(DATA_DIR.glob(f"{symbol}-*.csv")):
            raise ApiError(400, -1121)

    def _ticker_price(self, params: dict[str, str]) -> Any:
        if "symbol" in params and "symbols" in params:
            raise ApiError(400, -1128)
        with self.lock:
            if self.drift:
                for symbol, price in self.prices.items():
                    if self.listing[symbol].status == "TRADING":
                        self.prices[symbol] = price * (1 + self._rng.gauss(0, 0.0002))
            prices = dict(self.prices)
        if "symbol" in params:
            if not params["symbol"]:
                raise ApiError(400, -1102, name="symbol")
            self._known(params["symbol"])
            return _price_entry(params["symbol"], prices[params["symbol"]])
        if "symbols" not in params:
            return [_price_entry(s, p) for s, p in prices.items()]
        raw = params["symbols"]
        if not raw:
            raise ApiError(400, -1102, name="symbols")
        if not re.match(SYMBOLS_RULE, raw):
            raise ApiError(400, -1100, name="symbols", rule=SYMBOLS_RULE)
        symbols = json.loads(raw)
        if not symbols:
            raise ApiError(400, -1102, name="symbols")
        if len(set(symbols)) != len(symbols):
            raise ApiError(400, -1151)
        for symbol in symbols:
            if symbol not in prices:
                raise ApiError(400, -1121)
        return [_price_entry(s, prices[s]) for s in symbols]

    def _klines_answer(self, params: dict[str, str]) -> Any:
        symbol = params.get("symbol", "")
        if not symbol:
            raise ApiError(400, -1102, name="symbol")
        if not params.get("interval"):
            raise ApiError(400, -1102, name="interval")
        if params["interval"] != "1m":
            raise ApiError(400, -1120)
        self._known(symbol)
        try:
            limit = int(params.get("limit", 500))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            raise ApiError(400, -1100, name="limit/startTime/endTime", rule="^[0-9]{1,20}$") \
                from None
        if not 1 <= limit <= 1000:
            raise ApiError(400, -1130, name="limit")
        return [_kline_row(k) for k in self._select_klines(symbol, start, end, limit)]

    def _select_klines(self, symbol: str, start: int | None, end: int | None,
                       limit: int) -> list[Kline]:
        """Binance's selection: from startTime on the oldest `limit`, else the newest
        `limit` up to endTime (or now)."""
        klines = self._klines_of(symbol)
        if klines is None:
            return list(self._flat_klines(symbol, start, end, limit))
        chosen = [k for k in klines if (start is None or _ms(k.open_time) >= start)
                  and (end is None or _ms(k.open_time) <= end)]
        return chosen[:limit] if start is not None else chosen[-limit:]

    def _klines_of(self, symbol: str) -> list[Kline] | None:
        with self.lock:
            if symbol not in self._klines:
                files = sorted(DATA_DIR.glob(f"{symbol}-*.csv"))
                if not files:
                    return None
                self._klines[symbol] = [k for path in files for k in read_klines(path)]
            return self._klines[symbol]

    def _flat_klines(self, symbol: str, start: int | None, end: int | None,
                     limit: int) -> Iterator[Kline]:
        now = int(time.time() * 1000)
        last = min(now, end if end is not None else now) // MINUTE_MS * MINUTE_MS
        first = -(-start // MINUTE_MS) * MINUTE_MS if start is not None \
            else last - (limit - 1) * MINUTE_MS
        price = self.prices[symbol]
        for open_ms in range(first, min(last, first + (limit - 1) * MINUTE_MS) + 1, MINUTE_MS):
            opened = datetime.fromtimestamp(open_ms / 1000, tz=timezone.utc)
            yield Kline(symbol, opened, price, price, price, price, 0.0,
                        opened + timedelta(milliseconds=MINUTE_MS - 1), 0)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _price_entry(symbol: str, price: float) -> dict[str, str]:
    return {"symbol": symbol, "price": f"{price:.8f}"}


def _kline_row(k: Kline) -> list:
    # Columns the Kline does not keep (quote and taker volumes) are derived from it.
    return [_ms(k.open_time), f"{k.open:.8f}", f"{k.high:.8f}", f"{k.low:.8f}",
            f"{k.close:.8f}", f"{k.volume:.8f}", _ms(k.close_time),
            f"{k.volume * k.close:.8f}", k.trades, f"{k.volume / 2:.8f}",
            f"{k.volume * k.close / 2:.8f}", "0"]


def _spoil(fault: _Fault, status: int, headers: dict[str, str],
           payload: Any) -> tuple[int, dict[str, str], Any]:
    options = fault.options
    if fault.kind in ("429", "418"):
        retry_after = options.get("retry_after", 3)
        until = int((time.time() + retry_after) * 1000)
        message = RATE_LIMITED if fault.kind == "429" else BANNED.format(until=until)
        return int(fault.kind), {**headers, "Retry-After": str(retry_after)}, {
            "code": -1003, "msg": message}
    if fault.kind == "5xx":
        status = options.get("status", 503)
        code = SERVER_ERROR_CODES.get(status)
        if code is None:  # gateway errors come from the CDN, as HTML
            return status, {**headers, "Content-Type": "text/html"}, \
                f"<html><body><h1>{status} Bad Gateway</h1></body></html>"
        return status, headers, {"code": code, "msg": ERRORS[code]}
    if fault.kind == "451":
        return 451, headers, {"code": 0, "msg": RESTRICTED_LOCATION}
    if fault.kind == "html":
        return options.get("status", 200), {**headers, "Content-Type": "text/html"}, \
            "<html><head><title>Maintenance</title></head><body>Back soon</body></html>"
    if fault.kind == "bad-price" and isinstance(payload, list):
        symbol = options.get("symbol") or payload[0]["symbol"]
        payload = [{**e, "price": options.get("value", "abc")} if e["symbol"] == symbol else e
                   for e in payload]
    if fault.kind == "weight":
        headers = {**headers, "X-MBX-USED-WEIGHT-1M": str(options.get("used", 5900))}
    return status, headers, payload


def _handler_for(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Binance
        server_version = "fake-binance"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            if url.path == "/fake/requests":
                with fake.lock:
                    recorded = [{**asdict(r), "body": r.body.decode(errors="replace")}
                                for r in fake.requests]
                return self._send(200, {}, recorded)
            if url.path == "/fake/weight":
                return self._send(200, {}, {"used": fake.used_weight(),
                                            "rate_limited": fake.rate_limited})
            if url.path == "/fake/counts":
                with fake.lock:
                    return self._send(200, {}, dict(fake.counts))
            record = RecordedRequest(url.path, params, time.monotonic())
            with fake.lock:
                fake.counts[url.path] = fake.counts.get(url.path, 0) + 1
                if fake.record:
                    fake.requests.append(record)
            status, headers, payload = fake.answer(url.path, params)
            fault = fake.next_fault() if url.path.startswith("/api/") else None
            record.fault = fault.kind if fault else None
            if fault is None:
                record.status, record.body = self._send(status, headers, payload)
            elif fault.kind == "slow":
                # Answer (correctly) only after the client's read timeout has passed.
                fake.stopping.wait(fault.options.get("delay", 2.0))
                record.status, record.body = self._send(status, headers, payload)
            elif fault.kind in ("truncated", "cut"):
                body = json.dumps(payload, separators=(",", ":")).encode()
                cut = body[:max(1, len(body) // 2)]
                length = len(cut) if fault.kind == "truncated" else len(body)
                record.status, record.body = self._send(status, headers, cut, length=length)
                self.close_connection = fault.kind == "cut"
            else:
                record.status, record.body = self._send(*_spoil(fault, status, headers, payload))
            record.answered = time.monotonic()

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if url.path == "/fake/misbehave":
                    options = {k: _number_or_text(v) for k, v in params.items()
                               if k not in ("fault", "times")}
                    fake.misbehave(params["fault"], int(params.get("times", 1)), **options)
                elif url.path == "/fake/price":
                    fake.set_price(params["symbol"], float(params["price"]))
                elif url.path == "/fake/list":
                    fake.list_symbol(params["symbol"], float(params["price"]),
                                     params.get("status", "TRADING"))
                elif url.path == "/fake/delist":
                    fake.delist(params["symbol"])
                elif url.path == "/fake/halt":
                    fake.halt(params["symbol"])
                else:
                    return self._send(404, {}, None)
            except (KeyError, ValueError) as err:
                return self._send(400, {}, {"error": str(err)})
            self._send(200, {}, {})

        def _send(self, status: int, headers: dict[str, str], payload: Any,
                  length: int | None = None) -> tuple[int, bytes]:
            if isinstance(payload, bytes):
                body = payload
            elif isinstance(payload, str):
                body = payload.encode()
            else:
                body = b"" if payload is None else json.dumps(
                    payload, separators=(",", ":")).encode()
            try:
                self.send_response(status)
                headers = {"Content-Type": JSON_TYPE, **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                log.debug("client left before the answer was sent")
            return status, body

    return Handler


def _number_or_text(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def fake_binance_process(port: int = 0, *options: str):
    """The stand-in as a process of its own (for tests of the start scripts): a context
    manager giving (process, URL). Faults go through /fake/misbehave; `options` are its
    command-line options (--market 2000 ...)."""
    return stand_in_process(__name__, "--port", str(port), *options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--market", type=int, default=0, metavar="N",
                        help="list N more symbols, as `market(N)` makes them")
    parser.add_argument("--usdt", type=int, default=0, metavar="N",
                        help="list a market with exactly N USDT pairs TRADING (`usdt_market`)")
    parser.add_argument("--no-record", action="store_true",
                        help="keep no record of requests (long runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prices, statuses = usdt_market(args.usdt) if args.usdt else market(args.market)
    serve_until_signalled(FakeBinance(args.host, args.port, prices={**DEFAULT_PRICES, **prices},
                                      statuses=statuses, record=not args.no_record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
