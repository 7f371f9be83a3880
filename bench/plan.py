"""What a benchmark run measures, and where it writes."""

from __future__ import annotations

from dataclasses import dataclass

from crypto_pipeline.core.paths import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
README = PROJECT_ROOT / "README.md"
SRC = PROJECT_ROOT / "src"
GB = 1e9  # one unit for memory everywhere: GB, powers of ten


@dataclass(frozen=True)
class MarketPlan:
    """The market phases: the pipeline over a whole market of `symbols` USDT pairs."""

    symbols: int = 2000
    poll_seconds: float = 5.0  # REST: 2,000 symbols every 5 s is 400 ticks/s
    rest_seconds: float = 60.0
    trades_per_second: float = 5000.0  # trade streams: the steady rate...
    burst_trades: int = 50_000  # ...and each burst, made at once
    bursts: int = 3
    ws_seconds: float = 90.0
    backfill_hours: float = 24.0
    page_refresh_seconds: float = 1.0
    refresh_seconds: float = 60.0  # how long the page is watched refreshing
    stack_timeout: float = 3600.0


@dataclass(frozen=True)
class Plan:
    symbols: int = 200
    drain_ticks: int = 4_000_000
    # Event time of the backlog advances as if ticks had come at this rate.
    drain_event_rate: float = 1000.0
    ceiling_batches: int = 5
    # The live search: from this rate, doubled while the job keeps up (up to
    # live_max_rate), then bisected until the rates kept up and not are this close.
    live_start_rate: float = 25_000.0
    live_max_rate: float = 400_000.0
    live_min_rate: float = 1000.0
    live_precision: float = 1.25
    live_max_attempts: int = 7
    live_seconds: float = 90.0
    latency_symbols: int = 2
    latency_rate: float = 1000.0
    latency_seconds: float = 60.0
    page_refresh_seconds: float = 1.0
    generator_processes: int = 2
    # None: MAX_OFFSETS_PER_TRIGGER as configured.
    max_offsets_per_trigger: int | None = None
    market: MarketPlan = MarketPlan()


QUICK_MARKET = MarketPlan(symbols=300, rest_seconds=20, trades_per_second=1000,
                          burst_trades=10_000, bursts=2, ws_seconds=30, backfill_hours=1,
                          refresh_seconds=20, stack_timeout=900)
QUICK = Plan(drain_ticks=600_000, ceiling_batches=3, live_seconds=40, latency_seconds=20,
             live_max_attempts=2, max_offsets_per_trigger=150_000, market=QUICK_MARKET)
