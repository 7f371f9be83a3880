"""Scenario 1: the Spark job, run as start.sh runs it (under its supervisor), killed with
SIGKILL together with its JVM at random moments, three times, while real kline ticks
stream in. The supervisor restarts it with backoff, it resumes from its checkpoint, and
the final aggregates on the topic and in the history store equal the oracle."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import threading
import time

import pytest

from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import free_port
from crypto_pipeline.core.settings import Duration
from crypto_pipeline.kafka_io.topics import ensure_topics
from support.helpers import (
    eventually,
    history_by_key,
    latest_by_key,
    produce_ticks,
    read_topic,
    spark_status,
    wait_for,
    windows,
)
from support.oracle import mismatches
from support.supervised import Supervised
from support.tick_scenarios import out_of_order, replay_ticks, shifted

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KILLS = 3
MINUTES = 40
FEED_SECONDS = 60
START_TIMEOUT = 240


def real_ticks():
    """BTCUSDT and ETHUSDT klines (ETHUSDT moved to the same minutes)."""
    btc = replay_ticks("BTCUSDT-1m-2025-08-01_2025-08-10.csv", minutes=MINUTES)
    eth = replay_ticks("ETHUSDT-1m-2022-08-14.csv", minutes=MINUTES, with_quantity=True)
    eth = shifted(eth, btc[0].event_time - eth[0].event_time)
    return sorted(btc + eth, key=lambda t: t.event_time)


def feed(settings, records, stop: threading.Event) -> None:
    """The ticks stream in, a chunk a second for FEED_SECONDS, as a live feed brings them."""
    chunk = math.ceil(len(records) / FEED_SECONDS)
    for start in range(0, len(records), chunk):
        if stop.wait(0 if start == 0 else 1.0):
            return
        produce_ticks(settings, records[start:start + chunk])


def test_spark_job_killed_three_times_resumes_exactly(settings, tmp_path, fault_report):
    seed = random.randrange(2 ** 32)
    rng = random.Random(seed)
    # One partition: ticks are read in the order sent, so none comes later than the
    # watermark allows. Small micro-batches: the kills land between and inside batches.
    settings = settings.replace(topic_partitions=1, max_offsets_per_trigger=60,
                                trigger_interval=Duration.parse("500 milliseconds"),
                                spark_master="local[2]", shuffle_partitions=2,
                                spark_ui_port=free_port())
    ensure_topics(settings)
    ticks = real_ticks()
    delivered = out_of_order(ticks, 60, seed=seed)
    expected = windows(ticks, settings)
    scenario = fault_report(1, f"SIGKILL to the job's process group (Python driver and JVM) "
                               f"{KILLS} times, {len(delivered)} tick records streaming in")
    scenario.ticks_produced = len(ticks)
    scenario.note(f"{len(ticks)} ticks from real klines, delivered out of order (up to 60 s) "
                  f"over {FEED_SECONDS} s; random seed {seed}")

    job = Supervised("spark", settings, tmp_path,
                     SPARK_LOCAL_DIRS=str(tmp_path / "spark-local")).start()
    stop_feeding = threading.Event()
    feeder = threading.Thread(target=feed, args=(settings, delivered, stop_feeding),
                              name="feeder", daemon=True)
    try:
        job.wait_healthy(START_TIMEOUT)
        feeder.start()
        child = job.running_child()
        for kill in range(1, KILLS + 1):
            wait_for(lambda: spark_status(settings.run_dir).pid == child and
                     spark_status(settings.run_dir).batch_id is not None, START_TIMEOUT,
                     "the restarted job's first micro-batch")
            delay = rng.uniform(0.0, 3.0)
            time.sleep(delay)  # the injection: a random moment of the running job
            batch = spark_status(settings.run_dir).batch_id
            killed = job.kill_child()
            scenario.note(f"kill {kill}: {delay:.1f} s after the restarted job's first "
                          f"micro-batch, with batch {batch} the last one done")
            child = job.restarted_child(killed, 120)
        feeder.join(120)
        assert not feeder.is_alive(), "the feeder did not finish"

        done = eventually(lambda: not mismatches(history_by_key(settings), expected), 240)
        actual = latest_by_key(read_topic(settings.kafka_bootstrap_servers,
                                          settings.output_topic, idle=0.5, timeout=60))
        scenario.count_windows(actual, expected, settings)
        status = spark_status(settings.run_dir)
        scenario.note(f"supervisor: {job.restarts} restarts; final run at batch "
                      f"{status.batch_id}, {status.late_rows} late rows, "
                      f"{status.dlq_rows} dead letters")
        assert done, mismatches(history_by_key(settings), expected)
        assert mismatches(actual, expected) == []
        assert job.restarts == KILLS
        # A copy re-sent up to 30 places later can come after the watermark passed its
        # event time and be dropped as late; the windows equal the oracle, so no original was.
        assert status.late_rows <= len(delivered) - len(ticks) and status.pid == child

        shown = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "src" / "pipelinectl.py"), "status", "spark"],
            env=job.env, capture_output=True, text=True, timeout=60).stdout
        line = next(line for line in shown.splitlines() if line.startswith("spark"))
        assert " running " in line and f"restarts {KILLS}" in line, shown
        scenario.note(f"status.sh: `{' '.join(line.split())}`")
    finally:
        stop_feeding.set()
        if feeder.ident:
            feeder.join(30)
        job.stop()
