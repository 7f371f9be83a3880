"""The history in a SQLite file (standard library): one machine, no server.

A connection per operation, as opening a file costs next to nothing; WAL mode lets the
dashboard read while the job writes. Times are stored as `format_time` text (one layout,
so text order is time order).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from crypto_pipeline.core.schema import format_time, parse_time


class SqliteEngine:
    name = "sqlite"
    placeholder = "?"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    column_types = {"string": "TEXT", "double": "REAL", "long": "INTEGER", "timestamp": "TEXT"}
    table_options = " WITHOUT ROWID"

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def location(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        """False before anything was written: a read then finds nothing without creating
        the file."""
        return self.path.exists()

    @contextmanager
    def connection(self) -> Iterator[tuple[sqlite3.Connection, bool]]:
        """A new connection (so the schema is checked each time), closed after."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: `transaction` says where each transaction begins and ends.
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn, True

    @contextmanager
    def transaction(self, connection: sqlite3.Connection, *,
                    schema: bool = False) -> Iterator[sqlite3.Cursor]:
        # A schema change takes the write lock first: two processes starting together
        # cannot both add the same column.
        connection.execute("BEGIN IMMEDIATE" if schema else "BEGIN")
        try:
            yield connection.cursor()
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def columns(self, cursor: sqlite3.Cursor, table: str) -> set[str]:
        return {name for (name,) in cursor.execute(
            "SELECT name FROM pragma_table_info(?)", (table,))}

    def indexes(self, cursor: sqlite3.Cursor) -> set[str]:
        return {name for (name,) in cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}

    def to_db(self, moment: datetime) -> str:
        return format_time(moment)

    def from_db(self, value: Any) -> datetime:
        return parse_time(value)

    def epoch_seconds(self, values: Sequence[Any]) -> np.ndarray:
        """Stored times as epoch seconds (NaN for none), all at once: each is
        format_time's text, which numpy reads without its `Z`."""
        parsed = np.array([v[:-1] if v else "NaT" for v in values], dtype="datetime64[us]")
        return np.where(np.isnat(parsed), np.nan, parsed.astype("int64") / 1e6)

    def is_transient(self, error: BaseException) -> bool:
        """A file that cannot be opened stays so: nothing to wait for."""
        return False

    def close(self) -> None:
        """Nothing stays open between operations."""
