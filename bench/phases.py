"""The phases of a run, each on its own topics and checkpoints of one embedded broker."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import re
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.measure import (
    PeakMemory,
    batch_summary,
    batches,
    burst_drains,
    cpu_seconds,
    drain_rate,
    keeps_up,
    load_average,
    page_run_times,
    per_second,
    percentiles,
    rows_read,
    tick_latencies,
)
from bench.plan import SRC, MarketPlan, Plan
from bench.stack import Processes, exited, phase_settings
from crypto_pipeline.core.processes import free_port, tree_rss_bytes
from crypto_pipeline.core.schema import parse_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import ProducerStatus, SparkStatus, State
from crypto_pipeline.core.waiting import wait_until
from crypto_pipeline.kafka_io.topics import ensure_topics
from support import browser
from support.fake_binance import fake_binance_process
from support.fake_binance_ws import fake_binance_ws_process

log = logging.getLogger(__name__)

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
        F.col("value").cast("string").alias("event_id"),
        F.lit(None).cast("long").alias("missed_before"))


def seed_windows(ticks, settings: Settings):
    """The seed's aggregation: per symbol and sliding window avg, min, max and count (and
    the spread of max and min), nothing else."""
    from pyspark.sql import functions as F

    window = F.window("event_time", settings.window_duration.spark, settings.window_slide.spark)
    return (ticks.withWatermark("event_time", settings.watermark_delay.spark)
            .groupBy(window.alias("window"), "symbol")
            .agg(F.avg("price").alias("avg_price"), F.min("price").alias("min_price"),
                 F.max("price").alias("max_price"), F.count("price").alias("count"))
            .withColumn("spread", F.col("max_price") - F.col("min_price")))


def measure_ceiling(spark, settings: Settings, plan: Plan, which: str) -> dict[str, Any]:
    """An aggregation on `rate-micro-batch` -> `noop`: Spark's own ticks/s here, without
    Kafka, JSON or the batch writer. `which`: "seed" (the seed's windows) or "job"
    (`transforms.aggregate_windows`: every statistic the job computes)."""
    from crypto_pipeline.streaming.job import STATE_STORE_CONF
    from crypto_pipeline.streaming.transforms import aggregate_windows

    for key, value in STATE_STORE_CONF.items():
        spark.conf.set(key, value)
    rows_per_batch = settings.max_offsets_per_trigger
    ticks = rate_ticks(spark, plan.symbols, rows_per_batch, settings.topic_partitions,
                       plan.drain_event_rate)
    aggregate = seed_windows if which == "seed" else aggregate_windows
    query = (aggregate(ticks, settings).writeStream.format("noop")
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
    return {"aggregation": which, "rows_per_second": round(sum(b.rows for b in steady) / seconds),
            "rows_per_batch": rows_per_batch, "batches": len(steady),
            "batch_seconds_median": round(statistics.median(b.seconds for b in steady), 2),
            "symbols": plan.symbols, "event_rate": plan.drain_event_rate,
            "load_average": load_average()}


# --- phase 2: catch-up ----------------------------------------------------------------------

def measure_drain(spark, settings: Settings, plan: Plan) -> dict[str, Any]:
    """Preload a backlog, let the real job (both queries) drain it."""
    from crypto_pipeline.streaming.job import StreamingJob

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

def measure_live(spark, settings: Settings, plan: Plan, rate: float,
                 memory: PeakMemory) -> dict[str, Any]:
    """Ticks at `rate`/s with event time = now while the job runs at its trigger; judged
    over the second half of the run. `memory` watches the broker and this process (the
    Spark driver and its JVM, the load generator) meanwhile."""
    from crypto_pipeline.streaming.job import StreamingJob

    ensure_topics(settings)
    streaming = StreamingJob(spark, settings)
    streaming.start()
    memory.reset()
    try:
        wait_until(lambda: (SparkStatus.read(settings.run_dir) or SparkStatus()).state
                   == State.ACTIVE, 120, "the job to start")
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
        "memory_bytes": dict(memory.peaks) | {"total": memory.peak_total},
        "load_average": load_average()}


def next_live_rate(attempts: list[dict[str, Any]], plan: Plan) -> float | None:
    """The next rate to try, or None when the search is done: doubling from the first
    rate while the job keeps up, then bisecting between the highest rate kept up and the
    lowest one not, until they are within `live_precision` of each other (or halving, if
    the first rate was already too high)."""
    if len(attempts) >= plan.live_max_attempts:
        return None
    kept = [a["rate"] for a in attempts if a["keeps_up"]]
    lost = [a["rate"] for a in attempts if not a["keeps_up"] and a["rate"] > max(kept, default=0)]
    if not lost:
        return min(2 * max(kept), plan.live_max_rate) if max(kept) < plan.live_max_rate \
            else None
    if not kept:
        rate = min(lost) / 2
        return rate if rate >= plan.live_min_rate else None
    low, high = max(kept), min(lost)
    if high <= low * plan.live_precision:
        return None
    return round((low + high) / 2, -3)


def measure_sustained(spark, base: Settings, bootstrap: str, work: Path, plan: Plan,
                      memory: PeakMemory) -> list[dict[str, Any]]:
    """Live runs searched upward from `live_start_rate` (see next_live_rate)."""
    attempts: list[dict[str, Any]] = []
    rate: float | None = plan.live_start_rate
    while rate is not None:
        log.info("live: %d ticks/s with event time now", rate)
        attempts.append(measure_live(
            spark, phase_settings(base, bootstrap, work, f"live-{rate:.0f}"), plan, rate,
            memory))
        rate = next_live_rate(attempts, plan)
    return attempts


def sustained(attempts: list[dict[str, Any]], ceilings: dict[str, Any]) -> dict[str, Any]:
    """The highest offered rate the job kept up with, the first rate above it that it did
    not, and the share of each ceiling."""
    kept = [a for a in attempts if a["keeps_up"]]
    best = max(kept, key=lambda a: a["rate"]) if kept else None
    above = [a for a in attempts
             if not a["keeps_up"] and (best is None or a["rate"] > best["rate"])]
    first_lost = min(above, key=lambda a: a["rate"]) if above else None
    rate = best["offered_per_second"] if best else None
    return {"ticks_per_second": rate,
            "first_not_kept_up": first_lost["offered_per_second"] if first_lost else None,
            "percent_of_ceiling": {name: round(100 * rate / ceiling["rows_per_second"], 1)
                                   for name, ceiling in ceilings.items()} if rate else None,
            "memory_bytes": best["memory_bytes"] if best else None}


# --- phases 4 and 5: latency of the whole stack ----------------------------------------------


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


def _stack_settings(base: Settings, bootstrap: str, work: Path, phase: str,
                    plan: Plan) -> Settings:
    """The production settings (trigger included), one simulated symbol for the producer."""
    return phase_settings(base, bootstrap, work, phase, dashboard_port=free_port(),
                          dashboard_refresh_seconds=plan.page_refresh_seconds,
                          symbols=("BTCUSDT",), price_source="simulated",
                          poll_interval_seconds=1.0)


def _start_pipeline(processes: Processes, settings: Settings, memory: PeakMemory,
                    dashboard: Settings | None = None) -> None:
    """The job and the producer (and the dashboard, with its own settings) as start.sh
    runs them, each its own process; returns once the job is active."""
    job = processes.start("spark", settings, [sys.executable, str(SRC / "streaming_app.py")])
    started = {"spark job": job, "producer": processes.start(
        "producer", settings, [sys.executable, str(SRC / "api_producer.py")])}
    if dashboard is not None:
        started["dashboard"] = processes.start("dashboard", dashboard, [
            sys.executable, "-m", "streamlit", "run", str(SRC / "dashboard.py"),
            "--server.port", str(settings.dashboard_port), "--server.address", "127.0.0.1",
            "--server.headless", "true"])
    for name, process in started.items():
        memory.watch(name, process.pid)
    wait_until(lambda: (SparkStatus.read(settings.run_dir) or SparkStatus()).state
               == State.ACTIVE, 300, "the Spark job to start", give_up=exited(job))
    if dashboard is not None:
        url = f"http://127.0.0.1:{settings.dashboard_port}"
        wait_until(lambda: _answers(f"{url}/_stcore/health"), 90, "the dashboard",
                   give_up=exited(started["dashboard"]))


def measure_aggregate_latency(base: Settings, bootstrap: str, work: Path, plan: Plan,
                              memory: PeakMemory) -> dict[str, Any]:
    """Tick produced -> the first aggregate that contains it readable on OUTPUT_TOPIC, at
    `latency_rate` ticks/s, with no browser on the cores."""
    settings = _stack_settings(base, bootstrap, work, "latency", plan)
    ensure_topics(settings)
    with Processes(work) as processes:
        _start_pipeline(processes, settings, memory)
        seen: list[tuple[float, str, int]] = []
        sent: list[tuple[str, int, float]] = []
        stop = threading.Event()
        follower = threading.Thread(target=_follow_aggregates, args=(settings, seen, stop))
        follower.start()
        try:
            loadgen.paced(settings.kafka_bootstrap_servers, settings.input_topic,
                          plan.latency_symbols, plan.latency_rate, plan.latency_seconds,
                          lambda symbol, micros, _: sent.append((symbol, micros, time.time())))
            # The last ticks need a batch or two to reach the aggregates topic.
            last = max(micros for _, micros, _ in sent)
            wait_until(lambda: any(n >= last for _, _, n in seen[-2000:]), 60,
                       "the last ticks in the aggregates")
        finally:
            stop.set()
            follower.join()
    latency = tick_latencies(sent, seen)
    return {"ticks": len(sent), "symbols": plan.latency_symbols, "rate": plan.latency_rate,
            "trigger": str(settings.trigger_interval),
            "tick_to_aggregate_seconds": percentiles(latency),
            "ticks_without_aggregate": len(sent) - len(latency),
            "load_average": load_average()}


def measure_page_latency(base: Settings, bootstrap: str, work: Path, plan: Plan,
                         memory: PeakMemory) -> dict[str, Any]:
    """Tick produced -> its value on the dashboard page in headless Chromium (Markers), at
    `latency_rate` ticks/s, with the dashboard and the browser on the cores too."""
    settings = _stack_settings(base, bootstrap, work, "page", plan)
    ensure_topics(settings)
    names = loadgen.bench_symbols(plan.latency_symbols)
    with Processes(work) as processes:
        # The dashboard shows the cards of the symbols SYMBOLS names: the markers' one.
        _start_pipeline(processes, settings, memory, dashboard=settings.replace(
            symbols=(names[0],)))
        shown: list[tuple[float, float]] = []
        stop_markers = threading.Event()
        markers = Markers(settings, names[0])
        threads = [threading.Thread(target=markers.run, args=(stop_markers,)),
                   threading.Thread(target=loadgen.paced, args=(
                       settings.kafka_bootstrap_servers, settings.input_topic,
                       plan.latency_symbols, plan.latency_rate, plan.latency_seconds))]
        with browser.chromium() as chromium:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{settings.dashboard_port}")
            for thread in threads:
                thread.start()
            # Until the load ends, then until the last marker shows (or 30 s more).
            deadline = None
            while deadline is None or time.monotonic() < deadline:
                value = _read_max(page, names[0])
                if value is not None:
                    shown.append((time.time(), value))
                if deadline is None and not threads[1].is_alive():
                    stop_markers.set()
                    deadline = time.monotonic() + 30
                if deadline and markers.sent and shown and shown[-1][1] >= markers.sent[-1][0]:
                    break
                time.sleep(0.05)
        stop_markers.set()
        for thread in threads:
            thread.join()
    latency = Markers.latencies(markers.sent, shown)
    return {"rate": plan.latency_rate, "trigger": str(settings.trigger_interval),
            "page_refresh_seconds": plan.page_refresh_seconds,
            "tick_to_page_seconds": percentiles(latency), "markers_sent": len(markers.sent),
            "load_average": load_average()}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# --- phase 6: producer requests per poll ----------------------------------------------------

def measure_requests_per_poll(base: Settings, bootstrap: str, work: Path,
                              symbol_counts: tuple[int, ...] = (2, 200),
                              polls: int = 5) -> dict[str, Any]:
    """The real producer against the Binance stand-in: requests made per poll."""

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
                status = wait_until(lambda: _polled(settings, polls), 120, f"{polls} polls",
                                    give_up=exited(producer))
            with urllib.request.urlopen(f"{url}/fake/requests", timeout=5) as response:
                requests = [r for r in json.load(response)
                            if r["path"] == "/api/v3/ticker/price"]
        result[str(count)] = {"polls": status.polls, "price_requests": len(requests),
                              "requests_per_poll": round(len(requests) / status.polls, 2)}
    return result


def _polled(settings: Settings, polls: int) -> ProducerStatus | None:
    status = ProducerStatus.read(settings.run_dir)
    return status if status is not None and status.polls >= polls else None


# --- the market: 2,000 symbols through the producer, the job and the dashboard --------------

def _json_at(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _producer(settings: Settings) -> ProducerStatus:
    return ProducerStatus.read(settings.run_dir) or ProducerStatus()


def _spark(settings: Settings) -> SparkStatus:
    return SparkStatus.read(settings.run_dir) or SparkStatus()


def _market_settings(base: Settings, bootstrap: str, work: Path, phase: str,
                     **overrides: Any) -> Settings:
    return phase_settings(base, bootstrap, work, phase, symbols=("*USDT",),
                          http_read_timeout_seconds=30.0).replace(**overrides)


def measure_market_rest(base: Settings, bootstrap: str, work: Path,
                        plan: MarketPlan) -> dict[str, Any]:
    """The producer polling a market of `plan.symbols` USDT pairs (SYMBOLS=*USDT): ticks
    per second, requests per poll, its CPU and memory."""
    with fake_binance_process(0, "--usdt", str(plan.symbols), "--no-record") as (_, url):
        settings = _market_settings(base, bootstrap, work, "market-rest",
                                    binance_base_url=url,
                                    poll_interval_seconds=plan.poll_seconds)
        ensure_topics(settings)
        with Processes(work) as processes:
            producer = processes.start("producer-rest", settings,
                                       [sys.executable, str(SRC / "api_producer.py")])
            wait_until(lambda: _producer(settings).ticks_sent >= plan.symbols, 180,
                       "the first poll's ticks", give_up=exited(producer))
            began, cpu = time.time(), cpu_seconds(producer.pid)
            samples, stop = [], threading.Event()
            while not stop.wait(1.0) and time.time() - began < plan.rest_seconds:
                status = _producer(settings)
                samples.append((time.time(), status.ticks_sent))
            cpu = cpu_seconds(producer.pid) - cpu
            rss = tree_rss_bytes(producer.pid)
            status = _producer(settings)
        counts = _json_at(f"{url}/fake/counts")
        weight = _json_at(f"{url}/fake/weight")
    return {"symbols": len(status.symbols), "poll_seconds": plan.poll_seconds,
            "ticks_per_second": round(per_second(samples) or 0, 1), "polls": status.polls,
            "ticker_requests": counts.get("/api/v3/ticker/price", 0),
            "requests_per_poll": round(counts.get("/api/v3/ticker/price", 0) / status.polls, 2),
            "exchange_info_requests": counts.get("/api/v3/exchangeInfo", 0),
            "rate_limited": weight["rate_limited"],
            "producer_cpu_percent": round(100 * cpu / (time.time() - began), 1),
            "producer_rss_bytes": rss, "load_average": load_average()}


def measure_market_ws(base: Settings, bootstrap: str, work: Path,
                      plan: MarketPlan) -> dict[str, Any]:
    """The producer streaming the trades of `plan.symbols` USDT pairs from the stand-in at
    `plan.trades_per_second`, with bursts of `plan.burst_trades` made at once: ingest
    rates, how long a burst takes to get through, connections, trades lost."""
    per_symbol = plan.trades_per_second / plan.symbols
    with fake_binance_ws_process("--usdt", str(plan.symbols), "--trades-per-second",
                                 f"{per_symbol:g}", "--no-record") as (_, url):
        rest = url.replace("ws://", "http://", 1)
        settings = _market_settings(base, bootstrap, work, "market-ws",
                                    price_source="binance-ws", binance_ws_url=url,
                                    binance_base_url=rest)
        ensure_topics(settings)
        with Processes(work) as processes:
            producer = processes.start("producer-ws", settings,
                                       [sys.executable, str(SRC / "api_producer.py")])
            wait_until(lambda: _producer(settings).ticks_sent >= plan.trades_per_second * 5,
                       180, "five seconds of trades", give_up=exited(producer))
            began, cpu = time.time(), cpu_seconds(producer.pid)
            samples, served, bursts = [], [], []
            burst_every = plan.ws_seconds / (plan.bursts + 1)
            stop = threading.Event()
            while not stop.wait(0.5) and time.time() - began < plan.ws_seconds:
                samples.append((time.time(), _producer(settings).ticks_sent))
                served.append((time.time(), _json_at(f"{rest}/fake/stats")["sent"]))
                if len(bursts) < plan.bursts and time.time() - began >= burst_every * (
                        len(bursts) + 1):
                    urllib.request.urlopen(f"{rest}/fake/burst?trades={plan.burst_trades}",
                                           timeout=120).close()
                    bursts.append((time.time(), _json_at(f"{rest}/fake/stats")["sent"]))
            # The market stops; every trade sent must then arrive: the producer catches up.
            urllib.request.urlopen(f"{rest}/fake/pause", timeout=30).close()
            target = _json_at(f"{rest}/fake/stats")
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: _producer(settings).ticks_sent >= _json_at(
                    f"{rest}/fake/stats")["sent"], 120, "the producer to catch up")
            samples.append((time.time(), _producer(settings).ticks_sent))
            cpu = cpu_seconds(producer.pid) - cpu
            rss = tree_rss_bytes(producer.pid)
            status = _producer(settings)
            stats = _json_at(f"{rest}/fake/stats")
    steady = [s for s in samples if not bursts or s[0] < bursts[0][0]]
    peaks = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:])
             if b[0] > a[0]]
    return {"symbols": len(status.symbols), "connections": target["connections"],
            "offered_per_second": plan.trades_per_second, "burst_trades": plan.burst_trades,
            "steady_ticks_per_second": round(per_second(steady) or 0),
            "peak_ticks_per_second": round(max(peaks, default=0)),
            "burst_drain_seconds": burst_drains(samples, bursts),
            "trades_served": stats["sent"], "ticks_sent": status.ticks_sent,
            "trades_lost": max(0, stats["sent"] - status.ticks_sent),
            "ticks_dropped": status.ticks_dropped, "bad_entries": status.bad_entries,
            "producer_cpu_percent": round(100 * cpu / (time.time() - began), 1),
            "producer_rss_bytes": rss, "load_average": load_average()}


def _page_runs(settings: Settings) -> dict[str, dict[str, float]]:
    """The page-run figures at the dashboard's /metrics; none before its first visitor
    (the page starts the metrics server)."""
    try:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{settings.dashboard_metrics_port}/metrics",
                timeout=30) as response:
            return page_run_times(response.read().decode())
    except ConnectionRefusedError:
        return {}
    except urllib.error.URLError as err:
        if isinstance(err.reason, ConnectionRefusedError):
            return {}
        raise


_LISTED = re.compile(r"([\d,]+) of \1 symbols")


def _first_render(settings: Settings, chromium, url: str, symbols: int,
                  timeout: float) -> dict[str, Any]:
    """A new visitor: the server time of its page run, and the browser's time until the
    overview lists every symbol."""
    before = _page_runs(settings).get("page", {}).get("runs", 0)
    page = chromium.new_page(viewport={"width": 1400, "height": 1400})
    opened = time.monotonic()
    page.goto(url)
    # Every symbol shown: the stand-in lists its own few (BTCUSDT...) beside the market.
    overview = page.locator(".st-key-overview-count")

    def listed() -> bool:
        match = _LISTED.search(overview.inner_text()) if overview.count() else None
        return bool(match) and int(match.group(1).replace(",", "")) >= symbols

    wait_until(listed, timeout, f"the overview to list {symbols:,} symbols", interval=0.2)
    shown = time.monotonic() - opened
    runs = wait_until(lambda: (r := _page_runs(settings)).get("page", {}).get("runs", 0)
                      > before and r, 60, "the page run in the metrics")
    return {"page": page, "server_seconds": round(runs["page"]["last"], 3),
            "overview_shown_seconds": round(shown, 2)}


def _watch_refreshes(settings: Settings, seconds: float) -> dict[str, Any]:
    """The live panels' server time while a page stays open: mean over the runs in
    `seconds`, p95 and max of the recent ones."""
    before = _page_runs(settings)["panels"]
    threading.Event().wait(seconds)
    after = _page_runs(settings)["panels"]
    runs = after["runs"] - before["runs"]
    return {"runs": int(runs),
            "mean_seconds": round((after["seconds"] - before["seconds"]) / runs, 3)
            if runs else None,
            "p95_seconds": round(after["p95"], 3), "max_seconds": round(after["max"], 3)}


def _windows_held(page) -> int | None:
    text = page.locator(".st-key-windows [data-testid='stMetricValue']").inner_text()
    return int(text.replace(",", "")) if text.replace(",", "").isdigit() else None


def _caught_up(page, windows: int) -> bool:
    held = _windows_held(page)
    return held is not None and held >= windows


def measure_market_stack(base: Settings, bootstrap: str, work: Path, plan: MarketPlan,
                         memory: PeakMemory) -> dict[str, Any]:
    """Producer (REST every 5 s), job with the backfill of `plan.backfill_hours` and
    dashboard over the market: the backfill paced (no 429) while live batches go on;
    the page's first render and refreshes in server time, its memory holding every
    window, after a restart from the history store too."""
    with fake_binance_process(0, "--usdt", str(plan.symbols), "--no-record") as (_, url):
        settings = _market_settings(
            base, bootstrap, work, "market-stack", binance_base_url=url,
            poll_interval_seconds=plan.poll_seconds, backfill_enabled=True,
            backfill_hours=plan.backfill_hours, dashboard_port=free_port(),
            dashboard_metrics_port=free_port(),
            dashboard_refresh_seconds=plan.page_refresh_seconds,
            dashboard_history_hours=plan.backfill_hours + 1)
        ensure_topics(settings)
        dashboard_command = [sys.executable, "-m", "streamlit", "run",
                             str(SRC / "dashboard.py"), "--server.port",
                             str(settings.dashboard_port), "--server.address", "127.0.0.1",
                             "--server.headless", "true"]
        dashboard_url = f"http://127.0.0.1:{settings.dashboard_port}"
        with Processes(work) as processes:
            job = processes.start("spark-market", settings,
                                  [sys.executable, str(SRC / "streaming_app.py")])
            producer = processes.start("producer-market", settings,
                                       [sys.executable, str(SRC / "api_producer.py")])
            for name, process in (("spark job", job), ("producer", producer)):
                memory.watch(name, process.pid)
            backfill = _watch_backfill(settings, url, plan, job)
            steady = _watch_batches(settings, 60.0)
            dashboard = processes.start("dashboard-market", settings, dashboard_command)
            memory.watch("dashboard", dashboard.pid)
            wait_until(lambda: _answers(f"{dashboard_url}/_stcore/health"), 90,
                       "the dashboard", give_up=exited(dashboard))
            windows = backfill["windows_written"]
            page_figures = _watch_page(settings, dashboard_url, plan, windows, dashboard)
            dashboard.terminate()
            dashboard.wait(60)
            restarted = processes.start("dashboard-market-restarted", settings,
                                        dashboard_command)
            memory.watch("dashboard", restarted.pid)
            wait_until(lambda: _answers(f"{dashboard_url}/_stcore/health"), 90,
                       "the restarted dashboard", give_up=exited(restarted))
            restart_figures = _watch_page(settings, dashboard_url, plan, windows, restarted,
                                          refreshes=False)
    return {"symbols": plan.symbols, "backfill": backfill, "batches_after_backfill": steady,
            "dashboard": page_figures, "dashboard_restarted": restart_figures,
            "load_average": load_average()}


def _watch_backfill(settings: Settings, url: str, plan: MarketPlan, job) -> dict[str, Any]:
    """Until the job's backfill ends: its progress, and the live batches beside it."""
    wait_until(lambda: _spark(settings).backfill is not None, 600, "the backfill to start",
               give_up=exited(job))
    durations, emitted, stop = {}, [], threading.Event()
    began = time.time()
    while not stop.wait(2.0):
        status = _spark(settings)
        if status.batch_id is not None and status.batch_duration_ms is not None:
            durations[status.batch_id] = status.batch_duration_ms
        emitted.append((time.time(), status.emitted_rows))
        progress = status.backfill
        if progress.state not in ("starting", "running"):
            break
        if time.time() - began > plan.stack_timeout or job.poll() is not None:
            raise TimeoutError(f"the backfill did not end: {progress.summary()}")
    weight = _json_at(f"{url}/fake/weight")
    counts = _json_at(f"{url}/fake/counts")
    seconds = time.time() - (progress.started_at or began)
    return {"state": progress.state, "symbols": progress.symbols_done,
            "requests": progress.requests, "klines_requests": counts.get("/api/v3/klines", 0),
            "weight": 2 * counts.get("/api/v3/klines", 0), "rate_limited": weight["rate_limited"],
            "windows_written": progress.windows_written, "seconds": round(seconds),
            "live_batches_meanwhile": batch_summary(list(durations.values())),
            "live_aggregates_meanwhile": emitted[-1][1] - emitted[0][1] if emitted else 0,
            "last_error": progress.last_error}


def _watch_batches(settings: Settings, seconds: float) -> dict[str, Any]:
    durations, stop = {}, threading.Event()
    began = time.time()
    while not stop.wait(1.0) and time.time() - began < seconds:
        status = _spark(settings)
        if status.batch_id is not None and status.batch_duration_ms is not None:
            durations[status.batch_id] = status.batch_duration_ms
    status = _spark(settings)
    return batch_summary(list(durations.values())) | {"state_rows": status.state_rows,
                                                       "input_rows_per_second":
                                                       status.input_rows_per_second}


def _watch_page(settings: Settings, url: str, plan: MarketPlan, windows: int, dashboard,
                refreshes: bool = True) -> dict[str, Any]:
    """The first visitor (the feed starts, loads and catches up), its memory once it holds
    every window, then a second visitor's first render and the refreshes."""
    with browser.chromium() as chromium:
        started = time.monotonic()
        cold = _first_render(settings, chromium, url, plan.symbols, plan.stack_timeout)
        page = cold.pop("page")
        wait_until(lambda: _caught_up(page, windows), plan.stack_timeout,
                   "the dashboard to hold every window", give_up=exited(dashboard),
                   interval=2.0)
        figures = {"first_visitor": cold,
                   "all_windows_held_seconds": round(time.monotonic() - started, 1),
                   "windows_held": _windows_held(page),
                   "rss_bytes": tree_rss_bytes(dashboard.pid)}
        page.close()
        if refreshes:
            warm = _first_render(settings, chromium, url, plan.symbols, 120)
            page = warm.pop("page")
            figures["next_visitor"] = warm
            figures["refresh"] = _watch_refreshes(settings, plan.refresh_seconds)
            figures["rss_bytes_after_refreshes"] = tree_rss_bytes(dashboard.pid)
            page.close()
    return figures
