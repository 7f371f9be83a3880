"""Numbers as a trader reads them: thousands separators, decimals that fit the price scale;
times, ages and alerts in words."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Mapping

from crypto_pipeline.core.schema import MOVE

MIN_DECIMALS, MAX_DECIMALS = 2, 8
SIGNIFICANT_DIGITS = 5


def price_decimals(reference: float) -> int:
    """Decimals for prices around `reference`: about five significant digits, so BTC shows
    97,432.15, XRP 2.1234 and SHIB 0.00001234."""
    if not reference or not math.isfinite(reference):
        return MIN_DECIMALS
    magnitude = math.floor(math.log10(abs(reference)))
    return max(MIN_DECIMALS, min(MAX_DECIMALS, SIGNIFICANT_DIGITS - 1 - magnitude))


def price(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def price_change(delta: float, decimals: int) -> str:
    return f"{delta:+,.{decimals}f}"


def count(value: int) -> str:
    return f"{value:,}"


def count_change(delta: int) -> str:
    return f"{delta:+,}"


def percent(value: float) -> str:
    return f"{value:+.2f}%"


def plotly_price_format(decimals: int) -> str:
    """The same format as a d3 format string, for plotly axes and hover labels."""
    return f",.{decimals}f"


def age(seconds: float) -> str:
    """A duration as people say it: 4 s, 3 min 05 s, 2 h 07 min, 3 d 4 h."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def window(start: datetime, end: datetime) -> str:
    """A window as `2025-01-15 14:30–14:35 UTC` (times are aware UTC datetimes)."""
    return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"


def alert(alert: Mapping[str, Any]) -> str:
    """An alert in one line a person reads: the dashboard's feed, the webhook's message."""
    if alert["kind"] == MOVE:
        what = f"moved {percent(alert['value'])} (threshold ±{alert['threshold']:g}%)"
    else:
        what = (f"return {alert['value']:+.1f}σ from recent windows "
                f"(threshold ±{alert['threshold']:g}σ)")
    covered = alert.get("windows") or 1
    if covered > 1 and alert.get("first_window_start") and alert.get("last_window_end"):
        span = window(alert["first_window_start"], alert["last_window_end"])
        return f"{alert['symbol']} {what} in {covered} windows {span}"
    span = window(alert["window_start"], alert["window_end"])
    return f"{alert['symbol']} {what} in the window {span}"
