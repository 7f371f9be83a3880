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
5. producer requests per poll, against the Binance stand-in, for 2 and 200 symbols;
6. the market (`--only market` runs these alone, on a broker of their own): 2,000 USDT
   pairs (SYMBOLS=*USDT) against the stand-ins: the producer polling them every 5 s
   (400 ticks/s); the producer streaming their trades at 5,000/s with bursts of 50,000
   made at once; then producer, job and dashboard together: the job's backfill of 24 h
   of all of them (4,000 klines requests, weight 8,000: paced, no 429) while live
   batches go on, and the dashboard holding every window: its first render and each
   refresh in server time (the page's own measure of each script run, at its /metrics),
   its memory, again after a restart that reads the day back from the history store.
Each phase records the load average, as the machine may be shared.
"""
from __future__ import annotations

import logging
import os
import platform
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.measure import (
    PeakMemory,
    load_average,
)
from bench.phases import (
    measure_ceiling,
    measure_drain,
    measure_market_rest,
    measure_market_stack,
    measure_market_ws,
    measure_requests_per_poll,
    measure_stack,
    measure_sustained,
    sustained,
)
from bench.plan import Plan
from bench.stack import phase_settings
from crypto_pipeline.core.processes import free_port
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.embedded import EmbeddedKafka

log = logging.getLogger(__name__)

# --- the run --------------------------------------------------------------------------------

PARTS = ("all", "market")


def _started(plan: Plan, base: Settings) -> dict[str, Any]:
    return {"started_at": datetime.now(timezone.utc).isoformat(), "plan": asdict(plan),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(),
                        "load_average_at_start": load_average()},
            "settings": {"shuffle_partitions": base.shuffle_partitions,
                         "topic_partitions": base.topic_partitions,
                         "max_offsets_per_trigger": base.max_offsets_per_trigger,
                         "trigger_interval": str(base.trigger_interval),
                         "spark_master": base.spark_master, "kafka_heap": base.kafka_heap}}


def run(plan: Plan, only: str = "all") -> dict[str, Any]:
    """Every phase (`only="all"`), or the market phases alone."""
    if only == "market":
        base = Settings.load()
        results = _started(plan, base)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            work = Path(tmp)
            kafka = EmbeddedKafka(work / "kafka", work, port=free_port(consecutive=2),
                                  heap=base.kafka_heap)
            with kafka, PeakMemory() as memory:
                memory.watch("kafka", kafka.nodes[0].process.pid)
                results["market"] = run_market(base, kafka.bootstrap_servers, work, plan,
                                               memory)
        results["finished_at"] = datetime.now(timezone.utc).isoformat()
        return results
    return run_all(plan)


def run_market(base: Settings, bootstrap: str, work: Path, plan: Plan,
               memory: PeakMemory) -> dict[str, Any]:
    market = plan.market
    log.info("market 1/3: the producer polling %d symbols every %g s", market.symbols,
             market.poll_seconds)
    results = {"rest": measure_market_rest(base, bootstrap, work, market)}
    log.info("market 2/3: the producer streaming %d symbols' trades at %g/s, bursts of %d",
             market.symbols, market.trades_per_second, market.burst_trades)
    results["ws"] = measure_market_ws(base, bootstrap, work, market)
    log.info("market 3/3: producer, job (backfill of %g h) and dashboard over %d symbols",
             market.backfill_hours, market.symbols)
    memory.reset()
    results["stack"] = measure_market_stack(base, bootstrap, work, market, memory)
    results["memory_bytes"] = dict(memory.peaks) | {"total": memory.peak_total}
    return results


def run_all(plan: Plan) -> dict[str, Any]:
    from crypto_pipeline.streaming.session import build_session

    base = Settings.load()
    if plan.max_offsets_per_trigger is not None:
        base = base.replace(max_offsets_per_trigger=plan.max_offsets_per_trigger)
    results = _started(plan, base)
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
            results["market"] = run_market(base, bootstrap, work, plan, memory)
    results["finished_at"] = datetime.now(timezone.utc).isoformat()
    return results
