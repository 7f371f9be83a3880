"""Ticks into INPUT_TOPIC, each exactly once: keyed by symbol, in Kafka transactions.

`offer()` never blocks the source: ticks wait in a bounded buffer (PRODUCER_BUFFER_TICKS)
that a background thread hands to Kafka one transaction at a time. A transaction's
ticks count as sent once it commits. A commit that times out is tried again (librdkafka
then learns its outcome, so a tick is never sent twice for want of knowing); a
transaction that must be aborted gives its ticks back to the front of the buffer, and
readers never see an aborted one (read_committed). While Kafka is unreachable the buffer
holds new ticks; when it is full the oldest are dropped, counted and reported.

The transactional id is stable (PRODUCER_TRANSACTIONAL_ID): a restarted producer fences
the one before it, and Kafka aborts the transaction that one left open. Every record
carries the headers `origin` and, when the tick has one, `position`, so a restarted
producer can read back where it stands (`kafka_io.readback`).

librdkafka (confluent-kafka) and not kafka-python here: its transactions take timeouts and
classify every error (retriable, abortable, fatal), and it sends the tens of thousands of
ticks per second of a whole market's trades.
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
from crypto_pipeline.core.schema import ORIGIN_HEADER, POSITION_HEADER, Tick
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.clients import client_config, librdkafka_config
from crypto_pipeline.kafka_io.topics import ensure_topics

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
# A commit that takes longer is retried (and Kafka reported unreachable meanwhile).
COMMIT_TIMEOUT_SECONDS = 10.0
# The broker aborts a transaction left open longer (a producer that died with it open).
TRANSACTION_TIMEOUT_MS = 60_000
# Most ticks in one transaction: a burst is committed in several, each a few MB at most.
TRANSACTION_MAX_TICKS = 20_000
LINGER_MS = 20
RECONNECT_BACKOFF = {"base": 0.5, "cap": 5.0}
# Error names that mean another producer with our transactional id took over.
_FENCED = ("_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH")
# A record the broker will never take, whatever the retries: it is counted failed, and its
# transaction is sent again without it.
_REFUSED_RECORD = ("MSG_SIZE_TOO_LARGE", "INVALID_RECORD", "INVALID_MSG",
                   "RECORD_LIST_TOO_LARGE")


class ProducerFenced(RuntimeError):
    """Another producer with this transactional id started: this one must stop."""


@dataclass(frozen=True)
class SinkCounters:
    sent: int
    failed: int
    dropped: int
    buffered: int
    reachable: bool
    errors: dict[str, int]
    last_error: str | None


def default_transactional_id(settings: Settings) -> str:
    """One id per input topic and source: two producers of one kind fence each other,
    a REST poller and a trade stream on the same topic do not."""
    return settings.producer_transactional_id or \
        f"crypto-pipeline-{settings.input_topic}-{settings.price_source}"


def _connect(settings: Settings) -> Any:
    """A transactional producer, after making sure the topics exist with the pipeline's
    settings (a topic the broker auto-creates would get its defaults instead);
    init_transactions fences an earlier instance and aborts what it left open."""
    from confluent_kafka import Producer
    from kafka.admin import KafkaAdminClient

    timeout_ms = int(CONNECT_TIMEOUT_SECONDS * 1000)
    admin = KafkaAdminClient(**client_config(settings), bootstrap_timeout_ms=timeout_ms,
                             request_timeout_ms=timeout_ms, reconnect_backoff_max_ms=1000)
    try:
        ensure_topics(settings, admin)
    finally:
        admin.close()
    producer = Producer({**librdkafka_config(settings),
                         "transactional.id": default_transactional_id(settings),
                         "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                         "enable.idempotence": True, "acks": "all", "linger.ms": LINGER_MS,
                         "error_cb": _log_client_error})
    producer.init_transactions(CONNECT_TIMEOUT_SECONDS)
    return producer


def _log_client_error(error: Any) -> None:
    log.debug("librdkafka: %s", error)


def connect_problem(settings: Settings, err: BaseException) -> str:
    """Why connecting failed, in words a user can act on. A broker that refuses the SASL
    credentials often just looks unreachable; one that accepts TCP connections all the
    same points at them."""
    reason = one_line(err, named=True)
    if settings.kafka_security_protocol.startswith("SASL_") and \
            any_accepts(settings.kafka_bootstrap_servers):
        reason += (f" - the broker answers, so it probably refused the SASL credentials: "
                   f"check KAFKA_SASL_USERNAME ({settings.kafka_sasl_username}), "
                   f"KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM "
                   f"({settings.kafka_sasl_mechanism})")
    return reason


class KafkaTickSink:
    def __init__(self, settings: Settings, *, origin: str,
                 connect: Callable[[Settings], Any] = _connect,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.origin = origin.encode()
        self.capacity = settings.producer_buffer_ticks
        self.where = f"Kafka at {settings.kafka_bootstrap_servers}"
        self._connect = connect
        self._clock = clock
        self._cond = threading.Condition()
        self._waiting: deque[Tick] = deque()
        self._in_transaction = 0
        self._refused: dict[int, str] = {}  # index in the transaction -> why
        self._sent = self._failed = self._dropped = 0
        self._dropped_in_outage = 0
        self._errors: Counter[str] = Counter()
        self._last_error: str | None = None
        self._reachable = True
        self._fenced: ProducerFenced | None = None
        self._close_deadline: float | None = None
        self._producer: Any = None
        self._thread = threading.Thread(target=self._run, name="kafka-tick-sink", daemon=True)

    # --- what the source and the app call ----------------------------------------------

    def offer(self, ticks: Iterable[Tick]) -> None:
        """Accept ticks for delivery; never blocks. A full buffer drops its oldest ticks.
        The first offer starts the connection, so a producer that stops before it has a
        tick (a wrong symbol) never waits for Kafka. Raises ProducerFenced once another
        producer has taken over."""
        with self._cond:
            if self._fenced is not None:
                raise self._fenced
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
        """Deliver what is buffered (waiting at most `timeout` seconds); returns how many
        accepted ticks were not delivered. A transaction still open then is left to Kafka,
        which aborts it: none of its ticks is ever read."""
        deadline = self._clock() + timeout
        with self._cond:
            self._close_deadline = deadline
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(max(0.0, deadline - self._clock()) + COMMIT_TIMEOUT_SECONDS)
        # librdkafka's client ends with its last reference: no reconnecting after close.
        self._producer = None
        with self._cond:
            return self._held()

    # --- inside ------------------------------------------------------------------------

    def _held(self) -> int:
        return len(self._waiting) + self._in_transaction

    def _closing_past_deadline(self) -> bool:
        return self._close_deadline is not None and self._clock() >= self._close_deadline

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

    def _recovered(self) -> None:
        """Caller holds the lock. A recovery is logged once, with what the outage cost."""
        if self._reachable:
            return
        self._reachable = True
        dropped, self._dropped_in_outage = self._dropped_in_outage, 0
        log.info("%s reachable again: delivering %d buffered ticks%s", self.where, self._held(),
                 f"; {dropped} ticks were dropped (oldest first) while it was away"
                 if dropped else "")

    def _take(self) -> list[Tick]:
        """The next transaction's ticks (waiting up to half a second for the first)."""
        with self._cond:
            self._cond.wait_for(lambda: self._close_deadline is not None or self._waiting,
                                timeout=0.5)
            taken = []
            while self._waiting and len(taken) < TRANSACTION_MAX_TICKS:
                taken.append(self._waiting.popleft())
            self._in_transaction = len(taken)
            return taken

    def _give_back(self, ticks: list[Tick]) -> None:
        with self._cond:
            self._waiting.extendleft(reversed(ticks))
            self._in_transaction = 0
            self._cond.notify_all()

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                if self._close_deadline is not None and (
                        not self._waiting or self._closing_past_deadline()):
                    return
            if self._producer is None:
                try:
                    self._producer = self._connect(self.settings)
                except Exception as err:  # noqa: BLE001 - kafka-python's admin or librdkafka
                    failures = self._retry_later(failures, connect_problem(self.settings, err))
                    continue
                failures = 0
                log.info("connected to %s; ticks go to topic %s in transactions (id %s)",
                         self.where, self.settings.input_topic,
                         default_transactional_id(self.settings))
                with self._cond:
                    self._recovered()
            ticks = self._take()
            if not ticks:
                self._producer.poll(0)
                continue
            try:
                failures = 0 if self._transact(ticks) else self._retry_later(
                    failures, self._last_error or "the transaction was aborted")
            except ProducerFenced as fenced:
                with self._cond:
                    self._fenced = fenced
                    self._last_error = str(fenced)
                log.error("%s", fenced)
                return

    def _transact(self, ticks: list[Tick]) -> bool:
        """One transaction of `ticks`: True once committed; False when it was aborted (the
        ticks are back in the buffer)."""
        from confluent_kafka import KafkaException

        topic = self.settings.input_topic
        self._refused = {}
        try:
            self._producer.begin_transaction()
            for index, tick in enumerate(ticks):
                headers = [(ORIGIN_HEADER, self.origin)]
                if tick.position is not None:
                    headers.append((POSITION_HEADER, str(tick.position).encode()))
                self._produce(topic, tick.to_json(), tick.key, headers, index)
            if not self._commit():
                return False
        except KafkaException as exc:
            self._transaction_failed(exc.args[0], ticks)
            return False
        with self._cond:
            self._sent += len(ticks)
            self._in_transaction = 0
            self._recovered()
            self._cond.notify_all()
        return True

    def _produce(self, topic: str, value: bytes, key: bytes, headers: list,
                 index: int) -> None:
        def delivered(error: Any, _message: Any) -> None:
            if error is not None and error.name() in _REFUSED_RECORD:
                self._refused[index] = error.str()

        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=delivered)
                return
            except BufferError:
                self._producer.poll(0.05)  # librdkafka's queue is full: let it send first

    def _commit(self) -> bool:
        """Commit, retrying while the outcome is unknown (Kafka away). False: closing,
        and the deadline passed first (the transaction stays open: Kafka aborts it)."""
        from confluent_kafka import KafkaException

        while True:
            try:
                self._producer.commit_transaction(COMMIT_TIMEOUT_SECONDS)
                return True
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable():
                    raise
                self._unreachable("kafka-unreachable", f"commit not confirmed: {error.str()}")
                with self._cond:
                    if self._closing_past_deadline():
                        return False

    def _transaction_failed(self, error: Any, ticks: list[Tick]) -> None:
        """Abort (the ticks go back to the buffer), or start over with a new producer after a
        fatal error; another producer with our id means this one stops."""
        reason = error.str()
        if self._refused:
            for index, why in sorted(self._refused.items()):
                log.error("a tick could not be delivered to %s (%s); it is counted in "
                          "ticks_failed: %s", self.settings.input_topic, why, ticks[index])
            with self._cond:
                self._failed += len(self._refused)
                self._errors["kafka-delivery-failed"] += len(self._refused)
            ticks = [tick for index, tick in enumerate(ticks) if index not in self._refused]
        if error.name() in _FENCED:
            self._give_back(ticks)
            raise ProducerFenced(
                f"another producer with transactional id "
                f"{default_transactional_id(self.settings)} took over ({reason}); this one "
                f"stops (set PRODUCER_TRANSACTIONAL_ID to run two producers side by side)")
        self._give_back(ticks)
        with self._cond:
            self._errors["kafka-transaction-aborted"] += 1
            self._last_error = f"transaction aborted: {reason}"
        log.warning("the transaction of %d ticks failed (%s); sending them again",
                    len(ticks), reason)
        if error.fatal() or not self._abort():
            # init_transactions on a new producer aborts this one's transaction.
            self._producer = None

    def _abort(self) -> bool:
        from confluent_kafka import KafkaException

        try:
            self._producer.abort_transaction(COMMIT_TIMEOUT_SECONDS)
            return True
        except KafkaException as exc:
            log.debug("abort_transaction: %s", exc.args[0].str())
            return False

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
