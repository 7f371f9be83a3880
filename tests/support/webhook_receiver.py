"""A local stand-in for a Slack-compatible incoming webhook: records each POSTed JSON body;
can be told to answer 500 a number of times, or to hang until released."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    # A path like Slack's, whose last parts are the secret a URL must never leak.
    PATH = "/services/T000/B000/s3cr3t-token"

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.arrived = 0  # requests that came in, answered or not
        self.attempts = 0  # requests answered
        self.failures_left = 0
        self.release = threading.Event()
        self.release.set()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.PATH}"

    def fail(self, times: int) -> None:
        """Answer the next `times` requests with HTTP 500."""
        with self.lock:
            self.failures_left = times

    def hang(self) -> None:
        """Hold every request until `release.set()`."""
        self.release.clear()

    def received(self) -> list[Any]:
        with self.lock:
            return list(self.bodies)

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.lock:
                receiver.arrived += 1
            receiver.release.wait(30)
            with receiver.lock:
                receiver.attempts += 1
                failing = receiver.failures_left > 0
                receiver.failures_left -= failing
                if not failing and self.path == WebhookReceiver.PATH:
                    receiver.bodies.append(json.loads(body))
            status = 500 if failing else 200 if self.path == WebhookReceiver.PATH else 404
            answer = b"ok" if status == 200 else b"error"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting

    return Handler
