"""The history's cost per micro-batch on each engine, at 200 symbols: a phase of its own,
run apart from ./bench.sh (it needs no Kafka nor Spark).

    PYTHONPATH=src:tests:. .venv/bin/python -m bench.history_write [--batches N]

Each engine starts from a history already holding `PREFILL_HOURS` of windows of every
symbol (the indexes as deep as a day's run makes them). A batch is what the job's batch
writer does with the history after a micro-batch that saw every symbol: the upsert of the
windows it changed (5-minute windows sliding by 1 minute: five per symbol), then the
alert rules' look-back (the recent returns of each of those windows). PostgreSQL runs
with its durable defaults (fsync, synchronous commits) on this machine, reached over TCP
with a password; SQLite is a file in WAL mode. Prints a table; writes the figures to
bench/results/history-write-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.measure import load_average
from bench.plan import RESULTS_DIR
from crypto_pipeline.core import logs
from crypto_pipeline.core.history import HistoryStore, open_history, sqlite_url
from crypto_pipeline.core.settings import Settings
from support.postgres import PostgresServer

log = logging.getLogger("bench.history_write")

SYMBOLS = 200
PREFILL_HOURS = 24
WINDOWS_PER_TICK = 5  # WINDOW_DURATION / WINDOW_SLIDE at the defaults
MINUTE = timedelta(minutes=1)
START = datetime(2026, 11, 30, tzinfo=timezone.utc)


def window(symbol: str, start: datetime, price: float, emitted_at: datetime) -> dict[str, Any]:
    return {"symbol": symbol, "window_start": start, "window_end": start + 5 * MINUTE,
            "avg_price": price, "min_price": price * 0.999, "max_price": price * 1.001,
            "count": 40, "spread": price * 0.002, "open_price": price * 0.9995,
            "close_price": price * 1.0005, "pct_change": 0.1, "stddev_price": price * 0.0004,
            "volume": 12.5, "vwap": price, "last_event_time": emitted_at,
            "emitted_at": emitted_at, "expected_count": 60, "missed_trades": None}


def batch_rows(minute: int) -> list[dict[str, Any]]:
    """The windows one micro-batch at `minute` changes: every symbol's five open windows."""
    now = START + minute * MINUTE
    return [window(f"S{s:04d}USDT", now - k * MINUTE, 100.0 + s + minute / 100, now)
            for s in range(SYMBOLS) for k in range(WINDOWS_PER_TICK)]


def prefill(history: HistoryStore) -> float:
    began = time.monotonic()
    rows = [window(f"S{s:04d}USDT", START + m * MINUTE, 100.0 + s, START + (m + 5) * MINUTE)
            for m in range(PREFILL_HOURS * 60) for s in range(SYMBOLS)]
    for start in range(0, len(rows), 20_000):
        history.upsert(rows[start:start + 20_000])
    return time.monotonic() - began


def measure(history: HistoryStore, batches: int, zscore_windows: int) -> dict[str, Any]:
    prefill_seconds = prefill(history)
    upserts, lookbacks = [], []
    first_minute = PREFILL_HOURS * 60
    for minute in range(first_minute, first_minute + batches):
        rows = batch_rows(minute)
        began = time.perf_counter()
        history.upsert(rows)
        upserted = time.perf_counter()
        history.recent_returns(((r["symbol"], r["window_start"]) for r in rows),
                               zscore_windows)
        upserts.append(upserted - began)
        lookbacks.append(time.perf_counter() - upserted)
    totals = [a + b for a, b in zip(upserts, lookbacks)]
    return {"rows_per_batch": SYMBOLS * WINDOWS_PER_TICK,
            "prefilled_windows": SYMBOLS * PREFILL_HOURS * 60,
            "prefill_seconds": round(prefill_seconds, 1), "batches": batches,
            "upsert_ms": _summary(upserts), "lookback_ms": _summary(lookbacks),
            "batch_ms": _summary(totals), "load_average": load_average()}


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"median": round(1000 * statistics.median(ordered), 1),
            "p95": round(1000 * ordered[max(0, round(0.95 * len(ordered)) - 1)], 1),
            "max": round(1000 * ordered[-1], 1)}


def table(results: dict[str, Any]) -> str:
    lines = ["| engine | upsert of the batch's windows | alert look-back | batch total | "
             "load avg |", "|---|---|---|---|---|"]
    for engine, figures in results["engines"].items():
        def cell(name: str) -> str:
            return f"{figures[name]['median']} ms (p95 {figures[name]['p95']})"

        lines.append(f"| {engine} | {cell('upsert_ms')} | {cell('lookback_ms')} | "
                     f"{cell('batch_ms')} | {figures['load_average']} |")
    return "\n".join(lines)


def run(batches: int) -> dict[str, Any]:
    zscore_windows = Settings.load(environ={}, env_file=None).alert_zscore_windows
    results: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(),
                               "symbols": SYMBOLS, "engines": {}}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as work:
        with open_history(sqlite_url(Path(work) / "history.sqlite")) as history:
            log.info("sqlite: %d batches", batches)
            results["engines"]["sqlite"] = measure(history, batches, zscore_windows)
    with PostgresServer(durable=True) as server:
        with open_history(server.create_database()) as history:
            log.info("postgresql: %d batches", batches)
            results["engines"]["postgresql"] = measure(history, batches, zscore_windows)
    results["finished_at"] = datetime.now(timezone.utc).isoformat()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.history_write",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=50, help="batches measured per engine")
    args = parser.parse_args()
    logs.configure("INFO")
    results = run(args.batches)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"history-write-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nAll figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
