"""Known aggregates for the dashboard tests, and the ways they reach the dashboard."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from crypto_pipeline.kafka_clients import client_config
from crypto_pipeline.schema import AGGREGATE_FIELDS, aggregate_key, format_time
from crypto_pipeline.settings import Settings

WINDOW = timedelta(minutes=5)


def aggregate(symbol: str, window_start: datetime, avg: float, *, low: float | None = None,
              high: float | None = None, count: int = 10,
              emitted_at: datetime | None = None) -> dict[str, Any]:
    """A complete aggregate record (parsed form: times as aware datetimes)."""
    low = avg * 0.999 if low is None else low
    high = avg * 1.001 if high is None else high
    record = {
        "symbol": symbol, "window_start": window_start, "window_end": window_start + WINDOW,
        "avg_price": avg, "min_price": low, "max_price": high, "count": count,
        "spread": high - low, "open_price": low, "close_price": high,
        "pct_change": 100 * (high - low) / low, "stddev_price": None, "volume": None,
        "vwap": None, "last_event_time": window_start + WINDOW - timedelta(seconds=1),
        "emitted_at": emitted_at or datetime.now(timezone.utc),
    }
    assert tuple(record) == tuple(f.name for f in AGGREGATE_FIELDS)
    return record


def message(record: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of a record as the Spark job writes it to OUTPUT_TOPIC."""
    value = {k: format_time(v) if isinstance(v, datetime) else v for k, v in record.items()}
    return (aggregate_key(record["symbol"], value["window_start"]).encode(),
            json.dumps(value).encode())


def produce(settings: Settings, topic: str,
            messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **client_config(settings))
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value).get(timeout=10)
    finally:
        producer.close(timeout=5)


def produce_aggregates(settings: Settings, records: Iterable[dict[str, Any]]) -> None:
    produce(settings, settings.output_topic, (message(r) for r in records))
