"""Past one-minute klines from Binance (`GET /api/v3/klines`), paged, with the producer's
REST client rules: its timeouts, error classification, Retry-After and request weight.

A range is fetched by startTime in pages of up to 1,000 klines (weight 2 each). A 429 or
418 is waited out as Retry-After asks, unless that is longer than `MAX_RETRY_AFTER_SECONDS`;
a server error, timeout or broken body is retried with backoff a few times; anything else
(Binance unreachable, a restricted location, a rejected request) raises at once.

Pages are paced by the request weight Binance reports (X-MBX-USED-WEIGHT-1M, which counts
every client of this IP): a page that would take the minute past 80 % of the limit waits
for the next minute, so a backfill of thousands of symbols never meets a 429 and leaves
room for the producer's polls.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Callable, Iterator

from crypto_pipeline.binance.klines import Kline, kline_from_row
from crypto_pipeline.binance.rest import BinanceError, BinanceRestClient, WeightPacer
from crypto_pipeline.core.backoff import backoff_seconds

log = logging.getLogger(__name__)

KLINES_PATH = "/api/v3/klines"
KLINES_WEIGHT = 2
INTERVAL = "1m"
PAGE_LIMIT = 1000
MINUTE = timedelta(minutes=1)
RETRIED_KINDS = ("server-error", "timeout", "malformed-body")
WAITED_KINDS = ("rate-limited", "banned")
ATTEMPTS = 4
MAX_RETRY_AFTER_SECONDS = 120.0
RETRY_BACKOFF = {"base": 1.0, "cap": 15.0}


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


class KlinesClient(BinanceRestClient):
    """The producer's client with the klines endpoint, paced by request weight."""

    def __init__(self, base_url: str, connect_timeout: float, read_timeout: float, *,
                 clock: Callable[[], float] = time.time):
        super().__init__(base_url, connect_timeout, read_timeout)
        self.pacer = WeightPacer(self.weight_limit, clock=clock)
        self.requests = 0

    def trading_symbols(self):
        symbols = super().trading_symbols()
        self.pacer.limit = self.weight_limit  # as exchangeInfo states it
        return symbols

    def _get(self, path: str, params: dict[str, str]):
        self.requests += 1
        try:
            return super()._get(path, params)
        finally:
            self.pacer.observe(self.last_used_weight)

    def _pace(self, wait: Callable[[float], None]) -> None:
        """Wait until a page fits in this minute's weight budget."""
        while pause := self.pacer.reserve(KLINES_WEIGHT):
            log.info("klines: %s of %d request weight used this minute; waiting %.0f s",
                     self.pacer.used, self.weight_limit, pause)
            wait(pause)

    def klines_page(self, symbol: str, start: datetime, end: datetime) -> list[Kline]:
        """Up to PAGE_LIMIT one-minute klines opening in [start, end), oldest first."""
        response = self._get(KLINES_PATH, {
            "symbol": symbol, "interval": INTERVAL, "startTime": str(_ms(start)),
            "endTime": str(_ms(end) - 1), "limit": str(PAGE_LIMIT)})
        try:
            rows = response.json()
            if not isinstance(rows, list):
                raise ValueError(f"a {type(rows).__name__} where a list of klines belongs")
            return [kline_from_row(symbol, row) for row in rows]
        except (ValueError, TypeError) as err:
            raise BinanceError("malformed-body", f"Binance sent klines that cannot be read "
                               f"({err})") from None

    def klines(self, symbol: str, start: datetime, end: datetime,
               wait: Callable[[float], None] = time.sleep) -> Iterator[Kline]:
        """Every one-minute kline of `symbol` opening in [start, end), page by page."""
        while start < end:
            page = [k for k in self._page_with_retries(symbol, start, end, wait)
                    if start <= k.open_time < end]
            yield from page
            if not page:
                return
            start = page[-1].open_time + MINUTE

    def _page_with_retries(self, symbol: str, start: datetime, end: datetime,
                           wait: Callable[[float], None]) -> list[Kline]:
        attempt = 1
        while True:
            self._pace(wait)
            try:
                return self.klines_page(symbol, start, end)
            except BinanceError as err:
                if attempt >= ATTEMPTS or not _worth_waiting(err):
                    raise
                delay = max(backoff_seconds(attempt, **RETRY_BACKOFF), err.retry_after or 0.0)
                log.warning("klines for %s: %s; trying again in %.1f s", symbol, err, delay)
                wait(delay)
                attempt += 1


def _worth_waiting(err: BinanceError) -> bool:
    if err.kind in WAITED_KINDS:
        return err.retry_after is not None and err.retry_after <= MAX_RETRY_AFTER_SECONDS
    return err.kind in RETRIED_KINDS
