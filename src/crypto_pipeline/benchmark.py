"""The benchmark behind ./bench.sh: how fast and how fresh, against the machine's ceiling.

All phases run in one go on one machine, each on its own topics and checkpoints of one
embedded broker, with the production settings (Settings.load()) unless a phase says so:
1. ceiling: `transforms.aggregate_windows` (watermark, dedupe, the sliding windows and
   every statistic: exactly what the job runs after parsing) on ticks from Spark's
   `rate-micro-batch` source into a `noop` sink, with the job's state store, shuffle
   partitions and batch size (MAX_OFFSETS_PER_TRIGGER), ticks shaped like the drain's
   (same symbols, same event-time spacing). Left out, and so the job's overhead on top:
   reading Kafka, JSON parsing and validation, the dead-letter query, the batch writer;
2. catch-up: a backlog of ticks over many symbols is preloaded, then the real job
   (`StreamingJob`: both queries) drains it; ticks/s from the end of its first batch
   (start-up, code generation) until both queries have read everything;
3. live: ticks produced at a fixed rate with event time = now while the job runs at its
   production trigger: does it keep up (processed as fast as produced, backlog not
   growing, batches shorter than the trigger) once the dedupe holds a full watermark of
   ticks? From half the catch-up rate, halved until it does: the highest rate kept up is
   the sustained throughput;
4. latency: the stack as start.sh runs it (broker, producer, job, dashboard: separate
   processes) with synthetic ticks at 1,000/s and a 1 s trigger, after the dedupe state
   was filled with a watermark's worth of ticks: tick produced -> first aggregate
   containing it readable on OUTPUT_TOPIC, and tick -> value on the dashboard page in
   headless Chromium; the peak RSS of every process meanwhile;
5. producer requests per poll, against the Binance stand-in, for 2 and 200 symbols.
Each phase records the load average, as the machine may be shared.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import math
import multiprocessing
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from crypto_pipeline import browser, loadgen
from crypto_pipeline.embedded_kafka import EmbeddedKafka
from crypto_pipeline.paths import PROJECT_ROOT
from crypto_pipeline.processes import free_port, pid_alive, process_tree
from crypto_pipeline.schema import parse_time
from crypto_pipeline.settings import Duration, Settings
from crypto_pipeline.status import read_status
from crypto_pipeline.topics import ensure_topics

log = logging.getLogger(__name__)

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
README = PROJECT_ROOT / "README.md"
SRC = PROJECT_ROOT / "src"
GIB = 1024 ** 3
# A live run keeps up when it processes at least this share of what was produced.
KEEPS_UP_SHARE = 0.97


@dataclass(frozen=True)
class Plan:
    symbols: int = 200
    drain_ticks: int = 4_000_000
    # Event time of the backlog advances as if ticks had come at this rate.
    drain_event_rate: float = 1000.0
    ceiling_batches: int = 5
    live_fraction: float = 0.5
    live_seconds: float = 180.0
    # The live phase halves its rate until the job keeps up, down to this rate.
    live_min_rate: float = 1000.0
    latency_symbols: int = 2
    latency_rate: float = 1000.0
    latency_seconds: float = 60.0
    page_refresh_seconds: float = 1.0
    generator_processes: int = 2
    # None: MAX_OFFSETS_PER_TRIGGER as configured.
    max_offsets_per_trigger: int | None = None


QUICK = Plan(drain_ticks=600_000, ceiling_batches=3, live_seconds=40, latency_seconds=20,
             max_offsets_per_trigger=150_000)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# --- memory ---------------------------------------------------------------------------------

def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (JVMs started by Python)."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class PeakMemory:
    """Samples the RSS of named process trees five times a second; keeps the peaks."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.peaks: dict[str, int] = {}
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def reset(self) -> None:
        self.peaks.clear()
        self.peak_total = 0

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            for name, pid in list(self.pids.items()):
                rss = tree_rss_bytes(pid) if pid_alive(pid) else 0
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
                total += rss
            self.peak_total = max(self.peak_total, total)


# --- settings and processes -----------------------------------------------------------------

def phase_settings(base: Settings, bootstrap: str, work: Path, phase: str,
                   **overrides: Any) -> Settings:
    """The production settings, on topics and state private to one phase."""
    return base.replace(
        kafka_bootstrap_servers=bootstrap, kafka_mode="external",
        input_topic=f"bench-ticks-{phase}", output_topic=f"bench-aggregates-{phase}",
        dlq_topic=f"bench-dlq-{phase}", alerts_topic=f"bench-alerts-{phase}",
        checkpoint_dir=work / phase / "checkpoint", history_db=work / phase / "history.sqlite",
        run_dir=work / phase / "run", spark_ui_port=free_port(), backfill_enabled=False,
        **overrides)


class Processes:
    """Components as their own processes, as start.sh runs them; stopped on exit."""

    def __init__(self, work: Path):
        self.work = work
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, settings: Settings, command: list[str]) -> subprocess.Popen:
        env = {**os.environ, **settings.to_environ()}
        with open(self.work / f"{name}.log", "wb") as log_file:
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log_file,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.running[name] = process
        return process

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process in self.running.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               process: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


# --- progress of a streaming query ----------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    """One micro-batch with input, from a query's progress report."""
    started: float  # epoch seconds
    seconds: float
    rows: int
    backlog: int | None
    state_rows: int
    ms_by_phase: dict[str, int]

    @property
    def ended(self) -> float:
        return self.started + self.seconds


def batches(query) -> list[Batch]:
    """The batches that read something, from the query's recent progress (keep
    spark.sql.streaming.numRecentProgressUpdates above the batches of a phase); raises
    if the query died."""
    from crypto_pipeline.streaming_job import kafka_backlog

    if query.exception() is not None:
        raise RuntimeError(f"query {query.name} failed: {query.exception()}")
    result = []
    for progress in query.recentProgress:
        if not progress.numInputRows:
            continue
        source = progress.sources[0]
        result.append(Batch(
            started=parse_time(progress.timestamp).timestamp(),
            seconds=progress.durationMs["triggerExecution"] / 1000,
            rows=progress.numInputRows,
            backlog=kafka_backlog(source.endOffset, source.latestOffset),
            state_rows=sum(operator.numRowsTotal for operator in progress.stateOperators),
            ms_by_phase=dict(progress.durationMs)))
    return result


def rows_read(query) -> int:
    """Records a query has read so far (0 before its first batch); raises if it died."""
    from crypto_pipeline.streaming_job import total_offset

    if query.exception() is not None:
        raise RuntimeError(f"query {query.name} failed: {query.exception()}")
    progress = query.lastProgress
    if not progress or not progress["sources"]:
        return 0
    try:
        return total_offset(progress["sources"][0]["endOffset"])
    except (TypeError, ValueError):
        return 0


def drain_rate(runs: list[list[Batch]], total: int) -> dict[str, Any]:
    """Ticks/s of a backlog drain by one or more queries reading the same `total` ticks:
    from the end of the first query's first batch (which pays for start-up) until the
    last batch of any query ended."""
    main = runs[0]
    if len(main) < 3:
        raise ValueError(f"{len(main)} batches: a drain needs at least 3 to leave the first "
                         "out (more ticks or a smaller MAX_OFFSETS_PER_TRIGGER)")
    began = main[0].ended
    ended = max(batch.ended for run in runs for batch in run)
    rows = total - main[0].rows
    steady = main[1:]
    return {"rows_per_second": round(rows / (ended - began)), "rows": rows,
            "seconds": round(ended - began, 2), "batches": len(steady),
            "batch_seconds_median": round(statistics.median(b.seconds for b in steady), 2),
            "ms_by_phase": {name: sum(b.ms_by_phase.get(name, 0) for b in steady)
                            for name in ("addBatch", "latestOffset", "queryPlanning",
                                         "walCommit", "commitOffsets")}}


def keeps_up(run: list[Batch], produced_per_second: float, trigger_seconds: float,
             window: tuple[float, float]) -> dict[str, Any]:
    """Whether a query kept up with a steady input rate during `window` (epoch seconds):
    it processed at least KEEPS_UP_SHARE of what was produced, its backlog did not grow
    and its median batch was shorter than the trigger."""
    inside = [b for b in run if window[0] <= b.started and b.ended <= window[1]]
    if len(inside) < 2:
        raise ValueError(f"{len(inside)} batches in the measured window: too few to judge")
    seconds = inside[-1].ended - inside[0].started
    processed = sum(b.rows for b in inside) / seconds
    backlogs = [b.backlog for b in inside if b.backlog is not None]
    growth = backlogs[-1] - backlogs[0] if len(backlogs) >= 2 else None
    median = statistics.median(b.seconds for b in inside)
    # Backlog within a trigger's worth of ticks counts as not growing (batch timing).
    allowed = produced_per_second * trigger_seconds
    verdict = (processed >= KEEPS_UP_SHARE * produced_per_second
               and (growth is None or growth <= allowed) and median <= trigger_seconds)
    return {"keeps_up": verdict, "processed_per_second": round(processed),
            "backlog_first": backlogs[0] if backlogs else None,
            "backlog_last": backlogs[-1] if backlogs else None,
            "batch_seconds_median": round(median, 2),
            "batch_seconds_max": round(max(b.seconds for b in inside), 2),
            "state_rows_last": inside[-1].state_rows, "batches": len(inside)}


# --- phase 1: Spark's ceiling ---------------------------------------------------------------

def rate_ticks(spark, symbols: int, rows_per_batch: int, partitions: int, event_rate: float):
    """Ticks as the job sees them after parsing (the columns of TICK_FIELDS), shaped like
    the load generator's: `symbols` symbols round-robin, unique event ids, event time
    advancing `rows_per_batch / event_rate` seconds per batch."""
    from pyspark.sql import functions as F

    rate = (spark.readStream.format("rate-micro-batch")
            .option("rowsPerBatch", rows_per_batch)
            .option("numPartitions", partitions)
            .option("advanceMillisPerBatch", round(1000 * rows_per_batch / event_rate))
            .load())
    return rate.select(
        F.format_string("S%04dUSDT", (F.col("value") % symbols) + 1).alias("symbol"),
        (F.lit(100.0) + (F.col("value") % 997) / 100).alias("price"),
        F.col("timestamp").alias("event_time"),
        F.lit(loadgen.SOURCE).alias("source"),
        F.lit(None).cast("double").alias("quantity"),
        F.col("value").cast("string").alias("event_id"))


def measure_ceiling(spark, settings: Settings, plan: Plan) -> dict[str, Any]:
    """The job's aggregation on `rate-micro-batch` -> `noop`: Spark's own ticks/s here."""
    from crypto_pipeline.streaming_job import STATE_STORE_CONF
    from crypto_pipeline.transforms import aggregate_windows

    for key, value in STATE_STORE_CONF.items():
        spark.conf.set(key, value)
    rows_per_batch = settings.max_offsets_per_trigger
    ticks = rate_ticks(spark, plan.symbols, rows_per_batch, settings.topic_partitions,
                       plan.drain_event_rate)
    query = (aggregate_windows(ticks, settings).writeStream.format("noop")
             .outputMode("update")
             .option("checkpointLocation", str(settings.checkpoint_dir))
             .trigger(processingTime="0 seconds").start())
    try:
        wait_until(lambda: len(batches(query)) > plan.ceiling_batches, 1800,
                   "the ceiling query's batches")
        run = batches(query)[:plan.ceiling_batches + 1]
    finally:
        query.stop()
    steady = run[1:]
    seconds = sum(b.seconds for b in steady)
    return {"rows_per_second": round(sum(b.rows for b in steady) / seconds),
            "rows_per_batch": rows_per_batch, "batches": len(steady),
            "batch_seconds_median": round(statistics.median(b.seconds for b in steady), 2),
            "symbols": plan.symbols, "event_rate": plan.drain_event_rate,
            "load_average": load_average()}


# --- phase 2: catch-up ----------------------------------------------------------------------

def measure_drain(spark, settings: Settings, plan: Plan) -> dict[str, Any]:
    """Preload a backlog, let the real job (both queries) drain it."""
    from crypto_pipeline.streaming_job import StreamingJob

    ensure_topics(settings)
    span = plan.drain_ticks / plan.drain_event_rate
    job = loadgen.Preload(settings.kafka_bootstrap_servers, settings.input_topic, plan.symbols,
                          plan.drain_ticks, time.time_ns() // 1000 - int(span * 1e6), span)
    produce_seconds = loadgen.preload(job, plan.generator_processes)
    log.info("preloaded %d ticks in %.1f s", plan.drain_ticks, produce_seconds)
    streaming = StreamingJob(spark, settings)
    streaming.start()
    try:
        wait_until(lambda: all(rows_read(query) >= plan.drain_ticks
                               for query in streaming.queries), 1800,
                   "the job to drain the backlog")
        runs = [batches(query) for query in streaming.queries]
    finally:
        streaming.stop()
    return drain_rate(runs, plan.drain_ticks) | {
        "symbols": plan.symbols, "ticks": plan.drain_ticks,
        "event_rate": plan.drain_event_rate,
        "max_offsets_per_trigger": settings.max_offsets_per_trigger,
        "state_rows_max": max(b.state_rows for b in runs[0]),
        "generator_ticks_per_second": round(plan.drain_ticks / produce_seconds),
        "load_average": load_average()}


# --- phase 3: live --------------------------------------------------------------------------

def measure_live(spark, settings: Settings, plan: Plan, rate: float) -> dict[str, Any]:
    """Ticks at `rate`/s with event time = now while the job runs at its trigger; judged
    over the second half of the run, when the dedupe holds the most state."""
    from crypto_pipeline.streaming_job import StreamingJob

    ensure_topics(settings)
    streaming = StreamingJob(spark, settings)
    streaming.start()
    try:
        wait_until(lambda: (read_status(settings.run_dir, "spark") or {}).get("state")
                   == "active", 120, "the job to start")
        began = time.time()
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            produced = pool.apply(loadgen.paced, (
                settings.kafka_bootstrap_servers, settings.input_topic, plan.symbols, rate,
                plan.live_seconds))
        ended = time.time()
        # Stopped once caught up (a batch cut short is noisy to stop), or after a minute.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: rows_read(streaming.queries[0]) >= produced, 60,
                       "the job to catch up")
        run = batches(streaming.queries[0])
    finally:
        streaming.stop()
    offered = produced / (ended - began)
    return keeps_up(run, offered, settings.trigger_interval.seconds,
                    (began + (ended - began) / 2, ended)) | {
        "rate": rate, "offered_per_second": round(offered), "seconds": plan.live_seconds,
        "symbols": plan.symbols, "trigger": str(settings.trigger_interval),
        "load_average": load_average()}


def live_rates(drain_rate: float, plan: Plan) -> list[float]:
    """The rates the live phase tries, in order: half the drain rate, halved down to
    live_min_rate (whole thousands)."""
    rate = max(plan.live_min_rate, plan.live_fraction * drain_rate // 1000 * 1000)
    rates = [rate]
    while rate > plan.live_min_rate:
        rate = max(plan.live_min_rate, rate / 2 // 1000 * 1000)
        rates.append(rate)
    return rates


def measure_sustained(spark, base: Settings, bootstrap: str, work: Path, plan: Plan,
                      drain_rate: float) -> list[dict[str, Any]]:
    """Live runs at falling rates until the job keeps up with one."""
    attempts = []
    for rate in live_rates(drain_rate, plan):
        log.info("phase 3/5: live, %d ticks/s with event time now", rate)
        attempts.append(measure_live(
            spark, phase_settings(base, bootstrap, work, f"live-{rate:.0f}"), plan, rate))
        if attempts[-1]["keeps_up"]:
            break
    return attempts


def sustained(attempts: list[dict[str, Any]], ceiling: dict[str, Any]) -> dict[str, Any]:
    """The highest offered rate the job kept up with, and its share of the ceiling."""
    kept = [a["offered_per_second"] for a in attempts if a["keeps_up"]]
    rate = max(kept) if kept else None
    return {"ticks_per_second": rate,
            "percent_of_ceiling": round(100 * rate / ceiling["rows_per_second"], 1)
            if rate else None}


# --- phase 4: latency and memory of the whole stack -----------------------------------------

def percentiles(values: list[float]) -> dict[str, Any]:
    """p50/p95/p99 by the nearest-rank method (each one a value that occurred)."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "n": 0}

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "n": len(ordered)}


def tick_latencies(sent: list[tuple[str, int, float]],
                   seen: list[tuple[float, str, int]]) -> list[float]:
    """Seconds from each tick sent to the first aggregate of its symbol whose newest tick
    is at least as new, i.e. that contains it (ticks of a symbol are sent in order).
    sent: (symbol, event micros, wall time sent); seen: (wall time read, symbol, newest
    event micros of the aggregate). A tick no aggregate contains yet has no latency."""
    firsts: dict[str, list[tuple[int, float]]] = {}
    for at, symbol, newest in sorted(seen):
        entries = firsts.setdefault(symbol, [])
        if not entries or newest > entries[-1][0]:
            entries.append((newest, at))
    latencies = []
    for symbol, micros, sent_at in sent:
        entries = firsts.get(symbol, [])
        index = bisect.bisect_left(entries, (micros, float("-inf")))
        if index < len(entries):
            latencies.append(entries[index][1] - sent_at)
    return latencies


def _follow_aggregates(settings: Settings, seen: list, stop: threading.Event) -> None:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
                             enable_auto_commit=False)
    try:
        partitions = wait_until(lambda: consumer.partitions_for_topic(settings.output_topic),
                                60, "the aggregates topic")
        assigned = [TopicPartition(settings.output_topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_end(*assigned)
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.time()
                for record in records:
                    value = json.loads(record.value)
                    newest = parse_time(value["last_event_time"])
                    seen.append((now, value["symbol"], int(newest.timestamp() * 1_000_000)))
    finally:
        consumer.close()


class Markers:
    """Every 2 s a tick for one symbol at a new record price, sent outside the regular
    load: when the dashboard's Max for that symbol shows it, that tick reached the page."""

    def __init__(self, settings: Settings, symbol: str):
        self.settings = settings
        self.symbol = symbol
        self.sent: list[tuple[float, float]] = []  # (price, wall time sent)

    def run(self, stop: threading.Event) -> None:
        producer = loadgen.fast_producer(self.settings.kafka_bootstrap_servers)
        text = loadgen.TimeText()
        number = 0
        while not stop.wait(2.0):
            number += 1
            price = 1_000_000.0 + number
            micros = time.time_ns() // 1000
            producer.produce(self.settings.input_topic,
                             loadgen.tick_json(self.symbol, price, text(micros), -number),
                             self.symbol.encode())
            producer.flush(5)
            self.sent.append((price, micros / 1e6))

    @staticmethod
    def latencies(sent: list[tuple[float, float]],
                  shown: list[tuple[float, float]]) -> list[float]:
        """sent: (price, wall time); shown: (wall time, Max on the page), in time order.
        A marker counts as shown at the first reading at least as high as its price."""
        result = []
        for price, sent_at in sent:
            first = next((at for at, value in shown if value >= price and at >= sent_at),
                         None)
            if first is not None:
                result.append(first - sent_at)
        return result


def _read_max(page, symbol: str) -> float | None:
    locator = page.locator(browser.kpi_selector(symbol, "max_price"))
    try:
        return float(locator.inner_text(timeout=500).replace(",", ""))
    except Exception:  # noqa: BLE001 - not rendered yet, or between two reruns
        return None


def measure_stack(base: Settings, bootstrap: str, work: Path, plan: Plan,
                  memory: PeakMemory) -> dict[str, Any]:
    settings = phase_settings(base, bootstrap, work, "latency",
                              trigger_interval=Duration.parse("1 second"),
                              dashboard_port=free_port(),
                              dashboard_refresh_seconds=plan.page_refresh_seconds,
                              symbols=("BTCUSDT",), price_source="simulated",
                              poll_interval_seconds=1.0)
    ensure_topics(settings)
    names = loadgen.bench_symbols(plan.latency_symbols)
    # A watermark's worth of ticks first: the dedupe holds that many in steady state.
    warm_seconds = settings.watermark_delay.seconds
    warm = int(plan.latency_rate * warm_seconds)
    loadgen.preload(loadgen.Preload(bootstrap, settings.input_topic, plan.latency_symbols, warm,
                                    time.time_ns() // 1000 - int(warm_seconds * 1e6),
                                    warm_seconds), 1)
    with Processes(work) as processes:
        job = processes.start("spark", settings, [sys.executable, str(SRC / "streaming_app.py")])
        producer = processes.start("producer", settings,
                                   [sys.executable, str(SRC / "api_producer.py")])
        dashboard = processes.start("dashboard", settings, [
            sys.executable, "-m", "streamlit", "run", str(SRC / "dashboard.py"),
            "--server.port", str(settings.dashboard_port), "--server.address", "127.0.0.1",
            "--server.headless", "true"])
        for name, process in (("spark job", job), ("producer", producer),
                              ("dashboard", dashboard)):
            memory.watch(name, process.pid)
        wait_until(lambda: (read_status(settings.run_dir, "spark") or {}).get("backlog") == 0,
                   300, "the Spark job to read the warm-up ticks", job)
        url = f"http://127.0.0.1:{settings.dashboard_port}"
        wait_until(lambda: _answers(f"{url}/_stcore/health"), 90, "the dashboard", dashboard)

        seen: list[tuple[float, str, int]] = []
        sent: list[tuple[str, int, float]] = []
        shown: list[tuple[float, float]] = []
        stop_following, stop_markers = threading.Event(), threading.Event()
        markers = Markers(settings, names[0])
        threads = [threading.Thread(target=_follow_aggregates,
                                    args=(settings, seen, stop_following)),
                   threading.Thread(target=markers.run, args=(stop_markers,))]
        load = threading.Thread(target=loadgen.paced, args=(
            settings.kafka_bootstrap_servers, settings.input_topic, plan.latency_symbols,
            plan.latency_rate, plan.latency_seconds,
            lambda symbol, micros, _: sent.append((symbol, micros, time.time()))))
        with browser.chromium() as chromium:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            for thread in threads + [load]:
                thread.start()
            # Until the load ends, then until the last marker shows (or 30 s more).
            deadline = None
            while deadline is None or time.monotonic() < deadline:
                value = _read_max(page, names[0])
                if value is not None:
                    shown.append((time.time(), value))
                if deadline is None and not load.is_alive():
                    stop_markers.set()
                    deadline = time.monotonic() + 30
                if deadline and markers.sent and shown and shown[-1][1] >= markers.sent[-1][0]:
                    break
                time.sleep(0.05)
        # The last ticks need a batch or two to reach the aggregates topic.
        last = max(micros for _, micros, _ in sent)
        wait_until(lambda: any(n >= last for _, _, n in seen[-2000:]), 60,
                   "the last ticks in the aggregates")
        stop_following.set()
        stop_markers.set()
        for thread in threads:
            thread.join()
    aggregate_latency = tick_latencies(sent, seen)
    page_latency = Markers.latencies(markers.sent, shown)
    return {"ticks": len(sent), "symbols": plan.latency_symbols, "rate": plan.latency_rate,
            "warm_up_ticks": warm, "trigger": str(settings.trigger_interval),
            "page_refresh_seconds": plan.page_refresh_seconds,
            "tick_to_aggregate_seconds": percentiles(aggregate_latency),
            "ticks_without_aggregate": len(sent) - len(aggregate_latency),
            "tick_to_page_seconds": percentiles(page_latency),
            "markers_sent": len(markers.sent), "load_average": load_average()}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# --- phase 5: producer requests per poll ----------------------------------------------------

def measure_requests_per_poll(base: Settings, bootstrap: str, work: Path,
                              symbol_counts: tuple[int, ...] = (2, 200),
                              polls: int = 5) -> dict[str, Any]:
    """The real producer against the Binance stand-in: requests made per poll."""
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from fake_binance import fake_binance_process

    result = {}
    for count in symbol_counts:
        symbols = tuple(loadgen.bench_symbols(count))
        with fake_binance_process() as (_, url):
            for symbol in symbols:
                urllib.request.urlopen(urllib.request.Request(
                    f"{url}/fake/price?symbol={symbol}&price=100", method="POST"), timeout=5)
            settings = phase_settings(base, bootstrap, work, f"requests-{count}",
                                      symbols=symbols, binance_base_url=url,
                                      poll_interval_seconds=0.5)
            with Processes(work) as processes:
                producer = processes.start(f"producer-{count}", settings,
                                           [sys.executable, str(SRC / "api_producer.py")])
                wait_until(lambda: (read_status(settings.run_dir, "producer") or {}).get(
                    "polls", 0) >= polls, 120, f"{polls} polls", producer)
                status = read_status(settings.run_dir, "producer")
            with urllib.request.urlopen(f"{url}/fake/requests", timeout=5) as response:
                requests = [r for r in json.load(response)
                            if r["path"] == "/api/v3/ticker/price"]
        result[str(count)] = {"polls": status["polls"], "price_requests": len(requests),
                              "requests_per_poll": round(len(requests) / status["polls"], 2)}
    return result


# --- the run --------------------------------------------------------------------------------

def run(plan: Plan) -> dict[str, Any]:
    from crypto_pipeline.spark_session import build_session

    base = Settings.load()
    if plan.max_offsets_per_trigger is not None:
        base = base.replace(max_offsets_per_trigger=plan.max_offsets_per_trigger)
    started = datetime.now(timezone.utc)
    results: dict[str, Any] = {
        "started_at": started.isoformat(), "plan": asdict(plan),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_average_at_start": load_average()},
        "settings": {"shuffle_partitions": base.shuffle_partitions,
                     "topic_partitions": base.topic_partitions,
                     "max_offsets_per_trigger": base.max_offsets_per_trigger,
                     "trigger_interval": str(base.trigger_interval),
                     "spark_master": base.spark_master, "kafka_heap": base.kafka_heap}}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        kafka = EmbeddedKafka(work / "kafka", work, port=free_port(consecutive=2),
                              heap=base.kafka_heap)
        with kafka, PeakMemory() as memory:
            memory.watch("kafka", kafka.nodes[0].process.pid)
            bootstrap = kafka.bootstrap_servers
            spark = build_session(phase_settings(base, bootstrap, work, "session"), "benchmark",
                                  **{"spark.sql.streaming.numRecentProgressUpdates": "1000"})
            try:
                log.info("phase 1/5: Spark's ceiling (rate source -> noop)")
                results["ceiling"] = measure_ceiling(
                    spark, phase_settings(base, bootstrap, work, "ceiling"), plan)
                log.info("phase 2/5: catch-up (the job drains a backlog)")
                results["drain"] = measure_drain(
                    spark, phase_settings(base, bootstrap, work, "drain"), plan)
                results["drain"]["percent_of_ceiling"] = round(
                    100 * results["drain"]["rows_per_second"]
                    / results["ceiling"]["rows_per_second"], 1)
                results["live"] = measure_sustained(spark, base, bootstrap, work, plan,
                                                    results["drain"]["rows_per_second"])
                results["sustained"] = sustained(results["live"], results["ceiling"])
            finally:
                spark.stop()
            log.info("phase 4/5: latency and memory of the whole stack")
            memory.reset()
            results["latency"] = measure_stack(base, bootstrap, work, plan, memory)
            results["memory_bytes"] = dict(memory.peaks) | {"total": memory.peak_total}
            log.info("phase 5/5: producer requests per poll")
            results["producer_requests"] = measure_requests_per_poll(base, bootstrap, work)
    results["finished_at"] = datetime.now(timezone.utc).isoformat()
    return results


def table(results: dict[str, Any]) -> str:
    """The figures against the targets, as a Markdown table."""
    ceiling, drain, best = results["ceiling"], results["drain"], results["sustained"]
    latency, memory = results["latency"], results["memory_bytes"]
    agg, page = latency["tick_to_aggregate_seconds"], latency["tick_to_page_seconds"]
    per_poll = {count: r["requests_per_poll"]
                for count, r in results["producer_requests"].items()}

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def pcts(p: dict) -> str:
        return f"{p['p50']} / {p['p95']} / {p['p99']} s (n={p['n']:,})"

    components = ", ".join(f"{name} {rss / GIB:.2f}" for name, rss in memory.items()
                           if name != "total")
    rows = [
        (f"Spark's ceiling: the job's aggregation (dedupe, windows), rate source → noop, "
         f"{ceiling['rows_per_batch']:,} ticks per batch",
         "—", f"{ceiling['rows_per_second']:,} ticks/s", "—", ceiling["load_average"]),
        (f"Catch-up: the job drains {drain['ticks']:,} ticks over {drain['symbols']} symbols",
         "—", f"{drain['rows_per_second']:,} ticks/s ({drain['percent_of_ceiling']} % of "
         f"ceiling)", "—", drain["load_average"]),
        *((f"Live: {live['offered_per_second']:,} ticks/s for {live['seconds']:.0f} s, event "
           f"time now, trigger {live['trigger']}",
           "keeps up", f"processed {live['processed_per_second']:,}/s, backlog "
           f"{live['backlog_first']:,} → {live['backlog_last']:,}, median batch "
           f"{live['batch_seconds_median']} s, {live['state_rows_last']:,} state rows",
           "yes" if live["keeps_up"] else "no", live["load_average"])
          for live in results["live"]),
        ("Sustained throughput: the highest live rate kept up",
         "≥ 200,000 ticks/s and ≥ 40 % of ceiling",
         f"{best['ticks_per_second']:,} ticks/s ({best['percent_of_ceiling']} % of ceiling)"
         if best["ticks_per_second"] else "none of the rates tried",
         met(bool(best["ticks_per_second"]) and best["ticks_per_second"] >= 200_000
             and best["percent_of_ceiling"] >= 40), "—"),
        (f"Tick → aggregate p50/p95/p99 at {latency['rate']:,.0f}/s, trigger "
         f"{latency['trigger']}", "p95 ≤ 2 s", pcts(agg),
         met(agg["p95"] is not None and agg["p95"] <= 2), latency["load_average"]),
        (f"Tick → page p50/p95/p99 (refresh {latency['page_refresh_seconds']:g} s)",
         "p95 ≤ 3 s", pcts(page), met(page["p95"] is not None and page["p95"] <= 3),
         latency["load_average"]),
        ("Peak RSS, whole stack (GiB)", "≤ 2.5 GB",
         f"{memory['total'] / GIB:.2f} ({components})", met(memory["total"] <= 2.5e9),
         latency["load_average"]),
        ("Producer requests per poll (2 / 200 symbols)", "independent of symbols",
         " / ".join(str(v) for v in per_poll.values()), met(len(set(per_poll.values())) == 1),
         "—"),
    ]
    lines = ["| figure | target | measured | met | load avg |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(lines)


def save(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def readme_with_table(readme: str, results: dict[str, Any], results_path: str) -> str:
    """The README with the table between its bench-table markers replaced."""
    machine = results["machine"]
    section = (f"Last full run: {results['started_at'][:16].replace('T', ' ')} UTC on "
               f"{machine['cpus']} cores, load average {machine['load_average_at_start']} "
               f"at the start (the machine may be shared); all figures in "
               f"`{results_path}`.\n\n{table(results)}\n")
    pattern = re.compile(r"(<!-- bench-table:begin -->\n).*?(<!-- bench-table:end -->)", re.S)
    if not pattern.search(readme):
        raise ValueError("the README lacks the bench-table markers")
    return pattern.sub(lambda match: match.group(1) + section + match.group(2), readme)
