"""PRICE_SOURCE=binance: Binance's REST ticker, one request for every symbol per poll.

With plain names the request names them; with patterns in SYMBOLS it asks for every
symbol Binance has (the same weight, an answer of a few hundred kilobytes) and keeps the
ones SYMBOLS matched, so the request stays one however many there are."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, Iterator

from crypto_pipeline.binance.rest import (
    BinanceError,
    BinanceRestClient,
    PriceBatch,
    UnknownSymbolError,
    weight_pause_seconds,
)
from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.schema import Tick
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import State
from crypto_pipeline.producer.sources.base import (
    STATE_BY_FAULT,
    FixedRate,
    SourceStatus,
    idle_until,
    now_utc,
)

log = logging.getLogger(__name__)

BINANCE_BACKOFF = {"base": 1.0, "cap": 60.0}


class BinancePoller:
    """Every POLL_INTERVAL_SECONDS one request for all SYMBOLS, on a fixed-rate schedule;
    after a fault it waits as Binance asks (Retry-After) or backs off."""

    name = "binance"
    origin = "binance"
    lossless = False

    def __init__(self, settings: Settings, client: BinanceRestClient | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random):
        self.settings = settings
        self.symbols = settings.symbol_names
        self.every = bool(settings.symbol_patterns)
        self.client = client or BinanceRestClient(settings.binance_base_url,
                                                  settings.http_connect_timeout_seconds,
                                                  settings.http_read_timeout_seconds)
        self.status = SourceStatus()
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng
        self._failures = 0
        self._answered = False

    def update_symbols(self, symbols: tuple[str, ...]) -> None:
        """Poll these from the next poll on (SYMBOLS' patterns matched again)."""
        self.symbols = tuple(symbols)

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]:
        log.info("polling %s every %g s for %s", self.client.base_url,
                 self.settings.poll_interval_seconds,
                 f"{len(self.symbols)} symbols (every price, kept for those SYMBOLS matched)"
                 if self.every else ",".join(self.symbols))
        schedule = FixedRate(self.settings.poll_interval_seconds, self._clock())
        not_before = 0.0
        try:
            while not stop.is_set():
                yield from idle_until(max(schedule.due, not_before), stop, self._clock)
                if stop.is_set():
                    return
                ticks, wait, fault = self._poll()
                now = self._clock()
                schedule.advance(now)
                not_before = now + wait
                if fault:
                    _log_fault(fault, max(schedule.due, not_before) - now)
                yield ticks
        finally:
            self.client.close()

    def _poll(self) -> tuple[list[Tick], float, BinanceError | None]:
        """One request: its ticks, how long the next one must wait at least, the fault."""
        self.status.polls += 1
        self.status.last_poll_at = now_utc()
        try:
            batch = self.client.ticker_prices(self.symbols, every=self.every)
        except BinanceError as err:
            if isinstance(err, UnknownSymbolError) and not self._answered:
                self.status.last_error = str(err)
                raise  # a typo in SYMBOLS: stopping beats polling forever
            self._failures += 1
            return [], self._failed(err), err
        if self._failures:
            log.info("Binance answers again after %d failed polls", self._failures)
        self._failures = 0
        self._answered = True
        self.status.state = State.OK
        self.status.last_success_at = self.status.last_poll_at
        self._report_bad(batch)
        return batch.ticks, self._weight_pause(), None

    def _failed(self, err: BinanceError) -> float:
        """Record the fault; the wait it calls for: Retry-After, at least the backoff."""
        wait = backoff_seconds(self._failures, rng=self._rng, **BINANCE_BACKOFF)
        if err.retry_after is not None:
            wait = max(wait, err.retry_after)
        self.status.state = STATE_BY_FAULT.get(err.kind, State.BINANCE_UNREACHABLE)
        self.status.errors[err.kind] += 1
        self.status.last_error = str(err)
        return max(wait, self._weight_pause())

    def _report_bad(self, batch: PriceBatch) -> None:
        if batch.bad_entries:
            self.status.bad_entries += len(batch.bad_entries)
            self.status.errors["bad-entry"] += len(batch.bad_entries)
            log.warning("skipped %d bad %s from Binance: %s", len(batch.bad_entries),
                        "entry" if len(batch.bad_entries) == 1 else "entries",
                        "; ".join(batch.bad_entries))
        if batch.missing:
            self.status.errors["missing-symbol"] += len(batch.missing)
            log.warning("Binance's answer lacks %s", ", ".join(batch.missing))

    def _weight_pause(self) -> float:
        used, limit = self.client.last_used_weight, self.client.weight_limit
        pause = weight_pause_seconds(used, limit, self._wall_clock())
        if pause:
            self.status.state = State.RATE_LIMITED
            self.status.errors["weight-pause"] += 1
            self.status.last_error = (f"request weight {used}/{limit} used this minute "
                                      f"(X-MBX-USED-WEIGHT-1M): pausing {pause:.0f} s until "
                                      f"the minute resets")
            log.warning("Binance %s", self.status.last_error)
        return pause


def _log_fault(err: BinanceError, delay: float) -> None:
    level = logging.ERROR if err.kind in ("restricted-location", "banned") else logging.WARNING
    asked = " (Retry-After)" if err.retry_after is not None else ""
    log.log(level, "%s; next try in %.1f s%s", err, delay, asked)
