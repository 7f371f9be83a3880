"""Scenario 5: poison on the input topic, from the corpus and generated at random
(hypothesis), among real ticks: the job keeps running, every bad record is on the
dead-letter topic with its reason, and the good ticks' aggregates equal the oracle."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from itertools import islice

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crypto_pipeline.core.settings import Duration
from crypto_pipeline.core.symbols import SYMBOL_RE
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.job import StreamingJob
from support.helpers import (
    history_by_key,
    latest_by_key,
    produce,
    read_topic,
    spark_status,
    wait_for,
    windows,
)
from support.oracle import mismatches
from support.tick_scenarios import POISON, replay_ticks

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PER_KIND = 8  # records generated of each kind of poison
GOOD_MINUTES = 20
VALID = {"symbol": "ETHUSDT", "price": 1950.5, "event_time": "2022-08-14T00:10:00.000000Z"}
NOT_AN_OBJECT = "value is not a JSON object"
BAD_SYMBOL = "symbol is not a Binance symbol (2-20 capital letters and digits)"
# Spark's JSON reader takes these strings as numbers (NaN, ±Infinity): such a price is
# rejected as not finite, so they are no example of a price of the wrong type.
SPARK_NUMBER_WORDS = {"NaN", "+NaN", "-NaN", "Infinity", "+Infinity", "-Infinity", "INF",
                      "+INF", "-INF"}


def with_field(name: str, value, *, drop: bool = False) -> bytes:
    """A valid tick with one field changed (or dropped)."""
    message = {k: v for k, v in VALID.items() if not (drop and k == name)}
    if not drop:
        message[name] = value
    return json.dumps(message, allow_nan=True).encode()


def missing(name: str) -> st.SearchStrategy:
    return st.booleans().map(lambda drop: (with_field(name, None, drop=drop),
                                           f"{name} is missing or null"))


def wrong_type(name: str) -> st.SearchStrategy:
    values = st.one_of(st.text().filter(lambda t: t not in SPARK_NUMBER_WORDS),
                       st.booleans(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
    return values.map(lambda v: (with_field(name, v), f"{name} is not a JSON number"))


def poison_kinds() -> list[st.SearchStrategy[tuple[bytes, str]]]:
    """Each kind of poison: (record value, the reason the job must give). Anything but an
    object, or a valid tick with exactly one thing wrong."""
    digitless = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")))
    moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1))
    return [
        st.binary().filter(lambda b: b"{" not in b).map(lambda b: (b, NOT_AN_OBJECT)),
        st.text().filter(lambda t: "{" not in t).map(lambda t: (t.encode(), NOT_AN_OBJECT)),
        missing("symbol"), missing("price"), missing("event_time"),
        wrong_type("price"), wrong_type("quantity"),
        st.text().filter(lambda t: not SYMBOL_RE.fullmatch(t)).map(
            lambda s: (with_field("symbol", s), BAD_SYMBOL)),
        st.sampled_from([math.nan, math.inf, -math.inf]).map(
            lambda p: (with_field("price", p), "price is not a finite number")),
        st.floats(max_value=0.0, allow_nan=False, allow_infinity=False).map(
            lambda p: (with_field("price", p), "price is not greater than zero")),
        st.one_of(st.floats(max_value=-1e-9, allow_infinity=True),
                  st.just(math.nan), st.just(math.inf)).map(
            lambda q: (with_field("quantity", q), "quantity is not a finite number >= 0")),
        digitless.map(lambda t: (with_field("event_time", t),
                                 "event_time is not an ISO-8601 date and time")),
        moments.map(lambda m: (with_field("event_time", m.isoformat()),
                               "event_time has no UTC offset (Z or +hh:mm)")),
        st.integers(5, 10 ** 6).map(lambda minutes: (with_field("event_time", (
            datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()),
            "event_time is more than 1 minute in the future")),
    ]


def corpus() -> list[tuple[bytes | None, str]]:
    return [(value.encode() if isinstance(value, str) else value, reason)
            for value, reason in POISON.values()]


@hypothesis_settings(max_examples=1, deadline=None, database=None, phases=[Phase.generate],
                     suppress_health_check=list(HealthCheck))
@given(kinds=st.tuples(*(st.lists(kind, min_size=PER_KIND, max_size=PER_KIND)
                         for kind in poison_kinds())))
def test_poison_goes_to_the_dead_letter_topic_with_its_reason(spark, settings, kinds,
                                                              fault_report):
    generated = [record for kind in kinds for record in kind]
    settings = settings.replace(topic_partitions=1,
                                trigger_interval=Duration.parse("200 milliseconds"))
    ensure_topics(settings)
    good = replay_ticks("ETHUSDT-1m-2022-08-14.csv", minutes=GOOD_MINUTES, with_quantity=True)
    bad = corpus() + generated
    scenario = fault_report(5, f"{len(bad)} bad records ({len(POISON)} from the corpus, "
                               f"{len(generated)} generated by hypothesis) among "
                               f"{len(good)} real ticks")
    scenario.ticks_produced = len(good)
    # Poison spread evenly through the good ticks, all on one partition in this order.
    every = max(1, len(good) // len(bad))
    left = iter(bad)
    records: list[tuple[bytes, bytes | None, str | None]] = []  # key, value, reason
    for index, tick in enumerate(good):
        records.append((tick.key, tick.to_json(), None))
        if index % every == 0:
            records.extend((b"POISON", value, reason) for value, reason in islice(left, 1))
    records.extend((b"POISON", value, reason) for value, reason in left)
    sent = produce(settings, [(key, value) for key, value, _ in records])
    expected_reasons = {(meta.partition, meta.offset): reason
                        for meta, (_, _, reason) in zip(sent, records) if reason}
    expected = windows(good, settings)

    job = StreamingJob(spark, settings)
    job.start()
    try:
        letters = read_topic(settings.kafka_bootstrap_servers, settings.dlq_topic,
                             min_records=len(bad), timeout=180, idle=0.5)
        wait_for(lambda: not mismatches(history_by_key(settings), expected), 180,
                 "the good ticks' aggregates", interval=0.5)
        actual = latest_by_key(read_topic(settings.kafka_bootstrap_servers,
                                          settings.output_topic, idle=0.3))
        assert all(query.isActive and query.exception() is None for query in job.queries)
        wait_for(lambda: spark_status(settings.run_dir).dlq_rows == len(bad), 30,
                 "the status to count the dead letters")
    finally:
        job.stop()

    scenario.count_windows(actual, expected, settings)
    given_reasons = {(letter["source_partition"], letter["source_offset"]): letter["reason"]
                     for letter in (json.loads(record.value) for record in letters)}
    wrong = {where: (given_reasons.get(where), reason)
             for where, reason in expected_reasons.items() if given_reasons.get(where) != reason}
    scenario.note(f"{len(letters)} dead letters for {len(bad)} bad records; "
                  f"{len(bad) - len(wrong)} with the expected reason")
    scenario.note("reasons: " + "; ".join(f"{reason} ×{n}" for reason, n in
                                          Counter(reason for _, reason in bad).most_common()))
    assert wrong == {}, wrong
    assert len(letters) == len(bad)
    assert mismatches(actual, expected) == []
