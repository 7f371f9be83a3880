"""PRICE_SOURCE=binance-ws: every trade, over Binance's WebSocket trade streams, each once.

Trade ids are consecutive per symbol, so one number per symbol (the last trade id sent)
is all it takes to let each trade through once: a trade at or below it is one that two
connections both delivered (the 24-hour rollover); a trade above it by more than one
means trades were missed (a reconnect), and those are fetched from the REST trade
history before it goes on. After a restart the last ids come from Kafka
(`kafka_io.readback`), so trades missed while the producer was down are filled too.

When SYMBOLS' patterns match a different set (a listing, a halt), the connections that
carry a symbol that left unsubscribe it and those with room subscribe the new ones, on
the open connections (Binance's SUBSCRIBE / UNSUBSCRIBE): no stream that stays is cut,
so none of them has a gap to fill. Only symbols beyond every connection's room take a new
connection, and a connection left with no symbol is closed. Reconnecting every connection
instead would cost one of Binance's 300 connection attempts per 5 minutes each, and a
gap in every symbol.

Trades neither stream nor history had are counted on the first tick sent after them
(`missed_before`), so the Spark job knows which windows and candles lack trades.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time
from typing import Callable, Iterator

from crypto_pipeline.binance.rest import BinanceError
from crypto_pipeline.binance.trades_client import TradesClient
from crypto_pipeline.binance.ws import (
    CLOSE_TIMEOUT_SECONDS,
    CONNECTION_LIFETIME_SECONDS,
    MAX_STREAMS_PER_CONNECTION,
    OVERLAP_SECONDS,
    RENEW_BEFORE_SECONDS,
    RESTRICTED_LOCATION,
    SOURCE,
    BadMessage,
    CombinedStream,
    ConnectionAttempts,
    StreamEvent,
    groups,
    parse_trade,
    shown_url,
)
from crypto_pipeline.core.schema import Tick
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import State
from crypto_pipeline.core.symbols import changes
from crypto_pipeline.producer.sources.base import (
    HEARTBEAT_SECONDS,
    STATE_BY_FAULT,
    SourceStatus,
    now_utc,
)

log = logging.getLogger(__name__)

# Most trades handed on in one batch: a burst is delivered in several, with status between.
TRADE_BATCH = 5000
# Bad stream messages are logged at most once in this many seconds (with the count since).
BAD_MESSAGE_LOG_SECONDS = 60.0
# Longest gap filled from the trade history per symbol (at 1,000 trades a request of weight
# 25, a tenth of a minute's weight): beyond it the rest of the gap is reported as missed.
MAX_GAP_TRADES = 25_000


class BinanceTradeStream:
    """Every trade of SYMBOLS as Binance reports it, over WebSocket trade streams: one
    combined-stream connection per 1,024 symbols, each kept open by a CombinedStream in
    its own thread. Their messages meet in one queue and become ticks here, in the
    producer's thread, where each trade is let through once and gaps are filled."""

    name = SOURCE
    origin = SOURCE
    lossless = False

    def __init__(self, settings: Settings, *, lifetime: float = CONNECTION_LIFETIME_SECONDS,
                 renew_before: float = RENEW_BEFORE_SECONDS, overlap: float = OVERLAP_SECONDS,
                 streams_per_connection: int = MAX_STREAMS_PER_CONNECTION,
                 attempts: ConnectionAttempts | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.symbols = settings.symbol_names
        self.base_url = settings.binance_ws_url
        self.status = SourceStatus()
        self.per_connection = streams_per_connection
        self.attempts = attempts or ConnectionAttempts()
        self._inbox: queue.Queue = queue.Queue()
        self._stream_options = {"open_timeout": settings.http_connect_timeout_seconds,
                                "attempts": self.attempts, "lifetime": lifetime,
                                "renew_before": renew_before, "overlap": overlap,
                                "clock": clock}
        self._numbers = itertools.count(1)
        self._streams = [self._new_stream(group)
                         for group in groups(self.symbols, self.per_connection)]
        self._started = False
        self._retired: list[CombinedStream] = []  # stopped: their symbols all left
        self._wanted = frozenset(self.symbols)
        # Symbols that left: a trade of theirs still in flight is dropped without a word.
        self._left: set[str] = set()
        self._last_id: dict[str, int] = {}  # per symbol, the last trade id let through
        self._history = TradesClient(settings.binance_base_url,
                                     settings.http_connect_timeout_seconds,
                                     settings.http_read_timeout_seconds)
        self._down: set[str] = set()  # streams (by name) without a connection
        self._clock = clock
        self._bad_unlogged = 0
        self._bad_logged_at: float | None = None

    def _new_stream(self, symbols: list[str]) -> CombinedStream:
        return CombinedStream(self.base_url, symbols, self._inbox.put,
                              name=f"binance-ws-{next(self._numbers)}", **self._stream_options)

    @property
    def connections(self) -> int:
        return len(self._streams)

    @property
    def resume_keys(self) -> tuple[str, ...]:
        return self.symbols

    def update_symbols(self, symbols: tuple[str, ...]) -> None:
        """Carry the trades of these from now on: the symbols that left are unsubscribed
        where they are, the new ones subscribed where there is room, on new connections
        beyond it (SUBSCRIBE on open connections: the others are not interrupted)."""
        joined, left = changes(self.symbols, symbols)
        self.symbols = tuple(symbols)
        self._wanted = frozenset(symbols)
        self._left = (self._left | set(left)) - set(joined)
        for symbol in left:
            self._last_id.pop(symbol, None)  # back one day, it starts afresh
        gone, waiting = set(left), list(joined)
        kept = []
        for stream in self._streams:
            current = stream.symbols
            remove = [s for s in current if s in gone]
            room = self.per_connection - (len(current) - len(remove))
            add, waiting = waiting[:room], waiting[room:]
            if len(remove) == len(current) and not add:
                stream.stop()  # nothing left to carry
                self._retired.append(stream)
                self._down.discard(stream.name)
                continue
            if add or remove:
                stream.update(add, remove)
            kept.append(stream)
        new = [self._new_stream(group) for group in groups(waiting, self.per_connection)]
        self._streams = kept + new
        if self._started:
            for stream in new:
                stream.start()
        if self._started and (joined or left):
            log.info("trade streams: %d subscribed, %d unsubscribed, %d new connection%s; "
                     "%d symbols on %d connections", len(joined), len(left), len(new),
                     "" if len(new) == 1 else "s", len(self.symbols), len(self._streams))

    def resume(self, positions: dict[str, int]) -> None:
        """Go on after the last trade of each symbol Kafka holds (read back at start)."""
        self._last_id = {symbol: position for symbol, position in positions.items()
                         if symbol in self._wanted}
        if self._last_id:
            log.info("resuming after the last trades Kafka holds of %d of %d symbols; the "
                     "trades since are fetched from the trade history", len(self._last_id),
                     len(self.symbols))

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]:
        shown = ",".join(self.symbols) if len(self.symbols) <= 20 else \
            f"{len(self.symbols)} symbols"
        log.info("streaming the trades of %s from %s over %d connection%s", shown,
                 self.base_url, len(self._streams), "" if len(self._streams) == 1 else "s")
        self._started = True
        for stream in self._streams:
            stream.start()
        try:
            while not stop.is_set():
                yield self._take(block=True)
            self._stop_streams()
            yield self._take(block=False)  # what came before the connections closed
        finally:
            self._stop_streams()
            self._history.close()

    def _stop_streams(self) -> None:
        every = self._streams + self._retired
        for stream in every:
            stream.stop()
        for stream in every:
            stream.join(stream.open_timeout + 2 * CLOSE_TIMEOUT_SECONDS)

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
            tick = parse_trade(message, self._wanted | self._left if self._left
                               else self._wanted)
        except BadMessage as err:
            self._bad(str(err))
            return
        if tick.symbol not in self._wanted:
            return  # unsubscribed: sent before Binance took the UNSUBSCRIBE
        self.status.last_success_at = self.status.last_poll_at
        last = self._last_id.get(tick.symbol)
        if last is not None and tick.position <= last:
            return  # delivered by two connections
        filled: list[Tick] = []
        if last is not None and tick.position > last + 1:
            filled = self._fill(tick.symbol, last + 1, tick.position - 1)
        if last is not None:
            filled, tick = with_missed_counts(last, filled, tick)
        self._last_id[tick.symbol] = tick.position
        ticks += filled
        ticks.append(tick)

    def _fill(self, symbol: str, first: int, last: int) -> list[Tick]:
        """The trades `first`..`last` of a symbol from the REST trade history (the stream
        missed them); what cannot be had is logged and counted as missed."""
        wanted = min(last, first + MAX_GAP_TRADES - 1)
        filled: list[Tick] = []
        try:
            filled = list(self._history.trades(symbol, first, wanted))
        except BinanceError as err:
            self.status.errors["trade-history"] += 1
            self.status.last_error = (f"cannot fetch {symbol}'s trades {first}..{last} from "
                                      f"the trade history: {err}")
            log.warning("%s", self.status.last_error)
        missed = last - first + 1 - len(filled)
        if missed:
            self.status.errors["trades-missed"] += missed
            log.warning("%d trades of %s (ids %d..%d) are missed: not in the stream, not "
                        "fetched from the trade history", missed, symbol, first, last)
        if filled:
            self.status.errors["trades-filled"] += len(filled)
            log.info("filled a gap of %d trades of %s from the trade history", len(filled),
                     symbol)
        return filled

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
        url = shown_url(event.url)
        if event.kind == "connected":
            if event.name in self._down:
                log.info("connected again to %s", url)
            else:
                log.info("connected to %s", url)
            self._down.discard(event.name)
            if not self._down:
                self.status.state = State.OK
        elif event.kind == "replaced":
            log.info("replaced the connection to %s before its lifetime ended (%s)",
                     url, event.detail)
        elif event.kind == "renew-failed":
            self.status.errors["connection"] += 1
            log.warning("cannot open the connection to replace the one to %s before its "
                        "lifetime ends (%s); it goes on meanwhile; next try in %.1f s",
                        url, event.detail, event.retry_in)
        elif event.kind == "subscribe-failed":
            self.status.errors["subscribe"] += 1
            self.status.last_error = f"Binance refused a subscription on {url}: {event.detail}"
            log.warning("%s", self.status.last_error)
        elif event.kind == "dropped":
            self._fault("dropped", f"the connection to {url} dropped ({event.detail})",
                        event)
        else:
            restricted = event.status == RESTRICTED_LOCATION
            self._fault(
                "restricted-location" if restricted else "connection",
                f"cannot connect to Binance's trade stream at {url} ({event.detail})"
                + ("; Binance refuses this location: set BINANCE_WS_URL to "
                   "wss://data-stream.binance.vision, or use PRICE_SOURCE=replay or simulated"
                   if restricted else ""), event)

    def _fault(self, kind: str, message: str, event: StreamEvent) -> None:
        self._down.add(event.name)
        self.status.state = STATE_BY_FAULT.get(kind, State.BINANCE_UNREACHABLE)
        self.status.errors[kind] += 1
        self.status.last_error = message
        log.warning("%s; next try in %.1f s", message, event.retry_in)


def with_missed_counts(last_id: int, filled: list[Tick],
                       tick: Tick) -> tuple[list[Tick], Tick]:
    """The trades after trade `last_id` (those filled from the history, then the streamed
    one), each that follows a hole in the ids carrying its size in `missed_before`."""
    marked, previous = [], last_id
    for trade in (*filled, tick):
        if trade.position > previous + 1:
            trade = dataclasses.replace(trade, missed_before=trade.position - previous - 1)
        marked.append(trade)
        previous = trade.position
    return marked[:-1], marked[-1]
