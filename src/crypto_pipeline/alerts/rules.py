"""Price spike rules: aggregates in, alerts out. Plain functions, no Spark, no Kafka.

Two kinds of alert, each compared by its absolute value, so a fall alerts like a rise:
- `move`: the window's pct_change (close vs. open, in percent) beyond ALERT_PCT_THRESHOLD;
- `zscore`: how many standard deviations the window's pct_change lies from the mean of
  recent returns, beyond ALERT_ZSCORE_THRESHOLD. Recent returns are the pct_change of the
  symbol's newest ALERT_ZSCORE_WINDOWS windows that ended at or before this window's
  start: none of them shares a tick with it, so a spike cannot dilute its own yardstick.
  With fewer than ALERT_ZSCORE_MIN_WINDOWS of them, or none varying (a flat history has
  no volatility to compare with), there is no z-score alert.

An alert is a dict of `schema.ALERT_FIELDS`; `formatting.alert` says it in words.
Deciding that it was already sent is not done here: the caller remembers what went out
(history.HistoryStore.record_alerts).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from crypto_pipeline.core.schema import MOVE, ZSCORE, alert_key, format_time
from crypto_pipeline.core.settings import Settings


@dataclass(frozen=True)
class AlertRules:
    pct_threshold: float
    zscore_threshold: float
    zscore_windows: int
    zscore_min_windows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "AlertRules":
        return cls(settings.alert_pct_threshold, settings.alert_zscore_threshold,
                   settings.alert_zscore_windows,
                   # A minimum above the count could never be met.
                   min(settings.alert_zscore_min_windows, settings.alert_zscore_windows))


def zscore(value: float, recent: Sequence[float]) -> float | None:
    """(value - mean) / sample standard deviation of `recent`; None when that is undefined
    (fewer than two returns, or all equal)."""
    if len(recent) < 2:
        return None
    spread = statistics.stdev(recent)
    if spread == 0:
        return None
    return (value - statistics.fmean(recent)) / spread


def detect(aggregate: Mapping[str, Any], recent_returns: Sequence[float], rules: AlertRules,
           detected_at: datetime) -> list[dict[str, Any]]:
    """The alerts one aggregate (times as datetimes) raises. `recent_returns`: the
    pct_change of the symbol's windows that ended by this one's start, newest first."""
    move = aggregate["pct_change"]
    found = []
    if abs(move) > rules.pct_threshold:
        found.append(_alert(aggregate, MOVE, move, rules.pct_threshold, detected_at))
    recent = recent_returns[:rules.zscore_windows]
    score = zscore(move, recent) if len(recent) >= rules.zscore_min_windows else None
    if score is not None and abs(score) > rules.zscore_threshold:
        found.append(_alert(aggregate, ZSCORE, score, rules.zscore_threshold, detected_at))
    return found


def _alert(aggregate: Mapping[str, Any], kind: str, value: float, threshold: float,
           detected_at: datetime) -> dict[str, Any]:
    return {"symbol": aggregate["symbol"], "kind": kind, "value": value,
            "threshold": threshold, "window_start": aggregate["window_start"],
            "window_end": aggregate["window_end"], "detected_at": detected_at}


def key(alert: Mapping[str, Any]) -> str:
    """The alert's Kafka key, `SYMBOL|window_start|kind`."""
    return alert_key(alert["symbol"], format_time(alert["window_start"]), alert["kind"])
