"""What the 1-minute candles cost the Spark job, against the alternative: a phase of its
own, run apart from ./bench.sh (it needs no Kafka).

    PYTHONPATH=src:tests:. .venv/bin/python -m bench.candles_cost [--ticks N] [--runs R]

The same ticks (JSON as on the input topic, `SYMBOLS` symbols a tick a second each) are
read as a stream from files, a file per micro-batch, and go through the job's own
transforms in four set-ups:

- `windows before`: the sliding-window aggregation as it was before the candles and the
  completeness fields (those are not selected, and Spark's optimizer drops unselected
  aggregates);
- `windows only`: the same with the completeness fields (expected polls, missed trades);
- `candles in the aggregation`: what the job does, the windows carrying the candle of
  their last minute;
- `third query`: the windows as before, plus a query of their own for the candles,
  parsing every tick again for a tumbling 1-minute aggregation.

Each batch's records are built and collected as the job's batch writer does (the Kafka
write, the same in every set-up bar the candles' own records, is left out). Prints, per
set-up, the CPU time the Spark JVM spent on the whole stream (what the set-up costs,
whatever else runs on the machine), the time its micro-batches took (summed over its
queries) and the wall time, the median of the runs (set-ups taken in turn, after a first
round that warms the JVM up and is not counted), and the state each holds; writes
bench/results/candles-cost-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.measure import load_average
from bench.plan import RESULTS_DIR
from crypto_pipeline.core import logs
from crypto_pipeline.core.schema import AGGREGATE_FIELDS, Tick
from crypto_pipeline.core.settings import Settings

log = logging.getLogger("bench.candles_cost")

SYMBOLS = 50
FILES = 10
START = datetime(2026, 11, 30, tzinfo=timezone.utc)
SETUPS = ("windows before", "windows only", "candles in the aggregation", "third query")
COMPLETENESS = ("expected_count", "missed_trades")


def write_ticks(folder: Path, ticks: int) -> None:
    per_file = ticks // FILES
    for number in range(FILES):
        with open(folder / f"ticks-{number:03d}.json", "w") as out:
            for i in range(number * per_file, (number + 1) * per_file):
                second, symbol = divmod(i, SYMBOLS)
                tick = Tick(f"S{symbol:03d}USDT", 100.0 + (i % 997) / 100,
                            START + timedelta(seconds=second), "simulated")
                out.write(tick.to_json().decode() + "\n")


def parsed_stream(spark, folder: Path, settings: Settings):
    """The files as the Kafka source would hand them over, parsed as the job parses."""
    from pyspark.sql import functions as F

    from crypto_pipeline.streaming.transforms import parse_records, valid_ticks

    records = (spark.readStream.option("maxFilesPerTrigger", 1).text(str(folder))
               .select(F.lit(None).cast("binary").alias("key"),
                       F.col("value").cast("binary").alias("value"),
                       F.lit("ticks").alias("topic"), F.lit(0).alias("partition"),
                       F.lit(0).cast("long").alias("offset"),
                       F.current_timestamp().alias("timestamp")))
    return valid_ticks(parse_records(records, settings.max_clock_skew))


def tumbling_candles(ticks, settings: Settings):
    """The alternative's candles: a tumbling 1-minute aggregation of its own."""
    from pyspark.sql import functions as F

    price = F.col("price")
    return (ticks.withWatermark("event_time", settings.watermark_delay.spark)
            .groupBy(F.window("event_time", "1 minute").alias("minute"), "symbol")
            .agg(F.min_by(price, "event_time").alias("open"), F.max(price).alias("high"),
                 F.min(price).alias("low"), F.max_by(price, "event_time").alias("close"),
                 F.count(price).alias("count"), F.sum("quantity").alias("volume")))


def jvm_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_setup(spark, setup: str, folder: Path, work: Path, settings: Settings) -> dict:
    from pyspark.sql import functions as F

    from crypto_pipeline.streaming.transforms import (
        aggregate_records,
        aggregate_windows,
        candle_records,
        candles,
    )

    windows = aggregate_windows(parsed_stream(spark, folder, settings), settings)
    if setup == "windows before":
        windows = windows.select(*[f.name for f in AGGREGATE_FIELDS
                                   if f.name not in COMPLETENESS])
    elif setup != "candles in the aggregation":
        windows = windows.select(*[f.name for f in AGGREGATE_FIELDS])

    def write_windows(batch, _batch_id):
        batch = batch.persist()
        written = batch
        if setup == "windows before":  # the message as it was: no completeness to fill
            batch = batch.select("*", *[F.lit(None).cast("long").alias(name)
                                        for name in COMPLETENESS])
        records = aggregate_records(batch)
        if setup == "candles in the aggregation":
            records = records.unionByName(candle_records(candles(batch)))
        records.collect()
        written.unpersist()

    def write_candles(batch, _batch_id):
        batch.select(F.to_json(F.struct("*"))).collect()

    queries = [windows.writeStream.outputMode("update").foreachBatch(write_windows)
               .option("checkpointLocation", str(work / "windows")).trigger(availableNow=True)]
    if setup == "third query":
        queries.append(tumbling_candles(parsed_stream(spark, folder, settings), settings)
                       .writeStream.outputMode("update").foreachBatch(write_candles)
                       .option("checkpointLocation", str(work / "candles"))
                       .trigger(availableNow=True))
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()  # noqa: SLF001 - no public API
    cpu, began = jvm_cpu_seconds(pid), time.monotonic()
    started = [query.start() for query in queries]
    for query in started:
        query.awaitTermination()
    seconds, cpu = time.monotonic() - began, jvm_cpu_seconds(pid) - cpu
    progress = [p for query in started for p in query.recentProgress if p["numInputRows"]]
    return {
        "cpu_seconds": round(cpu, 2),
        "seconds": round(seconds, 2),
        "batch_ms": sum(p["durationMs"]["triggerExecution"] for p in progress),
        "state_rows": sum(op["numRowsTotal"] for query in started
                          for op in query.lastProgress["stateOperators"]),
        "state_bytes": sum(op["memoryUsedBytes"] for query in started
                           for op in query.lastProgress["stateOperators"]),
    }


def main(argv: list[str] | None = None) -> int:
    from crypto_pipeline.streaming.job import STATE_STORE_CONF
    from crypto_pipeline.streaming.session import build_session

    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--ticks", type=int, default=500_000)
    args.add_argument("--runs", type=int, default=3)
    options = args.parse_args(argv)
    settings = Settings.load(environ={}, env_file=None)
    logs.configure("INFO")
    spark = build_session(settings.replace(spark_master="local[2]"), "candles-cost",
                          **STATE_STORE_CONF)
    results: dict[str, list[dict]] = {setup: [] for setup in SETUPS}
    try:
        with tempfile.TemporaryDirectory(prefix="candles-cost-") as tmp:
            folder = Path(tmp) / "ticks"
            folder.mkdir()
            write_ticks(folder, options.ticks)
            for run in range(options.runs + 1):
                for setup in SETUPS:
                    work = Path(tmp) / f"run-{run}-{SETUPS.index(setup)}"
                    result = run_setup(spark, setup, folder, work, settings)
                    log.info("%s, run %d%s: %s", setup, run, " (warm-up)" if not run else "",
                             result)
                    if run:
                        results[setup].append(result)
    finally:
        spark.stop()
    def median(setup: str, name: str) -> float:
        return statistics.median(r[name] for r in results[setup])

    print(f"{options.ticks:,} ticks of {SYMBOLS} symbols in {FILES} micro-batches, "
          f"median of {options.runs} runs (load average {load_average()})")
    print(f"{'set-up':<28} {'JVM CPU s':>10} {'vs. before':>12} {'batches s':>10} "
          f"{'wall s':>7} {'state rows':>11} {'state MB':>9}")
    summary = {}
    for setup, runs in results.items():
        cpu = median(setup, "cpu_seconds")
        relative = cpu / median(SETUPS[0], "cpu_seconds")
        summary[setup] = {"cpu_seconds": cpu, "relative_cpu": round(relative, 3),
                          "batch_ms": median(setup, "batch_ms"),
                          "seconds": median(setup, "seconds"),
                          "state_rows": runs[-1]["state_rows"],
                          "state_bytes": runs[-1]["state_bytes"], "runs": runs}
        print(f"{setup:<28} {cpu:>10.1f} {relative - 1:>+11.1%} "
              f"{median(setup, 'batch_ms') / 1000:>10.1f} {median(setup, 'seconds'):>7.1f} "
              f"{runs[-1]['state_rows']:>11,} {runs[-1]['state_bytes'] / 1e6:>9.1f}")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"candles-cost-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"ticks": options.ticks, "symbols": SYMBOLS, "files": FILES,
                                "load_average": load_average(), "setups": summary}, indent=2))
    print(f"written to {path.relative_to(RESULTS_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
