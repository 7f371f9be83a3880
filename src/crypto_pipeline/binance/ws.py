"""Binance's WebSocket trade streams as the producer reads them.

One combined-stream connection, `/stream?streams=btcusdt@trade/ethusdt@trade`, carries
the `<symbol>@trade` streams of up to 1,024 symbols; more symbols take more connections.
Every message is one trade wrapped as {"stream": ..., "data": {...}} and becomes a tick
(`parse_trade`), or a `BadMessage` that says why it is not one.

`CombinedStream` keeps one such connection up from a thread of its own: after a drop it
reconnects with backoff, and before Binance's 24-hour limit ends a connection it opens
the replacement and reads both for a while, so no trade falls between them. The trades
both deliver are told apart by trade id, by the source. The websockets library answers
the server's pings and sends its own, so a dead connection is noticed too.

Its symbols can change while it runs (`update`): Binance's SUBSCRIBE and UNSUBSCRIBE
messages change what an open connection carries, so the streams that stay are never
interrupted, and every later connection (a reconnect, the rollover) asks for the current
set in its URL. All streams of a source share one `ConnectionAttempts`: Binance allows
300 connection attempts per 5 minutes per IP.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Container, Sequence

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.schema import Tick

log = logging.getLogger(__name__)

SOURCE = "binance-ws"
MAX_STREAMS_PER_CONNECTION = 1024
# Streams named in a connection's URL; the rest are subscribed once it is open. 1,024
# stream names make a URL of some 16 KB, more than HTTP servers take in a request line.
URL_STREAMS = 200
# Binance ends a connection at 24 h. The replacement opens RENEW_BEFORE earlier (time to
# retry if it fails), then both are read for OVERLAP before the old one is closed.
CONNECTION_LIFETIME_SECONDS = 24 * 3600.0
RENEW_BEFORE_SECONDS = 600.0
OVERLAP_SECONDS = 30.0
RECONNECT_BACKOFF = {"base": 0.5, "cap": 60.0}
CLOSE_TIMEOUT_SECONDS = 2.0
RESTRICTED_LOCATION = 451
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Binance: at most this many connection attempts per IP in any such span.
CONNECTION_ATTEMPTS, CONNECTION_ATTEMPTS_SECONDS = 300, 300.0
# A URL longer than this is shown in logs by its first streams and a count.
SHOWN_URL_CHARS = 200
SHOWN_STREAMS = 3


class BadMessage(ValueError):
    """A message that is not a trade of a subscribed symbol; the text says what is wrong."""


def stream_name(symbol: str) -> str:
    return f"{symbol.lower()}@trade"


def combined_stream_url(base_url: str, symbols: Sequence[str]) -> str:
    return f"{base_url.rstrip('/')}/stream?streams=" + "/".join(map(stream_name, symbols))


def groups(symbols: Sequence[str], per_connection: int) -> list[list[str]]:
    return [list(symbols[i:i + per_connection])
            for i in range(0, len(symbols), per_connection)]


def combined_stream_urls(base_url: str, symbols: Sequence[str],
                         per_connection: int = MAX_STREAMS_PER_CONNECTION) -> list[str]:
    """The combined-stream URLs that carry the trades of `symbols`, at most
    `per_connection` streams each."""
    return [combined_stream_url(base_url, group) for group in groups(symbols, per_connection)]


def shown_url(url: str) -> str:
    """A URL fit for a log line: one of a thousand streams is 15 kB long."""
    if len(url) <= SHOWN_URL_CHARS:
        return url
    base, _, streams = url.partition("?streams=")
    names = streams.split("/")
    return (f"{base}?streams={'/'.join(names[:SHOWN_STREAMS])}/... "
            f"({len(names)} streams)")


def control_message(method: str, symbols: Sequence[str], request_id: int) -> str:
    """Binance's SUBSCRIBE / UNSUBSCRIBE of trade streams on an open connection."""
    return json.dumps({"method": method, "params": [stream_name(s) for s in symbols],
                       "id": request_id}, separators=(",", ":"))


def control_answer(message: str | bytes, pending: Container[int]) -> dict[str, Any] | None:
    """The answer to a SUBSCRIBE / UNSUBSCRIBE this client sent (`{"result":null,"id":3}`,
    or `{"code":..,"msg":..,"id":3}`), or None for anything else (a trade goes on)."""
    if message[:10] in ('{"stream":', b'{"stream":'):
        return None
    try:
        answer = json.loads(message)
    except ValueError:
        return None
    if isinstance(answer, dict) and answer.get("id") in pending and "stream" not in answer:
        return answer
    return None


class ConnectionAttempts:
    """At most `limit` connection attempts in any `period` seconds, for every stream of
    a source together (Binance counts them per IP); thread-safe."""

    def __init__(self, limit: int = CONNECTION_ATTEMPTS,
                 period: float = CONNECTION_ATTEMPTS_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._times: deque[float] = deque()
        self.waits = 0  # attempts that had to wait for the limit

    def _wait_seconds(self) -> float:
        """Caller holds the lock: 0 (and the attempt is counted), or how long to wait."""
        now = self._clock()
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()
        if len(self._times) < self.limit:
            self._times.append(now)
            return 0.0
        return self._times[0] + self.period - now

    def acquire(self, stop: threading.Event) -> bool:
        """Block until an attempt is allowed (True) or `stop` is set (False)."""
        waited = False
        while not stop.is_set():
            with self._lock:
                wait = self._wait_seconds()
            if not wait:
                return True
            if not waited:
                waited = True
                self.waits += 1
                log.info("%d connection attempts in %.0f s: the next waits %.1f s (Binance's "
                         "limit)", self.limit, self.period, wait)
            stop.wait(wait)
        return False


def _preview(message: str | bytes) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def whole_field(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadMessage(f"{key} is not a whole number >= 0: {value!r}")
    return value


def decimal_field(data: dict[str, Any], key: str) -> float:
    """A decimal Binance sends as a string, finite and > 0."""
    value = data.get(key)
    try:
        number = float(value) if isinstance(value, str) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise BadMessage(f"{key} is not a decimal string > 0: {value!r}")
    return number


def parse_trade(message: str | bytes, symbols: Container[str]) -> Tick:
    """The tick of one combined-stream trade message: event time = trade time `T`, price
    `p`, quantity `q`, event id = trade id `t`. BadMessage when it is not such a trade of
    one of `symbols`."""
    try:
        wrapper = json.loads(message)
    except ValueError:
        raise BadMessage(f"not JSON: {_preview(message)}") from None
    data = wrapper.get("data") if isinstance(wrapper, dict) else None
    if not isinstance(data, dict):
        raise BadMessage(f"not a combined-stream message: {_preview(message)}")
    if data.get("e") != "trade":
        raise BadMessage(f"not a trade (e={data.get('e')!r}): {_preview(message)}")
    symbol = data.get("s")
    if symbol not in symbols:
        raise BadMessage(f"trade of a symbol not subscribed: {symbol!r}")
    if wrapper.get("stream") != stream_name(symbol):
        raise BadMessage(f"{symbol} trade on stream {wrapper.get('stream')!r}")
    return trade_tick(symbol, whole_field(data, "t"), decimal_field(data, "p"),
                      decimal_field(data, "q"), whole_field(data, "T"))


def trade_tick(symbol: str, trade_id: int, price: float, quantity: float,
               time_ms: int) -> Tick:
    """A trade as a tick, from the stream or from the trade history alike: event time =
    trade time, event id and position = trade id (consecutive per symbol)."""
    return Tick(symbol, price, EPOCH + timedelta(milliseconds=time_ms), SOURCE,
                quantity=quantity, event_id=str(trade_id), position=trade_id)


@dataclass(frozen=True)
class StreamEvent:
    """What happened to a CombinedStream's connection, for the source's status and log.

    kind: connected (also after a drop or failure), replaced (a lifetime rollover),
    dropped (ended without being asked to), failed (could not connect) or renew-failed
    (could not open the replacement; the connection it was to replace goes on)."""

    kind: str
    url: str
    detail: str = ""
    retry_in: float | None = None
    status: int | None = None  # the HTTP status that refused the handshake
    name: str = ""  # the CombinedStream's: its URL changes with its symbols


@dataclass(eq=False)
class _Link:
    """One open connection and the thread that reads it."""

    ws: ClientConnection
    opened_at: float
    symbols: set[str]  # what it carries: its URL's, then as subscribed
    ended: threading.Event = field(default_factory=threading.Event)
    received: bool = False
    reason: str = ""
    reader: threading.Thread | None = None


class CombinedStream:
    """The trade streams of some symbols kept connected in a thread: every message it
    brings and every StreamEvent goes to `emit`, from this object's threads."""

    def __init__(self, base_url: str, symbols: Sequence[str], emit: Callable[[Any], None], *,
                 open_timeout: float, attempts: ConnectionAttempts | None = None,
                 lifetime: float = CONNECTION_LIFETIME_SECONDS,
                 renew_before: float = RENEW_BEFORE_SECONDS, overlap: float = OVERLAP_SECONDS,
                 clock: Callable[[], float] = time.monotonic, name: str = "binance-ws"):
        if not 0 < overlap < renew_before < lifetime:
            raise ValueError("expected 0 < overlap < renew_before < lifetime")
        self.base_url = base_url
        self._symbols = list(symbols)
        self.attempts = attempts or ConnectionAttempts()
        self.open_timeout = open_timeout
        self.lifetime = lifetime
        self.renew_before = renew_before
        self.overlap = overlap
        self.name = name
        self._emit = emit
        self._clock = clock
        self._stop = threading.Event()
        # Set whenever there is something to look at: a connection ended, or stop().
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()  # the symbols, the open links, the requests sent
        self._links: list[_Link] = []
        self._request_ids = itertools.count(1)
        self._pending: set[int] = set()

    @property
    def symbols(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._symbols)

    @property
    def url(self) -> str:
        """The URL a new connection opens: the first URL_STREAMS current symbols."""
        return combined_stream_url(self.base_url, self.symbols[:URL_STREAMS])

    def update(self, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Carry these symbols from now on: open connections subscribe and unsubscribe
        (the other streams go on undisturbed), later ones ask for them in their URL."""
        gone = set(remove)
        with self._lock:
            kept = [s for s in self._symbols if s not in gone]
            self._symbols = kept + [s for s in dict.fromkeys(add) if s not in kept]
            links = list(self._links)
        for link in links:
            self._reconcile(link)

    def _reconcile(self, link: _Link) -> None:
        """Bring what an open connection carries to the current symbols."""
        with self._lock:
            wanted = set(self._symbols)
            messages = []
            for method, symbols in (("UNSUBSCRIBE", sorted(link.symbols - wanted)),
                                    ("SUBSCRIBE", [s for s in self._symbols
                                                   if s not in link.symbols])):
                if symbols:
                    request_id = next(self._request_ids)
                    self._pending.add(request_id)
                    messages.append(control_message(method, symbols, request_id))
            link.symbols = wanted
        for text in messages:
            try:
                link.ws.send(text)
            except ConnectionClosed:
                return  # the next connection asks for the current symbols in its URL

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    # --- inside --------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0  # in a row: drops and failed attempts since a connection brought data
        link: _Link | None = None
        try:
            while not self._stop.is_set():
                if link is None:
                    link = self._connect(failures + 1)
                    failures = 0 if link else failures + 1
                    continue
                self._wait(link.opened_at + self.lifetime - self.renew_before - self._clock(),
                           link)
                if self._stop.is_set():
                    break
                if link.ended.is_set():
                    failures = 1 if link.received else failures + 1
                    delay = backoff_seconds(failures, **RECONNECT_BACKOFF)
                    self._emit(StreamEvent("dropped", self.url, link.reason, delay,
                                           name=self.name))
                    self._forget(link)
                    self._wait(delay)
                    link = None
                    continue
                replacement = self._connect(failures + 1, replacing=link)
                if replacement is None:
                    failures += 1
                elif self._switch(link, replacement) is replacement:
                    link, failures = replacement, 0
                else:
                    failures += 1
                    self._wait(backoff_seconds(failures, **RECONNECT_BACKOFF), link)
        finally:
            if link is not None:
                self._close(link)

    def _connect(self, attempt: int, replacing: _Link | None = None) -> _Link | None:
        """A new open connection; None after a failure, reported and waited for (while
        the connection it was to replace still runs)."""
        if not self.attempts.acquire(self._stop):
            return None
        in_url = self.symbols[:URL_STREAMS]
        url = combined_stream_url(self.base_url, in_url)
        try:
            ws = connect(url, open_timeout=self.open_timeout,
                         close_timeout=CLOSE_TIMEOUT_SECONDS,
                         user_agent_header="crypto-pipeline-producer")
        except (OSError, InvalidHandshake) as err:
            delay = backoff_seconds(attempt, **RECONNECT_BACKOFF)
            status = err.response.status_code if isinstance(err, InvalidStatus) else None
            self._emit(StreamEvent("failed" if replacing is None else "renew-failed",
                                   url, one_line(err, named=True), delay, status, self.name))
            self._wait(delay, replacing)
            return None
        link = _Link(ws, self._clock(), set(in_url))
        link.reader = threading.Thread(target=self._read, args=(link,), daemon=True,
                                       name=f"{self.name}-reader")
        with self._lock:
            self._links.append(link)
        link.reader.start()
        self._reconcile(link)  # those beyond the URL, and changes while it connected
        if replacing is None:
            self._emit(StreamEvent("connected", url, name=self.name))
        return link

    def _read(self, link: _Link) -> None:
        try:
            for message in link.ws:
                answer = control_answer(message, self._pending) if self._pending else None
                if answer is not None:
                    self._answered(answer)
                    continue
                link.received = True
                self._emit(message)
            link.reason = f"closed by the server (code {link.ws.close_code}" + (
                f", {link.ws.close_reason})" if link.ws.close_reason else ")")
        except ConnectionClosed as err:
            link.reason = one_line(err, named=True)
        finally:
            link.ended.set()
            self._wake.set()

    def _answered(self, answer: dict[str, Any]) -> None:
        with self._lock:
            self._pending.discard(answer["id"])
        if "code" in answer or "error" in answer:
            self._emit(StreamEvent("subscribe-failed", self.url,
                                   str(answer.get("msg") or answer.get("error")),
                                   name=self.name))

    def _switch(self, old: _Link, new: _Link) -> _Link:
        """Read both for `overlap` seconds, then close the old one and go on with the new
        one; if the new one ends meanwhile, go on with the old one."""
        self._wait(self.overlap, new)
        if new.ended.is_set() and not old.ended.is_set():
            self._close(new)
            return old
        age = self._clock() - old.opened_at
        self._close(old)
        self._emit(StreamEvent("replaced", self.url, f"the old connection closed at {age:.0f} s",
                               name=self.name))
        return new

    def _forget(self, link: _Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    def _close(self, link: _Link) -> None:
        self._forget(link)
        link.ws.close()
        if link.reader is not None:
            link.reader.join(CLOSE_TIMEOUT_SECONDS)

    def _wait(self, seconds: float, link: _Link | None = None) -> None:
        """Wait `seconds` at most; less on stop() or when `link` ends."""
        until = self._clock() + seconds
        while True:
            # Cleared before looking, so a wake-up that comes after the look is not lost.
            self._wake.clear()
            if self._stop.is_set() or (link is not None and link.ended.is_set()) or \
                    self._clock() >= until:
                return
            self._wake.wait(until - self._clock())
