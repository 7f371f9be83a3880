"""The benchmark's arithmetic: percentiles, which aggregate contains a tick, when a live
run keeps up, a drain's rate, and the README table it writes. (The benchmark itself is
./bench.sh and bench/history_write.py: figures are printed, never asserted by a timed
test.)"""

from __future__ import annotations

import pytest

from bench import history_write
from bench.measure import Batch, drain_rate, keeps_up, percentiles, tick_latencies
from bench.phases import Markers, live_rates, sustained
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


def test_the_live_phase_halves_its_rate_down_to_the_minimum():
    assert live_rates(64_197, Plan()) == [32_000, 16_000, 8_000, 4_000, 2_000, 1_000]
    assert live_rates(1_500, Plan()) == [1_000]


def test_sustained_is_the_highest_rate_kept_up():
    attempts = [{"offered_per_second": 32_000, "keeps_up": False},
                {"offered_per_second": 16_000, "keeps_up": True}]
    assert sustained(attempts, {"rows_per_second": 160_000}) == {
        "ticks_per_second": 16_000, "percent_of_ceiling": 10.0}
    assert sustained(attempts[:1], {"rows_per_second": 160_000})["ticks_per_second"] is None


LIVE = {"seconds": 180, "trigger": "2 seconds", "backlog_first": 10, "backlog_last": 12,
        "batch_seconds_median": 1.5, "state_rows_last": 1_000, "load_average": 2.0}
RESULTS = {
    "started_at": "2026-11-24T05:00:00+00:00",
    "machine": {"cpus": 2, "load_average_at_start": 0.5},
    "ceiling": {"rows_per_batch": 1_000_000, "rows_per_second": 150_000, "load_average": 2.0},
    "drain": {"ticks": 4_000_000, "symbols": 200, "rows_per_second": 60_000,
              "percent_of_ceiling": 40.0, "load_average": 2.0},
    "live": [LIVE | {"offered_per_second": 32_000, "processed_per_second": 31_000,
                     "keeps_up": False},
             LIVE | {"offered_per_second": 16_000, "processed_per_second": 16_000,
                     "keeps_up": True}],
    "sustained": {"ticks_per_second": 16_000, "percent_of_ceiling": 10.7},
    "latency": {"rate": 1000, "trigger": "1 second", "page_refresh_seconds": 1.0,
                "tick_to_aggregate_seconds": {"p50": 1.0, "p95": 1.8, "p99": 2.5, "n": 60_000},
                "tick_to_page_seconds": {"p50": 2.0, "p95": 3.5, "p99": 4.0, "n": 30},
                "load_average": 2.0},
    "memory_bytes": {"kafka": 2 ** 29, "spark job": 2 ** 30, "total": 2 ** 31},
    "producer_requests": {"2": {"requests_per_poll": 1.0}, "200": {"requests_per_poll": 1.0}},
}


def test_the_readme_table_is_replaced_between_its_markers():
    readme = "intro\n<!-- bench-table:begin -->\nold\n<!-- bench-table:end -->\nrest\n"
    new = readme_with_table(readme, RESULTS, "bench/results/bench-x.json")
    assert new.startswith("intro\n<!-- bench-table:begin -->\nLast full run: 2026-11-24 05:00")
    assert new.endswith("<!-- bench-table:end -->\nrest\n") and "old" not in new
    rows = {line.split(" | ")[0]: line for line in new.splitlines() if line.startswith("| ")}
    assert "| **no** |" in rows["| Tick → page p50/p95/p99 (refresh 1 s)"]
    assert "| yes |" in rows["| Tick → aggregate p50/p95/p99 at 1,000/s, trigger 1 second"]
    assert "| 16,000 ticks/s (10.7 % of ceiling) | **no** |" in new  # below 200,000/s
    assert "| Live: 32,000 ticks/s for 180 s, event time now, trigger 2 seconds | keeps up" \
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
