"""Past one-minute klines from Binance (`GET /api/v3/klines`), paged, with the producer's
REST client rules: its timeouts, error classification, Retry-After and request weight.

A range is fetched by startTime in pages of up to 1,000 klines (weight 2 each). A 429 or
418 is waited out as Retry-After asks, unless that is longer than `MAX_RETRY_AFTER_SECONDS`;
a server error, timeout or broken body is retried with backoff a few times; anything else
(Binance unreachable, a restricted location, a rejected request) raises at once. Once 80 %
of the minute's request weight is used, the next page waits for the next minute.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Callable, Iterator

from crypto_pipeline.binance.klines import Kline, kline_from_row
from crypto_pipeline.binance.rest import BinanceError, BinanceRestClient, weight_pause_seconds
from crypto_pipeline.core.backoff import backoff_seconds

log = logging.getLogger(__name__)

KLINES_PATH = "/api/v3/klines"
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
    """The producer's client with the klines endpoint."""

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
            pause = weight_pause_seconds(self.last_used_weight, self.weight_limit, time.time())
            if pause and start < end:
                log.info("klines: %d of %d request weight used this minute; waiting %.0f s",
                         self.last_used_weight, self.weight_limit, pause)
                wait(pause)

    def _page_with_retries(self, symbol: str, start: datetime, end: datetime,
                           wait: Callable[[float], None]) -> list[Kline]:
        attempt = 1
        while True:
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
