"""Scenarios 7-9: the producer's side of exactly once. It is killed with SIGKILL while it
replays real klines and while it streams trades (and the stream is cut), each time
restarted by its supervisor; a transaction a killed producer left open is fenced. Every
tick reaches Kafka once, and the job's aggregates equal the oracle's."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.binance.klines import read_klines, ticks_of
from crypto_pipeline.core.schema import Tick
from crypto_pipeline.core.status import State
from crypto_pipeline.kafka_io.clients import librdkafka_config
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.producer.sink import default_transactional_id
from crypto_pipeline.streaming.job import StreamingJob
from support import DATA_DIR
from support.fake_binance_ws import FakeBinanceWs
from support.helpers import (
    history_by_key,
    processed,
    producer_status,
    read_topic,
    wait_for,
    windows,
)
from support.oracle import mismatches
from support.supervised import Supervised

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KILLS = 3
REPLAY = DATA_DIR / "ETHUSDT-1m-2022-08-14.csv"
# A day of minutes in about 24 s: time for three kills in between.
REPLAY_SPEED = 3600
START_TIMEOUT = 90


def aggregate_and_compare(spark, settings, ticks, scenario) -> None:
    """Run the job over everything on the topic; its aggregates must equal the oracle's."""
    expected = windows(ticks, settings)
    job = StreamingJob(spark, settings)
    job.start()
    try:
        wait_for(lambda: processed(job) >= len(ticks), 180, "the job to read every tick")
        wait_for(lambda: not mismatches(history_by_key(settings), expected), 60,
                 "the job's aggregates")
        scenario.count_windows(history_by_key(settings), expected, settings)
    finally:
        assert job.stop() == 0


def finished(producer: Supervised) -> bool:
    """The replay is done and its supervisor ended without starting it again."""
    return producer.process.poll() == 0 and \
        producer_status(producer.settings.run_dir).state == State.FINISHED


def landed_once(settings, records) -> Counter:
    return Counter((r.key.decode(), json.loads(r.value)["event_id"]) for r in records)


def test_producer_killed_during_a_replay_resumes_where_kafka_stands(spark, settings, tmp_path,
                                                                    fault_report):
    rng = random.Random(7)
    settings = settings.replace(price_source="replay", replay_file=REPLAY,
                                replay_speed=REPLAY_SPEED, symbols=("ETHUSDT",))
    ensure_topics(settings)
    ticks = list(ticks_of(read_klines(REPLAY)))
    scenario = fault_report(7, f"SIGKILL to the producer {KILLS} times while it replays "
                               f"{len(ticks)} ticks of {REPLAY.name} at {REPLAY_SPEED}x")
    producer = Supervised("producer", settings, tmp_path).start()
    try:
        producer.wait_healthy(START_TIMEOUT)
        child = producer.running_child()
        for kill in range(1, KILLS + 1):
            sent_before = wait_for(lambda: producer_status(settings.run_dir).pid == child and
                                   producer_status(settings.run_dir).ticks_sent, 60,
                                   "the restarted producer to send ticks")
            delay = rng.uniform(0.5, 2.0)
            time.sleep(delay)  # the injection: a random moment of the running replay
            killed = producer.kill_child()
            scenario.note(f"kill {kill}: {delay:.1f} s after the producer's child had sent "
                          f"{sent_before} ticks")
            child = producer.restarted_child(killed, 60)
        wait_for(lambda: finished(producer), 120,
                 "the replay to finish (its supervisor does not start it again)")
        records = read_topic(settings.kafka_bootstrap_servers, settings.input_topic,
                             min_records=len(ticks), timeout=60, idle=1.0)
        scenario.count_deliveries(Counter((t.symbol, t.event_id) for t in ticks),
                                  landed_once(settings, records))
        assert landed_once(settings, records) == Counter((t.symbol, t.event_id) for t in ticks)
        assert producer.restarts == KILLS
        aggregate_and_compare(spark, settings, ticks, scenario)
        assert scenario.lost == 0 and scenario.duplicated == 0
    finally:
        producer.stop()


def stand_in_ticks(trades: list[dict], first_ids: dict[str, int]) -> list[Tick]:
    """The stand-in's trades as the oracle's ticks, from the first each symbol landed with
    (the producer's first start begins with the next trade, by design)."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return [Tick(t["s"], float(t["p"]), epoch + timedelta(milliseconds=t["T"]), "binance-ws",
                 quantity=float(t["q"]), event_id=str(t["t"]))
            for t in trades if t["s"] in first_ids and t["t"] >= first_ids[t["s"]]]


def test_producer_killed_during_a_trade_stream_misses_and_repeats_no_trade(
        spark, settings, tmp_path, fault_report):
    scenario = fault_report(8, "SIGKILL to the producer twice while it streams trades, and "
                               "every connection cut once in between")
    with FakeBinanceWs(trades_per_second=20) as fake:
        settings = settings.replace(price_source="binance-ws", binance_ws_url=fake.url,
                                    binance_base_url=fake.rest_url,
                                    symbols=("BTCUSDT", "ETHUSDT"))
        ensure_topics(settings)
        producer = Supervised("producer", settings, tmp_path).start()
        try:
            producer.wait_healthy(START_TIMEOUT)
            child = producer.running_child()
            for step in ("kill", "cut", "kill", "end"):
                # The trades after a kill reach the restarted child, which fills the gap
                # before them from the trade history.
                before = producer_status(settings.run_dir).ticks_sent
                wait_for(lambda: producer_status(settings.run_dir).pid == child and
                         producer_status(settings.run_dir).ticks_sent > before + 40, 60,
                         "trades flowing through the running child")
                if step == "kill":
                    child = producer.restarted_child(producer.kill_child(), 60)
                elif step == "cut":
                    fake.drop()
                scenario.note(f"{step} after {len(fake.trades)} trades made")
            fake.pause()
            last = {t["s"]: t["t"] for t in fake.trades if t["s"] in settings.symbols}

            def complete() -> list:
                records = read_topic(settings.kafka_bootstrap_servers, settings.input_topic,
                                     min_records=1, timeout=30, idle=2.0)
                ids = landed_once(settings, records)
                newest = {symbol: max(int(i) for s, i in ids if s == symbol)
                          for symbol in last if any(s == symbol for s, _ in ids)}
                return records if newest == last else []

            records = wait_for(complete, 120, "every trade made to land")
            scenario.note(f"filled from the trade history: {len(fake.history_requests)} "
                          f"requests; producer errors {producer_status(settings.run_dir).errors}")
        finally:
            producer.stop()
        landed = landed_once(settings, records)
        first = {symbol: min(int(i) for s, i in landed if s == symbol) for symbol in last}
        ticks = stand_in_ticks(fake.trades, first)
    scenario.count_deliveries(Counter((t.symbol, t.event_id) for t in ticks), landed)
    assert landed == Counter((t.symbol, t.event_id) for t in ticks)
    assert producer_status(settings.run_dir).errors.get("trades-missed", 0) == 0
    aggregate_and_compare(spark, settings, ticks, scenario)
    assert scenario.lost == 0 and scenario.duplicated == 0


OPEN_TRANSACTION = textwrap.dedent("""
    import json, sys, time
    from confluent_kafka import Producer
    config, topic, ticks = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    producer = Producer(config)
    producer.init_transactions(30)
    producer.begin_transaction()
    for tick in ticks:
        producer.produce(topic, json.dumps(tick).encode(), tick["symbol"].encode())
    producer.flush(30)
    print("open", flush=True)
    time.sleep(600)
""")


def test_a_transaction_left_open_never_reaches_an_aggregate(spark, settings, tmp_path,
                                                           fault_report):
    settings = settings.replace(price_source="replay", replay_file=REPLAY, replay_speed=0,
                                symbols=("ETHUSDT",))
    ensure_topics(settings)
    scenario = fault_report(9, "a producer with the pipeline's transactional id writes 100 "
                               "ticks in a transaction and is killed before it commits")
    # The child process builds its own client from JSON: the logger object stays here.
    config = {**{k: v for k, v in librdkafka_config(settings).items() if k != "logger"},
              "transactional.id": default_transactional_id(settings)}
    ghost = [Tick("GHOSTUSDT", 1.0 + i, datetime(2022, 8, 14, 0, 1, tzinfo=timezone.utc),
                  "replay").to_dict() for i in range(100)]
    killed = subprocess.Popen([sys.executable, "-c", OPEN_TRANSACTION, json.dumps(config),
                               settings.input_topic, json.dumps(ghost)],
                              stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "open"
    killed.kill()
    killed.wait()
    uncommitted = _read_uncommitted(settings)
    assert sum(1 for r in uncommitted if r.key == b"GHOSTUSDT") == len(ghost), \
        "the open transaction's records are in the log (else this test proves nothing)"

    producer = Supervised("producer", settings, tmp_path).start()  # fences the dead one
    try:
        wait_for(lambda: finished(producer), 120, "the replay to finish")
    finally:
        producer.stop()
    ticks = list(ticks_of(read_klines(REPLAY)))
    records = read_topic(settings.kafka_bootstrap_servers, settings.input_topic,
                         min_records=len(ticks), timeout=60, idle=1.0)
    scenario.count_deliveries(Counter((t.symbol, t.event_id) for t in ticks),
                              landed_once(settings, records))
    assert not any(r.key == b"GHOSTUSDT" for r in records)
    aggregate_and_compare(spark, settings, ticks, scenario)
    assert not any(key.startswith("GHOSTUSDT|") for key in history_by_key(settings))


def _read_uncommitted(settings) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
                             enable_auto_commit=False, isolation_level="read_uncommitted")
    try:
        partitions = [TopicPartition(settings.input_topic, p)
                      for p in consumer.partitions_for_topic(settings.input_topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            if not batch and records:
                break
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        consumer.close()
