"""The history store: every aggregate the Spark job emits (latest value per window) and
every alert it sent, in SQLite (`sqlite:///…`, the default: one machine) or PostgreSQL
(`postgresql://…`: shared by hosts, queried by analysts), as HISTORY_URL says.

`schema.py` declares the tables, `store.py` holds every query (one text for both
engines), `sqlite.py` and `postgres.py` what differs between them, `url.py` the URL.
The schema is created or brought up to date when a process first connects.
"""

from __future__ import annotations

import logging

from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.history.store import HistoryStore
from crypto_pipeline.core.history.url import (
    POSTGRESQL,
    engine_of,
    mask_password,
    sqlite_path,
    sqlite_url,
    without_password,
)
from crypto_pipeline.core.waiting import WaitTimeout, wait_until

__all__ = ["HistoryStore", "HistoryUnavailable", "open_history", "ready_history",
           "problem", "sqlite_url"]

log = logging.getLogger(__name__)

# The setting the messages name (core/settings.py's history_url).
SETTING = "HISTORY_URL"
_RETRY_SECONDS = 1.0


class HistoryUnavailable(Exception):
    """The history database cannot be used; the message is one line naming HISTORY_URL."""


def open_history(url: str) -> HistoryStore:
    """The store HISTORY_URL names; nothing is opened before the first operation."""
    if engine_of(url) == POSTGRESQL:
        from crypto_pipeline.core.history.postgres import PostgresEngine

        return HistoryStore(PostgresEngine(url))
    from crypto_pipeline.core.history.sqlite import SqliteEngine

    return HistoryStore(SqliteEngine(sqlite_path(url)))


def problem(url: str, error: BaseException | str) -> str:
    """One line naming the setting (password masked) and what is wrong with it."""
    return f"{SETTING}={mask_password(url)}: {without_password(one_line(error), url)}"


def ready_history(url: str, timeout: float) -> HistoryStore:
    """The store with its schema in place, for a process starting: a database that does
    not answer yet (restarting) is waited for up to `timeout` seconds; one that refuses
    (no such database, a wrong password) raises HistoryUnavailable at once."""
    store = open_history(url)
    failures: list[BaseException] = []

    def ready() -> bool:
        try:
            store.migrate()
            return True
        except store.errors as err:
            if not store.engine.is_transient(err):
                raise HistoryUnavailable(problem(url, err)) from None
            if not failures:
                log.warning("the history database does not answer (%s); waiting up to "
                            "%.0f s", problem(url, err), timeout)
            failures.append(err)
            return False

    try:
        wait_until(ready, timeout, "history database", interval=_RETRY_SECONDS)
    except WaitTimeout:
        raise HistoryUnavailable(f"{problem(url, failures[-1])} (still after "
                                 f"{timeout:.0f} s)") from None
    if failures:
        log.info("the history database answers: %s", store.location)
    return store
