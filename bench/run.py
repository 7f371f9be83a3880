"""The benchmark behind ./bench.sh: how fast and how fresh, against the machine's ceiling.

All phases run in one go on one machine, each on its own topics and checkpoints of one
embedded broker, with the production settings (Settings.load()) unless a phase says so:
1. ceilings: on ticks from Spark's `rate-micro-batch` source into a `noop` sink, with the
   job's state store, shuffle partitions and batch size: the seed's aggregation (avg,
   min, max, count over the sliding windows) and the job's (`aggregate_windows`, every
   statistic). Left out, and so the job's overhead on top: reading Kafka, JSON parsing
   and validation, the dead-letter query, the batch writer;
2. catch-up: a backlog of ticks over many symbols is preloaded, then the real job
   (`StreamingJob`: both queries) drains it;
3. live: ticks at a fixed rate with event time = now while the job runs at its trigger;
   the rate is searched upward (doubled while the job keeps up, then bisected): the
   highest rate kept up is the sustained throughput, with the whole stack's peak memory;
4. tick -> aggregate latency: the stack as start.sh runs it (broker, producer, job as
   separate processes), synthetic ticks at 1,000/s, no browser;
5. tick -> page latency: the same with the dashboard, read in headless Chromium;
6. producer requests per poll, against the Binance stand-in, for 2 and 200 symbols.
7. the market (`--only market` runs these alone, on a broker of their own): 2,000 USDT
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

import contextlib
import logging
import os
import platform
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from bench.measure import (
    PeakMemory,
    load_average,
)
from bench.phases import (
    measure_aggregate_latency,
    measure_ceiling,
    measure_drain,
    measure_market_rest,
    measure_market_stack,
    measure_market_ws,
    measure_page_latency,
    measure_requests_per_poll,
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

PARTS = ("all", "pipeline", "market")


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
    """Every phase (`only="all"`), phases 1-6 alone ("pipeline"), or the market phases
    alone ("market")."""
    if only == "market":
        base = Settings.load()
        results = _started(plan, base)
        with _broker(base) as (work, kafka, memory):
            results["market"] = run_market(base, kafka.bootstrap_servers, work, plan, memory)
        results["finished_at"] = datetime.now(timezone.utc).isoformat()
        return results
    return run_all(plan, market=only == "all")


@contextlib.contextmanager
def _broker(base: Settings) -> Iterator[tuple[Path, EmbeddedKafka, PeakMemory]]:
    """A temporary folder with an embedded broker in it, its memory watched."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        kafka = EmbeddedKafka(work / "kafka", work, port=free_port(consecutive=2),
                              heap=base.kafka_heap)
        with kafka, PeakMemory() as memory:
            memory.watch("kafka", kafka.nodes[0].process.pid)
            yield work, kafka, memory


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
    memory.pids.clear()
    memory.reset()
    results["stack"] = measure_market_stack(base, bootstrap, work, market, memory)
    results["memory_bytes"] = dict(memory.peaks) | {"total": memory.peak_total}
    return results


def run_all(plan: Plan, market: bool = True) -> dict[str, Any]:
    from crypto_pipeline.streaming.session import build_session

    base = Settings.load()
    if plan.max_offsets_per_trigger is not None:
        base = base.replace(max_offsets_per_trigger=plan.max_offsets_per_trigger)
    results = _started(plan, base)
    with _broker(base) as (work, kafka, memory):
        bootstrap = kafka.bootstrap_servers
        spark = build_session(phase_settings(base, bootstrap, work, "session"), "benchmark",
                              **{"spark.sql.streaming.numRecentProgressUpdates": "1000"})
        try:
            log.info("phase 1/7: Spark's ceilings (rate source -> noop)")
            results["ceilings"] = {which: measure_ceiling(
                spark, phase_settings(base, bootstrap, work, f"ceiling-{which}"), plan,
                which) for which in ("seed", "job")}
            log.info("phase 2/7: catch-up (the job drains a backlog)")
            results["drain"] = measure_drain(
                spark, phase_settings(base, bootstrap, work, "drain"), plan)
            log.info("phase 3/7: live, the rate searched upward")
            memory.watch("this process (Spark job, load generator)", os.getpid())
            results["live"] = measure_sustained(spark, base, bootstrap, work, plan, memory)
            results["sustained"] = sustained(results["live"], results["ceilings"])
        finally:
            spark.stop()
        memory.pids.clear()
        memory.reset()
        memory.watch("kafka", kafka.nodes[0].process.pid)
        log.info("phase 4/7: tick -> aggregate latency (no browser)")
        results["latency"] = measure_aggregate_latency(base, bootstrap, work, plan, memory)
        log.info("phase 5/7: tick -> page latency (dashboard in Chromium)")
        results["page_latency"] = measure_page_latency(base, bootstrap, work, plan, memory)
        results["stack_memory_bytes"] = dict(memory.peaks) | {"total": memory.peak_total}
        log.info("phase 6/7: producer requests per poll")
        results["producer_requests"] = measure_requests_per_poll(base, bootstrap, work)
        if market:
            log.info("phase 7/7: the market")
            results["market"] = run_market(base, bootstrap, work, plan, memory)
    results["finished_at"] = datetime.now(timezone.utc).isoformat()
    return results
