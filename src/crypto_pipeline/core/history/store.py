"""Every read and write of the history, one text per query for both engines.

The job upserts each micro-batch's aggregates keyed by (symbol, window_start) and its
candles keyed by (symbol, open_time), so a re-run batch after a crash replaces rows
instead of adding them; the dashboard reads the past from it after a restart; the
backfill writes into it, never replacing a window or candle already there; the alert
rules read recent returns and the alerts sent (what they remember across batches and
restarts); `prune` applies the retention. Times go in as datetimes or ISO text and come
out as UTC datetimes.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from crypto_pipeline.core.history import schema
from crypto_pipeline.core.history.schema import AGGREGATES, ALERTS, CANDLES, ENDS, TABLES, Table
from crypto_pipeline.core.schema import Field, parse_time

log = logging.getLogger(__name__)

# Rows per INSERT statement: well under either engine's limit on parameters (SQLite's
# 32766, PostgreSQL's 65535) for tables of a few dozen columns.
ROWS_PER_STATEMENT = 500


class Engine(Protocol):
    """What differs between SQLite and PostgreSQL (sqlite.py, postgres.py)."""

    name: str
    placeholder: str
    errors: tuple[type[BaseException], ...]
    column_types: Mapping[str, str]
    table_options: str
    location: str

    def exists(self) -> bool: ...
    def connection(self) -> Any: ...
    def transaction(self, connection: Any, *, schema: bool = False) -> Any: ...
    def columns(self, cursor: Any, table: str) -> set[str]: ...
    def indexes(self, cursor: Any) -> set[str]: ...
    def to_db(self, moment: datetime) -> Any: ...
    def from_db(self, value: Any) -> datetime: ...
    def epoch_seconds(self, values: Sequence[Any]) -> np.ndarray: ...
    def is_transient(self, error: BaseException) -> bool: ...
    def close(self) -> None: ...


class HistoryStore:
    def __init__(self, engine: Engine, tables: tuple[Table, ...] = TABLES):
        self.engine = engine
        self.tables = tables
        self._texts: dict[str, str] = {}

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What a failed operation raises: the driver's own errors, which name the cause."""
        return self.engine.errors

    @property
    def location(self) -> str:
        """Where the history is, fit to log (a password masked)."""
        return self.engine.location

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "HistoryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema ----------------------------------------------------------------------

    def migrate(self) -> None:
        """Create what the schema lacks (tables, columns, indexes); a no-op when up to date."""
        with self.engine.connection() as (connection, _new):
            self._migrate(connection)

    def _migrate(self, connection: Any) -> None:
        with self.engine.transaction(connection) as cursor:
            if not self._schema_changes(cursor):
                return
        with self.engine.transaction(connection, schema=True) as cursor:
            for statement in self._schema_changes(cursor):
                log.info("history schema: %s", statement)
                cursor.execute(statement)

    def _schema_changes(self, cursor: Any) -> list[str]:
        """The statements that bring the database to the declared schema. Only additions:
        a column added to a message's fields becomes a nullable column."""
        types, changes = self.engine.column_types, []
        indexes = self.engine.indexes(cursor)
        for table in self.tables:
            present = self.engine.columns(cursor, table.name)
            if not present:
                changes.append(schema.create_table(table, types, self.engine.table_options))
            changes += [schema.add_column(table, f, types)
                        for f in table.fields if present and f.name not in present]
            changes += [schema.create_index(table, name)
                        for name in table.indexes if name not in indexes]
        return changes

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor in one transaction, the schema checked on a new connection."""
        with self.engine.connection() as (connection, new):
            if new:
                self._migrate(connection)
            with self.engine.transaction(connection) as cursor:
                yield cursor

    def _sql(self, text: str) -> str:
        """The query in the engine's placeholder style."""
        if text not in self._texts:
            self._texts[text] = text.replace("?", self.engine.placeholder)
        return self._texts[text]

    # --- generic reads and writes ----------------------------------------------------

    def write(self, table: Table, rows: Iterable[Mapping[str, Any]], *,
              replace: bool = True) -> list[Mapping[str, Any]]:
        """Insert rows (dicts of the table's fields), as if one after the other; a key
        already there is updated (`replace`) or kept as it was. Returns the rows that
        were written, in order."""
        rows = list(rows)
        if not rows:
            return []
        with self._cursor() as cursor:
            if replace:
                # Every row is written: nothing to return, and both drivers send a
                # statement run many times fastest this way (psycopg pipelines it).
                cursor.executemany(self._sql(schema.insert(table, 1, replace=True)),
                                   [self._params(table, row) for row in rows])
                return rows
            first: dict[tuple, Mapping[str, Any]] = {}
            for row in rows:
                first.setdefault(self._key(table, row), row)
            items = list(first.items())
            written: set[tuple] = set()
            for start in range(0, len(items), ROWS_PER_STATEMENT):
                chunk = items[start:start + ROWS_PER_STATEMENT]
                params = [value for _, row in chunk for value in self._params(table, row)]
                cursor.execute(self._sql(schema.insert(table, len(chunk), replace=False)),
                               params)
                written.update(self._key(table, dict(zip(table.key, key)), stored=True)
                               for key in cursor.fetchall())
        return [row for key, row in items if key in written]

    def _params(self, table: Table, row: Mapping[str, Any]) -> list[Any]:
        return [self._param(f, row.get(f.name)) for f in table.fields]

    def _key(self, table: Table, row: Mapping[str, Any], *, stored: bool = False) -> tuple:
        """A row's key as `write` sends it; `stored`: the row as the database returned it."""
        columns = {f.name: f for f in table.fields}
        key = []
        for name in table.key:
            value = row.get(name)
            if stored and columns[name].type == "timestamp":
                value = self.engine.from_db(value)
            key.append(self._param(columns[name], value))
        return tuple(key)

    def read(self, table: Table, where: str = "", params: Sequence[Any] = (),
             order_by: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Rows of `table` (times as datetimes); nothing when nothing was ever written."""
        if not self.engine.exists():
            return []
        with self._cursor() as cursor:
            rows = cursor.execute(self._sql(schema.select(table, where, order_by)),
                                  list(params)).fetchall()
        return [self._row(table, row) for row in rows]

    def _param(self, column: Field, value: Any) -> Any:
        return self._time(value) if column.type == "timestamp" and value is not None else value

    def _time(self, value: datetime | str) -> Any:
        return self.engine.to_db(parse_time(value) if isinstance(value, str) else value)

    def _row(self, table: Table, row: Sequence[Any]) -> dict[str, Any]:
        return {f.name: self.engine.from_db(value)
                if f.type == "timestamp" and value is not None else value
                for f, value in zip(table.fields, row)}

    # --- aggregates --------------------------------------------------------------------

    def upsert(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert or replace aggregates (dicts with AGGREGATE_FIELDS). Returns the number
        of rows written."""
        return len(self.write(AGGREGATES, rows))

    def insert_absent(self, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Insert the aggregates whose window is not in the store yet (the backfill never
        replaces what the live job wrote); returns those inserted."""
        return self.write(AGGREGATES, rows, replace=False)

    def load(self, since: datetime | None = None,
             symbols: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Aggregates (latest value per window), oldest window first."""
        return self._load(AGGREGATES, "window_start", since, symbols)

    def _load(self, table: Table, start: str, since: datetime | None,
              symbols: Iterable[str] | None,
              order_by: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Rows of `table` whose `start` is `since` or later, of `symbols`, oldest first
        (or in `order_by`)."""
        conditions, params = [], []
        if since is not None:
            conditions.append(f'"{start}" >= ?')
            params.append(self._time(since))
        if symbols is not None:
            symbols = list(symbols)
            if not symbols:
                return []
            conditions.append(f'"symbol" IN ({", ".join("?" for _ in symbols)})')
            params.extend(symbols)
        return self.read(table, " AND ".join(conditions), params,
                         order_by=order_by or (start, "symbol"))

    # --- candles -----------------------------------------------------------------------

    def upsert_candles(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert or replace candles (dicts with CANDLE_FIELDS); returns how many."""
        return len(self.write(CANDLES, rows))

    def insert_absent_candles(self,
                              rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Insert the candles not in the store yet (the backfill's); returns those."""
        return self.write(CANDLES, rows, replace=False)

    def load_candles(self, since: datetime | None = None,
                     symbols: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Candles from `since` on (by open time), oldest first."""
        return self._load(CANDLES, "open_time", since, symbols)

    def newest_window_starts(self, ended_by: datetime | None = None) -> dict[str, datetime]:
        """Per symbol, the start of its newest window in the store (of those that ended
        by `ended_by`, when given)."""
        if not self.engine.exists():
            return {}
        where, params = ('WHERE "window_end" <= ? ', [self._time(ended_by)]) \
            if ended_by is not None else ("", [])
        with self._cursor() as cursor:
            rows = cursor.execute(self._sql(
                f'SELECT "symbol", max("window_start") FROM "aggregates" {where}'
                f'GROUP BY "symbol"'), params).fetchall()
        return {symbol: self.engine.from_db(start) for symbol, start in rows}

    def iter_arrays(self, since: datetime | None = None, rows_per_chunk: int = 50_000,
                    table: Table = AGGREGATES) -> Iterator[tuple[list[str], np.ndarray]]:
        """Rows of `table` (aggregates, or candles: latest value per key) whose start
        (the key's time) is `since` or later, in chunks, symbol by symbol and each oldest
        first: (the symbols, one row of numbers each: the other fields in the table's
        order, times as epoch seconds, NaN where none). Millions of windows, read without
        a dict or datetime per window."""
        if not self.engine.exists():
            return
        where, params = (f'"{table.key[1]}" >= ?', [self._time(since)]) \
            if since is not None else ("", [])
        text = self._sql(schema.select(table, where, order_by=table.key))
        numbers = table.fields[1:]
        with self._cursor() as cursor:
            cursor.execute(text, params)
            while rows := cursor.fetchmany(rows_per_chunk):
                columns = list(zip(*rows))
                matrix = np.empty((len(rows), len(numbers)))
                for i, (column, values) in enumerate(zip(numbers, columns[1:])):
                    matrix[:, i] = self.engine.epoch_seconds(values) \
                        if column.type == "timestamp" else np.array(values, dtype=float)
                yield list(columns[0]), matrix

    def newest_emitted_at(self) -> datetime | None:
        """When the newest aggregate was written, or None when there is none."""
        if not self.engine.exists():
            return None
        with self._cursor() as cursor:
            (newest,) = cursor.execute('SELECT max("emitted_at") FROM "aggregates"').fetchone()
        return self.engine.from_db(newest) if newest is not None else None

    def prune(self, older_than: datetime) -> dict[str, int]:
        """Drop the windows, candles and alerts whose span ended before `older_than`;
        returns how many rows of each table."""
        deleted = {table.name: 0 for table in self.tables}
        if not self.engine.exists():
            return deleted
        with self._cursor() as cursor:
            for table in self.tables:
                deleted[table.name] = cursor.execute(
                    self._sql(f'DELETE FROM "{table.name}" WHERE "{ENDS[table.name]}" < ?'),
                    (self._time(older_than),)).rowcount
        return deleted

    def recent_returns(self, wanted: Iterable[tuple[str, datetime]],
                       limit: int) -> dict[tuple[str, datetime], list[float]]:
        """For each (symbol, moment): the pct_change of the symbol's newest `limit` windows
        that ended at or before that moment, newest first."""
        moments: dict[str, set[datetime]] = {}
        for symbol, moment in wanted:
            moments.setdefault(symbol, set()).add(moment)
        # One query per symbol, not per moment (a batch asks for several windows of each):
        # the newest windows that ended by its last moment, read backwards along the key's
        # index, hold every moment's answer once each moment has `limit` of them (or there
        # are no more); the few moments of a batch rarely need a second, longer read.
        query = self._sql('SELECT "window_end", "pct_change" FROM "aggregates" '
                          'WHERE "symbol" = ? AND "window_end" <= ? '
                          'ORDER BY "window_start" DESC LIMIT ?')
        returns = {}
        with self._cursor() as cursor:
            for symbol, of_symbol in moments.items():
                # Compared as stored: SQLite's time text sorts as the times do.
                until = {moment: self._time(moment) for moment in of_symbol}
                fetch = limit + len(of_symbol)
                while True:
                    windows = cursor.execute(
                        query, (symbol, max(until.values()), fetch)).fetchall()
                    found = {moment: [change for end, change in windows if end <= last][:limit]
                             for moment, last in until.items()}
                    if len(windows) < fetch or all(len(v) == limit for v in found.values()):
                        break
                    fetch *= 2
                returns.update({(symbol, moment): values for moment, values in found.items()})
        return returns

    # --- alerts ------------------------------------------------------------------------

    def record_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> int:
        """Remember sent alerts; one already recorded stays as it was. Returns how many
        were new."""
        return len(self.write(ALERTS, alerts, replace=False))

    def load_alerts(self, since: datetime | None = None,
                    symbols: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Recorded alerts of windows from `since` on (of `symbols`), oldest detection
        first."""
        return self._load(ALERTS, "window_start", since, symbols,
                          order_by=("detected_at", "symbol", "window_start", "kind"))
