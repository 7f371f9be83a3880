"""The dashboard's one long-lived Kafka consumer, a background thread per server process.

On start it loads the history store (the last DASHBOARD_HISTORY_HOURS, in chunks), then
reads the aggregates topic from the beginning (the topic is compacted: that rebuilds the
latest value per window), then follows new records; windows older than that many hours
before the newest are dropped as it goes, so memory stays bounded. Candles and alerts
come the same way: the history store's candles and alerts tables, then the compacted
candles and alerts topics, into `candles` and `alerts`. No consumer group: it assigns
every partition itself and keeps its positions, so after Kafka comes back it reconnects
and goes on where it stopped. A malformed record is skipped and counted. A second thread
asks the history store now and then whether it answers, so the page can say when it
does not (what Kafka gives is shown all the same). The threads never call Streamlit;
pages read `store`, `candles`, `alerts` and `health()`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.history import open_history, problem
from crypto_pipeline.core.history.schema import CANDLES
from crypto_pipeline.core.schema import parse_aggregate, parse_alert, parse_candle
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.dashboard.store import AggregateStore, AlertStore, candle_store
from crypto_pipeline.kafka_io.clients import client_config

log = logging.getLogger(__name__)

# How often the feed asks the cluster for metadata and offsets: this is also how fast
# it notices that Kafka went away (poll() alone just returns nothing).
CHECK_INTERVAL_SECONDS = 2.0
POLL_TIMEOUT_MS = 500
REQUEST_TIMEOUT_MS = 5000
BOOTSTRAP_TIMEOUT_MS = 3000
RECONNECT_BACKOFF = {"base": 0.5, "cap": 5.0}
# How often the history store is asked whether it answers.
HISTORY_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class FeedHealth:
    kafka: str = "connecting"  # connecting, ok or unreachable
    kafka_error: str | None = None
    topic_exists: bool | None = None
    backlog: int | None = None  # records on the topic not read yet; None: not known yet
    records_read: int = 0
    malformed: int = 0
    last_malformed: str | None = None
    dead_letters: int | None = None
    history_loaded: int = 0
    history_error: str | None = None  # one line naming HISTORY_URL while it fails


def parse_checked_aggregate(value: bytes | None) -> dict[str, Any]:
    """`schema.parse_aggregate`, and a tombstone (no value) is malformed too."""
    if value is None:
        raise ValueError("empty value (tombstone)")
    return parse_aggregate(value)


def parse_checked_alert(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise ValueError("empty value (tombstone)")
    return parse_alert(value)


def parse_checked_candle(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise ValueError("empty value (tombstone)")
    return parse_candle(value)


class KafkaFeed:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = AggregateStore()
        self.candles = candle_store()
        self.alerts = AlertStore()
        self._followed: dict[str, tuple[Callable[[bytes | None], Any],
                                        AggregateStore | AlertStore]] = {
            settings.output_topic: (parse_checked_aggregate, self.store),
            settings.candles_topic: (parse_checked_candle, self.candles),
            settings.alerts_topic: (parse_checked_alert, self.alerts)}
        self._positions: dict[Any, int] = {}  # TopicPartition -> next offset to read
        self._assigned: set[Any] = set()
        self._health = FeedHealth()
        self._health_lock = threading.Lock()
        self._stopping = threading.Event()
        self._first_answer = threading.Event()  # caught up with the topic, or Kafka is down
        self._history = open_history(settings.history_url)
        self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)
        self._history_thread = threading.Thread(target=self._watch_history,
                                                name="dashboard-history", daemon=True)

    def start(self) -> "KafkaFeed":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for thread in (self._thread, self._history_thread):
            if thread.is_alive():
                thread.join(timeout)
        self._history.close()

    def wait_for_first_answer(self, timeout: float) -> bool:
        """Block until the feed has caught up with the topic or found Kafka unreachable
        (True), or `timeout` seconds have passed (False): a first page then shows data, not
        a "connecting" flash."""
        return self._first_answer.wait(timeout)

    @property
    def _horizon(self) -> timedelta:
        """How far back from the newest window the feed keeps windows."""
        return min(timedelta(seconds=self.settings.aggregates_retention.seconds),
                   timedelta(hours=self.settings.dashboard_history_hours))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def health(self) -> FeedHealth:
        with self._health_lock:
            return self._health

    def _update(self, **changes: Any) -> FeedHealth:
        with self._health_lock:
            previous = self._health
            self._health = dataclasses.replace(previous, **changes)
            return previous

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        self._load_history()
        self._history_thread.start()
        failures = 0
        while not self._stopping.is_set():
            consumer = None
            try:
                consumer = self._connect()
                failures = 0
                self._follow(consumer)
            except Exception as err:  # noqa: BLE001 - whatever broke, the feed reconnects
                failures += 1
                self._went_down(err)
                self._stopping.wait(backoff_seconds(failures, **RECONNECT_BACKOFF))
            finally:
                if consumer is not None:
                    _close(consumer)
        log.info("dashboard feed stopped")

    def _load_history(self) -> None:
        history = self._history
        try:
            newest = max(history.newest_window_starts().values(), default=None)
            # The horizon counts back from the newest window, not from now: replayed
            # and backfilled windows can be years old and are still the page's data.
            since = newest - self._horizon if newest else None
            loaded = 0
            for symbols, rows in history.iter_arrays(since=since):
                loaded += self.store.put_arrays(symbols, rows)
                self._update(history_loaded=loaded)
            # As arrays too: a day of 2,000 symbols' candles as records is gigabytes.
            for symbols, rows in history.iter_arrays(since=since, table=CANDLES):
                self.candles.put_arrays(symbols, rows)
            self.alerts.put_many(history.load_alerts(since=since))
        except history.errors as err:
            self._history_failed(err)
            return
        self._update(history_loaded=loaded)
        if loaded:
            log.info("loaded %d aggregates from the history store %s", loaded,
                     history.location)

    def _watch_history(self) -> None:
        """Until stopped: whether the history store answers, in `health().history_error`."""
        while not self._stopping.wait(HISTORY_CHECK_SECONDS):
            try:
                self._history.newest_emitted_at()
            except self._history.errors as err:
                self._history_failed(err)
                continue
            if self._update(history_error=None).history_error:
                log.info("the history store %s answers again", self._history.location)

    def _history_failed(self, err: BaseException) -> None:
        reason = problem(self.settings.history_url, err)
        if self._update(history_error=reason).history_error is None:
            log.warning("the history store is unavailable: %s", reason)

    def _connect(self):
        from kafka import KafkaConsumer

        return KafkaConsumer(
            **client_config(self.settings), client_id="crypto-dashboard", group_id=None,
            enable_auto_commit=False, allow_auto_create_topics=False,
            auto_offset_reset="earliest", request_timeout_ms=REQUEST_TIMEOUT_MS,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS, reconnect_backoff_max_ms=1000)

    def _follow(self, consumer) -> None:
        self._assigned = set()
        next_check = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_check:
                if self._check(consumer) == 0:
                    self._first_answer.set()
                next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
            if not self._assigned:
                self._stopping.wait(POLL_TIMEOUT_MS / 1000)
                continue
            batch = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            for partition, records in batch.items():
                self._take(partition, records)
            if not batch and not self._first_answer.is_set():
                next_check = 0.0  # probably caught up: confirm it now, not in 2 s

    def _take(self, partition, records) -> None:
        parse, store = self._followed[partition.topic]
        parsed, malformed, last_problem = [], 0, None
        for record in records:
            try:
                parsed.append(parse(record.value))
            except (ValueError, TypeError) as err:
                malformed += 1
                last_problem = (f"{partition.topic} partition {partition.partition} "
                                f"offset {record.offset}: {err}")
                log.warning("skipped a malformed record: %s", last_problem)
        store.put_many(parsed)
        self._positions[partition] = records[-1].offset + 1
        with self._health_lock:
            health = self._health
            self._health = dataclasses.replace(
                health, records_read=health.records_read + len(records),
                malformed=health.malformed + malformed,
                last_malformed=last_problem or health.last_malformed)

    def _check(self, consumer) -> int | None:
        """Follow new partitions, count dead letters, prune old windows; returns the backlog.
        The metadata request raises when Kafka is unreachable."""
        from kafka import TopicPartition

        topics = consumer.topics()
        wanted = {TopicPartition(topic, p) for topic in self._followed if topic in topics
                  for p in consumer.partitions_for_topic(topic)}
        if wanted != self._assigned:
            consumer.assign(sorted(wanted))
            for partition in wanted:
                if partition in self._positions:
                    consumer.seek(partition, self._positions[partition])
                else:
                    consumer.seek_to_beginning(partition)
            self._assigned = wanted
        ends = consumer.end_offsets(sorted(wanted), timeout_ms=REQUEST_TIMEOUT_MS) if wanted else {}
        positions = {p: consumer.position(p, timeout_ms=REQUEST_TIMEOUT_MS) for p in ends}
        backlog = (None if None in positions.values()
                   else sum(max(0, end - positions[p]) for p, end in ends.items()))
        newest = self.store.newest_window_start
        if newest is not None:
            for store in (self.store, self.candles, self.alerts):
                store.prune(newest - self._horizon)
        previous = self._update(
            kafka="ok", kafka_error=None, topic_exists=self.settings.output_topic in topics,
            backlog=backlog, dead_letters=self._dead_letters(consumer, topics))
        if previous.kafka != "ok":
            log.info("following %s on Kafka at %s", self.settings.output_topic,
                     self.settings.kafka_bootstrap_servers)
        return backlog

    def _dead_letters(self, consumer, topics: set[str]) -> int:
        from kafka import TopicPartition

        if self.settings.dlq_topic not in topics:
            return 0
        partitions = [TopicPartition(self.settings.dlq_topic, p)
                      for p in sorted(consumer.partitions_for_topic(self.settings.dlq_topic))]
        ends = consumer.end_offsets(partitions, timeout_ms=REQUEST_TIMEOUT_MS)
        starts = consumer.beginning_offsets(partitions, timeout_ms=REQUEST_TIMEOUT_MS)
        return sum(ends[p] - starts[p] for p in partitions)

    def _went_down(self, err: Exception) -> None:
        reason = one_line(err, named=True)
        previous = self._update(kafka="unreachable", kafka_error=reason)
        self._first_answer.set()
        if previous.kafka != "unreachable":
            log.warning("Kafka at %s unreachable (%s); reconnecting",
                        self.settings.kafka_bootstrap_servers, reason,
                        exc_info=not _is_kafka_error(err))


def _is_kafka_error(err: Exception) -> bool:
    from kafka.errors import KafkaError

    return isinstance(err, (KafkaError, OSError))


def _close(consumer) -> None:
    try:
        consumer.close(autocommit=False)
    except Exception as err:  # noqa: BLE001 - a failed close must not stop the feed
        log.debug("closing the consumer failed: %s", err)
