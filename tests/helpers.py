"""Test helpers: waiting with a deadline, free ports (from processes.py), reading topics."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, TypeVar

from crypto_pipeline.processes import free_port  # noqa: F401 - re-exported for the tests

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except AssertionError as err:
            last_error = err
        time.sleep(interval)
    detail = f" (last: {last_error})" if last_error else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def read_topic(bootstrap: str, topic: str, *, min_records: int = 0, timeout: float = 10.0,
               idle: float = 1.0) -> list[Any]:
    """Every record on `topic` from the beginning: waits until at least `min_records` are
    read (failing at the deadline), then until `idle` seconds pass without a new one."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
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
