"""Known aggregates for the dashboard tests, and the ways they reach the dashboard."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from crypto_pipeline.core.history import sqlite_url
from crypto_pipeline.core.schema import (
    AGGREGATE_FIELDS,
    CANDLE_FIELDS,
    aggregate_key,
    candle_key,
    format_time,
)
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.clients import client_config
from support.helpers import METRICS_OFF, free_port

WINDOW = timedelta(minutes=5)


def aggregate(symbol: str, window_start: datetime, avg: float, *, low: float | None = None,
              high: float | None = None, count: int = 10,
              emitted_at: datetime | None = None,
              expected_count: int | None = None) -> dict[str, Any]:
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
        "expected_count": expected_count, "missed_trades": None,
    }
    assert tuple(record) == tuple(f.name for f in AGGREGATE_FIELDS)
    return record


def candle(symbol: str, open_time: datetime, open_price: float, *, close: float | None = None,
           count: int = 4, expected_count: int | None = None) -> dict[str, Any]:
    """A complete 1-minute candle (parsed form)."""
    close = open_price * 1.0005 if close is None else close
    record = {"symbol": symbol, "open_time": open_time,
              "close_time": open_time + timedelta(minutes=1), "open": open_price,
              "high": max(open_price, close) * 1.0003, "low": min(open_price, close) * 0.9997,
              "close": close, "count": count, "volume": None, "expected_count": expected_count,
              "missed_trades": None}
    assert tuple(record) == tuple(f.name for f in CANDLE_FIELDS)
    return record


def candle_message(record: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of a candle as the Spark job writes it to CANDLES_TOPIC."""
    value = {k: format_time(v) if isinstance(v, datetime) else v for k, v in record.items()}
    return (candle_key(record["symbol"], value["open_time"]).encode(),
            json.dumps(value).encode())


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


def produce_candles(settings: Settings, records: Iterable[dict[str, Any]]) -> None:
    produce(settings, settings.candles_topic, (candle_message(r) for r in records))


# --- reading an AppTest of the page ---------------------------------------------------

def texts(elements):
    return [element.value for element in elements]


def kpi(at, symbol, name):
    metric = at.get_by_key(f"kpi-{symbol}-{name}").metric[0]
    return metric.value, metric.delta


def overview(at):
    """The market overview's table as the page hands it to the grid (a DataFrame)."""
    return at.get_by_key("overview").dataframe[0].value


def metric_value(at, key):
    """The value of the metric in the keyed container, None while it is not drawn."""
    try:
        return at.get_by_key(key).metric[0].value
    except KeyError:
        return None


def shows(at, what):
    """Rerun the script (AppTest's timers do not fire) and check it shows `what`."""
    at.run()
    assert not at.exception, at.exception
    return what(at)


def offline_settings(tmp_path, **changes) -> Settings:
    """Settings of a dashboard whose Kafka is down (nothing listens on its port)."""
    return Settings.load(environ={}, env_file=None).replace(**{
        "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",
        "history_url": sqlite_url(tmp_path / "h.sqlite"), "run_dir": tmp_path / "run",
        **METRICS_OFF, **changes})
