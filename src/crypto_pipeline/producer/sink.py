"""Ticks into INPUT_TOPIC: keyed by symbol, acks=all, idempotent, confirmed by callback.

`offer()` never blocks the source: ticks wait in a bounded buffer (PRODUCER_BUFFER_TICKS)
that a background thread hands to Kafka. While Kafka is unreachable the buffer holds
them; when it is full the oldest are dropped, counted and reported. Ticks handed to the
client and not yet confirmed are held apart from the buffer, bounded too. A tick counts
as sent only when the broker confirmed it; a retriable delivery failure puts it back in
the buffer, a permanent one is counted and logged with its reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from crypto_pipeline.core.addresses import any_accepts
from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.schema import Tick
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.clients import client_config
from crypto_pipeline.kafka_io.topics import ensure_topics

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_MS = 5000
REQUEST_TIMEOUT_MS = 10000
# Kafka retries a record itself until this passes; then it comes back to the buffer.
DELIVERY_TIMEOUT_MS = 30000
LINGER_MS = 20
# Unconfirmed for this long means the broker is away, even if the client has not said so.
STALL_SECONDS = 10.0
# The client fails a record itself once DELIVERY_TIMEOUT_MS has passed; a record neither
# confirmed nor failed long after that means the client is stuck (kafka-python has been
# seen to stop delivering for good after a broker restart): a new client takes over.
STUCK_SECONDS = DELIVERY_TIMEOUT_MS / 1000 + STALL_SECONDS
# Ticks handed to the Kafka client and not yet confirmed (at most the buffer's size too):
# bounds what an outage leaves inside the client, to be timed out and re-buffered.
MAX_IN_FLIGHT = 5000
RECONNECT_BACKOFF = {"base": 0.5, "cap": 5.0}


@dataclass(frozen=True)
class SinkCounters:
    sent: int
    failed: int
    dropped: int
    buffered: int
    reachable: bool
    errors: dict[str, int]
    last_error: str | None


def _new_producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(**client_config(settings), acks="all", enable_idempotence=True,
                         linger_ms=LINGER_MS, request_timeout_ms=REQUEST_TIMEOUT_MS,
                         delivery_timeout_ms=DELIVERY_TIMEOUT_MS, max_block_ms=CONNECT_TIMEOUT_MS,
                         bootstrap_timeout_ms=CONNECT_TIMEOUT_MS)


def _connect(settings: Settings) -> Any:
    """A producer, after making sure the topics exist with the pipeline's settings (a topic
    the broker auto-creates on first use would get its defaults instead)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**client_config(settings), bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        ensure_topics(settings, admin)
    finally:
        admin.close()
    return _new_producer(settings)


def connect_problem(settings: Settings, err: Exception) -> str:
    """Why connecting failed, in words a user can act on. kafka-python says only "Unable
    to bootstrap" when a broker refuses the SASL credentials; a broker that accepts TCP
    connections all the same points at them."""
    reason = one_line(err, named=True)
    if settings.kafka_security_protocol.startswith("SASL_") and \
            any_accepts(settings.kafka_bootstrap_servers):
        reason += (f" - the broker answers, so it probably refused the SASL credentials: "
                   f"check KAFKA_SASL_USERNAME ({settings.kafka_sasl_username}), "
                   f"KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM "
                   f"({settings.kafka_sasl_mechanism})")
    return reason


class KafkaTickSink:
    def __init__(self, settings: Settings, *, connect: Callable[[Settings], Any] = _connect,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.capacity = settings.producer_buffer_ticks
        self.where = f"Kafka at {settings.kafka_bootstrap_servers}"
        self._connect = connect
        self._clock = clock
        self._cond = threading.Condition()
        self._waiting: deque[Tick] = deque()
        self._in_flight: dict[int, tuple[Tick, float]] = {}  # oldest first
        self._sequence = 0
        self._sent = self._failed = self._dropped = 0
        self._dropped_in_outage = 0
        self._errors: Counter[str] = Counter()
        self._last_error: str | None = None
        self._reachable = True
        self._close_deadline: float | None = None
        self._producer: Any = None
        self._thread = threading.Thread(target=self._run, name="kafka-tick-sink", daemon=True)

    # --- what the source and the app call ----------------------------------------------

    def offer(self, ticks: Iterable[Tick]) -> None:
        """Accept ticks for delivery; never blocks. A full buffer drops its oldest ticks.
        The first offer starts the connection, so a producer that stops before it has a
        tick (a wrong symbol) never waits for Kafka."""
        with self._cond:
            if self._thread.ident is None:
                self._thread.start()
            for tick in ticks:
                if len(self._waiting) >= self.capacity:
                    self._waiting.popleft()
                    self._drop()
                self._waiting.append(tick)
            self._cond.notify_all()

    def wait_for_room(self, count: int, timeout: float) -> bool:
        """Wait until `count` more ticks fit without dropping any (or the buffer is empty)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._waiting or
                                       len(self._waiting) + count <= self.capacity, timeout)

    def counters(self) -> SinkCounters:
        with self._cond:
            return SinkCounters(self._sent, self._failed, self._dropped, self._held(),
                                self._reachable, dict(self._errors), self._last_error)

    def close(self, timeout: float) -> int:
        """Deliver what is buffered (waiting at most `timeout` seconds), close the producer;
        returns how many accepted ticks could not be delivered."""
        deadline = self._clock() + timeout
        with self._cond:
            self._close_deadline = deadline
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(max(0.0, deadline - self._clock()))
        producer = self._producer
        if producer is not None:
            from kafka.errors import KafkaError

            try:
                producer.close(timeout=max(0.0, deadline - self._clock()))
            except KafkaError as err:
                log.warning("%s did not confirm every tick before the producer closed (%s)",
                            self.where, one_line(err, named=True))
        with self._cond:
            return self._held()

    # --- inside ------------------------------------------------------------------------

    def _held(self) -> int:
        return len(self._waiting) + len(self._in_flight)

    def _drop(self) -> None:
        if not self._dropped_in_outage:
            log.warning("the buffer for %s is full (%d ticks, PRODUCER_BUFFER_TICKS): dropping "
                        "the oldest ticks until Kafka takes them again", self.where,
                        self.capacity)
        self._dropped += 1
        self._dropped_in_outage += 1

    def _unreachable(self, kind: str, reason: str) -> None:
        with self._cond:
            self._errors[kind] += 1
            self._last_error = f"{self.where} unreachable: {reason}"
            if self._reachable:
                self._reachable = False
                log.warning("%s; keeping new ticks in memory (%d waiting, at most %d, then the "
                            "oldest are dropped) and retrying", self._last_error,
                            len(self._waiting), self.capacity)

    def _check_reachable(self) -> None:
        """A broker that stops confirming is unreachable too, before the client says so."""
        with self._cond:
            stalled = self._reachable and self._oldest_in_flight_seconds() > STALL_SECONDS
        if stalled:
            self._unreachable("kafka-unreachable", f"no delivery confirmed for "
                              f"{STALL_SECONDS:.0f} s")

    def _recovered(self) -> None:
        """A recovery is logged once, with what the outage cost."""
        if self._reachable:
            return
        self._reachable = True
        dropped, self._dropped_in_outage = self._dropped_in_outage, 0
        log.info("%s reachable again: delivering %d buffered ticks%s", self.where, self._held(),
                 f"; {dropped} ticks were dropped (oldest first) while it was away"
                 if dropped else "")

    def _delivered(self, sequence: int, _metadata: Any) -> None:
        with self._cond:
            if self._in_flight.pop(sequence, None) is not None:
                self._sent += 1
            self._recovered()
            self._cond.notify_all()

    def _not_delivered(self, sequence: int, error: Exception) -> None:
        with self._cond:
            entry = self._in_flight.pop(sequence, None)
            if entry is None:
                return
            reason = one_line(error, named=True)
            if getattr(error, "retriable", False):
                # Not lost: back to the front of the queue, to be sent again.
                self._waiting.appendleft(entry[0])
                self._errors["kafka-delivery-retried"] += 1
                self._cond.notify_all()
                return
            self._failed += 1
            self._errors["kafka-delivery-failed"] += 1
            if self._last_error != f"delivery failed: {reason}":
                log.error("a tick could not be delivered to %s (%s); it is counted in "
                          "ticks_failed", self.settings.input_topic, reason)
            self._last_error = f"delivery failed: {reason}"
            self._cond.notify_all()

    def _take(self) -> list[tuple[int, Tick]]:
        """The next ticks to hand to Kafka, registered as in flight."""
        with self._cond:
            limit = min(MAX_IN_FLIGHT, self.capacity)
            self._cond.wait_for(lambda: self._close_deadline is not None or (
                self._waiting and len(self._in_flight) < limit), timeout=0.5)
            room = limit - len(self._in_flight)
            taken = []
            while self._waiting and len(taken) < room:
                self._sequence += 1
                tick = self._waiting.popleft()
                self._in_flight[self._sequence] = (tick, self._clock())
                taken.append((self._sequence, tick))
            return taken

    def _give_back(self, taken: list[tuple[int, Tick]]) -> None:
        with self._cond:
            for sequence, tick in reversed(taken):
                if self._in_flight.pop(sequence, None) is not None:
                    self._waiting.appendleft(tick)

    def _run(self) -> None:
        from kafka.errors import KafkaError

        failures = 0
        while True:
            with self._cond:
                if self._close_deadline is not None and (
                        not self._waiting or self._clock() >= self._close_deadline):
                    return
            if self._producer is None:
                try:
                    self._producer = self._connect(self.settings)
                except (KafkaError, OSError) as err:
                    failures = self._retry_later(failures, connect_problem(self.settings, err))
                    continue
                failures = 0
                log.info("connected to %s; ticks go to topic %s", self.where,
                         self.settings.input_topic)
                with self._cond:
                    self._recovered()
            self._check_reachable()
            if self._stuck():
                self._replace_producer()
                continue
            taken = self._take()
            for index, (sequence, tick) in enumerate(taken):
                try:
                    future = self._producer.send(self.settings.input_topic, value=tick.to_json(),
                                                 key=tick.key)
                except KafkaError as err:
                    if not err.retriable:
                        self._not_delivered(sequence, err)
                        continue
                    # No metadata within max_block_ms: the cluster is away; keep the rest.
                    self._give_back(taken[index:])
                    failures = self._retry_later(failures, one_line(err, named=True))
                    break
                future.add_callback(self._delivered, sequence)
                future.add_errback(self._not_delivered, sequence)

    def _oldest_in_flight_seconds(self) -> float:
        with self._cond:
            if not self._in_flight:
                return 0.0
            return self._clock() - next(iter(self._in_flight.values()))[1]

    def _stuck(self) -> bool:
        return self._oldest_in_flight_seconds() > STUCK_SECONDS

    def _replace_producer(self) -> None:
        """Drop a stuck client; its unconfirmed ticks go back to the front of the buffer,
        to be sent by a new one. Those the broker did write arrive twice; the job counts
        a tick once (it drops duplicates), so nothing is lost or double-counted."""
        from kafka.errors import KafkaError

        stuck, self._producer = self._producer, None
        with self._cond:
            unconfirmed = [tick for tick, _ in self._in_flight.values()]
            self._in_flight.clear()
            self._waiting.extendleft(reversed(unconfirmed))
            self._errors["kafka-client-replaced"] += 1
        log.warning("the Kafka client held %d ticks for over %.0f s, neither delivered nor "
                    "failed; replacing it and sending them again", len(unconfirmed),
                    STUCK_SECONDS)
        try:
            stuck.close(timeout=0)
        except KafkaError as err:
            log.debug("closing the stuck client: %s", one_line(err, named=True))

    def _retry_later(self, failures: int, reason: str) -> int:
        """Report the failure, back off; returns the failures in a row."""
        failures += 1
        self._unreachable("kafka-unreachable", reason)
        self._pause(backoff_seconds(failures, **RECONNECT_BACKOFF))
        return failures

    def _pause(self, seconds: float) -> None:
        """Wait before retrying. close() cuts a wait short once, to start delivering what is
        left at once; after that, waits end at its deadline."""
        with self._cond:
            if self._close_deadline is None:
                self._cond.wait_for(lambda: self._close_deadline is not None, seconds)
            else:
                self._cond.wait(max(0.0, min(seconds, self._close_deadline - self._clock())))
