"""A local stand-in for Binance's WebSocket market streams that can be told to misbehave.

It speaks like the real combined-stream endpoint (see ../shared/notes/binance-api.md,
"WebSocket market streams"), so the producer's real WebSocket client is tested against it:

    GET /stream?streams=btcusdt@trade/ethusdt@trade     (lower case, at most 1,024 streams)

upgrades to a WebSocket that carries every trade of those symbols from then on, each as
{"stream":"btcusdt@trade","data":{"e":"trade","E":..,"s":"BTCUSDT","t":..,"p":"..",
"q":"..","T":..,"m":..,"M":true}}. On an open connection the client may send
{"method":"SUBSCRIBE"|"UNSUBSCRIBE","params":["xrpusdt@trade"],"id":7}, answered
{"result":null,"id":7} (or {"code":2,"msg":..,"id":7} for a bad request, 1,024 streams at
most); a client sending more than 5 messages a second is disconnected, and past 300
connection attempts in 5 minutes a handshake is refused with HTTP 429, as Binance does.
A market thread makes `trades_per_second` trades per symbol of `prices` that is TRADING
(0: only those `publish()` and `burst()` make), trade ids consecutive per symbol; every
connection subscribed to a symbol gets the same trades, as two connections to Binance
do. `list_symbol`, `halt` and `delist` change the listing while it runs.
The server pings every `ping_interval` seconds and drops a connection whose
pong does not come within `ping_timeout`, and closes a connection once it is `lifetime`
seconds old (Binance: 20 s, a minute, 24 h). `drop()` cuts every connection without a
closing handshake, `send_raw(text)` sends anything (garbage), `refuse(status)` answers
new handshakes with an HTTP error, `pause()` stops the market. Over plain HTTP on the same
port (`rest_url`) it answers Binance's trade history, `/api/v3/historicalTrades?symbol=&
fromId=&limit=` and `/api/v3/trades`, from the same trades (weight 25, counted in
X-MBX-USED-WEIGHT-1M), and `/api/v3/exchangeInfo` for its listing. Every connection is
recorded: its streams, the trades sent on it, pings sent and pongs received, and how it
ended (`record=False`: counts only, and only the newest `keep_trades` trades are kept,
for long runs).

In tests: the `fake_binance_ws` fixture. As a process (for end-to-end tests of the
producer's entry point), `fake_binance_ws_process()` or

    python tests/fake_binance_ws.py --port 8766   # prints its URL, serves until SIGTERM

and, from outside, `GET /fake/drop`, `GET /fake/send?text=...`, `GET /fake/connections`,
`GET /fake/pause`, `GET /fake/trades` (every trade made), `GET /fake/list?symbol=&price=`,
`GET /fake/halt?symbol=`, `GET /fake/delist?symbol=`, `GET /fake/burst?trades=50000`,
`GET /fake/stats` (trades made and sent).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve

from support.fake_binance import (
    DEFAULT_PRICES,
    ApiError,
    Listed,
    exchange_info,
    market,
    split_symbol,
    usdt_market,
)
from support.stand_ins import serve_until_signalled, stand_in_process

log = logging.getLogger("fake_binance_ws")

MAX_STREAMS = 1024
STREAM_RE = re.compile(r"^[a-z0-9]{2,20}@trade$")
FIRST_TRADE_ID = 5_000_000_000  # beyond 32 bits, as Binance's ids are
# How often a connection's thread looks at the clock (lifetime) when no trade comes.
IDLE_SECONDS = 0.05
TRADES_WEIGHT = 25
EXCHANGE_INFO_WEIGHT = 20
MESSAGES_PER_SECOND = 5
CONNECTION_ATTEMPTS, CONNECTION_ATTEMPTS_SECONDS = 300, 300.0


@dataclass
class ServedConnection:
    number: int
    streams: tuple[str, ...]  # those of its URL, then as subscribed and unsubscribed
    opened: float  # time.monotonic()
    ended: float | None = None
    end: str | None = None  # client closed, lifetime, dropped, no pong, server stopped,
    #                         too many messages
    pings: int = 0
    pongs: int = 0
    sent: list[tuple[str, int]] = field(default_factory=list)  # (symbol, trade id)
    sent_count: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)  # SUBSCRIBE ... received
    outbox: list[str] = field(default_factory=list, repr=False)
    drop_requested: bool = field(default=False, repr=False)
    received_at: list[float] = field(default_factory=list, repr=False)

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(stream.split("@")[0].upper() for stream in self.streams)

    def summary(self) -> dict[str, Any]:
        return {"number": self.number, "streams": list(self.streams), "end": self.end,
                "pings": self.pings, "pongs": self.pongs, "trades_sent": self.sent_count,
                "requests": self.requests}


def streams_of(path: str) -> tuple[str, ...]:
    """The streams a combined-stream request asks for; ValueError says what is wrong with
    them, LookupError that the path is not /stream."""
    url = urlsplit(path)
    if url.path != "/stream":
        raise LookupError(url.path)
    raw = parse_qs(url.query).get("streams", [""])[-1]
    streams = tuple(raw.split("/")) if raw else ()
    if not streams:
        raise ValueError("no streams")
    bad = [s for s in streams if not STREAM_RE.match(s)]
    if bad:
        raise ValueError(f"invalid stream name {bad[0]!r} (lower-case <symbol>@trade)")
    if len(streams) > MAX_STREAMS:
        raise ValueError(f"{len(streams)} streams; at most {MAX_STREAMS} per connection")
    return streams


class FakeBinanceWs:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 prices: dict[str, float] | None = None, trades_per_second: float = 20.0,
                 ping_interval: float | None = 20.0, ping_timeout: float = 60.0,
                 lifetime: float | None = None, seed: int = 7,
                 statuses: dict[str, str] | None = None, record: bool = True,
                 keep_trades: int = 1_000_000,
                 connection_attempts: int = CONNECTION_ATTEMPTS):
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self.listing = {symbol: Listed((statuses or {}).get(symbol, "TRADING"),
                                       *split_symbol(symbol)) for symbol in self.prices}
        self.trades_per_second = trades_per_second
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.lifetime = lifetime
        self.record = record
        self.keep_trades = keep_trades
        self.connection_attempts = connection_attempts
        self.attempts: list[float] = []  # monotonic times of handshakes
        self.refused_attempts = 0  # handshakes refused past the attempt limit
        self.trades: list[dict[str, Any]] = []
        self._trimmed = 0  # trades made before trades[0] (no longer kept)
        self._texts: list[str] = []  # each trade as a combined-stream message
        self.made = 0
        self.connections: list[ServedConnection] = []
        self._next_id = {symbol: FIRST_TRADE_ID for symbol in self.prices}
        self._refusal: int | None = None
        self.history_refusal: int | None = None  # answer the trade history with this status
        self.history_requests: list[tuple[str, int | None, int]] = []  # symbol, fromId, rows
        self._weights: dict[int, int] = {}
        self._paused = threading.Event()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        # The library's own keepalive is off: this server pings itself, to count pongs.
        self._server: Server = serve(self._serve, host, port, process_request=self._request,
                                     ping_interval=None, close_timeout=1.0)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    @property
    def rest_url(self) -> str:
        """The same server as Binance's REST base URL: its trade history."""
        return self.url.replace("ws://", "http://", 1)

    def start(self) -> "FakeBinanceWs":
        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True,
                                          name="fake-binance-ws")]
        if self.trades_per_second:
            self._threads.append(threading.Thread(target=self._market, daemon=True,
                                                  name="fake-binance-ws-market"))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        with self._changed:
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self.open_connections(), timeout=5)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> "FakeBinanceWs":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests do -------------------------------------------------------------------

    def publish(self, symbol: str, price: float | None = None,
                quantity: float | None = None) -> dict[str, Any]:
        """Make one trade now (sent to every connection subscribed to its symbol); its
        price moves a little from the last one unless given."""
        with self._changed:
            return self._publish(symbol, price, quantity)

    def _publish(self, symbol: str, price: float | None,
                 quantity: float | None) -> dict[str, Any]:
        """Caller holds the lock."""
        if price is None:
            price = self.prices[symbol] * (1 + self._rng.gauss(0, 0.0002))
        self.prices[symbol] = price
        trade_id = self._next_id.setdefault(symbol, FIRST_TRADE_ID)
        self._next_id[symbol] = trade_id + 1
        now = int(time.time() * 1000)
        trade = {"e": "trade", "E": now, "s": symbol, "t": trade_id, "p": f"{price:.8f}",
                 "q": f"{quantity or self._rng.uniform(0.0001, 2):.8f}", "T": now,
                 "m": self._rng.random() < 0.5, "M": True}
        self.trades.append(trade)
        self._texts.append(json.dumps({"stream": f"{symbol.lower()}@trade", "data": trade},
                                      separators=(",", ":")))
        self.made += 1
        if len(self.trades) > self.keep_trades:
            cut = len(self.trades) // 2
            del self.trades[:cut], self._texts[:cut]
            self._trimmed += cut
        self._changed.notify_all()
        return trade

    def burst(self, trades: int) -> None:
        """Make `trades` trades now, round robin over the trading symbols."""
        symbols = self.trading()
        with self._changed:
            for number in range(trades):
                self._publish(symbols[number % len(symbols)], None, None)

    # --- the listing -----------------------------------------------------------------------

    def list_symbol(self, symbol: str, price: float, status: str = "TRADING") -> None:
        """List a symbol (a new listing, or one back): trades of it begin."""
        with self._changed:
            self.prices[symbol] = price
            self.listing[symbol] = Listed(status, *split_symbol(symbol))

    def halt(self, symbol: str) -> None:
        """No more trades of it, and exchangeInfo says HALT."""
        with self._changed:
            self.listing[symbol].status = "HALT"

    def delist(self, symbol: str) -> None:
        with self._changed:
            self.listing[symbol].status = "BREAK"

    def trading(self) -> list[str]:
        with self._lock:
            return [s for s, listed in self.listing.items() if listed.status == "TRADING"]

    def drop(self) -> None:
        """Cut every open connection as a network failure would: no closing handshake."""
        with self._changed:
            for connection in self.open_connections():
                connection.drop_requested = True
            self._changed.notify_all()

    def send_raw(self, text: str) -> None:
        """Send `text` as it is on every open connection, before any trade made after."""
        with self._changed:
            for connection in self.open_connections():
                connection.outbox.append(text)
            self._changed.notify_all()

    def refuse(self, status: int | None) -> None:
        """Answer new handshakes with this HTTP status (451: a restricted location);
        None: accept them again."""
        with self._lock:
            self._refusal = status

    def open_connections(self) -> list[ServedConnection]:
        return [c for c in self.connections if c.end is None]

    def trades_since(self, cursor: int) -> tuple[list[str], list[dict[str, Any]], int]:
        """Caller holds the lock: the trades made since the `cursor`-th (texts, trades)
        and the new cursor; those no longer kept are skipped."""
        start = max(0, cursor - self._trimmed)
        return self._texts[start:], self.trades[start:], self._trimmed + len(self.trades)

    def sent_trades(self) -> list[tuple[str, int]]:
        """(symbol, trade id) of every trade sent on any connection, each once."""
        with self._lock:
            return sorted({trade for c in self.connections for trade in c.sent})

    # --- serving -------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop the market: no trade is made after this returns."""
        with self._lock:
            self._paused.set()

    def _market(self) -> None:
        interval = 1 / self.trades_per_second
        due = time.monotonic()
        while not self._stopping.wait(max(0.0, due - time.monotonic())):
            with self._changed:
                if self._paused.is_set():
                    return
                for symbol, listed in list(self.listing.items()):
                    if listed.status == "TRADING":
                        self._publish(symbol, None, None)
            due += interval

    def _request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path.startswith("/fake/"):
            return self._control(connection, url.path, parse_qs(url.query))
        if url.path.startswith("/api/"):
            return self._rest(connection, url.path, parse_qs(url.query))
        with self._lock:
            refusal = self._refusal
            now = time.monotonic()
            self.attempts = [t for t in self.attempts if t > now - CONNECTION_ATTEMPTS_SECONDS]
            self.attempts.append(now)
            too_many = len(self.attempts) > self.connection_attempts
            self.refused_attempts += too_many
        if refusal is not None:
            return connection.respond(refusal, f"refused with HTTP {refusal}\n")
        if too_many:
            return connection.respond(429, "too many connection attempts\n")
        try:
            streams_of(request.path)
        except LookupError:
            return connection.respond(404, "not found\n")
        except ValueError as err:
            return connection.respond(400, f"{err}\n")
        return None

    def _rest(self, connection: ServerConnection, path: str,
              params: dict[str, list[str]]) -> Response:
        """Binance's trade history from the same trades the streams carry: historicalTrades
        (fromId) and trades (the newest), weight 25 each, counted per minute."""
        if path == "/api/v3/exchangeInfo":
            with self._lock:
                weight = self._count_weight(EXCHANGE_INFO_WEIGHT)
                listing = {s: Listed(x.status, x.base, x.quote) for s, x in self.listing.items()}
            try:
                answer = exchange_info(listing, {k: v[-1] for k, v in params.items()})
            except ApiError as err:
                return self._json(connection, err.status, err.body, weight)
            return self._json(connection, 200, answer, weight)
        if path not in ("/api/v3/historicalTrades", "/api/v3/trades"):
            return self._json(connection, 404, {"code": -1, "msg": "not found"})
        with self._lock:
            weight = self._count_weight(TRADES_WEIGHT)
            refusal = self.history_refusal
        if refusal is not None:
            return self._json(connection, refusal, {"code": -2014, "msg": "API-key format "
                              "invalid."}, weight)
        symbol = params.get("symbol", [""])[-1]
        try:
            limit = min(int(params.get("limit", ["500"])[-1]), 1000)
            from_id = int(params["fromId"][-1]) if "fromId" in params else None
        except ValueError:
            return self._json(connection, 400, {"code": -1100, "msg": "Illegal characters "
                              "found in a parameter."}, weight)
        with self._lock:
            trades = [trade for trade in self.trades if trade["s"] == symbol]
        if not trades and symbol not in self.prices:
            return self._json(connection, 400, {"code": -1121, "msg": "Invalid symbol."},
                              weight)
        if from_id is None:
            chosen = trades[-limit:]
        else:
            chosen = [trade for trade in trades if trade["t"] >= from_id][:limit]
        rows = [{"id": trade["t"], "price": trade["p"], "qty": trade["q"],
                 "quoteQty": f"{float(trade['p']) * float(trade['q']):.8f}",
                 "time": trade["T"], "isBuyerMaker": trade["m"], "isBestMatch": True}
                for trade in chosen]
        with self._lock:
            self.history_requests.append((symbol, from_id, len(rows)))
        return self._json(connection, 200, rows, weight)

    def _count_weight(self, weight: int) -> int:
        """Caller holds the lock: the request weight used this minute, this one included."""
        minute = int(time.time() // 60)
        self._weights = {minute: self._weights.get(minute, 0) + weight}
        return self._weights[minute]

    @staticmethod
    def _json(connection: ServerConnection, status: int, payload: Any,
              used_weight: int | None = None) -> Response:
        response = connection.respond(status, json.dumps(payload))
        response.headers["Content-Type"] = "application/json;charset=UTF-8"
        if used_weight is not None:
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(used_weight)
        return response

    def _control(self, connection: ServerConnection, path: str,
                 params: dict[str, list[str]]) -> Response:
        if path == "/fake/drop":
            self.drop()
        elif path == "/fake/send" and "text" in params:
            self.send_raw(params["text"][-1])
        elif path == "/fake/pause":
            self.pause()
        elif path == "/fake/list" and "symbol" in params:
            self.list_symbol(params["symbol"][-1], float(params.get("price", ["1.0"])[-1]))
        elif path == "/fake/halt" and "symbol" in params:
            self.halt(params["symbol"][-1])
        elif path == "/fake/delist" and "symbol" in params:
            self.delist(params["symbol"][-1])
        elif path == "/fake/burst" and "trades" in params:
            self.burst(int(params["trades"][-1]))
        elif path == "/fake/stats":
            with self._lock:
                return self._json(connection, 200, {
                    "made": self.made, "connections": len(self.connections),
                    "open": len(self.open_connections()),
                    "sent": sum(c.sent_count for c in self.connections),
                    "refused_attempts": self.refused_attempts})
        elif path == "/fake/trades":
            with self._lock:
                return self._json(connection, 200, self.trades)
        elif path == "/fake/connections":
            with self._lock:
                return connection.respond(200, json.dumps(
                    [c.summary() for c in self.connections]))
        else:
            return connection.respond(404, "not found\n")
        return connection.respond(200, "ok\n")

    def _end(self, connection: ServedConnection, how: str) -> None:
        with self._changed:
            if connection.end is None:
                connection.end, connection.ended = how, time.monotonic()
            self._changed.notify_all()

    def _serve(self, ws: ServerConnection) -> None:
        with self._changed:
            connection = ServedConnection(len(self.connections) + 1,
                                          streams_of(ws.request.path), time.monotonic())
            self.connections.append(connection)
            cursor = self._trimmed + len(self.trades)  # it starts with the next trade
        log.info("connection %d opened: %s", connection.number, ",".join(connection.streams))
        if self.ping_interval:
            threading.Thread(target=self._keepalive, args=(ws, connection), daemon=True,
                             name=f"fake-binance-ws-ping-{connection.number}").start()
        try:
            while connection.end is None:
                with self._changed:
                    self._changed.wait_for(lambda: self._trimmed + len(self.trades) > cursor or
                                           connection.outbox or connection.drop_requested or
                                           connection.end or self._stopping.is_set(),
                                           timeout=IDLE_SECONDS)
                    texts, trades, cursor = self.trades_since(cursor)
                    outbox, connection.outbox = connection.outbox, []
                self._receive(ws, connection)
                if connection.end is not None:
                    ws.close(CloseCode.POLICY_VIOLATION, connection.end)
                elif ws.state is State.CLOSED:  # first: a client that closed before a stop
                    self._end(connection, "client closed")
                elif self._stopping.is_set():
                    self._end(connection, "server stopped")
                    ws.close(CloseCode.GOING_AWAY)
                elif connection.drop_requested:
                    self._end(connection, "dropped")
                    ws.socket.shutdown(socket.SHUT_RDWR)
                elif self.lifetime is not None and \
                        time.monotonic() - connection.opened >= self.lifetime:
                    self._end(connection, "lifetime")
                    ws.close(CloseCode.NORMAL_CLOSURE, "connection lifetime reached")
                else:
                    for text in outbox:
                        ws.send(text)
                    symbols = connection.symbols
                    for text, trade in zip(texts, trades):
                        if trade["s"] in symbols:
                            ws.send(text)
                            connection.sent_count += 1
                            if self.record:
                                connection.sent.append((trade["s"], trade["t"]))
        except ConnectionClosed:
            self._end(connection, "client closed")
        except OSError as err:
            self._end(connection, f"socket error: {err}")
        log.info("connection %d ended: %s", connection.number, connection.end)

    def _receive(self, ws: ServerConnection, connection: ServedConnection) -> None:
        """Answer what the client sent (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS); more
        than MESSAGES_PER_SECOND in a second ends the connection, as Binance does."""
        while connection.end is None:
            try:
                text = ws.recv(timeout=0)
            except TimeoutError:
                return
            now = time.monotonic()
            connection.received_at = [t for t in connection.received_at if t > now - 1] + [now]
            if len(connection.received_at) > MESSAGES_PER_SECOND:
                self._end(connection, "too many messages")
                return
            ws.send(json.dumps(self._request_answer(connection, text)))

    def _request_answer(self, connection: ServedConnection, text: str | bytes) -> dict:
        try:
            request = json.loads(text)
            method, request_id = request["method"], request["id"]
            params = request.get("params", [])
        except (ValueError, TypeError, KeyError):
            return {"code": 3, "msg": "Invalid JSON: expected a method and an id", "id": None}
        with self._changed:
            connection.requests.append(request)
            if method == "LIST_SUBSCRIPTIONS":
                return {"result": list(connection.streams), "id": request_id}
            bad = [p for p in params if not isinstance(p, str) or not STREAM_RE.match(p)]
            if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or bad or not params:
                return {"code": 2, "msg": f"Invalid request: {method} {bad[:1] or params}",
                        "id": request_id}
            if method == "SUBSCRIBE":
                streams = tuple(dict.fromkeys(connection.streams + tuple(params)))
                if len(streams) > MAX_STREAMS:
                    return {"code": 2, "msg": f"Invalid request: {len(streams)} streams; at "
                            f"most {MAX_STREAMS} per connection", "id": request_id}
            else:
                streams = tuple(s for s in connection.streams if s not in params)
            connection.streams = streams
        return {"result": None, "id": request_id}

    def _keepalive(self, ws: ServerConnection, connection: ServedConnection) -> None:
        """Binance's rule: a ping every `ping_interval`, and a connection whose pong does not
        come within `ping_timeout` is dropped."""
        while not self._stopping.wait(self.ping_interval) and connection.end is None:
            try:
                pong = ws.ping()
            except ConnectionClosed:
                return
            connection.pings += 1
            if pong.wait(self.ping_timeout):
                connection.pongs += 1
                continue
            if connection.end is None:
                self._end(connection, "no pong")
                ws.close(CloseCode.POLICY_VIOLATION, "pong timeout")
            return


def fake_binance_ws_process(*options: str):
    """The stand-in as a process of its own, and its URL (see stand_ins.stand_in_process);
    `options` are its command-line options (--trades-per-second 5 ...)."""
    return stand_in_process(__name__, *options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--trades-per-second", type=float, default=5.0,
                        help="trades per symbol and second")
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--ping-timeout", type=float, default=60.0)
    parser.add_argument("--lifetime", type=float, default=24 * 3600.0,
                        help="seconds after which a connection is closed")
    parser.add_argument("--market", type=int, default=0, metavar="N",
                        help="list N more symbols, as fake_binance.market(N) makes them")
    parser.add_argument("--usdt", type=int, default=0, metavar="N",
                        help="a market with exactly N USDT pairs TRADING")
    parser.add_argument("--no-record", action="store_true",
                        help="count the trades sent instead of keeping each (long runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prices, statuses = usdt_market(args.usdt) if args.usdt else market(args.market)
    serve_until_signalled(FakeBinanceWs(
        args.host, args.port, trades_per_second=args.trades_per_second,
        ping_interval=args.ping_interval, ping_timeout=args.ping_timeout, lifetime=args.lifetime,
        prices={**DEFAULT_PRICES, **prices}, statuses=statuses, record=not args.no_record,
        keep_trades=200_000 if args.no_record else 1_000_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
