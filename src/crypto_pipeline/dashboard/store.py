"""The dashboard's memory: the latest aggregate per (symbol, window_start), the latest
candle per (symbol, open_time), and the alerts, one per (symbol, window_start, kind).

The feed thread writes, page runs read, so every access holds one lock; readers get an
immutable `Snapshot` and never see a half-applied update. A later record for a window
replaces the earlier one (Spark re-emits a window each time it changes, and the Kafka
sink is at-least-once), whatever order windows arrive in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Iterable, Mapping

Aggregate = Mapping[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """The store at one moment: per symbol, its windows (or candles) oldest first."""

    windows: Mapping[str, tuple[Aggregate, ...]]
    newest_emitted_at: datetime | None
    version: int

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self.windows))

    def __len__(self) -> int:
        return sum(len(windows) for windows in self.windows.values())


class AggregateStore:
    """Records by symbol and start (`start`: the field that holds it), latest value each."""

    def __init__(self, start: str = "window_start") -> None:
        self.start = start
        self._lock = threading.Lock()
        self._windows: dict[str, dict[datetime, Aggregate]] = {}
        # Sorted views are rebuilt only for symbols that changed since the last snapshot.
        self._sorted: dict[str, tuple[Aggregate, ...]] = {}
        self._newest_emitted_at: datetime | None = None
        self._newest_start: datetime | None = None
        self._version = 0

    def put(self, record: Aggregate) -> None:
        """Keep `record` (a parsed aggregate) as the value of its window."""
        self.put_many((record,))

    def put_many(self, records: Iterable[Aggregate]) -> int:
        count = 0
        with self._lock:
            for record in records:
                symbol, start = record["symbol"], record[self.start]
                self._windows.setdefault(symbol, {})[start] = record
                self._sorted.pop(symbol, None)
                emitted_at = record.get("emitted_at")
                if emitted_at is not None and (self._newest_emitted_at is None
                                               or emitted_at > self._newest_emitted_at):
                    self._newest_emitted_at = emitted_at
                if self._newest_start is None or start > self._newest_start:
                    self._newest_start = start
                count += 1
            if count:
                self._version += 1
        return count

    @property
    def newest_window_start(self) -> datetime | None:
        with self._lock:
            return self._newest_start

    @property
    def newest_emitted_at(self) -> datetime | None:
        with self._lock:
            return self._newest_emitted_at

    def prune(self, before: datetime) -> int:
        """Forget windows that started before `before`; returns how many."""
        with self._lock:
            dropped = 0
            for symbol, windows in list(self._windows.items()):
                old = [start for start in windows if start < before]
                for start in old:
                    del windows[start]
                if old:
                    dropped += len(old)
                    self._sorted.pop(symbol, None)
                if not windows:
                    del self._windows[symbol]
            if dropped:
                self._version += 1
            return dropped

    def snapshot(self) -> Snapshot:
        with self._lock:
            for symbol, windows in self._windows.items():
                if symbol not in self._sorted:
                    self._sorted[symbol] = tuple(windows[start] for start in sorted(windows))
            return Snapshot(MappingProxyType(dict(self._sorted)), self._newest_emitted_at,
                            self._version)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(windows) for windows in self._windows.values())


def candle_store() -> AggregateStore:
    """Candles, by symbol and open time."""
    return AggregateStore(start="open_time")


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
