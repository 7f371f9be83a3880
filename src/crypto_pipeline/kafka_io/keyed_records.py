"""Keyed JSON records to a topic, each confirmed by the broker: for the few records the
Spark job's batch writer and the backfill send besides Spark's own Kafka sink (alerts,
backfilled aggregates). A record Kafka does not confirm raises: the caller fails loudly.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Mapping

from crypto_pipeline.core.schema import format_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.clients import client_config

# One budget for connecting and for each delivery: a broker that is away fails the caller
# within it instead of hanging it.
TIMEOUT_SECONDS = 30.0


def json_value(record: Mapping[str, Any]) -> bytes:
    """A record as the pipeline's JSON: times as schema.format_time writes them."""
    return json.dumps({name: format_time(value) if isinstance(value, datetime) else value
                       for name, value in record.items()}, separators=(",", ":")).encode()


def send_confirmed(settings: Settings, topic: str, records: Iterable[tuple[str, bytes]],
                   timeout: float = TIMEOUT_SECONDS) -> int:
    """Send (key, value) pairs with acks=all; returns how many, once all are confirmed.
    Raises kafka.errors.KafkaError when one is not."""
    from kafka import KafkaProducer

    budget_ms = int(timeout * 1000)
    producer = KafkaProducer(**client_config(settings), acks="all", max_block_ms=budget_ms,
                             request_timeout_ms=budget_ms, bootstrap_timeout_ms=budget_ms)
    try:
        sent = [producer.send(topic, key=key.encode(), value=value) for key, value in records]
        producer.flush(timeout)
        for future in sent:
            future.get(timeout=timeout)
        return len(sent)
    finally:
        producer.close(timeout=5)
