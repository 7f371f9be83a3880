"""PRICE_SOURCE=simulated: a random walk per symbol, for running without Binance."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from typing import Callable, Iterator

from crypto_pipeline.core.schema import Tick
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import State
from crypto_pipeline.producer.sources.base import FixedRate, SourceStatus, idle_until, now_utc

log = logging.getLogger(__name__)


class SimulatedSource:
    """A random walk for every symbol of SYMBOLS, one tick each per POLL_INTERVAL_SECONDS,
    stamped now. For running without Binance; labelled `simulated` everywhere."""

    name = "simulated"
    origin = "simulated"
    lossless = False
    START_PRICE = 100.0
    STEP = 0.001  # standard deviation of one step, relative to the price

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic,
                 seed: int | None = None):
        self.symbols = settings.symbol_names
        self.interval = settings.poll_interval_seconds
        self.status = SourceStatus()
        self.prices = {symbol: self.START_PRICE for symbol in self.symbols}
        self._clock = clock
        self._rng = random.Random(seed)

    def update_symbols(self, symbols: tuple[str, ...]) -> None:
        """Walk these from now on: a new one starts at START_PRICE."""
        self.symbols = tuple(symbols)
        self.prices = {symbol: self.prices.get(symbol, self.START_PRICE)
                       for symbol in self.symbols}

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]:
        log.info("simulating %d symbols (random walk, not market data): %s",
                 len(self.symbols), ",".join(self.symbols[:20])
                 + (",..." if len(self.symbols) > 20 else ""))
        schedule = FixedRate(self.interval, self._clock())
        while not stop.is_set():
            yield from idle_until(schedule.due, stop, self._clock)
            if stop.is_set():
                return
            yield self._step()
            schedule.advance(self._clock())

    def _step(self) -> list[Tick]:
        moment = now_utc()
        for symbol, price in self.prices.items():
            self.prices[symbol] = price * math.exp(self._rng.gauss(0, self.STEP))
        self.status.polls += 1
        self.status.state = State.OK
        self.status.last_poll_at = self.status.last_success_at = moment
        return [Tick(symbol, price, moment, "simulated") for symbol, price in self.prices.items()]
