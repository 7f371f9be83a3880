"""Test helpers: waiting with a deadline, free ports (from processes.py), reading and
writing topics, the oracle's windows and the history store in the topic's form, the
environment of a child process."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Callable, TypeVar

from crypto_pipeline.core.history import open_history
from crypto_pipeline.core.processes import free_port  # noqa: F401 - re-exported for the tests
from crypto_pipeline.core.schema import aggregate_key, candle_key, format_time
from crypto_pipeline.core.status import (
    ProducerStatus,
    SparkStatus,
    SupervisorStatus,
    supervisor_file,
)
from crypto_pipeline.core.waiting import WaitTimeout, wait_until
from crypto_pipeline.kafka_io.clients import client_config
from crypto_pipeline.streaming.job import total_offset
from support.oracle import expected_candles, expected_windows

T = TypeVar("T")

# The /metrics endpoints' fixed default ports would clash between tests (and with a
# pipeline running on this machine): settings for tests turn them off, and the tests of
# the metrics give them free ports.
METRICS_OFF = {"producer_metrics_port": 0, "spark_metrics_port": 0,
               "dashboard_metrics_port": 0}


def wait_for(condition: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy; fail the test naming `what` at
    the deadline. A condition may assert: the last failed assertion is named too."""
    failed: list[AssertionError] = []

    def attempt() -> T | None:
        try:
            return condition()
        except AssertionError as err:
            failed.append(err)
            return None

    try:
        return wait_until(attempt, timeout, what, interval=interval,
                          reason=lambda: f"last: {failed[-1]}" if failed else None)
    except WaitTimeout as err:
        raise AssertionError(f"timed out: {err}") from None


def eventually(condition: Callable[[], Any], timeout: float, interval: float = 1.0) -> bool:
    """Whether `condition` turns truthy within `timeout`: `wait_for` without the failure,
    for a test that records what it saw before it asserts."""
    try:
        wait_for(condition, timeout, "a condition", interval)
        return True
    except AssertionError:
        return False


def read_topic(bootstrap: str, topic: str, *, min_records: int = 0, timeout: float = 10.0,
               idle: float = 1.0) -> list[Any]:
    """Every committed record on `topic` from the beginning (read_committed, as the job
    reads): waits until at least `min_records` are read (failing at the deadline), then
    until `idle` seconds pass without a new one."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                             isolation_level="read_committed")
    try:
        deadline = time.monotonic() + timeout
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), timeout,
                              f"topic {topic} to exist")
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        last_new = time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=100)
            for part in batch.values():
                records.extend(part)
            if batch:
                last_new = time.monotonic()
            now = time.monotonic()
            if len(records) >= min_records and now - last_new >= idle:
                return records
            if now > deadline:
                if len(records) >= min_records:
                    return records
                raise AssertionError(f"read {len(records)} records from {topic} in "
                                     f"{timeout:.0f}s, expected at least {min_records}")
    finally:
        consumer.close()


def latest_by_key(records: list[Any]) -> dict[str, dict]:
    """Kafka records with JSON values -> {key: value of the last record with that key}."""
    return {r.key.decode(): json.loads(r.value) for r in records}


def process_env(settings, **extra: str) -> dict[str, str]:
    """The environment of a child process that loads exactly `settings` (plus `extra`):
    this process's, with every setting overridden (to_environ sets each one)."""
    return {**os.environ, **settings.to_environ(), **extra}


def produce(settings, records) -> list:
    """Send (key, value) pairs to INPUT_TOPIC; returns where each landed (partition, offset)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **client_config(settings))
    try:
        sent = [producer.send(settings.input_topic, key=key, value=value)
                for key, value in records]
        producer.flush()
        return [future.get(timeout=10) for future in sent]
    finally:
        producer.close()


def produce_ticks(settings, ticks) -> None:
    produce(settings, [(t.key, t.to_json()) for t in ticks])


def windows(ticks, settings) -> dict[str, dict]:
    """The oracle's aggregates of `ticks` under the window settings of `settings`."""
    return expected_windows(ticks, settings.window_duration.seconds,
                            settings.window_slide.seconds, settings.poll_interval_seconds)


def candles(ticks, settings, minutes: int = 1) -> dict[str, dict]:
    """The oracle's candles of `ticks` of `minutes` minutes."""
    return expected_candles(ticks, minutes, settings.poll_interval_seconds)


def by_key(rows) -> dict[str, dict]:
    """Parsed aggregates (times as datetimes) as the topic's JSON would have them."""
    def as_json(value):
        return format_time(value) if isinstance(value, datetime) else value

    return {aggregate_key(row["symbol"], format_time(row["window_start"])):
            {name: as_json(value) for name, value in row.items()} for row in rows}


def history_by_key(settings) -> dict[str, dict]:
    """The history store as the topic's JSON would have it."""
    with open_history(settings.history_url) as history:
        return by_key(history.load())


def as_text(row: dict) -> dict:
    """A parsed row with its times as the topic's JSON writes them."""
    return {name: format_time(value) if isinstance(value, datetime) else value
            for name, value in row.items()}


def history_candles(settings) -> dict[str, dict]:
    """The history store's candles as the candles topic's JSON would have them."""
    with open_history(settings.history_url) as history:
        return {candle_key(row["symbol"], format_time(row["open_time"])): as_text(row)
                for row in history.load_candles()}


def spark_status(run_dir) -> SparkStatus:
    """The Spark job's status file (an empty one before the job wrote it)."""
    return SparkStatus.read(run_dir) or SparkStatus()


def producer_status(run_dir) -> ProducerStatus:
    """The producer's status file (an empty one before the producer wrote it)."""
    return ProducerStatus.read(run_dir) or ProducerStatus()


def supervisor_status(run_dir, name: str) -> SupervisorStatus:
    """A supervisor's status file (an empty one before it wrote it)."""
    return SupervisorStatus.read(run_dir, supervisor_file(name)) or SupervisorStatus()


def processed(job) -> int:
    """Input records the job's aggregates query has fully processed; fails at once if it
    died."""
    query = job.queries[0]
    assert query.exception() is None, query.exception()
    progress = query.lastProgress
    return total_offset(progress["sources"][0]["endOffset"]) if progress else 0


def run_to_the_end(job, timeout: float) -> int:
    """`job.run()` (a StreamingJob) until it ends by itself; its exit code. A stop is
    requested when the wait is over, so a job that does not end is stopped."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(job.run)
        try:
            return running.result(timeout=timeout)
        finally:
            job.request_stop()
