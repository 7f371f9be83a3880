"""The Spark job's logic as pure DataFrame -> DataFrame functions.

They run unchanged on a streaming DataFrame (the job) and on a static one (tests, the
backfill): Kafka records -> `parse_records` (the one tick schema, a reject reason per
record) -> `valid_ticks` / `rejected_records` -> `aggregate_windows` -> `aggregate_records`
and `candles` -> `candle_records`, or `dead_letter_records` (Kafka key/value pairs). No
Python UDFs: everything stays in the JVM, and the aggregation keeps fixed-width buffers
so Spark can hash-aggregate.

The 1-minute candles come out of the same aggregation as the sliding windows, with no
second stateful operator and no second parse: every minute is the last minute of exactly
one window (the one that ends with it: WINDOW_SLIDE divides a minute), so each window
also aggregates, in columns `candle_*`, only its ticks of its last minute. That is the
candle of that minute, exact at every update, and under the same watermark as a
tumbling 1-minute window: a tick is dropped from the window ending with its minute
exactly when it would be dropped from that minute's tumbling window.
"""

from __future__ import annotations

import math
from typing import Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crypto_pipeline.core.schema import (
    AGGREGATE_FIELDS,
    CANDLE_FIELDS,
    CANDLE_SECONDS,
    DLQ_FIELDS,
    KEY_SEPARATOR,
    POLLED_SOURCES,
    TICK_FIELDS,
    TRADE_SOURCES,
    Field,
    spark_schema,
)
from crypto_pipeline.core.settings import Duration, Settings
from crypto_pipeline.core.symbols import SYMBOL_RULE, java_pattern

# schema.format_time's layout as a Spark pattern: `X` prints `Z` for UTC.
SPARK_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSX"

# Spark's cast also takes a bare date or year; a tick needs a date and a time of day,
# then an explicit offset: `Z`, `+hh:mm`, `+hhmm` or `+hh`.
_DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
_OFFSET_PATTERN = r"[+-]\d{2}(:?\d{2})?\z"

# The whole original value rarely helps and can break Kafka's 1 MB record limit once
# JSON-escaped; source topic/partition/offset point at the full record.
DLQ_VALUE_MAX_CHARS = 100_000

_CORRUPT = "_corrupt_record"
# A tick's kind of source, as bits: what a window's ticks came from is their bit_or.
POLLED, TRADED = 1, 2


def parse_records(records: DataFrame, max_clock_skew: Duration) -> DataFrame:
    """Kafka records (key, value, topic, partition, offset, timestamp) -> the same plus
    the tick's fields (`event_time` as a timestamp) and `reason`: null for a valid tick,
    else why it is rejected. Never raises on bad input (ANSI mode: try_* functions)."""
    tick_schema = spark_schema(TICK_FIELDS).add(_CORRUPT, "string")
    text = F.col("value").cast("string")
    parsed = (records
              .withColumn("text", text)
              .withColumn("tick", F.from_json("text", tick_schema,
                                              {"columnNameOfCorruptRecord": _CORRUPT}))
              .select("key", "value", "topic", "partition", "offset", "timestamp", "text",
                      *[F.col("tick")[f.name].alias(f.name) for f in TICK_FIELDS],
                      F.col("tick").alias("_tick"),
                      F.col("tick")[_CORRUPT].alias(_CORRUPT),
                      F.col("event_time").alias("_event_time_text")))
    return (parsed
            .withColumn("event_time", F.col("_event_time_text").try_cast("timestamp"))
            .withColumn("reason", _reject_reason(max_clock_skew))
            .drop("_tick", _CORRUPT, "_event_time_text"))


def _reject_reason(max_clock_skew: Duration) -> Column:
    symbol, price, quantity = F.col("symbol"), F.col("price"), F.col("quantity")
    time_text, corrupt = F.col("_event_time_text"), F.col(_CORRUPT)
    # from_json sets the corrupt column when a value has the wrong type as well as when
    # the text is not JSON; the keys (a second parse, only for those rare rows) tell
    # which. String fields accept any JSON value, so only numbers can be of the wrong type.
    keys = F.json_object_keys("text")
    not_an_object = (F.col("_tick").isNull()
                     | ((corrupt.isNotNull() | symbol.isNull()) & keys.isNull()))

    def wrong_type(name: str) -> Column:
        return corrupt.isNotNull() & F.col(name).isNull() & F.array_contains(keys, name)

    future_limit = (F.unix_micros(F.current_timestamp())
                    + int(max_clock_skew.seconds * 1_000_000))
    rules = [
        (not_an_object, "value is not a JSON object"),
        (symbol.isNull(), "symbol is missing or null"),
        (wrong_type("price"), "price is not a JSON number"),
        (price.isNull(), "price is missing or null"),
        (time_text.isNull(), "event_time is missing or null"),
        (~symbol.rlike(java_pattern()), f"symbol is not a Binance symbol ({SYMBOL_RULE})"),
        (F.isnan(price) | (F.abs(price) == float("inf")), "price is not a finite number"),
        (price <= 0, "price is not greater than zero"),
        (wrong_type("quantity"), "quantity is not a JSON number"),
        (F.isnan(quantity) | (quantity == float("inf")) | (quantity < 0),
         "quantity is not a finite number >= 0"),
        (wrong_type("missed_before"), "missed_before is not a whole JSON number"),
        (F.col("missed_before") < 0, "missed_before is negative"),
        (F.col("event_time").isNull() | ~time_text.rlike(_DATE_TIME_PATTERN),
         "event_time is not an ISO-8601 date and time"),
        (~(time_text.endswith("Z") | time_text.rlike(_OFFSET_PATTERN)),
         "event_time has no UTC offset (Z or +hh:mm)"),
        (F.unix_micros("event_time") > future_limit,
         f"event_time is more than {max_clock_skew} in the future"),
    ]
    reason = F.when(*rules[0])
    for condition, text in rules[1:]:
        reason = reason.when(condition, text)
    return reason


def valid_ticks(parsed: DataFrame) -> DataFrame:
    """The accepted ticks, with the columns of TICK_FIELDS (event_time a timestamp)."""
    return parsed.where(F.col("reason").isNull()).select(*[f.name for f in TICK_FIELDS])


def rejected_records(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col("reason").isNotNull())


def aggregate_windows(ticks: DataFrame, settings: Settings) -> DataFrame:
    """Per symbol and sliding window: the columns of AGGREGATE_FIELDS, and the candle of
    the window's last minute in columns `candle_<field>` (`candles` takes them out).

    Streaming: ticks later than WATERMARK_DELAY are dropped and a window's state is
    freed once the watermark passes its end. Static: the same numbers over all ticks.

    Every tick on the topic counts: the pipeline's producer writes each one exactly once
    (Kafka transactions, read here read_committed), so the job keeps no per-tick state;
    its state is one row per symbol and open window, whatever the tick rate."""
    window = F.window("event_time", settings.window_duration.spark, settings.window_slide.spark)
    price, quantity = F.col("price"), F.col("quantity")
    # The window as a column first: the candle's columns look at its end. It keeps the
    # watermark of event_time, so state is still freed once the watermark passes it.
    last_minute = (F.unix_micros("event_time")
                   >= F.unix_micros(F.col("window.end")) - CANDLE_SECONDS * 1_000_000)
    # The candle's inputs: null outside the last minute, and a null ordering or value is
    # skipped by min_by/max_by, min/max, count, sum and bit_or. Computed once per row,
    # before the aggregation: inside each aggregate function, the code Spark generates
    # outgrows what it compiles whole.
    ticks = (ticks.withWatermark("event_time", settings.watermark_delay.spark)
             .withColumn("window", window)
             .withColumn("_last", last_minute)
             .withColumn("_kind", F.when(F.col("source").isin(*POLLED_SOURCES), POLLED)
                         .when(F.col("source").isin(*TRADE_SOURCES), TRADED).otherwise(0))
             .select("*", *[F.when(F.col("_last"), F.col(name))
                            .alias(f"_candle_{name.lstrip('_')}")
                            for name in ("event_time", "price", "quantity", "missed_before",
                                         "_kind")]))
    candle_price = F.col("_candle_price")
    aggregates = (
        ticks.groupBy("window", "symbol")
        .agg(F.avg(price).alias("avg_price"),
             F.min(price).alias("min_price"),
             F.max(price).alias("max_price"),
             F.count(price).alias("count"),
             F.min_by(price, "event_time").alias("open_price"),
             F.max_by(price, "event_time").alias("close_price"),
             F.stddev_samp(price).alias("stddev_price"),
             F.sum(quantity).alias("volume"),
             F.sum(price * quantity).alias("_price_volume"),
             F.max("event_time").alias("last_event_time"),
             F.bit_or("_kind").alias("_kinds"),
             F.sum("missed_before").alias("_missed"),
             F.min_by(candle_price, "_candle_event_time").alias("candle_open"),
             F.max(candle_price).alias("candle_high"),
             F.min(candle_price).alias("candle_low"),
             F.max_by(candle_price, "_candle_event_time").alias("candle_close"),
             F.count(candle_price).alias("candle_count"),
             F.sum("_candle_quantity").alias("candle_volume"),
             F.bit_or("_candle_kind").alias("_candle_kinds"),
             F.sum("_candle_missed_before").alias("_candle_missed")))
    columns = {
        "window_start": F.col("window.start"),
        "window_end": F.col("window.end"),
        "spread": F.col("max_price") - F.col("min_price"),
        "pct_change": 100 * (F.col("close_price") - F.col("open_price")) / F.col("open_price"),
        "vwap": F.try_divide("_price_volume", "volume"),
        "emitted_at": F.current_timestamp(),
        **_completeness("", settings.window_duration.seconds, settings),
    }
    candle_columns = {
        "candle_open_time": F.col("window.end") - F.expr(f"INTERVAL {CANDLE_SECONDS} SECONDS"),
        "candle_close_time": F.col("window.end"),
        **{f"candle_{name}": column for name, column in
           _completeness("_candle", CANDLE_SECONDS, settings).items()},
    }
    return aggregates.select(
        *[columns.get(f.name, F.col(f.name)).alias(f.name) for f in AGGREGATE_FIELDS],
        *[candle_columns.get(f"candle_{name}", F.col(f"candle_{name}")).alias(f"candle_{name}")
          for name in CANDLE_COLUMNS])


# The candle fields aggregate_windows carries as `candle_<name>` (symbol is the window's).
CANDLE_COLUMNS = tuple(f.name for f in CANDLE_FIELDS if f.name != "symbol")


def _completeness(prefix: str, span_seconds: float, settings: Settings) -> dict[str, Column]:
    """expected_count and missed_trades of a span from the `{prefix}_kinds` (which kinds
    of source its ticks came from) and `_missed` buffers: a polling source's ticks expected
    at POLL_INTERVAL_SECONDS (a whole number of polls fits in the span at least), a trade
    stream's missed trades."""
    expected = math.floor(span_seconds / settings.poll_interval_seconds + 1e-9)
    kinds = F.col(f"{prefix}_kinds")
    return {
        "expected_count": F.when(kinds.bitwiseAND(POLLED) != 0, F.lit(expected)),
        "missed_trades": F.when(kinds.bitwiseAND(TRADED) != 0,
                                F.coalesce(F.col(f"{prefix}_missed"), F.lit(0))),
    }


def candles(windows: DataFrame) -> DataFrame:
    """The 1-minute candles in windows of `aggregate_windows`, with the columns of
    CANDLE_FIELDS: one per window that ends on a minute and has ticks in its last one.
    Over all windows of a symbol (static), every minute with ticks once."""
    on_minute = F.unix_micros("window_end") % (CANDLE_SECONDS * 1_000_000) == 0
    return (windows.where(on_minute & (F.col("candle_count") > 0))
            .select("symbol", *[F.col(f"candle_{name}").alias(name) for name in CANDLE_COLUMNS]))


def iso_time(column: Column | str) -> Column:
    """A timestamp as schema.format_time writes it (the session time zone is UTC)."""
    return F.date_format(column, SPARK_TIME_FORMAT)


def json_value(fields: Iterable[Field]) -> Column:
    """JSON of exactly these fields (nulls included), times as schema.format_time."""
    values = [(iso_time(f.name) if f.type == "timestamp" else F.col(f.name)).alias(f.name)
              for f in fields]
    return F.to_json(F.struct(*values), {"ignoreNullFields": "false"})


def aggregate_records(aggregates: DataFrame) -> DataFrame:
    """Kafka records of aggregates: key `SYMBOL|window_start`, value JSON."""
    key = F.concat(F.col("symbol"), F.lit(KEY_SEPARATOR), iso_time("window_start"))
    return aggregates.select(key.alias("key"), json_value(AGGREGATE_FIELDS).alias("value"))


def candle_records(candle_rows: DataFrame) -> DataFrame:
    """Kafka records of candles: key `SYMBOL|open_time`, value JSON."""
    key = F.concat(F.col("symbol"), F.lit(KEY_SEPARATOR), iso_time("open_time"))
    return candle_rows.select(key.alias("key"), json_value(CANDLE_FIELDS).alias("value"))


def dead_letter_records(rejected: DataFrame) -> DataFrame:
    """Kafka records of dead letters: the original key, value JSON of DLQ_FIELDS."""
    letters = rejected.select(
        "key",
        F.col("reason"),
        F.substring(F.make_valid_utf8("text"), 1, DLQ_VALUE_MAX_CHARS).alias("value"),
        F.col("topic").alias("source_topic"),
        F.col("partition").cast("long").alias("source_partition"),
        F.col("offset").alias("source_offset"),
        F.col("timestamp").alias("source_timestamp"),
        F.current_timestamp().alias("rejected_at"))
    return letters.select("key", json_value(DLQ_FIELDS).alias("value"))
