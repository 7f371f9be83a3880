"""What every price source shares: its status, the protocol the producer drives, and the
fixed-rate schedule and idle wait of the polling sources.

Each source's `batches(stop)` yields lists of ticks until it is done or `stop` is set.
While it waits it yields an empty list at least once a second, so the caller can report
progress and notice `stop`. `status` holds what the source has to say about itself.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Protocol

from crypto_pipeline.core.schema import Tick
from crypto_pipeline.core.status import State

HEARTBEAT_SECONDS = 1.0
# Binance's faults by kind (binance.rest.BinanceError.kind) -> the producer's state.
STATE_BY_FAULT = {"rate-limited": State.RATE_LIMITED, "banned": State.RATE_LIMITED,
                  "restricted-location": State.RESTRICTED_LOCATION}



@dataclass
class SourceStatus:
    state: str = State.STARTING
    polls: int = 0
    bad_entries: int = 0
    errors: Counter = field(default_factory=Counter)
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None


class PriceSource(Protocol):
    name: str  # the `source` of its ticks and of the status file
    origin: str  # the `origin` header of its records: whose positions they carry
    lossless: bool  # True: wait for room in the Kafka buffer rather than drop ticks
    status: SourceStatus

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]: ...


class Resumable(Protocol):
    """A source whose ticks carry positions, so a restart goes on where Kafka stands."""

    # The record keys (symbols) to read positions of; None: every partition, until the
    # newest record of this origin in each.
    resume_keys: tuple[str, ...] | None

    def resume(self, positions: dict[str, int]) -> None:
        """Go on after these positions ({record key: newest position in Kafka})."""


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class FixedRate:
    """Slots `interval` apart from the first: a late poll does not move later slots, and
    slots missed while a poll overran are skipped rather than made up in a burst."""

    def __init__(self, interval: float, start: float):
        self.interval = interval
        self.start = start
        self._slot = 0

    @property
    def due(self) -> float:
        return self.start + self._slot * self.interval

    def advance(self, now: float) -> None:
        self._slot = max(self._slot + 1, math.floor((now - self.start) / self.interval) + 1)


def idle_until(deadline: float, stop: threading.Event,
               clock: Callable[[], float]) -> Iterator[list[Tick]]:
    """Wait for `deadline` (or `stop`), yielding an empty batch at least once a second."""
    while not stop.is_set():
        remaining = deadline - clock()
        if remaining <= 0:
            return
        stop.wait(min(HEARTBEAT_SECONDS, remaining))
        yield []
