"""The producer's symbols when SYMBOLS has patterns: resolved at the start, matched again
every SYMBOLS_REFRESH_SECONDS. A new listing joins, a symbol that stops trading (BREAK,
HALT, delisted) leaves; each change is logged with its symbols and kept for the status
file. A refresh that fails keeps the symbols it had and says so."""

from __future__ import annotations

import logging
import time
from typing import Callable

from crypto_pipeline.binance.listing import resolve_at_start, resolve_symbols
from crypto_pipeline.binance.rest import BinanceError, BinanceRestClient
from crypto_pipeline.core.schema import format_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import SYMBOL_CHANGES_KEPT, SymbolChange
from crypto_pipeline.core.symbols import changes
from crypto_pipeline.producer.sources.base import now_utc

log = logging.getLogger(__name__)

# After a failed refresh the next try comes sooner than a whole refresh period.
RETRY_SECONDS = 60.0
# A change of more symbols than this is logged with the first of them and a count.
LOGGED_SYMBOLS = 50


def _listed(symbols: tuple[str, ...]) -> str:
    shown = ", ".join(symbols[:LOGGED_SYMBOLS])
    more = len(symbols) - LOGGED_SYMBOLS
    return shown + (f" and {more} more" if more > 0 else "")


class SymbolSet:
    def __init__(self, settings: Settings, client: BinanceRestClient | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.entries = settings.symbols
        self.patterns = settings.symbol_patterns
        self.refresh_seconds = settings.symbols_refresh_seconds
        self.client = client or BinanceRestClient(settings.binance_base_url,
                                                  settings.http_connect_timeout_seconds,
                                                  settings.http_read_timeout_seconds)
        self.current: tuple[str, ...] = ()
        self.changes: list[SymbolChange] = []
        self.refreshed_at: str | None = None
        self.error: str | None = None
        self.joined_total = 0
        self.left_total = 0
        self._clock = clock
        self._due = 0.0

    def close(self) -> None:
        self.client.close()

    def start(self) -> tuple[str, ...]:
        """The first resolution (BinanceError: try again; NoMatchError: stop)."""
        self.current = resolve_at_start(self.entries, self.client)
        self._resolved()
        log.info("SYMBOLS=%s: %d symbols trading on %s; matched again every %g s",
                 ",".join(self.entries), len(self.current), self.client.base_url,
                 self.refresh_seconds)
        return self.current

    def due(self) -> bool:
        return self._clock() >= self._due

    def refresh(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Match SYMBOLS again: (joined, left), both empty when nothing changed or the
        refresh failed (then `error` says why and the symbols stay)."""
        try:
            resolution = resolve_symbols(self.entries, self.client)
        except BinanceError as err:
            self.error = (f"refreshing SYMBOLS failed ({err}); keeping the last "
                          f"{len(self.current)} symbols")
            self._due = self._clock() + min(self.refresh_seconds, RETRY_SECONDS)
            log.warning("%s; next try in %.0f s", self.error, self._due - self._clock())
            return (), ()
        if self.error:
            log.info("refreshing SYMBOLS works again")
        if resolution.unmatched:
            log.warning("SYMBOLS: %s matches no symbol trading now",
                        ", ".join(resolution.unmatched))
        joined, left = changes(self.current, resolution.symbols)
        self.current = resolution.symbols
        self._resolved()
        if joined or left:
            self.joined_total += len(joined)
            self.left_total += len(left)
            self.changes = (self.changes + [SymbolChange(self.refreshed_at, list(joined),
                                                         list(left))])[-SYMBOL_CHANGES_KEPT:]
            log.info("symbols changed: %d joined%s, %d left%s; now %d", len(joined),
                     f" ({_listed(joined)})" if joined else "", len(left),
                     f" ({_listed(left)})" if left else "", len(self.current))
        return joined, left

    def _resolved(self) -> None:
        self.error = None
        self.refreshed_at = format_time(now_utc())
        self._due = self._clock() + self.refresh_seconds
