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
    measure_aggregate_latency,
    measure_ceiling,
    measure_drain,
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

def run(plan: Plan) -> dict[str, Any]:
    from crypto_pipeline.streaming.session import build_session

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
                log.info("phase 1/6: Spark's ceilings (rate source -> noop)")
                results["ceilings"] = {which: measure_ceiling(
                    spark, phase_settings(base, bootstrap, work, f"ceiling-{which}"), plan,
                    which) for which in ("seed", "job")}
                log.info("phase 2/6: catch-up (the job drains a backlog)")
                results["drain"] = measure_drain(
                    spark, phase_settings(base, bootstrap, work, "drain"), plan)
                log.info("phase 3/6: live, the rate searched upward")
                memory.watch("this process (Spark job, load generator)", os.getpid())
                results["live"] = measure_sustained(spark, base, bootstrap, work, plan, memory)
                results["sustained"] = sustained(results["live"], results["ceilings"])
            finally:
                spark.stop()
            memory.pids.clear()
            memory.reset()
            memory.watch("kafka", kafka.nodes[0].process.pid)
            log.info("phase 4/6: tick -> aggregate latency (no browser)")
            results["latency"] = measure_aggregate_latency(base, bootstrap, work, plan, memory)
            log.info("phase 5/6: tick -> page latency (dashboard in Chromium)")
            results["page_latency"] = measure_page_latency(base, bootstrap, work, plan, memory)
            results["stack_memory_bytes"] = dict(memory.peaks) | {"total": memory.peak_total}
            log.info("phase 6/6: producer requests per poll")
            results["producer_requests"] = measure_requests_per_poll(base, bootstrap, work)
    results["finished_at"] = datetime.now(timezone.utc).isoformat()
    return results
