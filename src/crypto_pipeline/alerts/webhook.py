"""Alerts to a Slack-compatible webhook (ALERT_WEBHOOK_URL), never in the pipeline's way.

`offer()` only puts the alert in a bounded queue; a daemon thread POSTs `{"text": ...}`
with connect and read timeouts and retries a failed delivery with backoff. An alert that
still fails after the last attempt, or finds the queue full (the receiver has been down
for long), is dropped, counted and logged. The URL carries the webhook's secret: it is
never logged, the receiver is called "the alert webhook".
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Mapping

import requests

from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.core.backoff import backoff_seconds

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
TIMEOUTS = (3.0, 5.0)  # connect, read (seconds)
ATTEMPTS = 4
RETRY_BACKOFF = {"base": 1.0, "cap": 30.0}


@dataclass(frozen=True)
class WebhookCounters:
    delivered: int = 0
    failed: int = 0  # gave up after the last attempt
    dropped: int = 0  # the queue was full


def slack_body(alert: Mapping[str, Any]) -> dict[str, str]:
    return {"text": f":rotating_light: {fmt.alert(alert)}"}


class AlertWebhook:
    def __init__(self, url: str, *, queue_size: int = QUEUE_SIZE,
                 timeouts: tuple[float, float] = TIMEOUTS, attempts: int = ATTEMPTS,
                 retry_backoff: Mapping[str, float] = RETRY_BACKOFF):
        self._url = url
        self._timeouts = timeouts
        self._attempts = attempts
        self._retry_backoff = dict(retry_backoff)
        self._queue: queue.Queue[Mapping[str, Any]] = queue.Queue(queue_size)
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    def offer(self, alert: Mapping[str, Any]) -> bool:
        """Queue an alert for delivery without waiting; False when it was dropped."""
        try:
            self._queue.put_nowait(alert)
            return True
        except queue.Full:
            self._count("dropped")
            log.warning("alert webhook queue full (%d waiting): dropped the alert %s",
                        self._queue.maxsize, fmt.alert(alert))
            return False

    def counters(self) -> WebhookCounters:
        with self._lock:
            return WebhookCounters(**self._counts)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the sender; alerts still queued are not delivered."""
        self._stopping.set()
        self._thread.join(timeout)
        self._session.close()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                alert = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._deliver(alert)

    def _deliver(self, alert: Mapping[str, Any]) -> None:
        for attempt in range(1, self._attempts + 1):
            problem = self._post(alert)
            if problem is None:
                self._count("delivered")
                return
            if attempt < self._attempts:
                delay = backoff_seconds(attempt, **self._retry_backoff)
                log.info("alert webhook: %s; retrying in %.1f s", problem, delay)
                if self._stopping.wait(delay):
                    return
        self._count("failed")
        log.warning("alert webhook: %s after %d attempts; dropped the alert %s", problem,
                    self._attempts, fmt.alert(alert))

    def _post(self, alert: Mapping[str, Any]) -> str | None:
        """None when the receiver took the alert, else what went wrong (URL left out)."""
        try:
            response = self._session.post(self._url, json=slack_body(alert),
                                           timeout=self._timeouts)
        except requests.exceptions.Timeout:
            return f"no answer within {self._timeouts[0]:g} s (connect) / " \
                   f"{self._timeouts[1]:g} s (read)"
        except requests.exceptions.RequestException as err:
            # requests' messages quote the URL; the exception's class says enough.
            return f"cannot reach it ({type(err).__name__})"
        if not response.ok:
            return f"HTTP {response.status_code}"
        return None
