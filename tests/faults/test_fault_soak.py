"""Scenario 6 (long): a soak of the Spark job, run as start.sh runs it, at 1,000 ticks/s over
200 symbols for 30 minutes (SOAK_MINUTES to try it shorter). The watermark must evict
state: state rows, batch duration and the job's memory stay flat, and every tick is
counted exactly once.

"Flat": the run is cut in thirds; the first is warm-up (a window of 5 minutes plus the
2-minute watermark fill the state), and the last third's level may exceed the middle
third's by at most TOLERANCE (mean state rows, mean resident memory of the job's process
tree, median batch duration: a shared machine makes single batches noisy).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from fault_report import windows_per_tick

from bench.loadgen import paced
from bench.plan import GB
from crypto_pipeline.core.history import open_history
from crypto_pipeline.core.processes import free_port, tree_rss_bytes
from crypto_pipeline.core.schema import aggregate_key, format_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.topics import ensure_topics
from support.helpers import eventually, spark_status
from support.oracle import from_micros, window_starts
from support.supervised import Supervised

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.long]

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
RATE = 1000
SYMBOLS = 200
SAMPLE_SECONDS = 10.0
TOLERANCE = {"state_rows": 0.10, "rss_gb": 0.20, "batch_ms": 0.30}
# How each is written: memory in GB, the project's one unit for it.
FORMATS = {"state_rows": ",.0f", "rss_gb": ".2f", "batch_ms": ",.0f"}


@dataclass
class Sample:
    at: float  # seconds since the load began
    state_rows: int
    batch_ms: int
    backlog: int
    rss_gb: float


def sample_until(job: Supervised, settings, began: float, stop: threading.Event,
                 samples: list[Sample]) -> None:
    while not stop.wait(SAMPLE_SECONDS):
        status = spark_status(settings.run_dir)
        child = job.running_child()
        if status.state_rows is None or child is None:
            continue
        samples.append(Sample(time.monotonic() - began, status.state_rows,
                              status.batch_duration_ms or 0, status.backlog or 0,
                              tree_rss_bytes(child) / GB))


def counts(settings) -> dict[str, dict[str, int]]:
    """The history store's window counts, keyed as the aggregates topic keys them."""
    return {aggregate_key(row["symbol"], format_time(row["window_start"])):
            {"count": row["count"]} for row in open_history(settings.history_url).load()}


def level(samples: list[Sample], name: str) -> float:
    values = [getattr(s, name) for s in samples]
    return statistics.median(values) if name == "batch_ms" else statistics.fmean(values)


@pytest.mark.timeout(MINUTES * 60 + 1200)
def test_soak_state_time_and_memory_stay_flat(settings, tmp_path, fault_report):
    seconds = MINUTES * 60
    # The production defaults for the job, on this test's topics and state.
    defaults = Settings.load(environ={}, env_file=None)
    settings = settings.replace(topic_partitions=defaults.topic_partitions,
                                trigger_interval=defaults.trigger_interval,
                                spark_ui_port=free_port())
    ensure_topics(settings)
    scenario = fault_report(6, f"{RATE:,} ticks/s over {SYMBOLS} symbols for "
                               f"{MINUTES:g} minutes (event time = now)")
    duration = round(settings.window_duration.seconds * 1e6)
    slide = round(settings.window_slide.seconds * 1e6)
    expected: Counter = Counter()  # (symbol, window start) -> ticks sent into it

    def count(symbol: str, micros: int, _: float) -> None:
        for start in window_starts(micros, duration, slide):
            expected[(symbol, start)] += 1

    job = Supervised("spark", settings, tmp_path,
                     SPARK_LOCAL_DIRS=str(tmp_path / "spark-local")).start()
    samples: list[Sample] = []
    stop = threading.Event()
    try:
        job.wait_healthy(240)
        began = time.monotonic()
        sampler = threading.Thread(target=sample_until, name="sampler", daemon=True,
                                   args=(job, settings, began, stop, samples))
        sampler.start()
        sent = paced(settings.kafka_bootstrap_servers, settings.input_topic, SYMBOLS, RATE,
                     seconds, on_sent=count)
        loaded = time.monotonic() - began
        stop.set()
        sampler.join()
        scenario.ticks_produced = sent
        wanted = {aggregate_key(symbol, format_time(from_micros(start))): {"count": n}
                  for (symbol, start), n in expected.items()}
        eventually(lambda: counts(settings) == wanted, 600)
        status = spark_status(settings.run_dir)
    finally:
        stop.set()
        job.stop()

    scenario.count_windows(counts(settings), wanted, settings)
    scenario.note(f"{sent:,} ticks sent in {loaded:.0f} s ({sent / loaded:,.0f}/s); job "
                  f"restarts {job.restarts}; late rows {status.late_rows}; "
                  f"{status.dlq_rows} dead letters; windows counted in the history store")
    assert sent == sum(expected.values()) / windows_per_tick(settings)

    third = seconds / 3
    reference = [s for s in samples if third <= s.at < 2 * third]
    final = [s for s in samples if s.at >= 2 * third]
    verdicts = {}
    for name, tolerance in TOLERANCE.items():
        before, after = level(reference, name), level(final, name)
        verdicts[name] = after <= before * (1 + tolerance)
        shown = FORMATS[name]
        scenario.note(f"{name}: {before:{shown}} in the middle third, {after:{shown}} in the last "
                      f"(at most +{tolerance:.0%}): {'flat' if verdicts[name] else 'GROWING'}")
    scenario.details += ["| minute | state rows | batch duration (ms) | backlog | job RSS (GB) |",
                         "|---|---|---|---|---|"]
    for minute in range(int(MINUTES)):
        group = [s for s in samples if minute * 60 <= s.at < (minute + 1) * 60]
        if group:
            scenario.details.append(
                f"| {minute + 1} | {statistics.fmean(s.state_rows for s in group):,.0f} | "
                f"{statistics.median(s.batch_ms for s in group):,.0f} | "
                f"{max(s.backlog for s in group):,} | "
                f"{statistics.fmean(s.rss_gb for s in group):.2f} |")
    assert scenario.lost == 0 and scenario.duplicated == 0
    assert all(verdicts.values()), verdicts
    assert job.restarts == 0
