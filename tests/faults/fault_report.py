"""The fault suite's report: one record per scenario, written as markdown at the end.

A scenario says what was injected and what it counted. "Lost" and "duplicated" are
computed, never assumed: for the Spark job per window against the oracle (a window
whose count is lower than the oracle's lost ticks, a higher one double-counted them;
every tick belongs to WINDOW_DURATION / WINDOW_SLIDE windows), for the producer as the
multiset of prices the Binance stand-in served against the ticks on the topic.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Hashable, Iterable

from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import Settings

SCENARIOS = {
    1: "Spark job killed (SIGKILL) three times, restarted by its supervisor",
    2: "Broker stopped for 30 s mid-stream",
    3: "Dashboard restarted",
    4: "Binance faults in sequence",
    5: "Poison input on the input topic",
    6: "Soak: 30 minutes at 1,000 ticks/s over 200 symbols",
    7: "Producer killed (SIGKILL) three times during a replay",
    8: "Producer killed during a trade stream, and a forced reconnect",
    9: "A transaction left open by a killed producer",
}
FULL_REPORT = PROJECT_ROOT / "docs" / "fault-report.md"
PARTIAL_REPORT = PROJECT_ROOT / "test-artifacts" / "fault-report.md"


def windows_per_tick(settings: Settings) -> int:
    return round(settings.window_duration.seconds / settings.window_slide.seconds)


@dataclass
class Scenario:
    number: int
    injected: str
    ticks_produced: int | None = None
    ticks_counted: float | None = None
    windows_compared: int | None = None
    lost: float | None = None
    duplicated: float | None = None
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # markdown under the scenario's notes
    outcome: str = "did not finish"
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None

    @property
    def title(self) -> str:
        return SCENARIOS[self.number]

    def note(self, text: str) -> None:
        self.notes.append(text)

    def count_windows(self, actual: dict[str, dict[str, Any]],
                      expected: dict[str, dict[str, Any]], settings: Settings) -> None:
        """Ticks counted, lost and duplicated from the windows' counts: `actual` is what
        the job says (key -> aggregate), `expected` the oracle's."""
        per_tick = windows_per_tick(settings)
        missing = sum(max(0, want["count"] - actual.get(key, {}).get("count", 0))
                      for key, want in expected.items())
        extra = sum(max(0, got["count"] - expected.get(key, {}).get("count", 0))
                    for key, got in actual.items())
        self.windows_compared = len(expected.keys() | actual.keys())
        self.ticks_counted = sum(got["count"] for got in actual.values()) / per_tick
        self._add_losses(missing / per_tick, extra / per_tick)

    def count_deliveries(self, produced: Iterable[Hashable], landed: Iterable[Hashable]) -> None:
        """Lost and duplicated between two multisets: what was produced, what landed."""
        produced, landed = Counter(produced), Counter(landed)
        lost, extra = sum((produced - landed).values()), sum((landed - produced).values())
        self.ticks_produced = sum(produced.values())
        self.ticks_counted = sum(landed.values())
        self._add_losses(lost, extra)
        self.note(f"delivery: {self.ticks_produced} produced, {self.ticks_counted} landed, "
                  f"{lost} lost, {extra} landed twice")

    def _add_losses(self, lost: float, duplicated: float) -> None:
        """A scenario counted at several stages reports what every stage lost."""
        self.lost = (self.lost or 0) + lost
        self.duplicated = (self.duplicated or 0) + duplicated

    def finish(self, passed: bool) -> None:
        if self.seconds is None:
            self.seconds = time.monotonic() - self.started
            self.outcome = "pass" if passed else "FAIL"


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


def markdown(scenarios: list[Scenario], command: str) -> str:
    scenarios = sorted(scenarios, key=lambda s: s.number)
    clean = all(s.outcome == "pass" and not s.lost and not s.duplicated for s in scenarios)
    ran = {s.number for s in scenarios}
    lines = [
        "# Fault report",
        "",
        f"Produced by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"commit {_commit()}, on {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[1]:.1f} over the last 5 minutes: durations depend on it). Written "
        f"by the fault suite (tests/faults/) at the end of every run that includes it; see "
        f"the README, \"Faults and recovery\".",
        "",
        ("Every scenario passed with 0 ticks lost and 0 double-counted."
         if clean else "**Not every scenario passed with 0 lost and 0 double-counted: see "
                       "below.**"),
        "",
        "Lost and duplicated are computed: for the Spark job per window against an "
        "independent calculation (tests/support/oracle.py; a window's count below the oracle's "
        "lost ticks, above it double-counted them; a tick belongs to 5 windows of 5 minutes "
        "sliding every minute, so ticks counted = the sum of the windows' counts / 5); for "
        "the producer as the prices the Binance stand-in served against the ticks on the "
        "topic.",
        "",
        "| # | scenario | injected | ticks produced | ticks counted | windows compared "
        "| lost | duplicated | result | duration |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        lines.append(
            f"| {s.number} | {s.title} | {s.injected} | {_number(s.ticks_produced)} | "
            f"{_number(s.ticks_counted)} | {_number(s.windows_compared)} | {_number(s.lost)} "
            f"| {_number(s.duplicated)} | {s.outcome} | "
            f"{_number(s.seconds) + ' s' if s.seconds is not None else '—'} |")
    missing = [f"{n}. {title}" for n, title in SCENARIOS.items() if n not in ran]
    if missing:
        lines += ["", f"Not run this time: {'; '.join(missing)}."]
    for s in scenarios:
        if s.notes or s.details:
            lines += ["", f"## {s.number}. {s.title}", ""]
            lines += [f"- {note}" for note in s.notes]
            if s.details:
                lines += [""] + s.details
    return "\n".join(lines) + "\n"


def write(scenarios: list[Scenario], command: str) -> Path:
    """docs/fault-report.md after a run of every scenario (the one to commit), else
    test-artifacts/fault-report.md, so a partial run never replaces the full report."""
    complete = {s.number for s in scenarios} == set(SCENARIOS)
    path = FULL_REPORT if complete else PARTIAL_REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(scenarios, command))
    return path
