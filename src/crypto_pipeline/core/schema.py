"""The pipeline's messages, defined once for the producer, the Spark job and the dashboard.

- a tick on INPUT_TOPIC: key = symbol, value = JSON of `TICK_FIELDS`, headers `origin` and
  `position` (the pipeline's producer writes each tick once, in Kafka transactions);
- an aggregate on OUTPUT_TOPIC: key = `SYMBOL|window_start`, value = JSON of
  `AGGREGATE_FIELDS`; a later message for a key replaces the earlier one. The job writes
  every field; a reader needs only the required ones (the contract: symbol, window, the
  prices' avg/min/max, count, spread), so another writer may leave the rest out;
- a dead letter on DLQ_TOPIC: key = the original key, value = JSON of `DLQ_FIELDS`;
- a candle on CANDLES_TOPIC: key = `SYMBOL|open_time`, value = JSON of `CANDLE_FIELDS`:
  the ticks of one minute (tumbling, by event time); a later message replaces the earlier;
- an alert on ALERTS_TOPIC: key = `SYMBOL|window_start|kind`, value = JSON of
  `ALERT_FIELDS`; one per symbol, window and kind.

Aggregates and candles say how complete they are: `expected_count` (ticks a polling
source sends in the span, next to `count`, the ticks received) or `missed_trades` (trades
a trade stream missed just before ticks in the span, which the producer reports on the
first tick after the gap, `missed_before`).

Spark schemas are built from these tuples (`spark_schema`), so no field is declared twice.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, NamedTuple


class Field(NamedTuple):
    name: str
    type: str  # "string", "double", "long" or "timestamp"
    required: bool
    meaning: str


TICK_FIELDS: tuple[Field, ...] = (
    Field("symbol", "string", True, "Binance symbol, upper case"),
    Field("price", "double", True, "last price, a JSON number > 0"),
    Field("event_time", "string", True, "ISO-8601 with an explicit offset, e.g. ...Z"),
    Field("source", "string", False, "binance, binance-ws, replay, simulated or backfill"),
    Field("quantity", "double", False, "traded quantity, when the source is a trade"),
    Field("event_id", "string", False, "identifies the tick within its source"),
    Field("missed_before", "long", False, "trades missed just before this one: a gap in "
                                          "a trade stream that the trade history did not fill"),
)

# Sources that send one tick per symbol every POLL_INTERVAL_SECONDS, and sources of
# trades (TICK_FIELDS' `source`): what a window's completeness is measured by.
POLLED_SOURCES = ("binance", "simulated")
TRADE_SOURCES = ("binance-ws",)

_EXPECTED = Field("expected_count", "long", False,
                  "ticks a polling source sends in the span (POLL_INTERVAL_SECONDS); null "
                  "for other sources")
_MISSED = Field("missed_trades", "long", False,
                "trades of a trade stream missed just before ticks of the span (a gap); "
                "null for other sources")

AGGREGATE_FIELDS: tuple[Field, ...] = (
    Field("symbol", "string", True, "Binance symbol"),
    Field("window_start", "timestamp", True, "window start, inclusive (UTC)"),
    Field("window_end", "timestamp", True, "window end, exclusive (UTC)"),
    Field("avg_price", "double", True, "mean of the ticks' prices"),
    Field("min_price", "double", True, "lowest price"),
    Field("max_price", "double", True, "highest price"),
    Field("count", "long", True, "number of ticks"),
    Field("spread", "double", True, "max_price - min_price"),
    Field("open_price", "double", False, "price of the earliest tick by event time"),
    Field("close_price", "double", False, "price of the latest tick by event time"),
    Field("pct_change", "double", False, "100 * (close_price - open_price) / open_price"),
    Field("stddev_price", "double", False, "sample standard deviation; null for one tick"),
    Field("volume", "double", False, "sum of quantities; null when ticks carry none"),
    Field("vwap", "double", False, "volume-weighted average price; null without volume"),
    Field("last_event_time", "timestamp", False, "event time of the newest tick counted"),
    Field("emitted_at", "timestamp", False, "when the Spark job wrote this value"),
    _EXPECTED,
    _MISSED,
)

# A candle spans one minute: the charts roll larger timeframes up from it.
CANDLE_SECONDS = 60

CANDLE_FIELDS: tuple[Field, ...] = (
    Field("symbol", "string", True, "Binance symbol"),
    Field("open_time", "timestamp", True, "the minute's start, inclusive (UTC)"),
    Field("close_time", "timestamp", True, "the minute's end, exclusive (UTC)"),
    Field("open", "double", True, "price of the earliest tick by event time"),
    Field("high", "double", True, "highest price"),
    Field("low", "double", True, "lowest price"),
    Field("close", "double", True, "price of the latest tick by event time"),
    Field("count", "long", True, "number of ticks"),
    Field("volume", "double", False, "sum of quantities; null when ticks carry none"),
    _EXPECTED,
    _MISSED,
)

DLQ_FIELDS: tuple[Field, ...] = (
    Field("reason", "string", True, "why the record was rejected"),
    Field("value", "string", False, "the original value as text (invalid UTF-8 replaced)"),
    Field("source_topic", "string", True, "where the record came from"),
    Field("source_partition", "long", True, ""),
    Field("source_offset", "long", True, ""),
    Field("source_timestamp", "timestamp", False, "the original record's Kafka timestamp"),
    Field("rejected_at", "timestamp", True, "when the Spark job rejected it"),
)

ALERT_FIELDS: tuple[Field, ...] = (
    Field("symbol", "string", True, "Binance symbol"),
    Field("kind", "string", True, "move (close vs. open) or zscore (return vs. recent ones)"),
    Field("value", "double", True, "the window's move in percent, or its z-score"),
    Field("threshold", "double", True, "the setting the value went beyond (either sign)"),
    Field("window_start", "timestamp", True, "start of the window that moved (UTC)"),
    Field("window_end", "timestamp", True, "end of that window (UTC)"),
    Field("detected_at", "timestamp", True, "when the Spark job first saw the spike"),
    Field("pct_change", "double", False, "the window's move in percent, for either kind: "
                                         "what a later alert must exceed by the threshold"),
    Field("windows", "long", False, "how many windows this alert stands for: those of the "
                                    "same batch, symbol and direction beyond a threshold"),
    Field("first_window_start", "timestamp", False, "start of the first of them (UTC)"),
    Field("last_window_end", "timestamp", False, "end of the last of them (UTC)"),
)

# The kinds of alert (ALERT_FIELDS' `kind`).
MOVE, ZSCORE = "move", "zscore"

KEY_SEPARATOR = "|"

# Headers of a tick record, which the producer reads back to resume where Kafka stands:
# the stream of positions it belongs to (its source, and for a replay its file), and the
# tick's position in it.
ORIGIN_HEADER, POSITION_HEADER = "origin", "position"


def format_time(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds and `Z`, as every message of the pipeline writes."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no offset; the pipeline only writes UTC")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 time that carries an offset (`Z` or `+hh:mm`)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Tick:
    symbol: str
    price: float
    event_time: datetime
    source: str
    quantity: float | None = None
    event_id: str | None = None
    # Where its source resumes after this tick (a replay's index in its file, a trade's
    # id): a Kafka header of the record (POSITION_HEADER), not part of the message.
    position: int | None = None
    # Trades missed just before this one (TICK_FIELDS' `missed_before`).
    missed_before: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.price, float) and math.isfinite(self.price) and self.price > 0):
            raise ValueError(f"{self.symbol}: price {self.price!r} is not a finite number > 0")
        if self.event_time.tzinfo is None:
            raise ValueError(f"{self.symbol}: event time without an offset")

    @property
    def key(self) -> bytes:
        return self.symbol.encode()

    def to_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "symbol": self.symbol,
            "price": self.price,
            "event_time": format_time(self.event_time),
            "source": self.source,
        }
        if self.quantity is not None:
            message["quantity"] = self.quantity
        if self.event_id is not None:
            message["event_id"] = self.event_id
        if self.missed_before is not None:
            message["missed_before"] = self.missed_before
        return message

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


def aggregate_key(symbol: str, window_start: str) -> str:
    return f"{symbol}{KEY_SEPARATOR}{window_start}"


def candle_key(symbol: str, open_time: str) -> str:
    return f"{symbol}{KEY_SEPARATOR}{open_time}"


def alert_key(symbol: str, window_start: str, kind: str) -> str:
    return f"{symbol}{KEY_SEPARATOR}{window_start}{KEY_SEPARATOR}{kind}"


def parse_aggregate(value: bytes | str) -> dict[str, Any]:
    """An aggregate message as a dict with times as aware datetimes; ValueError if malformed."""
    return _parse_message(value, AGGREGATE_FIELDS, "aggregate")


def parse_candle(value: bytes | str) -> dict[str, Any]:
    """A candle message as a dict with times as aware datetimes; ValueError if malformed."""
    return _parse_message(value, CANDLE_FIELDS, "candle")


def parse_alert(value: bytes | str) -> dict[str, Any]:
    """An alert message as a dict with times as aware datetimes; ValueError if malformed."""
    return _parse_message(value, ALERT_FIELDS, "alert")


def _parse_message(value: bytes | str, message_fields: tuple[Field, ...],
                   what: str) -> dict[str, Any]:
    record = json.loads(value)
    if not isinstance(record, dict):
        raise ValueError(f"{what}: not a JSON object")
    missing = [f.name for f in message_fields if f.required and record.get(f.name) is None]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")
    for f in message_fields:
        value = record.get(f.name)
        if value is None:
            continue
        if f.type == "string" and not isinstance(value, str):
            raise ValueError(f"{f.name} is not a string: {value!r}")
        if f.type == "timestamp":
            record[f.name] = parse_time(value)
        elif f.type in ("double", "long") and (
                isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise ValueError(f"{f.name} is not a finite number: {value!r}")
    return record


def spark_schema(schema_fields: Iterable[Field]):
    """The Spark StructType of a message (imported lazily: only the job needs pyspark)."""
    from pyspark.sql import types as T

    spark_types = {"string": T.StringType(), "double": T.DoubleType(), "long": T.LongType(),
                   "timestamp": T.TimestampType()}
    return T.StructType([T.StructField(f.name, spark_types[f.type], True) for f in schema_fields])
