"""Where ticks come from (PRICE_SOURCE): Binance's REST API or trade streams, a file
replay, or a simulation.

Each source's `batches(stop)` yields lists of ticks until it is done or `stop` is set.
While it waits it yields an empty list at least once a second, so the caller can report
progress and notice `stop`. `status` holds what the source has to say about itself.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Protocol

from crypto_pipeline.backoff import backoff_seconds
from crypto_pipeline.binance_ws import (CLOSE_TIMEOUT_SECONDS, CONNECTION_LIFETIME_SECONDS,
                                        MAX_STREAMS_PER_CONNECTION, OVERLAP_SECONDS,
                                        RENEW_BEFORE_SECONDS, RESTRICTED_LOCATION, SOURCE,
                                        BadMessage, CombinedStream, RecentTrades, StreamEvent,
                                        combined_stream_urls, parse_trade)
from crypto_pipeline.binance_rest import (BinanceError, BinanceRestClient, PriceBatch,
                                          UnknownSymbolError, weight_pause_seconds)
from crypto_pipeline.klines import read_klines, ticks_of
from crypto_pipeline.schema import Tick, parse_time
from crypto_pipeline.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
BINANCE_BACKOFF = {"base": 1.0, "cap": 60.0}
STATE_BY_FAULT = {"rate-limited": "rate-limited", "banned": "rate-limited",
                  "restricted-location": "restricted-location"}
REPLAY_BATCH = 500
# Most trades handed on in one batch: a burst is delivered in several, with status between.
TRADE_BATCH = 5000
# Bad stream messages are logged at most once in this many seconds (with the count since).
BAD_MESSAGE_LOG_SECONDS = 60.0


class ReplayFileError(ValueError):
    """REPLAY_FILE cannot be read as klines or ticks; the message names file and line."""


@dataclass
class SourceStatus:
    state: str = "starting"
    polls: int = 0
    bad_entries: int = 0
    errors: Counter = field(default_factory=Counter)
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None


class PriceSource(Protocol):
    name: str  # the `source` of its ticks and of the status file
    lossless: bool  # True: wait for room in the Kafka buffer rather than drop ticks
    status: SourceStatus

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]: ...


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class FixedRate:
    """Slots `interval` apart from the first: a late poll does not move later slots, and
    slots missed while a poll overran are skipped rather than made up in a burst."""

    def __init__(self, interval: float, start: float):
        self.interval = interval
        self.start = start
        self._slot = 0

    @property
    def due(self) -> float:
        return self.start + self._slot * self.interval

    def advance(self, now: float) -> None:
        self._slot = max(self._slot + 1, math.floor((now - self.start) / self.interval) + 1)


def idle_until(deadline: float, stop: threading.Event,
               clock: Callable[[], float]) -> Iterator[list[Tick]]:
    """Wait for `deadline` (or `stop`), yielding an empty batch at least once a second."""
    while not stop.is_set():
        remaining = deadline - clock()
        if remaining <= 0:
            return
        stop.wait(min(HEARTBEAT_SECONDS, remaining))
        yield []


class BinancePoller:
    """Every POLL_INTERVAL_SECONDS one request for all SYMBOLS, on a fixed-rate schedule;
    after a fault it waits as Binance asks (Retry-After) or backs off."""

    name = "binance"
    lossless = False

    def __init__(self, settings: Settings, client: BinanceRestClient | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random):
        self.settings = settings
        self.symbols = settings.symbols
        self.client = client or BinanceRestClient(settings.binance_base_url,
                                                  settings.http_connect_timeout_seconds,
                                                  settings.http_read_timeout_seconds)
        self.status = SourceStatus()
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng
        self._failures = 0
        self._answered = False

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]:
        log.info("polling %s every %g s for %s", self.client.base_url,
                 self.settings.poll_interval_seconds, ",".join(self.symbols))
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
            batch = self.client.ticker_prices(self.symbols)
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
        self.status.state = "ok"
        self.status.last_success_at = self.status.last_poll_at
        self._report_bad(batch)
        return batch.ticks, self._weight_pause(), None

    def _failed(self, err: BinanceError) -> float:
        """Record the fault; the wait it calls for: Retry-After, at least the backoff."""
        wait = backoff_seconds(self._failures, rng=self._rng, **BINANCE_BACKOFF)
        if err.retry_after is not None:
            wait = max(wait, err.retry_after)
        self.status.state = STATE_BY_FAULT.get(err.kind, "binance-unreachable")
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
            self.status.state = "rate-limited"
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


class BinanceTradeStream:
    """Every trade of SYMBOLS as Binance reports it, over WebSocket trade streams: one
    combined-stream connection per 1,024 symbols, each kept open by a CombinedStream in
    its own thread. Their messages meet in one queue and become ticks here, in the
    producer's thread, where the trades that two connections both delivered during a
    lifetime rollover are let through once."""

    name = SOURCE
    lossless = False

    def __init__(self, settings: Settings, *, lifetime: float = CONNECTION_LIFETIME_SECONDS,
                 renew_before: float = RENEW_BEFORE_SECONDS, overlap: float = OVERLAP_SECONDS,
                 streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
                 clock: Callable[[], float] = time.monotonic):
        self.symbols = settings.symbols
        self.base_url = settings.binance_ws_url
        self.status = SourceStatus()
        self._inbox: queue.Queue = queue.Queue()
        urls = combined_stream_urls(self.base_url, self.symbols, streams_per_connection)
        self._streams = [CombinedStream(url, self._inbox.put,
                                        open_timeout=settings.http_connect_timeout_seconds,
                                        lifetime=lifetime, renew_before=renew_before,
                                        overlap=overlap, clock=clock,
                                        name=f"binance-ws-{number}")
                         for number, url in enumerate(urls, start=1)]
        self._wanted = frozenset(self.symbols)
        self._recent = RecentTrades()
        self._down: set[str] = set()  # URLs without a connection
        self._clock = clock
        self._bad_unlogged = 0
        self._bad_logged_at: float | None = None

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]:
        log.info("streaming the trades of %s from %s over %d connection%s",
                 ",".join(self.symbols), self.base_url,
                 len(self._streams), "" if len(self._streams) == 1 else "s")
        for stream in self._streams:
            stream.start()
        try:
            while not stop.is_set():
                yield self._take(block=True)
            self._stop_streams()
            yield self._take(block=False)  # what came before the connections closed
        finally:
            self._stop_streams()

    def _stop_streams(self) -> None:
        for stream in self._streams:
            stream.stop()
        for stream in self._streams:
            stream.join(self._streams[0].open_timeout + 2 * CLOSE_TIMEOUT_SECONDS)

    def _take(self, block: bool) -> list[Tick]:
        """The new trades in the queue (waiting up to a heartbeat for the first one)."""
        ticks: list[Tick] = []
        try:
            item = self._inbox.get(timeout=HEARTBEAT_SECONDS) if block else \
                self._inbox.get_nowait()
            while True:
                if isinstance(item, StreamEvent):
                    self._on_event(item)
                else:
                    self._on_message(item, ticks)
                if len(ticks) >= TRADE_BATCH:
                    break
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass
        return ticks

    def _on_message(self, message: str | bytes, ticks: list[Tick]) -> None:
        self.status.polls += 1
        self.status.last_poll_at = now_utc()
        try:
            tick = parse_trade(message, self._wanted)
        except BadMessage as err:
            self._bad(str(err))
            return
        self.status.last_success_at = self.status.last_poll_at
        if self._recent.first_sighting(tick):
            ticks.append(tick)

    def _bad(self, reason: str) -> None:
        self.status.bad_entries += 1
        self.status.errors["bad-message"] += 1
        self._bad_unlogged += 1
        now = self._clock()
        if self._bad_logged_at is None or now - self._bad_logged_at >= BAD_MESSAGE_LOG_SECONDS:
            log.warning("skipped %d bad message%s from the trade stream (never sent); last: %s",
                        self._bad_unlogged, "" if self._bad_unlogged == 1 else "s", reason)
            self._bad_unlogged, self._bad_logged_at = 0, now

    def _on_event(self, event: StreamEvent) -> None:
        if event.kind == "connected":
            if event.url in self._down:
                log.info("connected again to %s", event.url)
            else:
                log.info("connected to %s", event.url)
            self._down.discard(event.url)
            if not self._down:
                self.status.state = "ok"
        elif event.kind == "replaced":
            log.info("replaced the connection to %s before its lifetime ended (%s)",
                     event.url, event.detail)
        elif event.kind == "renew-failed":
            self.status.errors["connection"] += 1
            log.warning("cannot open the connection to replace the one to %s before its "
                        "lifetime ends (%s); it goes on meanwhile; next try in %.1f s",
                        event.url, event.detail, event.retry_in)
        elif event.kind == "dropped":
            self._fault("dropped", f"the connection to {event.url} dropped ({event.detail})",
                        event)
        else:
            restricted = event.status == RESTRICTED_LOCATION
            self._fault(
                "restricted-location" if restricted else "connection",
                f"cannot connect to Binance's trade stream at {event.url} ({event.detail})"
                + ("; Binance refuses this location: set BINANCE_WS_URL to "
                   "wss://data-stream.binance.vision, or use PRICE_SOURCE=replay or simulated"
                   if restricted else ""), event)

    def _fault(self, kind: str, message: str, event: StreamEvent) -> None:
        self._down.add(event.url)
        self.status.state = STATE_BY_FAULT.get(kind, "binance-unreachable")
        self.status.errors[kind] += 1
        self.status.last_error = message
        log.warning("%s; next try in %.1f s", message, event.retry_in)


def tick_from_message(line: str) -> Tick:
    """A tick message as on INPUT_TOPIC, replayed: its data, labelled as a replay.
    ValueError or TypeError when it is not one (Tick validates the values)."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a tick message is a JSON object")
    quantity = message.get("quantity")
    try:
        return Tick(str(message["symbol"]).upper(), float(message["price"]),
                    parse_time(str(message["event_time"])), "replay",
                    quantity=None if quantity is None else float(quantity),
                    event_id=message.get("event_id"))
    except KeyError as err:
        raise ValueError(f"no {err.args[0]}") from None


def _is_tick_file(path: Path) -> bool:
    with open(path) as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


class ReplaySource:
    """REPLAY_FILE (a kline file of either layout, or JSON-lines ticks) at REPLAY_SPEED:
    event times come from the data, and the gaps between them shrink by the speed."""

    name = "replay"
    lossless = True  # a replay waits for Kafka rather than dropping its data

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic):
        self.path = settings.replay_file
        self.speed = settings.replay_speed
        self.status = SourceStatus()
        self._clock = clock
        self._started = 0.0
        self._first: datetime | None = None

    def ticks(self) -> Iterator[Tick]:
        try:
            if not _is_tick_file(self.path):
                yield from ticks_of(read_klines(self.path))
                return
        except ValueError as err:  # a kline file that is not one
            self.status.last_error = f"REPLAY_FILE={self.path}: {err}"
            raise ReplayFileError(self.status.last_error) from None
        with open(self.path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield tick_from_message(line)
                except (ValueError, TypeError) as err:
                    self.status.bad_entries += 1
                    self.status.errors["bad-entry"] += 1
                    self.status.last_error = f"{self.path.name}, line {number}: {err}"
                    log.warning("skipped %s", self.status.last_error)

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]:
        log.info("replaying %s at %s", self.path,
                 "full speed" if self.speed == 0 else f"{self.speed:g}x real time")
        self._started = self._clock()
        batch: list[Tick] = []
        for tick in self.ticks():
            due = self._due(tick)
            # Send what is due before waiting for the next tick.
            if batch and (len(batch) >= REPLAY_BATCH or due > self._clock()):
                yield self._emitted(batch)
                batch = []
            yield from idle_until(due, stop, self._clock)
            if stop.is_set():
                return
            batch.append(tick)
        if batch:
            yield self._emitted(batch)
        self.status.state = "finished"

    def _due(self, tick: Tick) -> float:
        """When `tick` is to be sent (monotonic clock): its distance in event time from the
        first tick, shrunk by the speed; at speed 0, at once."""
        self._first = self._first or tick.event_time
        if not self.speed:
            return self._started
        return self._started + (tick.event_time - self._first).total_seconds() / self.speed

    def _emitted(self, batch: list[Tick]) -> list[Tick]:
        self.status.polls += 1
        self.status.last_poll_at = self.status.last_success_at = now_utc()
        if self.status.state == "starting":
            self.status.state = "ok"
        return batch


class SimulatedSource:
    """A random walk for every symbol of SYMBOLS, one tick each per POLL_INTERVAL_SECONDS,
    stamped now. For running without Binance; labelled `simulated` everywhere."""

    name = "simulated"
    lossless = False
    START_PRICE = 100.0
    STEP = 0.001  # standard deviation of one step, relative to the price

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic,
                 seed: int | None = None):
        self.symbols = settings.symbols
        self.interval = settings.poll_interval_seconds
        self.status = SourceStatus()
        self.prices = {symbol: self.START_PRICE for symbol in self.symbols}
        self._clock = clock
        self._rng = random.Random(seed)

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]:
        log.info("simulating %s (random walk, not market data)", ",".join(self.symbols))
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
        self.status.state = "ok"
        self.status.last_poll_at = self.status.last_success_at = moment
        return [Tick(symbol, price, moment, "simulated") for symbol, price in self.prices.items()]


SOURCES = {"binance": BinancePoller, "binance-ws": BinanceTradeStream, "replay": ReplaySource,
           "simulated": SimulatedSource}
