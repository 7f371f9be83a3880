"""PRICE_SOURCE=binance-ws: every trade, over Binance's WebSocket trade streams."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Iterator

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
    RecentTrades,
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
