"""The benchmark's arithmetic: percentiles, which aggregate contains a tick, when a live
run keeps up, a drain's rate, and the README table it writes. (The benchmark itself is
./bench.sh and bench/history_write.py: figures are printed, never asserted by a timed
test.)"""

from __future__ import annotations

import pytest

from bench import history_write
from bench.measure import Batch, drain_rate, keeps_up, percentiles, tick_latencies
from bench.phases import Markers, next_live_rate, sustained
from bench.plan import Plan
from bench.report import readme_with_table
from crypto_pipeline.core.schema import AGGREGATE_FIELDS


def batch(started: float, seconds: float, rows: int, backlog: int | None = 0) -> Batch:
    return Batch(started=started, seconds=seconds, rows=rows, backlog=backlog, state_rows=10,
                 ms_by_phase={"addBatch": round(seconds * 900)})


def test_percentiles_are_values_that_occurred():
    values = [float(n) for n in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "n": 100}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0, "n": 1}
    assert percentiles([])["p95"] is None


def test_a_tick_is_in_the_first_aggregate_at_least_as_new_as_it():
    sent = [("A", 100, 10.0), ("A", 200, 11.0), ("B", 150, 10.5), ("A", 300, 12.0)]
    # (read at, symbol, newest event in the aggregate)
    seen = [(10.4, "A", 100), (11.9, "A", 250), (12.0, "B", 150), (13.0, "A", 200)]
    # A@100 -> 10.4; A@200 -> the aggregate read at 11.9 (250 >= 200); B@150 -> 12.0;
    # A@300: no aggregate holds it yet, so it has no latency.
    assert tick_latencies(sent, seen) == pytest.approx([0.4, 0.9, 1.5])


def test_a_marker_shows_at_the_first_reading_at_least_its_price():
    sent = [(1_000_001.0, 100.0), (1_000_002.0, 102.0)]
    shown = [(100.5, 99.0), (101.2, 1_000_001.0), (103.0, 1_000_001.0), (104.5, 1_000_002.0)]
    assert Markers.latencies(sent, shown) == pytest.approx([1.2, 2.5])


def test_keeping_up_needs_throughput_a_flat_backlog_and_short_batches():
    steady = [batch(100 + i, 0.8, 1000, backlog=50) for i in range(10)]
    assert keeps_up(steady, 1000, 1.0, (100, 120))["keeps_up"]

    growing = [batch(100 + i, 0.8, 1000, backlog=50 + 500 * i) for i in range(10)]
    assert not keeps_up(growing, 1000, 1.0, (100, 120))["keeps_up"]

    slow = [batch(100 + 2 * i, 1.9, 2000, backlog=50) for i in range(10)]
    verdict = keeps_up(slow, 1000, 1.0, (100, 130))
    assert not verdict["keeps_up"] and verdict["batch_seconds_median"] == 1.9

    with pytest.raises(ValueError):
        keeps_up(steady, 1000, 1.0, (500, 600))


def test_a_drain_leaves_out_the_first_batch():
    main = [batch(0, 10, 100_000), batch(10, 2, 200_000), batch(12, 2, 200_000)]
    dead_letters = [batch(0, 13, 500_000)]
    rate = drain_rate([main, dead_letters], 500_000)
    # 400,000 ticks after the first batch, from its end (10 s) to the last end (14 s).
    assert rate["rows_per_second"] == 100_000 and rate["batches"] == 2
    with pytest.raises(ValueError):
        drain_rate([main[:2]], 300_000)


def attempt(rate: float, kept: bool) -> dict:
    return {"rate": rate, "offered_per_second": round(rate * 0.99), "keeps_up": kept,
            "memory_bytes": {"kafka": 5 * 10 ** 8, "total": 2 * 10 ** 9}}


def test_the_live_search_doubles_then_bisects_then_stops():
    plan = Plan(live_start_rate=25_000, live_precision=1.25, live_max_attempts=7)
    tried = [attempt(25_000, True)]
    assert next_live_rate(tried, plan) == 50_000
    tried.append(attempt(50_000, True))
    assert next_live_rate(tried, plan) == 100_000
    tried.append(attempt(100_000, False))
    assert next_live_rate(tried, plan) == 75_000  # between the highest kept and lowest not
    tried.append(attempt(75_000, False))
    assert next_live_rate(tried, plan) == 62_000
    tried.append(attempt(62_000, True))
    assert next_live_rate(tried, plan) is None  # 62,000 and 75,000 are within 25 %
    assert next_live_rate([attempt(25_000, False)], plan) == 12_500  # too high to start
    assert next_live_rate([attempt(400_000, True)], plan) is None  # the maximum kept up
    assert next_live_rate([attempt(25_000, True)] * 7, plan) is None


def test_sustained_is_the_highest_rate_kept_up_and_the_first_above_it_that_was_not():
    attempts = [attempt(25_000, True), attempt(50_000, False), attempt(37_000, True)]
    result = sustained(attempts, {"seed": {"rows_per_second": 370_000},
                                  "job": {"rows_per_second": 185_000}})
    assert result == {"ticks_per_second": 36_630, "first_not_kept_up": 49_500,
                      "percent_of_ceiling": {"seed": 9.9, "job": 19.8},
                      "memory_bytes": attempts[2]["memory_bytes"]}
    assert sustained(attempts[1:2], {})["ticks_per_second"] is None


LIVE = {"seconds": 90, "trigger": "1 second", "backlog_first": 10, "backlog_last": 12,
        "batch_seconds_median": 0.8, "state_rows_last": 1_000, "load_average": 2.0}
RESULTS = {
    "started_at": "2026-11-24T05:00:00+00:00",
    "machine": {"cpus": 2, "load_average_at_start": 0.5},
    "ceilings": {
        "seed": {"rows_per_batch": 1_000_000, "rows_per_second": 400_000, "load_average": 2.0},
        "job": {"rows_per_batch": 1_000_000, "rows_per_second": 200_000, "load_average": 2.0}},
    "drain": {"ticks": 4_000_000, "symbols": 200, "rows_per_second": 100_000,
              "load_average": 2.0},
    "live": [LIVE | {"offered_per_second": 50_000, "processed_per_second": 49_000,
                     "keeps_up": False},
             LIVE | {"offered_per_second": 25_000, "processed_per_second": 25_000,
                     "keeps_up": True}],
    "sustained": {"ticks_per_second": 25_000, "first_not_kept_up": 50_000,
                  "percent_of_ceiling": {"seed": 6.2, "job": 12.5},
                  "memory_bytes": {"kafka": 5 * 10 ** 8, "total": 2 * 10 ** 9}},
    "latency": {"rate": 1000, "trigger": "1 second", "load_average": 2.0,
                "tick_to_aggregate_seconds": {"p50": 0.8, "p95": 1.4, "p99": 1.9, "n": 60_000}},
    "page_latency": {"page_refresh_seconds": 1.0, "load_average": 2.0,
                     "tick_to_page_seconds": {"p50": 2.0, "p95": 3.5, "p99": 4.0, "n": 30}},
    "stack_memory_bytes": {"kafka": 5 * 10 ** 8, "spark job": 10 ** 9, "total": 3 * 10 ** 9},
    "producer_requests": {"2": {"requests_per_poll": 1.0}, "200": {"requests_per_poll": 1.0}},
}


def test_the_readme_table_is_replaced_between_its_markers():
    readme = "intro\n<!-- bench-table:begin -->\nold\n<!-- bench-table:end -->\nrest\n"
    new = readme_with_table(readme, RESULTS, "bench/results/bench-x.json")
    assert new.startswith("intro\n<!-- bench-table:begin -->\nLast full run: 2026-11-24 05:00")
    assert new.endswith("<!-- bench-table:end -->\nrest\n") and "old" not in new
    rows = {line.split(" | ")[0]: line for line in new.splitlines() if line.startswith("| ")}
    assert "| **no** |" in rows["| Tick → page p50/p95/p99 (refresh 1 s, Chromium on the same "
                                "cores)"]
    assert "| yes |" in rows["| Tick → aggregate p50/p95/p99 at 1,000/s, trigger 1 second, "
                             "no browser"]
    assert "| 25,000 ticks/s (6.2 % of the seed's ceiling, 12.5 % of the job's); 50,000/s " \
           "not | **no** |" in new  # below 100,000/s
    assert "| 2.00 GB (kafka 0.50) | yes |" in new
    assert "| 3.00 GB (kafka 0.50, spark job 1.00) | **no** |" in new
    assert "| Live: 50,000 ticks/s for 90 s, event time now, trigger 1 second | keeps up" \
        in new and new.count("| Live: ") == 2
    with pytest.raises(ValueError):
        readme_with_table("no markers", RESULTS, "x")


def test_the_history_phase_writes_what_a_batch_at_200_symbols_changes():
    rows = history_write.batch_rows(minute=10)
    assert len(rows) == 200 * 5 == len({(r["symbol"], r["window_start"]) for r in rows})
    assert all(tuple(row) == tuple(f.name for f in AGGREGATE_FIELDS) for row in rows)
    results = {"engines": {"sqlite": {
        name: {"median": 1.5, "p95": 2.0, "max": 3.0}
        for name in ("upsert_ms", "lookback_ms", "batch_ms")} | {"load_average": 0.5}}}
    assert "| sqlite | 1.5 ms (p95 2.0) | 1.5 ms (p95 2.0) | 1.5 ms (p95 2.0) | 0.5 |" in \
        history_write.table(results)
