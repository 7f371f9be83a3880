"""The history in PostgreSQL (psycopg 3): shared by every host, queried by analysts.

One connection per store, opened on first use and kept: connecting costs milliseconds
(a server process, password authentication), a query a fraction of one. A connection
that broke (the server restarted) is dropped, and the next operation connects again.
Times are `timestamptz`, so `psql` users can compare them with `now()`.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Sequence

import numpy as np

from crypto_pipeline.core.history.url import mask_password

log = logging.getLogger(__name__)

# A host that drops packets would otherwise hold a connection attempt for minutes.
CONNECT_TIMEOUT_SECONDS = 5
# Any fixed number: the advisory lock that serialises schema changes across processes.
_SCHEMA_LOCK = 0x63727970
# Connection failures that end by themselves: the server is not up (yet), is starting
# or stopping, or is full. Anything else (no such database, a wrong password, no
# pg_hba.conf entry) needs someone to change a setting.
_TRANSIENT = ("connection refused", "timeout expired", "could not translate host name",
              "no such file or directory", "network is unreachable", "no route to host",
              "the database system is starting up", "the database system is shutting down",
              "the database system is in recovery mode", "not yet accepting connections",
              "too many clients", "server closed the connection unexpectedly",
              "terminating connection due to administrator command",
              "the connection is closed", "consuming input failed")


class PostgresEngine:
    name = "postgresql"
    placeholder = "%s"
    column_types = {"string": "TEXT", "double": "DOUBLE PRECISION", "long": "BIGINT",
                    "timestamp": "TIMESTAMPTZ"}
    table_options = ""

    def __init__(self, url: str):
        import psycopg

        self._psycopg = psycopg
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self.url = url
        self._connection: Any = None
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return mask_password(self.url)

    def exists(self) -> bool:
        return True

    def _connect(self) -> Any:
        options = {"autocommit": True, "application_name": "crypto-pipeline"}
        if "connect_timeout" not in self.url:
            options["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        connection = self._psycopg.connect(self.url, **options)
        # Times then come back in UTC, as the pipeline writes them (and compare fast).
        connection.execute("SET TIME ZONE 'UTC'")
        return connection

    @contextmanager
    def connection(self) -> Iterator[tuple[Any, bool]]:
        """The store's connection (new: the schema is checked), one user at a time."""
        with self._lock:
            new = self._connection is None or self._connection.closed
            if new:
                self._connection = self._connect()
            try:
                yield self._connection, new
            except self._psycopg.OperationalError:
                self._drop()
                raise

    @contextmanager
    def transaction(self, connection: Any, *, schema: bool = False) -> Iterator[Any]:
        with connection.transaction(), connection.cursor() as cursor:
            if schema:
                # Two processes starting together: the second waits, then finds the
                # schema done.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            yield cursor

    def columns(self, cursor: Any, table: str) -> set[str]:
        return {name for (name,) in cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s", (table,))}

    def indexes(self, cursor: Any) -> set[str]:
        return {name for (name,) in cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}

    def to_db(self, moment: datetime) -> datetime:
        return moment

    def from_db(self, value: datetime) -> datetime:
        return value.astimezone(timezone.utc)

    def epoch_seconds(self, values: Sequence[Any]) -> np.ndarray:
        """Stored times as epoch seconds (NaN for none)."""
        return np.array([v.timestamp() if v is not None else np.nan for v in values])

    def is_transient(self, error: BaseException) -> bool:
        text = str(error).lower()
        return any(marker in text for marker in _TRANSIENT)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except self._psycopg.Error as err:
                log.debug("closing a broken connection failed: %s", err)

    def close(self) -> None:
        with self._lock:
            self._drop()
