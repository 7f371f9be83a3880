"""The alert rules run over the history store: how many alerts the settings would have
raised, per symbol, before a user trusts them live (`pipelinectl.py alerts-backtest`).

The same code as the job's: `publisher.candidates` (each z-score against the history's
recent returns) and `rules.choose`, from no alert sent, over the windows of the range in
the order of their start. The range counts back from the newest window in the store,
as the retention does (a replay's history is years old). The live job sees a window's
every update and the backtest only its last value: where a window crossed a threshold
only while it was still open, the two can differ.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crypto_pipeline.alerts import rules as alerts
from crypto_pipeline.alerts.publisher import candidates
from crypto_pipeline.core.history import HistoryStore
from crypto_pipeline.core.schema import MOVE, ZSCORE


@dataclass
class SymbolResult:
    windows: int = 0
    alerts: Counter = field(default_factory=Counter)  # by kind

    @property
    def total(self) -> int:
        return sum(self.alerts.values())


def backtest(history: HistoryStore, rules: alerts.AlertRules,
             since: datetime) -> tuple[dict[str, SymbolResult], list[dict[str, Any]]]:
    """Per symbol with windows from `since` on: its windows and the alerts by kind; and
    the alerts themselves (detected at their window's end)."""
    windows = history.load(since=since)
    results: dict[str, SymbolResult] = {}
    for window in windows:
        results.setdefault(window["symbol"], SymbolResult()).windows += 1
    found = [{**alert, "detected_at": alert["window_end"]}
             for alert in candidates(history, windows, rules, since)]
    raised = alerts.choose(found, [], rules)
    for alert in raised:
        results[alert["symbol"]].alerts[alert["kind"]] += 1
    return dict(sorted(results.items())), raised


def range_start(history: HistoryStore, hours: float) -> datetime | None:
    """`hours` before the newest window in the store; None when it holds none."""
    newest = history.newest_window_starts()
    return max(newest.values()) - timedelta(hours=hours) if newest else None


def report(results: dict[str, SymbolResult], hours: float, since: datetime | None) -> list[str]:
    """The backtest's lines as the command prints them."""
    if not results:
        return [f"no windows in the history store in the last {hours:g} hours"]
    width = max(len(symbol) for symbol in results)
    lines = [f"alerts the current settings would have raised in the {hours:g} hours of "
             f"windows from {since:%Y-%m-%d %H:%M} UTC:"]
    for symbol, result in results.items():
        lines.append(f"{symbol:<{width}}  {result.total:>4} alert"
                     f"{'' if result.total == 1 else 's'} ({result.alerts[MOVE]} move, "
                     f"{result.alerts[ZSCORE]} z-score) in {result.windows:,} windows")
    return lines
