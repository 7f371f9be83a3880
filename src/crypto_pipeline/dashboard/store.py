"""The dashboard's memory: the latest aggregate per (symbol, window_start), the latest
1-minute candle per (symbol, open_time), and the alerts, one per (symbol, window_start,
kind).

Thousands of symbols times a day of windows (2,000 x 1,440 = 2.9 million) do not fit as
Python dicts, so the windows of each symbol are rows of a float64 array, one column per
field of the aggregate (times in epoch seconds, a missing field as NaN): 136 bytes a
window. Candles are kept the same way, with the candle's fields (`Layout`). Rows are
kept sorted by start; a record for a window already held overwrites its row, a newer
window is appended, an older one merged in.

The feed thread writes, page runs read, and every access holds one lock; readers get a
`Snapshot`, which holds each symbol's rows as they were (a view of the array up to its
length then): a window added or dropped later is not in it, and growing, merging and
pruning build new arrays rather than move the rows a snapshot sees. Only a window
updated in place (Spark re-emits an open window each time it changes) may show its
newer value, never a half-written one. A later record for a window replaces the earlier
one, whatever order windows arrive in. Per symbol the store also keeps the summary the
overview shows (`Summary`), recomputed only for symbols that changed.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from crypto_pipeline.core.schema import AGGREGATE_FIELDS, CANDLE_FIELDS, Field

Aggregate = Mapping[str, Any]
# Rows a symbol's array starts with, and how much room it grows by.
FIRST_CAPACITY, GROWTH = 16, 1.25
# Of the newest rows, those that may cover the newest window's start (a window of 5
# minutes sliding by 1 has 4 before it; far more would be a very odd window).
COVERING_ROWS = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _seconds(moment: datetime) -> float:
    return (moment - _EPOCH).total_seconds()


def _moment(seconds: float) -> datetime:
    """Epoch seconds back to the aware datetime they came from (to the microsecond)."""
    return datetime.fromtimestamp(round(seconds * 1e6) / 1e6, tz=timezone.utc)


class Layout:
    """The columns of a symbol's rows: every field of the record but its symbol; rows
    are sorted by `start` and end at `end`."""

    def __init__(self, fields: Sequence[Field], start: str, end: str):
        self.fields = tuple(fields)
        self.columns = tuple(f.name for f in fields if f.name != "symbol")
        self.index = {name: i for i, name in enumerate(self.columns)}
        self.start, self.end = self.index[start], self.index[end]
        # Freshness from emitted_at where the record has it, else the span's end.
        self.emitted = self.index.get("emitted_at", self.end)
        self._times = frozenset(f.name for f in fields if f.type == "timestamp")
        self._whole = frozenset(f.name for f in fields if f.type == "long")

    def to_row(self, record: Aggregate) -> list[float]:
        row = []
        for name in self.columns:
            value = record.get(name)
            if value is None:
                row.append(math.nan)
            elif name in self._times:
                row.append(_seconds(value))
            else:
                row.append(float(value))
        return row

    def to_record(self, symbol: str, row: Sequence[float]) -> dict[str, Any]:
        """A row as the parsed record it came from (missing fields None)."""
        record: dict[str, Any] = {"symbol": symbol}
        for name, value in zip(self.columns, row):
            if value != value:  # NaN: not in the message
                record[name] = None
            elif name in self._times:
                record[name] = _moment(value)
            elif name in self._whole:
                record[name] = int(value)
            else:
                record[name] = value
        return {f.name: record[f.name] for f in self.fields}


AGGREGATES = Layout(AGGREGATE_FIELDS, "window_start", "window_end")
CANDLES = Layout(CANDLE_FIELDS, "open_time", "close_time")
COLUMNS, INDEX = AGGREGATES.columns, AGGREGATES.index
START, END = AGGREGATES.start, AGGREGATES.end
BYTES_PER_WINDOW = 8 * len(COLUMNS)
to_row = AGGREGATES.to_row


class Windows(Sequence[Aggregate]):
    """A symbol's windows (or candles) in a snapshot, oldest first: records made on
    access."""

    def __init__(self, symbol: str, rows: np.ndarray, layout: Layout = AGGREGATES):
        self.symbol = symbol
        self.rows = rows
        self.layout = layout

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.layout.to_record(self.symbol, row)
                    for row in self.rows[index].tolist()]
        return self.layout.to_record(self.symbol, self.rows[index].tolist())

    def __iter__(self) -> Iterator[Aggregate]:
        for row in self.rows.tolist():
            yield self.layout.to_record(self.symbol, row)


@dataclass(frozen=True)
class Summary:
    """What the overview shows of one symbol: the window that covers the last
    WINDOW_DURATION up to its newest tick (the oldest window still overlapping the
    newest one's start; with 5-minute windows sliding by a minute, the one that began
    four minutes before the newest), priced at the close of the newest window."""

    symbol: str
    last_price: float | None  # close of the newest window
    change_pct: float | None  # over the covering window
    spread: float
    spread_pct: float | None  # spread as % of the covering window's average
    ticks: int
    volume: float | None
    vwap: float | None
    window_start: datetime  # of the covering window
    window_end: datetime
    newest_start: datetime  # of the newest window

    @classmethod
    def of(cls, symbol: str, rows: np.ndarray) -> "Summary":
        recent = rows[-COVERING_ROWS:]
        newest = recent[-1]
        covering = recent[int(np.argmax(recent[:, END] > newest[START]))]
        (open_, close, change, spread, avg, count, volume, vwap) = (
            _value(covering, name) for name in (
                "open_price", "close_price", "pct_change", "spread", "avg_price", "count",
                "volume", "vwap"))
        if change is None and open_ is not None and close is not None:
            change = 100 * (close - open_) / open_
        return cls(symbol, _value(newest, "close_price"), change, spread,
                   100 * spread / avg if avg else None, int(count), volume, vwap,
                   _moment(covering[START]), _moment(covering[END]), _moment(newest[START]))


def _value(row: np.ndarray, name: str) -> float | None:
    value = float(row[INDEX[name]])
    return None if value != value else value


@dataclass(frozen=True)
class Snapshot:
    """The store at one moment: per symbol, its windows (or candles) oldest first
    (`rows`: as arrays, `windows`: as records), and each symbol's summary (windows only)."""

    rows: Mapping[str, np.ndarray]
    summaries: Mapping[str, Summary]
    newest_emitted_at: datetime | None
    version: int
    layout: Layout = AGGREGATES

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self.rows))

    @property
    def windows(self) -> Mapping[str, Windows]:
        return _WindowsBySymbol(self.rows, self.layout)

    def starting_from(self, symbol: str, since: datetime | None) -> Windows:
        """`symbol`'s windows (or candles) that start at `since` or later, oldest first;
        none when the snapshot has no such symbol. A page shows an hour of a day's rows,
        and making records of the rest would cost most of a refresh."""
        rows = self.rows.get(symbol)
        if rows is None:
            rows = np.empty((0, len(self.layout.columns)))
        elif since is not None:
            rows = rows[np.searchsorted(rows[:, self.layout.start], _seconds(since)):]
        return Windows(symbol, rows, self.layout)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


class _WindowsBySymbol(Mapping[str, Windows]):
    def __init__(self, rows: Mapping[str, np.ndarray], layout: Layout):
        self._rows = rows
        self._layout = layout

    def __getitem__(self, symbol: str) -> Windows:
        return Windows(symbol, self._rows[symbol], self._layout)

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


class _Series:
    """One symbol's rows: `array[lo:hi]`, sorted by their start column."""

    __slots__ = ("array", "lo", "hi", "start")

    def __init__(self, layout: Layout) -> None:
        self.array = np.empty((FIRST_CAPACITY, len(layout.columns)))
        self.lo = self.hi = 0
        self.start = layout.start

    @property
    def rows(self) -> np.ndarray:
        return self.array[self.lo:self.hi]

    def merge(self, new: np.ndarray) -> None:
        """Take rows (any order; for a start given twice the last counts)."""
        order = np.argsort(new[:, self.start], kind="stable")
        new = new[order]
        starts = new[:, self.start]
        last_of_each = np.append(starts[1:] != starts[:-1], True)
        new, starts = new[last_of_each], starts[last_of_each]
        held = self.rows
        at = np.searchsorted(held[:, self.start], starts)
        known = at < len(held)
        known[known] = held[at[known], self.start] == starts[known]
        held[at[known]] = new[known]
        fresh = new[~known]
        if not len(fresh):
            return
        if not len(held) or fresh[0, self.start] > held[-1, self.start]:
            self._append(fresh)
        else:
            merged = np.concatenate([held, fresh])
            self._replace(merged[np.argsort(merged[:, self.start], kind="stable")])

    def _append(self, fresh: np.ndarray) -> None:
        if self.hi + len(fresh) > len(self.array):
            # A new array: a snapshot keeps the old one as it was.
            self._replace(np.concatenate([self.rows, fresh]))
            return
        self.array[self.hi:self.hi + len(fresh)] = fresh
        self.hi += len(fresh)

    def _replace(self, rows: np.ndarray) -> None:
        self.array = np.empty((max(FIRST_CAPACITY, int(len(rows) * GROWTH)), self.array.shape[1]))
        self.array[:len(rows)] = rows
        self.lo, self.hi = 0, len(rows)

    def prune(self, before: float) -> int:
        """Drop windows that started before `before` (epoch seconds); how many."""
        cut = int(np.searchsorted(self.rows[:, self.start], before))
        self.lo += cut
        if cut and self.lo > len(self.array) // 2:
            self._replace(self.rows.copy())  # give the room back
        return cut


class AggregateStore:
    """Records by symbol and start, the latest value each: aggregates, or with
    `CANDLES` the 1-minute candles (`candle_store`)."""

    def __init__(self, layout: Layout = AGGREGATES) -> None:
        self.layout = layout
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._summaries: dict[str, Summary] = {}  # of symbols unchanged since computed
        self._newest_emitted_at: float | None = None
        self._newest_start: float | None = None
        self._version = 0

    def put(self, record: Aggregate) -> None:
        """Keep `record` (a parsed aggregate) as the value of its window."""
        self.put_many((record,))

    def put_many(self, records: Iterable[Aggregate]) -> int:
        by_symbol: dict[str, list[list[float]]] = {}
        for record in records:
            by_symbol.setdefault(record["symbol"], []).append(self.layout.to_row(record))
        if not by_symbol:
            return 0
        count = 0
        with self._lock:
            for symbol, rows in by_symbol.items():
                self._take(symbol, np.array(rows))
                count += len(rows)
            self._version += 1
        return count

    def put_arrays(self, symbols: Sequence[str], rows: np.ndarray) -> int:
        """Rows as the history store reads them in bulk (`iter_arrays` of this layout's
        table): a symbol per row and the layout's columns in it, grouped by symbol."""
        if not len(symbols):
            return 0
        names = np.asarray(symbols)
        bounds = np.flatnonzero(names[1:] != names[:-1]) + 1
        with self._lock:
            for first, end in zip(np.concatenate([[0], bounds]),
                                  np.concatenate([bounds, [len(names)]])):
                self._take(str(names[first]), rows[first:end])
            self._version += 1
        return len(symbols)

    def _take(self, symbol: str, new: np.ndarray) -> None:
        """Caller holds the lock."""
        layout = self.layout
        self._series.setdefault(symbol, _Series(layout)).merge(new)
        self._summaries.pop(symbol, None)
        # Freshness from emitted_at, or the span's end where a writer left it out.
        emitted = np.where(np.isnan(new[:, layout.emitted]), new[:, layout.end],
                           new[:, layout.emitted])
        self._newest_emitted_at = max(self._newest_emitted_at or -math.inf,
                                      float(emitted.max()))
        self._newest_start = max(self._newest_start or -math.inf,
                                 float(new[:, layout.start].max()))

    @property
    def newest_window_start(self) -> datetime | None:
        with self._lock:
            return None if self._newest_start is None else _moment(self._newest_start)

    @property
    def newest_emitted_at(self) -> datetime | None:
        with self._lock:
            return None if self._newest_emitted_at is None else _moment(self._newest_emitted_at)

    def prune(self, before: datetime) -> int:
        """Forget windows that started before `before`; returns how many."""
        cutoff = _seconds(before)
        with self._lock:
            dropped = 0
            for symbol, series in list(self._series.items()):
                cut = series.prune(cutoff)
                if cut:
                    dropped += cut
                    self._summaries.pop(symbol, None)
                if series.hi == series.lo:
                    del self._series[symbol]
            if dropped:
                self._version += 1
            return dropped

    def snapshot(self) -> Snapshot:
        with self._lock:
            rows = {symbol: series.rows for symbol, series in self._series.items()}
            if self.layout is AGGREGATES:
                for symbol, held in rows.items():
                    if symbol not in self._summaries:
                        self._summaries[symbol] = Summary.of(symbol, held)
            newest = None if self._newest_emitted_at is None else \
                _moment(self._newest_emitted_at)
            return Snapshot(MappingProxyType(rows), MappingProxyType(dict(self._summaries)),
                            newest, self._version, self.layout)

    def __len__(self) -> int:
        with self._lock:
            return sum(series.hi - series.lo for series in self._series.values())

    @property
    def nbytes(self) -> int:
        """Memory the windows' arrays hold (their spare room included)."""
        with self._lock:
            return sum(series.array.nbytes for series in self._series.values())


def candle_store() -> AggregateStore:
    """Candles, by symbol and open time."""
    return AggregateStore(CANDLES)


class AlertStore:
    """Alerts by (symbol, window_start, kind): one each, whatever the topic repeats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: dict[tuple[str, datetime, str], Mapping[str, Any]] = {}
        self._newest_first: tuple[Mapping[str, Any], ...] = ()

    def put_many(self, alerts: Iterable[Mapping[str, Any]]) -> int:
        count = 0
        with self._lock:
            for alert in alerts:
                self._alerts[(alert["symbol"], alert["window_start"], alert["kind"])] = alert
                count += 1
            if count:
                self._sort()
        return count

    def prune(self, before: datetime) -> int:
        """Forget alerts of windows that started before `before`; returns how many."""
        with self._lock:
            old = [key for key in self._alerts if key[1] < before]
            for key in old:
                del self._alerts[key]
            if old:
                self._sort()
            return len(old)

    def newest_first(self) -> tuple[Mapping[str, Any], ...]:
        with self._lock:
            return self._newest_first

    def _sort(self) -> None:
        """Caller holds the lock: detection time, then the window, newest first."""
        self._newest_first = tuple(sorted(
            self._alerts.values(), key=lambda a: (a["detected_at"], a["window_start"]),
            reverse=True))
