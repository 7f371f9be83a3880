"""PRICE_SOURCE=binance-ws: every trade, over Binance's WebSocket trade streams, each once.

Trade ids are consecutive per symbol, so one number per symbol (the last trade id sent)
is all it takes to let each trade through once: a trade at or below it is one that two
connections both delivered (the 24-hour rollover); a trade above it by more than one
means trades were missed (a reconnect), and those are fetched from the REST trade
history before it goes on. After a restart the last ids come from Kafka
(`kafka_io.readback`), so trades missed while the producer was down are filled too.
Trades neither stream nor history had are counted on the first tick sent after them
(`missed_before`), so the Spark job knows which windows and candles lack trades.
"""

from __future__ import annotations

import dataclasses
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
    StreamEvent,
    combined_stream_urls,
    parse_trade,
)
from crypto_pipeline.core.schema import Tick
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import State
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
        self._last_id: dict[str, int] = {}  # per symbol, the last trade id let through
        self._history = TradesClient(settings.binance_base_url,
                                     settings.http_connect_timeout_seconds,
                                     settings.http_read_timeout_seconds)
        self._down: set[str] = set()  # URLs without a connection
        self._clock = clock
        self._bad_unlogged = 0
        self._bad_logged_at: float | None = None

    @property
    def resume_keys(self) -> tuple[str, ...]:
        return self.symbols

    def resume(self, positions: dict[str, int]) -> None:
        """Go on after the last trade of each symbol Kafka holds (read back at start)."""
        self._last_id = {symbol: position for symbol, position in positions.items()
                         if symbol in self._wanted}
        if self._last_id:
            log.info("resuming after the last trades Kafka holds of %d of %d symbols; the "
                     "trades since are fetched from the trade history", len(self._last_id),
                     len(self.symbols))

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
            self._history.close()

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
        if event.kind == "connected":
            if event.url in self._down:
                log.info("connected again to %s", event.url)
            else:
                log.info("connected to %s", event.url)
            self._down.discard(event.url)
            if not self._down:
                self.status.state = State.OK
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
