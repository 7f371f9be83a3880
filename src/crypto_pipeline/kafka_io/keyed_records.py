"""Keyed JSON records to a topic, each confirmed by the broker: what the Spark job's batch
writer sends (aggregates, alerts) and the backfill. A record Kafka does not confirm raises:
the caller fails loudly (the job's batch fails and is re-run).

One long-lived librdkafka producer per process and cluster: a micro-batch's thousand
aggregates leave in one flush, without a Spark job of their own and without connecting
anew every batch.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any, Iterable, Mapping

from crypto_pipeline.core.schema import format_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.clients import librdkafka_config

# One budget for each batch of records: a broker that is away fails the caller within it
# instead of hanging it.
TIMEOUT_SECONDS = 30.0

_writers: dict[tuple, Any] = {}
_writers_lock = threading.Lock()


class DeliveryFailed(RuntimeError):
    """Kafka did not confirm a record; the message names the topic and why."""


def json_value(record: Mapping[str, Any]) -> bytes:
    """A record as the pipeline's JSON: times as schema.format_time writes them."""
    return json.dumps({name: format_time(value) if isinstance(value, datetime) else value
                       for name, value in record.items()}, separators=(",", ":")).encode()


def _writer(settings: Settings) -> Any:
    from confluent_kafka import Producer

    config = librdkafka_config(settings)
    key = tuple(sorted(config.items()))
    with _writers_lock:
        if key not in _writers:
            _writers[key] = Producer({**config, "enable.idempotence": True, "acks": "all",
                                      "linger.ms": 5,
                                      "message.timeout.ms": int(TIMEOUT_SECONDS * 1000)})
        return _writers[key]


def send_confirmed(settings: Settings, topic: str, records: Iterable[tuple[str, bytes]],
                   timeout: float = TIMEOUT_SECONDS) -> int:
    """Send (key, value) pairs with acks=all; returns how many, once all are confirmed.
    Raises DeliveryFailed when one is not."""
    from confluent_kafka import KafkaException

    producer = _writer(settings)
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(error.str())

    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key.encode(), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let it send first
            except KafkaException as err:
                raise DeliveryFailed(f"{topic}: {err.args[0].str()}") from None
        count += 1
    left = producer.flush(timeout)
    if left:
        raise DeliveryFailed(f"{topic}: {left} of {count} records not confirmed within "
                             f"{timeout:g} s")
    if failures:
        raise DeliveryFailed(f"{topic}: {len(failures)} of {count} records not delivered "
                             f"({failures[-1]})")
    return count
