"""Price spike rules: aggregates in, alerts out. Plain functions, no Spark, no Kafka.

Two kinds of alert, each compared by its absolute value, so a fall alerts like a rise:
- `move`: the window's pct_change (close vs. open, in percent) beyond the symbol's
  threshold (the first pattern of ALERT_PCT_THRESHOLDS it matches, else
  ALERT_PCT_THRESHOLD);
- `zscore`: how many standard deviations the window's pct_change lies from the mean of
  recent returns, beyond ALERT_ZSCORE_THRESHOLD. Recent returns are the pct_change of the
  symbol's newest ALERT_ZSCORE_WINDOWS windows that ended at or before this window's
  start: none of them shares a tick with it, so a spike cannot dilute its own yardstick.
  With fewer than ALERT_ZSCORE_MIN_WINDOWS of them, or none varying (a flat history has
  no volatility to compare with), there is no z-score alert.

One move, one alert: a spike lies in every window that holds it (five at the defaults),
and each would alert. `choose` keeps, per symbol and direction, the first candidate
(windows in order of their start, a move before a z-score) and lets the next one through
only ALERT_COOLDOWN later (in window time) or when its move exceeds the last alert's by
more than the symbol's threshold again. An alert says how many of the batch's candidates
it stands for, and the span of their windows. The alerts sent before are the caller's to
hand over (the history store's alerts table, so the rules hold across batches and
restarts); the backtest runs the same `choose` over the history's windows.

An alert is a dict of `schema.ALERT_FIELDS`; `formatting.alert` says it in words.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from crypto_pipeline.core.schema import MOVE, ZSCORE, alert_key, format_time
from crypto_pipeline.core.settings import Settings, SymbolThresholds

DEFAULT_COOLDOWN = timedelta(minutes=15)


@dataclass(frozen=True)
class AlertRules:
    pct_threshold: float
    zscore_threshold: float
    zscore_windows: int
    zscore_min_windows: int
    pct_thresholds: SymbolThresholds | None = None
    cooldown: timedelta = DEFAULT_COOLDOWN

    @classmethod
    def from_settings(cls, settings: Settings) -> "AlertRules":
        return cls(settings.alert_pct_threshold, settings.alert_zscore_threshold,
                   settings.alert_zscore_windows,
                   # A minimum above the count could never be met.
                   min(settings.alert_zscore_min_windows, settings.alert_zscore_windows),
                   settings.alert_pct_thresholds,
                   timedelta(seconds=settings.alert_cooldown.seconds))

    def pct_threshold_for(self, symbol: str) -> float:
        if self.pct_thresholds is None:
            return self.pct_threshold
        return self.pct_thresholds.get(symbol, self.pct_threshold)


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
    threshold = rules.pct_threshold_for(aggregate["symbol"])
    if abs(move) > threshold:
        found.append(_alert(aggregate, MOVE, move, threshold, detected_at))
    recent = recent_returns[:rules.zscore_windows]
    score = zscore(move, recent) if len(recent) >= rules.zscore_min_windows else None
    if score is not None and abs(score) > rules.zscore_threshold:
        found.append(_alert(aggregate, ZSCORE, score, rules.zscore_threshold, detected_at))
    return found


def _alert(aggregate: Mapping[str, Any], kind: str, value: float, threshold: float,
           detected_at: datetime) -> dict[str, Any]:
    return {"symbol": aggregate["symbol"], "kind": kind, "value": value,
            "threshold": threshold, "window_start": aggregate["window_start"],
            "window_end": aggregate["window_end"], "detected_at": detected_at,
            "pct_change": aggregate["pct_change"], "windows": 1,
            "first_window_start": aggregate["window_start"],
            "last_window_end": aggregate["window_end"]}


def rising(alert: Mapping[str, Any]) -> bool:
    """The alert's direction: a rise (a positive move or z-score) or a fall."""
    return alert["value"] > 0


def _move(alert: Mapping[str, Any]) -> float:
    """The window's move in percent; an alert recorded before alerts carried it has it
    as its value when it is a move (a z-score's is unknown: no move to exceed)."""
    if alert.get("pct_change") is not None:
        return abs(alert["pct_change"])
    return abs(alert["value"]) if alert["kind"] == MOVE else 0.0


def choose(candidates: Iterable[Mapping[str, Any]], sent: Iterable[Mapping[str, Any]],
           rules: AlertRules) -> list[dict[str, Any]]:
    """Of the candidates (`detect`'s, for any windows), the alerts to send, each covering
    the candidates it held back; `sent`: the alerts sent before (at least those of the
    cooldown before the earliest candidate). A candidate already sent stays quiet."""
    sent_keys = {key(alert) for alert in sent}
    # Per (symbol, direction): the alerts so far, by window start.
    earlier: dict[tuple[str, bool], list[Mapping[str, Any]]] = defaultdict(list)
    for alert in sent:
        earlier[(alert["symbol"], rising(alert))].append(alert)
    chosen: list[dict[str, Any]] = []
    covered: dict[int, set[datetime]] = {}  # id of a chosen alert -> its windows' starts
    ordered = sorted(candidates, key=lambda a: (a["window_start"], a["kind"] != MOVE,
                                                a["symbol"]))
    for candidate in ordered:
        if key(candidate) in sent_keys:
            continue
        same = earlier[(candidate["symbol"], rising(candidate))]
        last = max((a for a in same if a["window_start"] <= candidate["window_start"]),
                   key=lambda a: a["window_start"], default=None)
        if last is not None and _holds_back(last, candidate, rules):
            if id(last) in covered:
                _cover(last, candidate, covered[id(last)])
            continue
        alert = dict(candidate)
        chosen.append(alert)
        covered[id(alert)] = {alert["window_start"]}
        same.append(alert)
    return chosen


def _holds_back(last: Mapping[str, Any], candidate: Mapping[str, Any],
                rules: AlertRules) -> bool:
    """Whether `last` (an alert of the candidate's symbol and direction, of a window
    starting no later) makes the candidate wait: within the cooldown, not grown enough."""
    within = candidate["window_start"] < last["window_start"] + rules.cooldown
    grown = _move(candidate) > _move(last) + rules.pct_threshold_for(candidate["symbol"])
    return within and not grown


def _cover(alert: dict[str, Any], candidate: Mapping[str, Any], starts: set[datetime]) -> None:
    """Let a chosen alert stand for one more candidate of its batch."""
    starts.add(candidate["window_start"])
    alert["windows"] = len(starts)
    alert["first_window_start"] = min(alert["first_window_start"], candidate["window_start"])
    alert["last_window_end"] = max(alert["last_window_end"], candidate["window_end"])


def key(alert: Mapping[str, Any]) -> str:
    """The alert's Kafka key, `SYMBOL|window_start|kind`."""
    return alert_key(alert["symbol"], format_time(alert["window_start"]), alert["kind"])
