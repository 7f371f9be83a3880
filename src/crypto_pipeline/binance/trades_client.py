"""Past trades by id from Binance (`GET /api/v3/historicalTrades?fromId=`): what fills a gap
in a trade stream (a reconnect, the 24-hour rollover, a producer restart), so that every
trade reaches Kafka once.

Pages of up to 1,000 trades (weight 25 each), oldest first, with the REST client's rules:
its timeouts, errors, and a pause once 80 % of the minute's request weight is used.
Current documents list the endpoint as public, older ones want an API key: none is sent,
and a refusal (HTTP 401, codes -2014/-2015) raises like any other fault, for the caller
to report the trades it could not fill.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

from crypto_pipeline.binance.rest import BinanceError, BinanceRestClient, weight_pause_seconds
from crypto_pipeline.binance.ws import BadMessage, decimal_field, trade_tick, whole_field
from crypto_pipeline.core.schema import Tick

log = logging.getLogger(__name__)

HISTORICAL_TRADES_PATH = "/api/v3/historicalTrades"
PAGE_LIMIT = 1000


class TradesClient(BinanceRestClient):
    """The producer's REST client with the trade history."""

    def trades_page(self, symbol: str, from_id: int) -> list[Tick]:
        """Up to PAGE_LIMIT trades of `symbol` from trade id `from_id` on, oldest first."""
        response = self._get(HISTORICAL_TRADES_PATH, {
            "symbol": symbol, "fromId": str(from_id), "limit": str(PAGE_LIMIT)})
        try:
            rows = response.json()
            if not isinstance(rows, list):
                raise BadMessage(f"a {type(rows).__name__} where a list of trades belongs")
            return [trade_tick(symbol, whole_field(row, "id"), decimal_field(row, "price"),
                               decimal_field(row, "qty"), whole_field(row, "time"))
                    for row in rows]
        except (ValueError, AttributeError) as err:
            raise BinanceError("malformed-body", f"Binance sent trades that cannot be read "
                               f"({err})") from None

    def trades(self, symbol: str, first_id: int, last_id: int,
               wait: Callable[[float], None] = time.sleep) -> Iterator[Tick]:
        """Every trade of `symbol` with an id from `first_id` to `last_id`, in order."""
        next_id = first_id
        while next_id <= last_id:
            page = [tick for tick in self.trades_page(symbol, next_id)
                    if tick.position <= last_id]
            if not page:
                return
            yield from page
            next_id = page[-1].position + 1
            pause = weight_pause_seconds(self.last_used_weight, self.weight_limit, time.time())
            if pause and next_id <= last_id:
                log.info("trade history: %d of %d request weight used this minute; waiting "
                         "%.0f s", self.last_used_weight, self.weight_limit, pause)
                wait(pause)
