"""The history store: every aggregate the Spark job emits, latest value per window.

SQLite (standard library, one file, `HISTORY_DB`): the job upserts each micro-batch's
aggregates keyed by (symbol, window_start), so a re-run batch after a crash replaces
rows instead of adding them; the dashboard reads the past from it after a restart and
the backfill writes into it. WAL mode lets the dashboard read while the job writes.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from crypto_pipeline.schema import AGGREGATE_FIELDS, format_time, parse_time

_SQL_TYPES = {"string": "TEXT", "double": "REAL", "long": "INTEGER", "timestamp": "TEXT"}
COLUMNS = tuple(f.name for f in AGGREGATE_FIELDS)
_TIME_COLUMNS = tuple(f.name for f in AGGREGATE_FIELDS if f.type == "timestamp")


class HistoryStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        columns = ", ".join(f'"{f.name}" {_SQL_TYPES[f.type]}' for f in AGGREGATE_FIELDS)
        connection.execute(f"CREATE TABLE IF NOT EXISTS aggregates ({columns}, "
                           "PRIMARY KEY (symbol, window_start)) WITHOUT ROWID")
        connection.execute("CREATE INDEX IF NOT EXISTS aggregates_by_start "
                           "ON aggregates (window_start)")
        return connection

    def upsert(self, rows: Iterable[Mapping[str, Any]], chunk: int = 5000) -> int:
        """Insert or replace aggregates (dicts with AGGREGATE_FIELDS; times as datetimes
        or ISO strings). Returns the number of rows written."""
        placeholders = ", ".join("?" for _ in COLUMNS)
        statement = (f"INSERT OR REPLACE INTO aggregates ({', '.join(COLUMNS)}) "
                     f"VALUES ({placeholders})")
        written = 0
        with closing(self._connect()) as connection:
            for batch in _chunks((_to_sql(row) for row in rows), chunk):
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
            return [_from_sql(row) for row in connection.execute(query, params)]

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


def _to_sql(row: Mapping[str, Any]) -> tuple:
    values = []
    for name in COLUMNS:
        value = row.get(name)
        if name in _TIME_COLUMNS and isinstance(value, datetime):
            value = format_time(value)
        elif name in _TIME_COLUMNS and isinstance(value, str):
            value = format_time(parse_time(value))
        values.append(value)
    return tuple(values)


def _from_sql(row: tuple) -> dict[str, Any]:
    record = dict(zip(COLUMNS, row))
    for name in _TIME_COLUMNS:
        if record[name] is not None:
            record[name] = parse_time(record[name])
    return record


def _chunks(items: Iterator[tuple] | Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

