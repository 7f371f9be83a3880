"""The benchmark behind ./bench.sh: how fast and how fresh, against the machine's ceiling.

All phases run in one go on one machine, each on its own topics and checkpoints of one
embedded broker:
1. ceiling: the job's aggregation (`transforms.aggregate_windows`) on Spark's
   `rate-micro-batch` source into a `noop` sink: what Spark itself manages here;
2. throughput: a backlog of synthetic ticks over many symbols is preloaded, then the real
   job (`StreamingJob`, production settings) drains it; rows/s over the drain is the
   highest rate at which the job keeps up;
3. latency: the stack as start.sh runs it (broker, producer, job, dashboard: separate
   processes) with synthetic ticks at 1,000/s and a 1 s trigger: tick produced -> first
   aggregate containing it readable on OUTPUT_TOPIC, and tick -> value on the dashboard
   page in headless Chromium; the peak RSS of every process meanwhile;
4. producer requests per poll, against the Binance stand-in, for 2 and 200 symbols.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from crypto_pipeline import browser, loadgen
from crypto_pipeline.embedded_kafka import EmbeddedKafka
from crypto_pipeline.paths import PROJECT_ROOT
from crypto_pipeline.processes import free_port, pid_alive
from crypto_pipeline.schema import parse_time
from crypto_pipeline.settings import Duration, Settings
from crypto_pipeline.status import read_status
from crypto_pipeline.topics import ensure_topics

log = logging.getLogger(__name__)

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SRC = PROJECT_ROOT / "src"
GIB = 1024 ** 3


@dataclass(frozen=True)
class Plan:
    throughput_symbols: int = 200
    throughput_ticks: int = 4_000_000
    ceiling_rows_per_batch: int = 1_000_000
    ceiling_batches: int = 5
    latency_symbols: int = 2
    latency_rate: float = 1000.0
    latency_seconds: float = 60.0
    page_refresh_seconds: float = 1.0
    generator_processes: int = 2


# --- memory ---------------------------------------------------------------------------------

def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (JVMs started by Python)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            pending.extend(int(child) for child in Path(
                f"/proc/{current}/task/{current}/children").read_text().split())
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


# --- phase 1: Spark's ceiling ---------------------------------------------------------------

def measure_ceiling(spark, settings: Settings, symbols: int, rows_per_batch: int,
                    batches: int) -> dict[str, Any]:
    """The job's aggregation on `rate-micro-batch` -> `noop`: Spark's own rows/s here."""
    from pyspark.sql import functions as F

    from crypto_pipeline.transforms import aggregate_windows

    # Event time advances as with 1,000 ticks/s, so windows close and the watermark
    # evicts state as in the real job.
    rate = (spark.readStream.format("rate-micro-batch")
            .option("rowsPerBatch", rows_per_batch)
            .option("numPartitions", settings.topic_partitions)
            .option("advanceMillisPerBatch", rows_per_batch).load())
    ticks = rate.select(
        F.format_string("S%04dUSDT", (F.col("value") % symbols) + 1).alias("symbol"),
        (F.lit(100.0) + (F.col("value") % 997) / 100).alias("price"),
        F.col("timestamp").alias("event_time"),
        F.lit(loadgen.SOURCE).alias("source"),
        F.lit(None).cast("double").alias("quantity"),
        F.col("value").cast("string").alias("event_id"))
    query = (aggregate_windows(ticks, settings).writeStream.format("noop")
             .outputMode("update")
             .option("checkpointLocation", str(settings.checkpoint_dir))
             .trigger(processingTime="0 seconds").start())
    try:
        wait_until(lambda: query.exception() is None and len(
            [p for p in query.recentProgress if p.numInputRows]) > batches, 900,
            "the ceiling query's batches")
        progress = [p for p in query.recentProgress if p.numInputRows][1:batches + 1]
    finally:
        query.stop()
    return _rates(progress) | {"symbols": symbols}


def _rates(progress: list) -> dict[str, Any]:
    rows = sum(p.numInputRows for p in progress)
    millis = [p.durationMs["triggerExecution"] for p in progress]
    return {"rows_per_second": round(rows / (sum(millis) / 1000)), "rows": rows,
            "batches": len(progress), "batch_ms_median": statistics.median(millis)}


# --- phase 2: the job's sustained throughput ------------------------------------------------

def measure_throughput(spark, settings: Settings, symbols: int, ticks: int,
                       generator_processes: int) -> dict[str, Any]:
    """Preload a backlog, let the real job drain it, report its steady rows/s."""
    from crypto_pipeline.streaming_job import StreamingJob

    ensure_topics(settings)
    span = ticks / 1000.0  # event times as if the ticks had come at 1,000/s
    job = loadgen.Preload(settings.kafka_bootstrap_servers, settings.input_topic, symbols,
                          ticks, time.time_ns() // 1000 - int(span * 1e6), span)
    produce_seconds = loadgen.preload(job, generator_processes)
    log.info("preloaded %d ticks in %.1f s", ticks, produce_seconds)
    streaming = StreamingJob(spark, settings)
    streaming.start()
    aggregates = streaming.queries[0]
    try:
        wait_until(lambda: aggregates.exception() is None and sum(
            p.numInputRows for p in aggregates.recentProgress) >= ticks, 900,
            "the job to drain the backlog")
        progress = [p for p in aggregates.recentProgress if p.numInputRows]
    finally:
        streaming.stop()
    # The first batch also pays for start-up and code generation: leave it out.
    steady = progress[1:] or progress
    phases = ("addBatch", "latestOffset", "queryPlanning", "walCommit", "commitOffsets")
    return _rates(steady) | {
        "symbols": symbols, "ticks": ticks,
        "max_offsets_per_trigger": settings.max_offsets_per_trigger,
        "generator_ticks_per_second": round(ticks / produce_seconds),
        "ms_by_phase": {name: sum(p.durationMs.get(name, 0) for p in steady)
                        for name in phases}}


# --- phase 3: latency and memory of the whole stack -----------------------------------------

def percentiles(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "n": 0}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "n": len(ordered)}


def tick_latencies(sent: list[tuple[str, int, float]],
                   seen: list[tuple[float, str, int]]) -> list[float]:
    """Seconds from each tick sent to the first aggregate of its symbol whose newest tick
    is at least as new, i.e. that contains it (ticks of a symbol are sent in order).
    sent: (symbol, event micros, wall time sent); seen: (wall time read, symbol, newest
    event micros of the aggregate)."""
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

    def latencies(self, shown: list[tuple[float, float]]) -> list[float]:
        """shown: (wall time, Max on the page). A marker counts as shown at the first
        reading at least as high as its price."""
        result = []
        for price, sent_at in self.sent:
            first = next((at for at, value in shown if value >= price), None)
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
    marker_symbol = loadgen.bench_symbols(plan.latency_symbols)[0]
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
        wait_until(lambda: (read_status(settings.run_dir, "spark") or {}).get("state")
                   == "active", 240, "the Spark job to start", job)
        url = f"http://127.0.0.1:{settings.dashboard_port}"
        wait_until(lambda: _answers(f"{url}/_stcore/health"), 90, "the dashboard", dashboard)

        seen: list[tuple[float, str, int]] = []
        sent: list[tuple[str, int, float]] = []
        shown: list[tuple[float, float]] = []
        stop = threading.Event()
        markers = Markers(settings, marker_symbol)
        threads = [threading.Thread(target=_follow_aggregates, args=(settings, seen, stop)),
                   threading.Thread(target=markers.run, args=(stop,))]
        load = threading.Thread(target=loadgen.paced, args=(
            settings.kafka_bootstrap_servers, settings.input_topic, plan.latency_symbols,
            plan.latency_rate, plan.latency_seconds,
            lambda symbol, micros, _: sent.append((symbol, micros, time.time()))))
        with browser.chromium() as chromium:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            for thread in threads + [load]:
                thread.start()
            while load.is_alive():
                value = _read_max(page, marker_symbol)
                if value is not None:
                    shown.append((time.time(), value))
                time.sleep(0.05)
        # The last ticks need a batch or two to reach the aggregates topic.
        last = max(micros for _, micros, _ in sent)
        wait_until(lambda: any(n >= last for _, s, n in seen[-2000:]), 30,
                   "the last ticks in the aggregates")
        stop.set()
        for thread in threads:
            thread.join()
    aggregate_latency = tick_latencies(sent, seen)
    page_latency = markers.latencies(shown)
    return {"ticks": len(sent), "symbols": plan.latency_symbols, "rate": plan.latency_rate,
            "trigger": str(settings.trigger_interval),
            "page_refresh_seconds": plan.page_refresh_seconds,
            "tick_to_aggregate_seconds": percentiles(aggregate_latency),
            "ticks_without_aggregate": len(sent) - len(aggregate_latency),
            "tick_to_page_seconds": percentiles(page_latency),
            "markers_sent": len(markers.sent)}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# --- phase 4: producer requests per poll ----------------------------------------------------

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
        # Start-up checks each symbol once when a poll is rejected; steady polls are what
        # scale with the number of symbols, or do not.
        result[str(count)] = {"polls": status["polls"], "price_requests": len(requests),
                              "requests_per_poll": round(len(requests) / status["polls"], 2)}
    return result


# --- the run --------------------------------------------------------------------------------

def run(plan: Plan) -> dict[str, Any]:
    from crypto_pipeline.spark_session import build_session

    base = Settings.load()
    started = datetime.now(timezone.utc)
    results: dict[str, Any] = {
        "started_at": started.isoformat(), "plan": plan.__dict__,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
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
            spark = build_session(phase_settings(base, bootstrap, work, "session"), "benchmark")
            try:
                log.info("phase 1/4: Spark's ceiling (rate source -> noop)")
                results["ceiling"] = measure_ceiling(
                    spark, phase_settings(base, bootstrap, work, "ceiling"),
                    plan.throughput_symbols, plan.ceiling_rows_per_batch, plan.ceiling_batches)
                log.info("phase 2/4: the job's sustained throughput")
                results["throughput"] = measure_throughput(
                    spark, phase_settings(base, bootstrap, work, "throughput"),
                    plan.throughput_symbols, plan.throughput_ticks, plan.generator_processes)
            finally:
                spark.stop()
            results["throughput"]["percent_of_ceiling"] = round(
                100 * results["throughput"]["rows_per_second"]
                / results["ceiling"]["rows_per_second"], 1)
            log.info("phase 3/4: latency and memory of the whole stack")
            memory.peaks.clear()
            memory.peak_total = 0
            results["latency"] = measure_stack(base, bootstrap, work, plan, memory)
            results["memory_bytes"] = dict(memory.peaks) | {"total": memory.peak_total}
            log.info("phase 4/4: producer requests per poll")
            results["producer_requests"] = measure_requests_per_poll(base, bootstrap, work)
    results["finished_at"] = datetime.now(timezone.utc).isoformat()
    return results


def table(results: dict[str, Any]) -> str:
    """The figures against the targets, as a Markdown table."""
    ceiling, throughput = results["ceiling"], results["throughput"]
    latency, memory = results["latency"], results["memory_bytes"]
    agg, page = latency["tick_to_aggregate_seconds"], latency["tick_to_page_seconds"]
    requests = results["producer_requests"]
    per_poll = {count: r["requests_per_poll"] for count, r in requests.items()}

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def pcts(p: dict) -> str:
        return f"{p['p50']} / {p['p95']} / {p['p99']} s (n={p['n']})"

    components = ", ".join(f"{name} {rss / GIB:.2f}" for name, rss in memory.items()
                           if name != "total")
    rows = [
        ("Spark ceiling: same aggregation, rate source -> noop",
         "—", f"{ceiling['rows_per_second']:,} rows/s", "—"),
        (f"Sustained throughput, {throughput['symbols']} symbols (backlog drain)",
         "≥ 200,000 ticks/s and ≥ 40 % of ceiling",
         f"{throughput['rows_per_second']:,} ticks/s ({throughput['percent_of_ceiling']} %)",
         met(throughput["rows_per_second"] >= 200_000
             and throughput["percent_of_ceiling"] >= 40)),
        (f"Tick → aggregate p50/p95/p99 at {latency['rate']:,.0f}/s, trigger {latency['trigger']}",
         "p95 ≤ 2 s", pcts(agg), met(agg["p95"] is not None and agg["p95"] <= 2)),
        (f"Tick → page p50/p95/p99 (refresh {latency['page_refresh_seconds']} s)",
         "p95 ≤ 3 s", pcts(page), met(page["p95"] is not None and page["p95"] <= 3)),
        ("Peak RSS, whole stack (GiB)", "≤ 2.5 GB",
         f"{memory['total'] / GIB:.2f} ({components})",
         met(memory["total"] <= 2.5e9)),
        ("Producer requests per poll (2 / 200 symbols)", "independent of symbols",
         " / ".join(str(v) for v in per_poll.values()),
         met(len(set(per_poll.values())) == 1)),
    ]
    lines = ["| figure | target | measured | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def save(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
