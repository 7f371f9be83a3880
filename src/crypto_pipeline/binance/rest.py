"""Binance's REST market-data API as the producer uses it.

One request fetches the prices of every symbol (`GET /api/v3/ticker/price?symbols=[...]`,
weight 4 whatever the count, or without a parameter every symbol Binance lists, also
weight 4). `GET /api/v3/exchangeInfo?symbolStatus=TRADING` (weight 20) says which symbols
trade. Binance's answers become ticks or a `BinanceError` whose `kind` says what went
wrong; its rules for waiting (Retry-After, backoff, request weight per minute) are plain
functions and a `WeightPacer`, so they are testable without a server.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlparse

import requests

from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.schema import Tick

log = logging.getLogger(__name__)

TICKER_PRICE_PATH = "/api/v3/ticker/price"
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
TRADING = "TRADING"
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
ALTERNATIVE_BASE_URLS = ("https://data-api.binance.vision", "https://api.binance.us")
# Request weight per minute and IP; Binance.US allows less than binance.com.
WEIGHT_LIMITS = {"api.binance.us": 1200}
DEFAULT_WEIGHT_LIMIT = 6000
# Pause polling once this share of the minute's weight is used, before Binance answers 429.
WEIGHT_SLOWDOWN_SHARE = 0.8
BAD_SYMBOL_CODE = -1121


class BinanceError(Exception):
    """Binance did not answer with prices. `kind` names the fault for logs and counters:
    rate-limited (429), banned (418), restricted-location (451), server-error (5xx),
    rejected (other 4xx), timeout, connection or malformed-body."""

    def __init__(self, kind: str, message: str, *, status: int | None = None,
                 code: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.code = code
        self.retry_after = retry_after


class UnknownSymbolError(BinanceError):
    def __init__(self, symbols: Sequence[str], base_url: str, cause: BinanceError):
        names = ", ".join(symbols)
        super().__init__("rejected", f"SYMBOLS: {names} {'is' if len(symbols) == 1 else 'are'}"
                         f" not a symbol on {base_url}; {cause}", status=cause.status,
                         code=cause.code)
        self.symbols = tuple(symbols)


@dataclass
class PriceBatch:
    """The usable ticks of one answer, and what was wrong with the rest."""

    ticks: list[Tick] = field(default_factory=list)
    bad_entries: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def symbols_param(symbols: Sequence[str]) -> str:
    """The `symbols` value exactly as Binance accepts it: a JSON array without spaces."""
    return json.dumps(list(symbols), separators=(",", ":"))


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds, as Binance sends it, or an HTTP
    date), None if absent or unreadable. No upper cap: a 418 ban may last days."""
    text = (value or "").strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def weight_limit(base_url: str) -> int:
    return WEIGHT_LIMITS.get(urlparse(base_url).hostname or "", DEFAULT_WEIGHT_LIMIT)


class WeightPacer:
    """Holds requests back so the request weight this IP uses per minute stays below
    `share` of the limit: Binance counts it per clock minute and says in every answer how
    much is used (X-MBX-USED-WEIGHT-1M, every client of this IP included). Thread-safe:
    fetchers running side by side share one."""

    def __init__(self, limit: int, share: float = WEIGHT_SLOWDOWN_SHARE,
                 clock: Callable[[], float] = time.time):
        self.limit = limit  # exchangeInfo's REQUEST_WEIGHT per minute, when it was asked
        self.share = share
        self._clock = clock
        self._lock = threading.Lock()
        self._minute: int | None = None
        self._used = 0  # in `_minute`: the last header, plus what was sent since

    @property
    def used(self) -> int | None:
        """The weight used this minute as far as known, None before any answer."""
        with self._lock:
            return self._used if self._minute == int(self._clock() // 60) else None

    def observe(self, used_weight: int | None) -> None:
        """The header of an answer just received."""
        if used_weight is None:
            return
        with self._lock:
            minute = int(self._clock() // 60)
            if minute != self._minute or used_weight > self._used:
                self._minute, self._used = minute, used_weight

    def reserve(self, weight: int) -> float:
        """Seconds to wait before sending a request of `weight` (0: send now, and it is
        counted)."""
        with self._lock:
            now = self._clock()
            minute = int(now // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            if self._used + weight > self.share * self.limit:
                return 60.0 - now % 60.0
            self._used += weight
            return 0.0


def weight_pause_seconds(used_weight: int | None, limit: int, now_epoch: float) -> float:
    """How long to hold back the next request: until the minute's weight resets once
    `WEIGHT_SLOWDOWN_SHARE` of it is used, else not at all."""
    if used_weight is None or used_weight < WEIGHT_SLOWDOWN_SHARE * limit:
        return 0.0
    return 60.0 - now_epoch % 60.0


def _error_body(body: bytes) -> tuple[int | None, str]:
    """Binance's `{"code": ..., "msg": ...}`, or the start of whatever else came back."""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and "msg" in parsed:
            return parsed.get("code"), str(parsed["msg"])
    except ValueError:
        pass
    text = " ".join(body.decode("utf-8", "replace").split())
    return None, (text[:120] + "...") if len(text) > 120 else text or "empty body"


def error_for(status: int, headers: Mapping[str, str], body: bytes) -> BinanceError:
    """The error an HTTP answer other than 2xx stands for."""
    code, msg = _error_body(body)
    coded = f"HTTP {status}, code {code}" if code is not None else f"HTTP {status}"
    retry_after = retry_after_seconds(headers.get("Retry-After"))
    if status == 429:
        return BinanceError("rate-limited", f"Binance rate limit hit ({coded}: {msg})",
                            status=status, code=code, retry_after=retry_after)
    if status == 418:
        return BinanceError("banned", f"Binance banned this IP for ignoring rate limits "
                            f"({coded}: {msg})", status=status, code=code,
                            retry_after=retry_after)
    if status == 451:
        return BinanceError(
            "restricted-location",
            f"Binance refuses requests from this location ({coded}: {msg}). Set "
            f"BINANCE_BASE_URL to {ALTERNATIVE_BASE_URLS[0]} (market data, worldwide) or "
            f"{ALTERNATIVE_BASE_URLS[1]} (Binance.US), or run with PRICE_SOURCE=replay or "
            f"simulated", status=status, code=code)
    if status >= 500:
        return BinanceError("server-error", f"Binance server error ({coded}: {msg})",
                            status=status, code=code, retry_after=retry_after)
    return BinanceError("rejected", f"Binance rejected the request ({coded}: {msg})",
                        status=status, code=code, retry_after=retry_after)


def _price(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError
    price = float(value)
    if not math.isfinite(price) or price <= 0:
        raise ValueError
    return price


def _json_body(body: bytes, content_type: str) -> Any:
    """The JSON of an answer; BinanceError("malformed-body") when it is none."""
    if "json" not in content_type.lower():
        _, text = _error_body(body)
        raise BinanceError("malformed-body", f"Binance answered {content_type or 'no type'}"
                           f" instead of JSON ({len(body)} bytes: {text})")
    try:
        return json.loads(body)
    except ValueError as err:
        raise BinanceError("malformed-body", f"Binance sent a broken JSON body "
                           f"({len(body)} bytes: {err})") from None


def parse_prices(body: bytes, content_type: str, symbols: Sequence[str],
                 received_at: datetime, *, every: bool = False) -> PriceBatch:
    """Ticks from a ticker/price answer. A body that is not a JSON array raises
    `BinanceError("malformed-body")`; a bad entry is skipped and described. `every`: the
    answer lists every symbol Binance has (no parameter), and those not wanted are no
    fault."""
    entries = _json_body(body, content_type)
    if not isinstance(entries, list):
        raise BinanceError("malformed-body", f"Binance sent a {type(entries).__name__} "
                           f"where a list of prices belongs")
    wanted = set(symbols)
    batch = PriceBatch()
    for entry in entries:
        symbol = entry.get("symbol") if isinstance(entry, dict) else None
        if symbol not in wanted:
            if not (every and isinstance(symbol, str)):
                batch.bad_entries.append(f"unexpected entry {json.dumps(entry)[:80]}")
            continue
        try:
            batch.ticks.append(Tick(symbol, _price(entry.get("price")), received_at, "binance"))
        except ValueError:
            batch.bad_entries.append(f"{symbol} price {entry.get('price')!r} is not a number > 0")
        wanted.discard(symbol)
    batch.missing = [s for s in symbols if s in wanted]
    return batch


@dataclass(frozen=True)
class SymbolInfo:
    """One symbol as exchangeInfo lists it."""

    symbol: str
    status: str  # TRADING, HALT or BREAK
    base_asset: str
    quote_asset: str


def parse_exchange_info(body: bytes, content_type: str) -> tuple[list[SymbolInfo], int | None]:
    """The symbols of an exchangeInfo answer, and the request weight it allows a minute
    (its REQUEST_WEIGHT rate limit; None when it names none); BinanceError
    ("malformed-body") when it is not one."""
    answer = _json_body(body, content_type)
    listed = answer.get("symbols") if isinstance(answer, dict) else None
    if not isinstance(listed, list):
        raise BinanceError("malformed-body", "Binance sent exchange information without "
                           "a list of symbols")
    try:
        symbols = [SymbolInfo(entry["symbol"], entry["status"], entry.get("baseAsset", ""),
                              entry.get("quoteAsset", "")) for entry in listed]
    except (KeyError, TypeError) as err:
        raise BinanceError("malformed-body", f"Binance sent a symbol without "
                           f"{one_line(err)} in its exchange information") from None
    limits = [rule.get("limit") for rule in answer.get("rateLimits") or ()
              if isinstance(rule, dict) and rule.get("rateLimitType") == "REQUEST_WEIGHT"
              and rule.get("interval") == "MINUTE" and rule.get("intervalNum") == 1]
    return symbols, limits[0] if limits and isinstance(limits[0], int) else None


def _cause(err: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, e.g. `ConnectionRefusedError:
    [Errno 111] Connection refused` instead of three nested wrappers."""
    chain = [err]
    while True:
        inner = getattr(chain[-1], "reason", None) or chain[-1].__cause__ or chain[-1].__context__
        if not isinstance(inner, BaseException) or inner in chain:
            break
        chain.append(inner)
    return one_line(chain[-1], named=True)


class BinanceRestClient:
    """One keep-alive HTTP session to Binance with connect and read timeouts."""

    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.weight_limit = weight_limit(base_url)
        self.last_used_weight: int | None = None
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json",
                                      "User-Agent": "crypto-pipeline-producer"})

    def close(self) -> None:
        self._session.close()

    def _get(self, path: str, params: dict[str, str]) -> requests.Response:
        url = self.base_url + path
        self.last_used_weight = None
        try:
            # Without stream=True the body is read here too, inside the timeouts.
            response = self._session.get(url, params=params, timeout=self.timeout)
        except requests.exceptions.ConnectTimeout:
            raise BinanceError("timeout", f"no connection to {self.base_url} within "
                               f"{self.timeout[0]:g} s (connect timeout)") from None
        except requests.exceptions.ReadTimeout:
            raise BinanceError("timeout", f"no answer from {url} within "
                               f"{self.timeout[1]:g} s (read timeout)") from None
        except requests.exceptions.ChunkedEncodingError as err:
            raise BinanceError("malformed-body", f"Binance's answer was cut off "
                               f"({_cause(err)})") from None
        except requests.exceptions.RequestException as err:
            raise BinanceError("connection", f"cannot reach Binance at {self.base_url} "
                               f"({_cause(err)}); no prices until it answers") from None
        weight = response.headers.get(WEIGHT_HEADER, "")
        self.last_used_weight = int(weight) if weight.isdigit() else None
        if not response.ok:
            raise error_for(response.status_code, response.headers, response.content)
        return response

    def ticker_prices(self, symbols: Sequence[str], *, every: bool = False) -> PriceBatch:
        """The last price of every symbol, in one request: naming them, or (`every`)
        asking for all Binance has and keeping these (the same weight, and no URL that
        grows with the count)."""
        try:
            response = self._get(TICKER_PRICE_PATH,
                                 {} if every else {"symbols": symbols_param(symbols)})
        except BinanceError as err:
            if err.code == BAD_SYMBOL_CODE:
                raise UnknownSymbolError(self.unknown_symbols(symbols) or symbols,
                                         self.base_url, err) from None
            raise
        received_at = datetime.now(timezone.utc)
        return parse_prices(response.content, response.headers.get("Content-Type", ""),
                            symbols, received_at, every=every)

    def trading_symbols(self) -> list[SymbolInfo]:
        """Every symbol Binance lists as TRADING (exchangeInfo filtered by the server,
        and here again in case a server ignores the filter). The request weight allowed
        a minute that it states becomes `weight_limit`."""
        response = self._get(EXCHANGE_INFO_PATH, {"symbolStatus": TRADING,
                                                  "showPermissionSets": "false"})
        symbols, limit = parse_exchange_info(response.content,
                                             response.headers.get("Content-Type", ""))
        if limit:
            self.weight_limit = limit
        return [info for info in symbols if info.status == TRADING]

    def unknown_symbols(self, symbols: Sequence[str]) -> list[str]:
        """The symbols Binance does not know, asked one by one (the batch answer does not
        say which one it rejected)."""
        unknown = []
        for symbol in symbols:
            try:
                self._get(TICKER_PRICE_PATH, {"symbol": symbol})
            except BinanceError as err:
                if err.code == BAD_SYMBOL_CODE:
                    unknown.append(symbol)
        return unknown
