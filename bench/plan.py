"""What a benchmark run measures, and where it writes."""

from __future__ import annotations

from dataclasses import dataclass

from crypto_pipeline.core.paths import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
README = PROJECT_ROOT / "README.md"
SRC = PROJECT_ROOT / "src"
GIB = 1024 ** 3


@dataclass(frozen=True)
class Plan:
    symbols: int = 200
    drain_ticks: int = 4_000_000
    # Event time of the backlog advances as if ticks had come at this rate.
    drain_event_rate: float = 1000.0
    ceiling_batches: int = 5
    live_fraction: float = 0.5
    live_seconds: float = 180.0
    # The live phase halves its rate until the job keeps up, down to this rate.
    live_min_rate: float = 1000.0
    latency_symbols: int = 2
    latency_rate: float = 1000.0
    latency_seconds: float = 60.0
    page_refresh_seconds: float = 1.0
    generator_processes: int = 2
    # None: MAX_OFFSETS_PER_TRIGGER as configured.
    max_offsets_per_trigger: int | None = None


QUICK = Plan(drain_ticks=600_000, ceiling_batches=3, live_seconds=40, latency_seconds=20,
             max_offsets_per_trigger=150_000)
