"""The Spark job's logic as pure DataFrame -> DataFrame functions.

They run unchanged on a streaming DataFrame (the job) and on a static one (tests, the
backfill): Kafka records -> `parse_records` (the one tick schema, a reject reason per
record) -> `valid_ticks` / `rejected_records` -> `aggregate_windows` -> `aggregate_records`
or `dead_letter_records` (Kafka key/value pairs). No Python UDFs: everything stays in
the JVM, and the aggregation keeps fixed-width buffers so Spark can hash-aggregate.
"""

from __future__ import annotations

from typing import Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crypto_pipeline.core.schema import (
    AGGREGATE_FIELDS,
    DLQ_FIELDS,
    KEY_SEPARATOR,
    TICK_FIELDS,
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
    """Per symbol and sliding window: the columns of AGGREGATE_FIELDS.

    Streaming: ticks later than WATERMARK_DELAY are dropped and a window's state is
    freed once the watermark passes its end. Static: the same numbers over all ticks.

    Every tick on the topic counts: the pipeline's producer writes each one exactly once
    (Kafka transactions, read here read_committed), so the job keeps no per-tick state;
    its state is one row per symbol and open window, whatever the tick rate."""
    window = F.window("event_time", settings.window_duration.spark, settings.window_slide.spark)
    price, quantity = F.col("price"), F.col("quantity")
    ticks = ticks.withWatermark("event_time", settings.watermark_delay.spark)
    aggregates = (
        ticks.groupBy(window.alias("window"), "symbol")
        .agg(F.avg(price).alias("avg_price"),
             F.min(price).alias("min_price"),
             F.max(price).alias("max_price"),
             F.count(price).alias("count"),
             F.min_by(price, "event_time").alias("open_price"),
             F.max_by(price, "event_time").alias("close_price"),
             F.stddev_samp(price).alias("stddev_price"),
             F.sum(quantity).alias("volume"),
             F.sum(price * quantity).alias("_price_volume"),
             F.max("event_time").alias("last_event_time")))
    columns = {
        "window_start": F.col("window.start"),
        "window_end": F.col("window.end"),
        "spread": F.col("max_price") - F.col("min_price"),
        "pct_change": 100 * (F.col("close_price") - F.col("open_price")) / F.col("open_price"),
        "vwap": F.try_divide("_price_volume", "volume"),
        "emitted_at": F.current_timestamp(),
    }
    return aggregates.select(*[columns.get(f.name, F.col(f.name)).alias(f.name)
                               for f in AGGREGATE_FIELDS])


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
