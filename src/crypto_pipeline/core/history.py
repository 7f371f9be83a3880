"""The history store: every aggregate the Spark job emits, latest value per window.

SQLite (standard library, one file, `HISTORY_DB`): the job upserts each micro-batch's
aggregates keyed by (symbol, window_start), so a re-run batch after a crash replaces
rows instead of adding them; the dashboard reads the past from it after a restart and
the backfill writes into it, never replacing a window already there. Alerts the job sent
are remembered in a second table keyed by (symbol, window_start, kind), so an alert goes
out once even when a batch is re-run or the job restarts. WAL mode lets the dashboard
read while the job writes.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from crypto_pipeline.core.schema import (
    AGGREGATE_FIELDS,
    ALERT_FIELDS,
    Field,
    format_time,
    parse_time,
)

_SQL_TYPES = {"string": "TEXT", "double": "REAL", "long": "INTEGER", "timestamp": "TEXT"}
COLUMNS = tuple(f.name for f in AGGREGATE_FIELDS)
ALERT_COLUMNS = tuple(f.name for f in ALERT_FIELDS)
ALERT_KEY = ("symbol", "window_start", "kind")


class HistoryStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(_create_table("aggregates", AGGREGATE_FIELDS,
                                         ("symbol", "window_start")))
        connection.execute("CREATE INDEX IF NOT EXISTS aggregates_by_start "
                           "ON aggregates (window_start)")
        connection.execute(_create_table("alerts", ALERT_FIELDS, ALERT_KEY))
        return connection

    def upsert(self, rows: Iterable[Mapping[str, Any]], chunk: int = 5000) -> int:
        """Insert or replace aggregates (dicts with AGGREGATE_FIELDS; times as datetimes
        or ISO strings). Returns the number of rows written."""
        placeholders = ", ".join("?" for _ in COLUMNS)
        statement = (f"INSERT OR REPLACE INTO aggregates ({', '.join(COLUMNS)}) "
                     f"VALUES ({placeholders})")
        written = 0
        with closing(self._connect()) as connection:
            for batch in _chunks((_to_sql(row, AGGREGATE_FIELDS) for row in rows), chunk):
                with connection:
                    connection.executemany(statement, batch)
                written += len(batch)
        return written

    def load(self, since: datetime | None = None,
             symbols: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Aggregates (latest value per window), oldest window first, times as datetimes."""
        if not self.path.exists():
            return []
        query = f"SELECT {', '.join(COLUMNS)} FROM aggregates WHERE 1=1"
        params: list[Any] = []
        if since is not None:
            query += " AND window_start >= ?"
            params.append(format_time(since))
        if symbols is not None:
            symbols = list(symbols)
            query += f" AND symbol IN ({', '.join('?' for _ in symbols)})"
            params.extend(symbols)
        query += " ORDER BY window_start, symbol"
        with closing(self._connect()) as connection:
            return [_from_sql(row, AGGREGATE_FIELDS)
                    for row in connection.execute(query, params)]

    def insert_absent(self, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Insert the aggregates whose window is not in the store yet (the backfill never
        replaces what the live job wrote); returns those inserted."""
        statement = (f"INSERT OR IGNORE INTO aggregates ({', '.join(COLUMNS)}) "
                     f"VALUES ({', '.join('?' for _ in COLUMNS)})")
        with closing(self._connect()) as connection, connection:
            return [row for row in rows
                    if connection.execute(statement, _to_sql(row, AGGREGATE_FIELDS)).rowcount]

    def newest_window_starts(self) -> dict[str, datetime]:
        """Per symbol, the start of its newest window in the store."""
        if not self.path.exists():
            return {}
        with closing(self._connect()) as connection:
            return {symbol: parse_time(start) for symbol, start in connection.execute(
                "SELECT symbol, max(window_start) FROM aggregates GROUP BY symbol")}

    def recent_returns(self, wanted: Iterable[tuple[str, datetime]],
                       limit: int) -> dict[tuple[str, datetime], list[float]]:
        """For each (symbol, moment): the pct_change of the symbol's newest `limit` windows
        that ended at or before that moment, newest first."""
        query = ("SELECT pct_change FROM aggregates WHERE symbol = ? AND window_end <= ? "
                 "ORDER BY window_start DESC LIMIT ?")
        with closing(self._connect()) as connection:
            return {(symbol, moment): [value for (value,) in connection.execute(
                        query, (symbol, format_time(moment), limit))]
                    for symbol, moment in set(wanted)}

    def unrecorded_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The alerts whose (symbol, window_start, kind) has not been recorded."""
        query = "SELECT 1 FROM alerts WHERE symbol = ? AND window_start = ? AND kind = ?"
        with closing(self._connect()) as connection:
            return [alert for alert in alerts if connection.execute(
                query, (alert["symbol"], _sql_time(alert["window_start"]), alert["kind"])
            ).fetchone() is None]

    def record_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> int:
        """Remember sent alerts; one already recorded stays as it was. Returns how many
        were new."""
        statement = (f"INSERT OR IGNORE INTO alerts ({', '.join(ALERT_COLUMNS)}) "
                     f"VALUES ({', '.join('?' for _ in ALERT_COLUMNS)})")
        with closing(self._connect()) as connection, connection:
            return sum(connection.execute(statement, _to_sql(alert, ALERT_FIELDS)).rowcount
                       for alert in alerts)

    def load_alerts(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Recorded alerts of windows from `since` on, oldest detection first."""
        if not self.path.exists():
            return []
        query = f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE window_start >= ? " \
                "ORDER BY detected_at"
        start = format_time(since) if since is not None else ""
        with closing(self._connect()) as connection:
            return [_from_sql(row, ALERT_FIELDS) for row in connection.execute(query, (start,))]

    def newest_emitted_at(self) -> datetime | None:
        """When the newest aggregate was written, or None when there is none."""
        if not self.path.exists():
            return None
        with closing(self._connect()) as connection:
            (newest,) = connection.execute("SELECT max(emitted_at) FROM aggregates").fetchone()
        return parse_time(newest) if newest else None

    def prune(self, older_than: datetime) -> int:
        """Drop windows that ended before `older_than`; returns how many."""
        if not self.path.exists():
            return 0
        with closing(self._connect()) as connection, connection:
            cursor = connection.execute("DELETE FROM aggregates WHERE window_end < ?",
                                        (format_time(older_than),))
            return cursor.rowcount


def _create_table(name: str, table_fields: tuple[Field, ...], key: tuple[str, ...]) -> str:
    columns = ", ".join(f'"{f.name}" {_SQL_TYPES[f.type]}' for f in table_fields)
    return (f"CREATE TABLE IF NOT EXISTS {name} ({columns}, "
            f"PRIMARY KEY ({', '.join(key)})) WITHOUT ROWID")


def _sql_time(value: datetime | str | None) -> str | None:
    """Times as format_time writes them: one layout, so text order is time order."""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, str):
        return format_time(parse_time(value))
    return value


def _to_sql(row: Mapping[str, Any], table_fields: tuple[Field, ...]) -> tuple:
    return tuple(_sql_time(row.get(f.name)) if f.type == "timestamp" else row.get(f.name)
                 for f in table_fields)


def _from_sql(row: tuple, table_fields: tuple[Field, ...]) -> dict[str, Any]:
    return {f.name: parse_time(value) if f.type == "timestamp" and value is not None else value
            for f, value in zip(table_fields, row)}


def _chunks(items: Iterator[tuple] | Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

