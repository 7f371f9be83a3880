"""The Spark job's transforms on static data: parsing and validation, dead letters, and
the window aggregation against the independent oracle on real Binance klines."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.core.schema import (
    AGGREGATE_FIELDS,
    CANDLE_FIELDS,
    DLQ_FIELDS,
    Tick,
    aggregate_key,
    candle_key,
    format_time,
    parse_time,
)
from crypto_pipeline.core.settings import Duration, Settings
from crypto_pipeline.streaming.transforms import (
    DLQ_VALUE_MAX_CHARS,
    aggregate_records,
    aggregate_windows,
    candle_records,
    candles,
    dead_letter_records,
    parse_records,
    rejected_records,
    valid_ticks,
)
from support.helpers import candles as oracle_candles
from support.helpers import windows
from support.oracle import candle_mismatches, expected_candles, expected_windows, mismatches
from support.tick_scenarios import (
    POISON,
    in_future,
    out_of_order,
    replay_ticks,
    tick_json,
)

pytestmark = pytest.mark.integration

SETTINGS = Settings.load(environ={}, env_file=None)
KAFKA_RECORD_SCHEMA = ("key binary, value binary, topic string, partition int, offset long, "
                       "timestamp timestamp")
RECEIVED = datetime(2025, 1, 15, 14, 40, tzinfo=timezone.utc)


def kafka_records(spark, values):
    """A static DataFrame shaped like Spark's Kafka source, one record per value."""
    rows = [(b"key", value.encode() if isinstance(value, str) else value, "ticks", 0, offset,
             RECEIVED) for offset, value in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_RECORD_SCHEMA)


def test_bad_input_is_rejected_with_a_readable_reason(spark):
    names = list(POISON)
    parsed = parse_records(kafka_records(spark, [POISON[n][0] for n in names]),
                           SETTINGS.max_clock_skew)
    reasons = {row.offset: row.reason for row in parsed.collect()}
    got = {name: reasons[offset] for offset, name in enumerate(names)}
    assert got == {name: reason for name, (_, reason) in POISON.items()}
    assert valid_ticks(parsed).count() == 0


def test_valid_ticks_keep_their_fields_in_utc(spark):
    values = [
        tick_json(),
        tick_json(event_time="2025-01-15T15:32:01.5+01:00", quantity=0.25, source="binance-ws"),
        tick_json(event_time="2025-01-15T14:32:01-0000", extra={"ignored": True}),
        # Old times are valid (replays, backfills); a little clock skew is tolerated.
        tick_json(event_time="2017-08-17T04:00:00Z"),
        tick_json(event_time=in_future(timedelta(seconds=20))),
        Tick("ETHUSDT", 1983.55, datetime(2022, 8, 14, tzinfo=timezone.utc), "replay",
             event_id="e1").to_json(),
    ]
    ticks = valid_ticks(parse_records(kafka_records(spark, values), SETTINGS.max_clock_skew))
    rows = [row.asDict() for row in ticks.collect()]
    assert len(rows) == len(values)
    assert rows[0] == {"symbol": "BTCUSDT", "price": 97432.15,
                       "event_time": datetime(2025, 1, 15, 14, 32, 1, 123456),
                       "source": None, "quantity": None, "event_id": None,
                       "missed_before": None}
    assert rows[1] == {"symbol": "BTCUSDT", "price": 97432.15,
                       "event_time": datetime(2025, 1, 15, 14, 32, 1, 500000),
                       "source": "binance-ws", "quantity": 0.25, "event_id": None,
                       "missed_before": None}
    assert rows[2]["event_time"] == datetime(2025, 1, 15, 14, 32, 1)
    assert rows[5]["event_id"] == "e1" and rows[5]["source"] == "replay"


def test_dead_letters_carry_the_original_value_reason_and_origin(spark):
    long_garbage = "x" * (DLQ_VALUE_MAX_CHARS + 10)
    values = [tick_json(price=-1), b"\xff\xfe{oops", long_garbage]
    rejected = rejected_records(parse_records(kafka_records(spark, values),
                                              SETTINGS.max_clock_skew))
    letters = sorted((json.loads(row.value) for row in dead_letter_records(rejected).collect()),
                     key=lambda letter: letter["source_offset"])
    assert [list(letter) for letter in letters] == [[f.name for f in DLQ_FIELDS]] * 3
    assert letters[0]["value"] == values[0]
    assert letters[0]["reason"] == "price is not greater than zero"
    assert (letters[0]["source_topic"], letters[0]["source_partition"]) == ("ticks", 0)
    assert letters[0]["source_timestamp"] == format_time(RECEIVED)
    assert parse_time(letters[0]["rejected_at"]) > RECEIVED
    assert letters[1]["value"] == "\ufffd\ufffd{oops"
    assert letters[2]["value"] == "x" * DLQ_VALUE_MAX_CHARS


@pytest.fixture(scope="module")
def replayed():
    """Real klines as ticks: BTCUSDT over two days (no quantity), ETHUSDT over two days
    with quantities, and one lonely tick; delivered out of order within a minute."""
    ticks = (replay_ticks("BTCUSDT-1m-2025-08-01_2025-08-10.csv", minutes=2 * 1440)
             + replay_ticks("ETHUSDT-1m-2022-08-14.csv", with_quantity=True)
             + replay_ticks("ETHUSDT-1m-2022-08-15.csv", with_quantity=True)
             + [Tick("SOLUSDT", 171.25, datetime(2025, 8, 1, 12, 0, 30, tzinfo=timezone.utc),
                     "replay")])
    return ticks, out_of_order(ticks, 60, seed=4)


def test_aggregation_matches_the_oracle_on_real_klines(spark, replayed):
    ticks, delivered = replayed
    values = [t.to_json() for t in delivered] + [v for v, _ in POISON.values()]
    parsed = parse_records(kafka_records(spark, values), SETTINGS.max_clock_skew)
    aggregated = aggregate_windows(valid_ticks(parsed), SETTINGS).cache()
    records = aggregate_records(aggregated).collect()
    candle_rows = candle_records(candles(aggregated)).collect()
    aggregated.unpersist()

    # Every minute's candle once, from the window that ends with it.
    got = {row.key: json.loads(row.value) for row in candle_rows}
    assert len(got) == len(candle_rows)
    assert candle_mismatches(got, oracle_candles(ticks, SETTINGS)) == []
    eth = got[candle_key("ETHUSDT", "2022-08-14T00:00:00.000000Z")]
    assert list(eth) == [f.name for f in CANDLE_FIELDS]
    assert eth["close_time"] == "2022-08-14T00:01:00.000000Z" and eth["count"] == 4

    actual = {row.key: json.loads(row.value) for row in records}
    assert len(actual) == len(records), "one record per symbol and window"
    expected = windows(ticks, SETTINGS)
    assert mismatches(actual, expected) == []
    # Every value names exactly the schema's fields, with times as format_time writes them.
    first = actual[aggregate_key("BTCUSDT", "2025-07-31T23:56:00.000000Z")]
    assert list(first) == [f.name for f in AGGREGATE_FIELDS]
    assert first["window_end"] == "2025-08-01T00:01:00.000000Z"
    assert all(key == aggregate_key(v["symbol"], v["window_start"]) for key, v in actual.items())
    lonely = actual[aggregate_key("SOLUSDT", "2025-08-01T12:00:00.000000Z")]
    assert (lonely["count"], lonely["stddev_price"], lonely["volume"], lonely["vwap"]) == (
        1, None, None, None)


def test_window_settings_are_honoured(spark, replayed):
    ticks, _ = replayed
    settings = SETTINGS.replace(window_duration=Duration.parse("90 seconds"),
                                window_slide=Duration.parse("30 seconds"))
    few = ticks[:400]
    parsed = parse_records(kafka_records(spark, [t.to_json() for t in few]),
                           settings.max_clock_skew)
    aggregated = aggregate_windows(valid_ticks(parsed), settings)
    records = aggregate_records(aggregated).collect()
    actual = {row.key: json.loads(row.value) for row in records}
    assert mismatches(actual, expected_windows(few, 90, 30)) == []
    # Windows end every 30 s; those ending on a minute hold the candles.
    got = {row.key: json.loads(row.value)
           for row in candle_records(candles(aggregated)).collect()}
    assert candle_mismatches(got, expected_candles(few)) == []


def test_windows_and_candles_say_how_complete_they_are(spark):
    """Polls every 5 s with an outage, trades with a gap the producer reported: the
    expected polls and the missed trades, as the oracle has them."""
    start = datetime(2025, 1, 15, 14, 0, tzinfo=timezone.utc)
    polls = [Tick("BTCUSDT", 97000.0 + i, start + timedelta(seconds=5 * i), "binance")
             for i in range(120) if not 30 <= i < 50]  # 100 s without polls
    trades = [Tick("ETHUSDT", 3000.0 + i, start + timedelta(seconds=3 * i), "binance-ws",
                   quantity=0.5, event_id=str(i), missed_before=7 if i == 40 else None)
              for i in range(100)]
    parsed = parse_records(kafka_records(spark, [t.to_json() for t in polls + trades]),
                           SETTINGS.max_clock_skew)
    aggregated = aggregate_windows(valid_ticks(parsed), SETTINGS)
    actual = {row.key: json.loads(row.value)
              for row in aggregate_records(aggregated).collect()}
    assert mismatches(actual, windows(polls + trades, SETTINGS)) == []
    got = {row.key: json.loads(row.value)
           for row in candle_records(candles(aggregated)).collect()}
    assert candle_mismatches(got, oracle_candles(polls + trades, SETTINGS)) == []
    window = actual[aggregate_key("BTCUSDT", "2025-01-15T14:00:00.000000Z")]
    assert (window["count"], window["expected_count"], window["missed_trades"]) == (40, 60, None)
    gap = got[candle_key("ETHUSDT", "2025-01-15T14:02:00.000000Z")]
    assert (gap["missed_trades"], gap["expected_count"]) == (7, None)
    assert got[candle_key("ETHUSDT", "2025-01-15T14:01:00.000000Z")]["missed_trades"] == 0


def test_aggregation_hash_aggregates_without_python(spark, replayed):
    """Fixed-width buffers let Spark hash-aggregate; a Python UDF would cost a round
    trip per row. Both matter at 200k ticks/s."""
    parsed = parse_records(kafka_records(spark, [replayed[1][0].to_json()]),
                           SETTINGS.max_clock_skew)
    aggregates = aggregate_records(aggregate_windows(valid_ticks(parsed), SETTINGS))
    # No public API prints the physical plan as text.
    plan = aggregates._jdf.queryExecution().executedPlan().toString()  # noqa: SLF001
    assert "HashAggregate" in plan
    assert not any(slow in plan for slow in ("SortAggregate", "ObjectHashAggregate",
                                             "BatchEvalPython", "ArrowEvalPython"))


def test_every_tick_on_the_topic_counts_a_foreign_resend_twice(spark):
    # The job keeps no per-tick state: two trades of one millisecond both count, and a
    # tick some other (at-least-once) writer sends twice counts twice, as the README says.
    at = datetime(2025, 1, 15, 14, 32, 1, 123000, tzinfo=timezone.utc)
    trades = [Tick("BTCUSDT", 97000.0, at, "binance-ws", quantity=1.0, event_id="1"),
              Tick("BTCUSDT", 97001.0, at, "binance-ws", quantity=2.0, event_id="2")]
    polled = Tick("BTCUSDT", 97002.0, at, "binance")
    delivered = trades + [trades[0], polled, polled]
    parsed = parse_records(kafka_records(spark, [t.to_json() for t in delivered]),
                           SETTINGS.max_clock_skew)
    counts = {row.window_start: row["count"]
              for row in aggregate_windows(valid_ticks(parsed), SETTINGS).collect()}
    assert set(counts.values()) == {5}
    expected = windows(delivered, SETTINGS)
    assert {record["count"] for record in expected.values()} == {5}
