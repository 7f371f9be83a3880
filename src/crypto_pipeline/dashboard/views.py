"""View models: what the page shows, computed from a store snapshot without Streamlit.

The market overview (one row per symbol, searched and sorted, and the top movers in
words), cards (latest window per symbol, change against the previous window), frames
for the charts (windows with a break where windows are missing, candles rolled up to the
timeframe picked, each marked partial when it lacks polls or trades), the alert feed and
its chart markers, freshness, the notices that say what is wrong and what to run, and
the banner for prices that are not live. Pure functions of their inputs, so tests need
no browser.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import ProducerStatus, SparkStatus, State
from crypto_pipeline.core.symbols import is_pattern, matches
from crypto_pipeline.dashboard.feed import FeedHealth
from crypto_pipeline.dashboard.store import INDEX, Aggregate, Snapshot

# (field, label): the KPIs of a card, in order; spread, count and volume have no "good"
# direction.
KPIS = (("avg_price", "Average price"), ("spread", "Spread"), ("min_price", "Min price"),
        ("max_price", "Max price"), ("count", "Ticks"))
# Shown after those when the window has them: only ticks that are trades carry quantities.
TRADE_KPIS = (("volume", "Volume"), ("vwap", "VWAP"))
_NEUTRAL = {"spread", "count", "volume"}
TREND_WINDOWS = 30
FRAME_COLUMNS = ("symbol", "window_start", "window_end", "open_price", "close_price",
                 "min_price", "avg_price", "max_price", "spread", "count", "partial",
                 "completeness")
CANDLE_COLUMNS = ("symbol", "open_time", "close_time", "open", "high", "low", "close", "count",
                  "volume", "expected_count", "missed_trades", "partial", "completeness")
# The candle timeframes the page offers, in minutes: each rolled up from 1-minute candles.
TIMEFRAMES: dict[str, int] = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIME_RANGES: dict[str, timedelta | None] = {
    "15 minutes": timedelta(minutes=15), "1 hour": timedelta(hours=1),
    "6 hours": timedelta(hours=6), "24 hours": timedelta(hours=24), "All": None}


@dataclass(frozen=True)
class Kpi:
    name: str  # the aggregate field: a stable id for tests and page keys
    label: str
    value: str
    delta: str | None
    delta_color: str  # "normal" (green up, red down) or "off"


@dataclass(frozen=True)
class Card:
    symbol: str
    window: str
    kpis: tuple[Kpi, ...]
    move: str
    trend: tuple[float, ...]
    partial: str | None = None  # what the latest window lacks, when it is partial


# --- the market overview -------------------------------------------------------------------

# The overview's columns: (Summary field, heading).
OVERVIEW_COLUMNS = (("symbol", "Symbol"), ("last_price", "Last price"),
                    ("change_pct", "Change %"), ("spread", "Spread"),
                    ("spread_pct", "Spread %"), ("ticks", "Ticks"), ("volume", "Volume"),
                    ("vwap", "VWAP"), ("window_start", "Since (UTC)"))
# Sort orders offered: label -> (column, ascending).
SORTS: dict[str, tuple[str, bool]] = {
    "Change %, highest first": ("change_pct", False),
    "Change %, lowest first": ("change_pct", True),
    "Largest move either way": ("abs_change", False),
    "Symbol": ("symbol", True),
    "Ticks": ("ticks", False),
    "Spread %": ("spread_pct", False),
    "Volume": ("volume", False),
}
DEFAULT_SORT = "Change %, highest first"
MOVERS = 5  # gainers and losers named above the overview
DEFAULT_MOVER_CARDS = 3  # of each, carded when SYMBOLS names no symbol


def market_frame(snapshot: Snapshot) -> pd.DataFrame:
    """Every symbol's summary, one row each (the OVERVIEW_COLUMNS' fields)."""
    summaries = snapshot.summaries.values()
    frame = pd.DataFrame.from_records(
        [tuple(getattr(s, name) for name, _ in OVERVIEW_COLUMNS) for s in summaries],
        columns=[name for name, _ in OVERVIEW_COLUMNS])
    for name in ("last_price", "change_pct", "spread_pct", "volume", "vwap"):
        frame[name] = frame[name].astype("float64")
    # Prices to the decimals the cards show them with (a grid column has one format for
    # BTC and for a coin worth a millionth of it): the spread and VWAP like the price.
    decimals = [fmt.price_decimals(price) if price == price else fmt.MAX_DECIMALS
                for price in frame["last_price"]]
    for name in ("last_price", "spread", "vwap"):
        frame[name] = [round(value, places) for value, places in zip(frame[name], decimals)]
    frame["volume"] = [value if value != value else round(value, fmt.price_decimals(value))
                       for value in frame["volume"]]
    return frame


def search(frame: pd.DataFrame, text: str) -> pd.DataFrame:
    """Rows whose symbol contains `text` (any case), or matches it as a pattern (`*BTC`)."""
    wanted = text.strip().upper()
    if not wanted:
        return frame
    if is_pattern(wanted):
        return frame[[matches(wanted, symbol) for symbol in frame["symbol"]]]
    return frame[frame["symbol"].str.contains(wanted, regex=False)]


def sort_market(frame: pd.DataFrame, order: str) -> pd.DataFrame:
    """Sorted as SORTS[order] says; rows without the value last, then by symbol."""
    column, ascending = SORTS[order]
    key = frame["change_pct"].abs() if column == "abs_change" else frame[column]
    ranked = frame.assign(_key=key)
    ranked = ranked.sort_values(["_key", "symbol"], ascending=[ascending, True],
                                na_position="last", kind="stable")
    return ranked.drop(columns="_key").reset_index(drop=True)


@dataclass(frozen=True)
class Mover:
    symbol: str
    change_pct: float

    @property
    def text(self) -> str:
        return f"{self.symbol} {fmt.percent(self.change_pct)}"


def movers(frame: pd.DataFrame, count: int = MOVERS) -> tuple[list[Mover], list[Mover]]:
    """(gainers, losers): the symbols that rose most and fell most over their window,
    `count` of each at most; a symbol that did not move is neither."""
    moved = frame.dropna(subset=["change_pct"])
    up = moved[moved["change_pct"] > 0].nlargest(count, "change_pct")
    down = moved[moved["change_pct"] < 0].nsmallest(count, "change_pct")
    return ([Mover(r.symbol, r.change_pct) for r in up.itertuples()],
            [Mover(r.symbol, r.change_pct) for r in down.itertuples()])


def mover_symbols(frame: pd.DataFrame, count: int = DEFAULT_MOVER_CARDS) -> tuple[str, ...]:
    """The cards shown when no symbol is chosen and SYMBOLS names none: the top movers,
    gainers first."""
    gainers, losers = movers(frame, count)
    return tuple(m.symbol for m in gainers + losers)


# --- cards ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Completeness:
    partial: bool
    text: str | None  # "40 of 60 polls", "12 trades missed"; None when nothing is known


def completeness(record: Mapping[str, Any], start: datetime, end: datetime,
                 newest: datetime | None, missing_pct: float) -> Completeness:
    """Whether a window or candle of [start, end) is partial: trades a trade stream
    missed, or more than `missing_pct` percent of a polling source's polls missing. A
    span still open (`newest`, the symbol's newest tick, before its end) is judged by
    the polls due so far."""
    missed = record.get("missed_trades")
    if missed:
        return Completeness(True, f"{fmt.count(missed)} trades missed")
    expected = record.get("expected_count")
    if not expected:
        return Completeness(False, None)
    elapsed = 1.0 if newest is None else min(1.0, max(
        0.0, (newest - start) / (end - start)))
    due = expected * elapsed
    text = f"{fmt.count(record['count'])} of {fmt.count(expected)} polls"
    return Completeness(record["count"] < due * (1 - missing_pct / 100), text)


def newest_ticks(snapshot: Snapshot, symbols: Iterable[str]) -> dict[str, datetime]:
    """Per symbol of `symbols`, its newest tick: the latest window holds it."""
    windows = snapshot.windows
    return {symbol: windows[symbol][-1]["last_event_time"]
            for symbol in symbols if symbol in windows and len(windows[symbol])}


def cards(snapshot: Snapshot, symbols: Iterable[str],
          missing_pct: float | None = None) -> list[Card]:
    """One card per symbol with data: its latest window against the one before; with
    `missing_pct`, whether the latest window is partial (`completeness`)."""
    result = []
    for symbol in symbols:
        windows = snapshot.windows.get(symbol)
        if windows:
            previous = windows[-2] if len(windows) > 1 else None
            card = _card(symbol, windows[-1], previous, windows[-TREND_WINDOWS:])
            if missing_pct is not None:
                latest = windows[-1]
                judged = completeness(latest, latest["window_start"], latest["window_end"],
                                      latest["last_event_time"], missing_pct)
                if judged.partial:
                    card = dataclasses.replace(card, partial=judged.text)
            result.append(card)
    return result


def _card(symbol: str, latest: Aggregate, previous: Aggregate | None,
          recent: tuple[Aggregate, ...]) -> Card:
    decimals = fmt.price_decimals(latest["avg_price"])
    kpis = []
    for name, label in KPIS + tuple(k for k in TRADE_KPIS if latest.get(k[0]) is not None):
        value, delta = latest[name], None
        before = previous.get(name) if previous is not None else None
        if name == "count":
            text = fmt.count(value)
            if before is not None:
                delta = fmt.count_change(value - before)
        else:
            # A volume is no price, but reads the same: about five significant digits.
            places = fmt.price_decimals(value) if name == "volume" else decimals
            text = fmt.price(value, places)
            if before is not None:
                delta = fmt.price_change(value - before, places)
        kpis.append(Kpi(name, label, text, delta, "off" if name in _NEUTRAL else "normal"))
    opened, closed = latest.get("open_price"), latest.get("close_price")
    if opened is None or closed is None:
        move = "no open and close in this window"
    else:
        change = latest.get("pct_change")
        change = 100 * (closed - opened) / opened if change is None else change
        move = (f"open {fmt.price(opened, decimals)} → close "
                f"{fmt.price(closed, decimals)} ({fmt.percent(change)})")
    return Card(symbol, fmt.window(latest["window_start"], latest["window_end"]), tuple(kpis),
                move, tuple(r["avg_price"] for r in recent))


def range_start(snapshot: Snapshot, symbols: Iterable[str],
                span: timedelta | None) -> datetime | None:
    """Where a time range of `span` begins: counted back from the newest window shown, so
    replayed data from another day is shown too."""
    ends = [snapshot.windows[s][-1]["window_end"] for s in symbols if snapshot.windows.get(s)]
    return max(ends) - span if span is not None and ends else None


def _frame(parts: list[tuple[str, np.ndarray]]) -> pd.DataFrame:
    """FRAME_COLUMNS of these symbols' rows (straight from the store's arrays)."""
    numbers = [name for name in FRAME_COLUMNS if name in INDEX]
    if not parts:
        return pd.DataFrame(columns=list(FRAME_COLUMNS))
    rows = np.concatenate([rows for _, rows in parts])[:, [INDEX[name] for name in numbers]]
    frame = pd.DataFrame(rows, columns=numbers)
    for name in ("window_start", "window_end"):
        frame[name] = pd.to_datetime(frame[name].round(6), unit="s", utc=True)
    frame["count"] = frame["count"].astype("int64")
    frame.insert(0, "symbol", np.concatenate([[symbol] * len(rows) for symbol, rows in parts]))
    return frame.reindex(columns=list(FRAME_COLUMNS))


def windows_frame(snapshot: Snapshot, symbols: Iterable[str],
                  since: datetime | None = None, *, slide: timedelta | None = None,
                  missing_pct: float | None = None) -> pd.DataFrame:
    """Every window of `symbols` (from `since` on), one row each, oldest first per symbol.
    A field a window lacks (open and close, in a minimal record) is NaN. With `slide`: a
    row of nothing but its start where windows are missing (a producer outage), so no
    line is drawn across the gap. With `missing_pct`: `partial` and `completeness` of
    each window."""
    symbols = list(symbols)
    newest = newest_ticks(snapshot, symbols)
    rows = []
    for symbol in symbols:
        held = list(snapshot.starting_from(symbol, since))
        for record in with_breaks(held, "window_start", slide):
            if missing_pct is not None and record.get("count") is not None:
                judged = completeness(record, record["window_start"], record["window_end"],
                                      newest.get(symbol), missing_pct)
                record = {**record, "partial": judged.partial, "completeness": judged.text}
            rows.append(record)
    return pd.DataFrame.from_records(rows, columns=list(FRAME_COLUMNS))


def with_breaks(records: Sequence[Mapping[str, Any]], start: str,
                step: timedelta | None) -> list[Mapping[str, Any]]:
    """The records of one symbol (oldest first), and after each one that the next does
    not follow by `step`, a break: a record of its symbol and the missing start only."""
    if step is None:
        return list(records)
    shown: list[Mapping[str, Any]] = []
    for record in records:
        if shown and record[start] - shown[-1][start] > step:
            shown.append({"symbol": record["symbol"], start: shown[-1][start] + step})
        shown.append(record)
    return shown


def rollup(candles: Iterable[Mapping[str, Any]], minutes: int,
           poll_interval_seconds: float) -> list[dict[str, Any]]:
    """Candles of `minutes` minutes (aligned to the epoch, as 1-minute ones are) from
    1-minute candles, oldest first per symbol: the open of the first, the close of the
    last, the highest high, the lowest low, the sums of counts, volumes and missed
    trades; the polls expected are those of the whole span when a minute had polls."""
    span = timedelta(minutes=minutes)
    groups: dict[tuple[str, datetime], list[Mapping[str, Any]]] = {}
    for candle in candles:
        start = EPOCH + (candle["open_time"] - EPOCH) // span * span
        groups.setdefault((candle["symbol"], start), []).append(candle)
    rolled = []
    for (symbol, start), members in sorted(groups.items()):
        members = sorted(members, key=lambda c: c["open_time"])
        volumes = [c["volume"] for c in members if c.get("volume") is not None]
        missed = [c["missed_trades"] for c in members if c.get("missed_trades") is not None]
        polled = any(c.get("expected_count") is not None for c in members)
        rolled.append({
            "symbol": symbol, "open_time": start, "close_time": start + span,
            "open": members[0]["open"], "high": max(c["high"] for c in members),
            "low": min(c["low"] for c in members), "close": members[-1]["close"],
            "count": sum(c["count"] for c in members),
            "volume": math.fsum(volumes) if volumes else None,
            "expected_count": (math.floor(span.total_seconds() / poll_interval_seconds + 1e-9)
                               if polled else None),
            "missed_trades": sum(missed) if missed else None})
    return rolled


def candles_frame(candles: Snapshot, symbols: Iterable[str], since: datetime | None,
                  minutes: int, poll_interval_seconds: float,
                  newest: Mapping[str, datetime], missing_pct: float) -> pd.DataFrame:
    """The candles of `symbols` at a timeframe of `minutes` that end after `since`, each
    with `partial` and `completeness` (`newest`: each symbol's newest tick)."""
    span = timedelta(minutes=minutes)
    # A candle of the timeframe that ends after `since` began after `since - span`, and
    # so did every 1-minute candle in it.
    first = None if since is None else since - span
    rows = []
    for symbol in symbols:
        for candle in rollup(candles.starting_from(symbol, first), minutes,
                             poll_interval_seconds):
            if since is not None and candle["close_time"] <= since:
                continue
            judged = completeness(candle, candle["open_time"], candle["close_time"],
                                  newest.get(symbol), missing_pct)
            rows.append({**candle, "partial": judged.partial, "completeness": judged.text})
    return pd.DataFrame.from_records(rows, columns=list(CANDLE_COLUMNS))


def latest_frame(snapshot: Snapshot, symbols: Iterable[str]) -> pd.DataFrame:
    """The latest window of each symbol: for the min/avg/max bars."""
    return _frame([(s, snapshot.rows[s][-1:]) for s in symbols if s in snapshot.rows])


ALERT_FEED_LENGTH = 20
MARKER_COLUMNS = ("symbol", "window_start", "price", "label", "rising")


@dataclass(frozen=True)
class AlertLine:
    key: str  # symbol, window start and kind: a stable id for tests and page keys
    symbol: str
    kind: str
    text: str
    detected: str
    rising: bool


def alert_feed(alerts: Iterable[Mapping[str, Any]], symbols: Iterable[str],
               limit: int = ALERT_FEED_LENGTH) -> list[AlertLine]:
    """The newest `limit` alerts of `symbols` (given newest first), as the feed shows them."""
    shown = set(symbols)
    return [AlertLine(alert_id(alert), alert["symbol"], alert["kind"], fmt.alert(alert),
                      f"{alert['detected_at']:%Y-%m-%d %H:%M:%S} UTC", alert["value"] > 0)
            for alert in alerts if alert["symbol"] in shown][:limit]


def alert_id(alert: Mapping[str, Any]) -> str:
    """`BTCUSDT-20250115T1430-move`: the alert's key in characters a CSS class takes."""
    return f"{alert['symbol']}-{alert['window_start']:%Y%m%dT%H%M}-{alert['kind']}"


def alert_markers(alerts: Iterable[Mapping[str, Any]], snapshot: Snapshot,
                  symbols: Iterable[str], since: datetime | None = None) -> pd.DataFrame:
    """One marker per alerted window shown: at the window's average price, labelled with
    every alert it raised."""
    by_window: dict[tuple[str, datetime], list[Mapping[str, Any]]] = {}
    for alert in alerts:
        by_window.setdefault((alert["symbol"], alert["window_start"]), []).append(alert)
    alerted = {symbol for symbol, _ in by_window}
    rows = []
    for symbol in symbols:
        if symbol not in alerted:
            continue
        for record in snapshot.starting_from(symbol, since):
            raised = by_window.get((symbol, record["window_start"]))
            if raised:
                rows.append((symbol, record["window_start"], record["avg_price"],
                             "<br>".join(fmt.alert(a) for a in raised),
                             (record.get("pct_change") or 0) >= 0))
    return pd.DataFrame.from_records(rows, columns=list(MARKER_COLUMNS))


@dataclass(frozen=True)
class Freshness:
    age_seconds: float | None  # None: no data at all
    stale: bool
    text: str


def freshness(newest_emitted_at: datetime | None, now: datetime,
              stale_after_seconds: float) -> Freshness:
    """How old the newest aggregate is (by when Spark emitted it), and whether that is stale."""
    if newest_emitted_at is None:
        return Freshness(None, False, "no data yet")
    age = max(0.0, (now - newest_emitted_at).total_seconds())
    if age > stale_after_seconds:
        return Freshness(age, True, f"STALE: {fmt.age(age)} old")
    return Freshness(age, False, f"{fmt.age(age)} old")


def live_state(health: FeedHealth, fresh: Freshness) -> tuple[str, str]:
    """The badge next to the data's age: (label, colour)."""
    if health.kafka == "unreachable":
        return "Not live: Kafka unreachable", "red"
    if fresh.age_seconds is None:
        return "No data", "gray"
    if fresh.stale:
        return "Stale", "orange"
    return "Live", "green"


@dataclass(frozen=True)
class Reported:
    """A component's status file, and whether the process that wrote it still runs."""

    status: ProducerStatus | SparkStatus
    alive: bool = True


@dataclass(frozen=True)
class Notice:
    level: str  # error, warning or info
    text: str


_LEVELS = ("error", "warning", "info")


def diagnose(settings: Settings, health: FeedHealth, *, has_data: bool, stale: bool,
             producer: Reported | None, spark: Reported | None) -> list[Notice]:
    """What is wrong, in words a user can act on, most serious first (`producer`, `spark`:
    what the components reported, None when they never did)."""
    notices = _kafka_notices(settings, health, has_data)
    if health.kafka == "ok" and health.topic_exists:
        notices += _spark_notices(spark, has_data, stale)
    notices += _producer_notices(settings, producer, has_data, stale)
    if health.malformed:
        notices.append(Notice("warning", f"Skipped {fmt.count(health.malformed)} malformed "
                                         f"records on {settings.output_topic} (last: "
                                         f"{health.last_malformed})."))
    if health.history_error:
        notices.append(Notice("warning", f"The history store is unavailable "
                                         f"({health.history_error}); the page shows what "
                                         f"Kafka has."))
    return sorted(notices, key=lambda notice: _LEVELS.index(notice.level))


def _kafka_notices(settings: Settings, health: FeedHealth, has_data: bool) -> list[Notice]:
    servers = settings.kafka_bootstrap_servers
    if health.kafka == "connecting":
        return [Notice("info", f"Connecting to Kafka at {servers}…")]
    if health.kafka == "unreachable":
        shown = " Showing the data received before: it is not live." if has_data else ""
        return [Notice("error", f"Kafka is not reachable at {servers} — start it with "
                                f"./start.sh kafka (or check KAFKA_BOOTSTRAP_SERVERS).{shown} "
                                f"({health.kafka_error})")]
    if not health.topic_exists:
        return [Notice("warning", f"The topic {settings.output_topic} does not exist yet — "
                                  f"is the Spark job running? Start it with ./start.sh spark.")]
    if health.backlog and not has_data:
        return [Notice("info", f"Loading aggregates from Kafka: {fmt.count(health.backlog)} "
                               f"records to go…")]
    return []


def _spark_notices(spark: Reported | None, has_data: bool, stale: bool) -> list[Notice]:
    state = spark.status.state if spark else None
    if state == State.FAILED:
        return [Notice("error", f"The Spark job failed: {spark.status.last_error} — restart "
                                f"it with ./start.sh spark (its log is in logs/).")]
    if spark is None or state == State.STOPPED or not spark.alive:
        if has_data and not stale:
            return []
        what = "No new aggregates" if has_data else "No aggregates yet"
        return [Notice("warning", f"{what} — is the Spark job running? Start it with "
                                  f"./start.sh spark.")]
    if state == State.STARTING and not has_data:
        return [Notice("info", "The Spark job is starting…")]
    if not has_data:
        return [Notice("info", "The Spark job is running; the first aggregates appear after "
                               "its first micro-batch with ticks.")]
    return []


_OTHER_ENDPOINTS = ("Set BINANCE_BASE_URL to https://data-api.binance.vision (market data only) "
                    "or https://api.binance.us, or PRICE_SOURCE=replay or simulated.")
# Producer states that need the user, as (level, text with {host}, {error}, {servers}).
_PRODUCER_PROBLEMS = {
    State.BINANCE_UNREACHABLE: (
        "error", "The producer cannot reach Binance ({host}): {error}. " + _OTHER_ENDPOINTS),
    State.RESTRICTED_LOCATION: (
        "error", "Binance refuses requests from this location (HTTP 451) at {host}: {error}. "
                 + _OTHER_ENDPOINTS),
    State.RATE_LIMITED: (
        "warning", "Binance is rate-limiting the producer: {error}. It waits as Binance asks; "
                   "raise POLL_INTERVAL_SECONDS if this persists."),
    State.KAFKA_UNREACHABLE: ("error", "The producer cannot reach Kafka at {servers}: {error}."),
}


def _producer_notices(settings: Settings, producer: Reported | None,
                      has_data: bool, stale: bool) -> list[Notice]:
    if producer is None:
        if has_data and not stale:
            return []
        return [Notice("warning", "The producer has not reported — is it running? Start it "
                                  "with ./start.sh producer.")]
    state, error = producer.status.state, producer.status.last_error
    host = urlparse(settings.binance_base_url).netloc
    if state == State.FINISHED:
        return [Notice("info", "The producer has finished (end of the replay): no new "
                               "prices will arrive.")]
    if not producer.alive:
        return [Notice("warning", f"The producer is not running (last state: {state}) — "
                                  f"start it with ./start.sh producer.")]
    if state in _PRODUCER_PROBLEMS:
        level, text = _PRODUCER_PROBLEMS[state]
        return [Notice(level, text.format(host=host, error=error,
                                          servers=settings.kafka_bootstrap_servers))]
    if state == State.STARTING and not has_data:
        return [Notice("info", "The producer is starting…")]
    return []


def source_banner(settings: Settings) -> str | None:
    """Why these prices are not live market data, or None when they are."""
    if settings.is_live_source:
        return None
    if settings.price_source == "replay":
        speed = (f"{settings.replay_speed:g}× speed" if settings.replay_speed
                 else "full speed")
        return (f"Replayed prices, not live: PRICE_SOURCE=replay, REPLAY_FILE="
                f"{settings.replay_file} at {speed}.")
    return (f"Simulated prices (a random walk), not market data: "
            f"PRICE_SOURCE={settings.price_source}.")
