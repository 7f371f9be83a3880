"""An independent calculation of the job's window statistics and candles, in plain Python.

Written from the definition, not from the Spark code: a window is [start, start +
duration) with start a multiple of the slide counted from the Unix epoch; a tick belongs
to every window that contains its event time, and every tick counts (the pipeline writes
each once; a tick written twice counts twice). A candle of N minutes is the ticks of
[start, start + N minutes) with start a multiple of N minutes from the epoch: open and
close the prices of its earliest and latest tick, high, low, count, volume. Completeness:
a polling source (binance, simulated) is expected to send floor(span / poll interval)
ticks in a span; a trade stream's span has missed the trades its ticks say were missed
just before them. Times are whole microseconds, as Spark keeps them.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from crypto_pipeline.core.schema import Tick, aggregate_key, candle_key, format_time

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EXACT = ("symbol", "window_start", "window_end", "count", "min_price", "max_price",
         "open_price", "close_price", "spread", "last_event_time")
RELATIVE = ("avg_price", "stddev_price", "pct_change", "volume", "vwap")
CANDLE_EXACT = ("symbol", "open_time", "close_time", "open", "high", "low", "close", "count",
                "expected_count", "missed_trades")
CANDLE_RELATIVE = ("volume",)
COMPLETENESS = ("expected_count", "missed_trades")
# The pipeline's default POLL_INTERVAL_SECONDS.
POLL_SECONDS = 5.0


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def window_starts(event_micros: int, duration: int, slide: int) -> list[int]:
    """Starts of the windows holding this instant: multiples of `slide` in
    (event - duration, event]."""
    latest = event_micros - event_micros % slide
    return list(range(latest, event_micros - duration, -slide))


def expected_windows(ticks: Iterable[Tick], duration_seconds: float, slide_seconds: float,
                     poll_seconds: float = POLL_SECONDS) -> dict[str, dict[str, Any]]:
    """{`SYMBOL|window_start`: the aggregate as the job's JSON has it (times as text)}.
    Every tick counts, as every tick on the topic does."""
    duration, slide = round(duration_seconds * 1e6), round(slide_seconds * 1e6)
    members: dict[tuple[str, int], list[Tick]] = defaultdict(list)
    for tick in ticks:
        for start in window_starts(micros(tick.event_time), duration, slide):
            members[(tick.symbol, start)].append(tick)
    return {aggregate_key(symbol, format_time(from_micros(start))):
            {**_statistics(symbol, start, start + duration, window_ticks),
             **_completeness(window_ticks, duration_seconds, poll_seconds)}
            for (symbol, start), window_ticks in members.items()}


def expected_candles(ticks: Iterable[Tick], minutes: int = 1,
                     poll_seconds: float = POLL_SECONDS) -> dict[str, dict[str, Any]]:
    """{`SYMBOL|open_time`: the candle of `minutes` minutes as the job's JSON has a
    1-minute one (times as text)}."""
    span = minutes * 60_000_000
    members: dict[tuple[str, int], list[Tick]] = defaultdict(list)
    for tick in ticks:
        at = micros(tick.event_time)
        members[(tick.symbol, at - at % span)].append(tick)
    found = {}
    for (symbol, start), of_candle in members.items():
        by_time = sorted(of_candle, key=lambda t: t.event_time)
        prices = [t.price for t in of_candle]
        traded = [t.quantity for t in of_candle if t.quantity is not None]
        found[candle_key(symbol, format_time(from_micros(start)))] = {
            "symbol": symbol, "open_time": format_time(from_micros(start)),
            "close_time": format_time(from_micros(start + span)),
            "open": by_time[0].price, "high": max(prices), "low": min(prices),
            "close": by_time[-1].price, "count": len(prices),
            "volume": math.fsum(traded) if traded else None,
            **_completeness(of_candle, minutes * 60, poll_seconds)}
    return found


def _completeness(ticks: list[Tick], span_seconds: float,
                  poll_seconds: float) -> dict[str, int | None]:
    polled = any(t.source in ("binance", "simulated") for t in ticks)
    traded = any(t.source == "binance-ws" for t in ticks)
    return {"expected_count": math.floor(span_seconds / poll_seconds + 1e-9) if polled else None,
            "missed_trades": sum(t.missed_before or 0 for t in ticks) if traded else None}


def candle_mismatches(actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]],
                      limit: int = 5) -> list[str]:
    """How `actual` (key -> candle JSON, times as text) differs from the oracle's candles."""
    return mismatches(actual, expected, limit, exact=CANDLE_EXACT, relative=CANDLE_RELATIVE)


def _statistics(symbol: str, start: int, end: int, ticks: list[Tick]) -> dict[str, Any]:
    prices = [t.price for t in ticks]
    by_time = sorted(ticks, key=lambda t: t.event_time)
    first, last = by_time[0].price, by_time[-1].price
    traded = [t for t in ticks if t.quantity is not None]
    volume = math.fsum(t.quantity for t in traded) if traded else None
    return {
        "symbol": symbol,
        "window_start": format_time(from_micros(start)),
        "window_end": format_time(from_micros(end)),
        "count": len(prices),
        "avg_price": math.fsum(prices) / len(prices),
        "min_price": min(prices),
        "max_price": max(prices),
        "spread": max(prices) - min(prices),
        "open_price": first,
        "close_price": last,
        "pct_change": 100 * (last - first) / first,
        "stddev_price": statistics.stdev(prices) if len(prices) > 1 else None,
        "volume": volume,
        "vwap": (math.fsum(t.price * t.quantity for t in traded) / volume) if volume else None,
        "last_event_time": format_time(by_time[-1].event_time),
    }


def mismatches(actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]],
               limit: int = 5, *, exact: tuple[str, ...] = EXACT + COMPLETENESS,
               relative: tuple[str, ...] = RELATIVE) -> list[str]:
    """How `actual` (key -> aggregate JSON) differs from the oracle; [] when it matches:
    the same keys, exact counts/extremes/open/close/times, the rest within 1e-9 relative."""
    problems = []
    for key in sorted(expected.keys() - actual.keys())[:limit]:
        problems.append(f"missing {key}")
    for key in sorted(actual.keys() - expected.keys())[:limit]:
        problems.append(f"unexpected {key}")
    for key in sorted(expected.keys() & actual.keys()):
        want, got = expected[key], actual[key]
        for name in exact:
            if got.get(name) != want[name]:
                problems.append(f"{key} {name}: {got.get(name)!r} != {want[name]!r}")
        for name in relative:
            if not _close(got.get(name), want[name]):
                problems.append(f"{key} {name}: {got.get(name)!r} !~ {want[name]!r}")
        if len(problems) >= limit:
            break
    return problems


def _close(got: float | None, want: float | None) -> bool:
    if got is None or want is None:
        return got is want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9 if want == 0 else 0.0)
