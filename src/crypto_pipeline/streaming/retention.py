"""HISTORY_RETENTION: the Spark job, the history's writer, prunes it when it starts and
then once a day, in a thread of its own (a prune never delays a batch).

The retention counts back from the newest window in the store, not from the clock, as
the dashboard's does: replayed and backfilled windows can be years old and are still
the data being looked at; on live data the newest window is now. A prune that fails (the
database away for a moment) is logged and tried again at the next turn.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.history import HistoryStore
from crypto_pipeline.core.settings import Duration

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 24 * 3600.0


def cut_off(newest_starts: dict[str, datetime], retention: Duration) -> datetime | None:
    """What ended before this goes: `retention` before the newest window; None when the
    store holds no window."""
    if not newest_starts:
        return None
    return max(newest_starts.values()) - timedelta(seconds=retention.seconds)


class HistoryRetention:
    def __init__(self, history: HistoryStore, retention: Duration,
                 interval_seconds: float = PRUNE_INTERVAL_SECONDS):
        self.history = history
        self.retention = retention
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="history-retention",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def prune(self) -> dict[str, int]:
        """One prune now; rows deleted per table."""
        older_than = cut_off(self.history.newest_window_starts(), self.retention)
        if older_than is None:
            return {}
        deleted = self.history.prune(older_than)
        log.info("history retention %s: deleted what ended before %s (%s)", self.retention,
                 older_than.isoformat(),
                 ", ".join(f"{count} {table}" for table, count in deleted.items()))
        return deleted

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.prune()
            except self.history.errors as err:
                log.warning("history retention: the prune failed (%s); next try in %.0f h",
                            one_line(err), self.interval_seconds / 3600)
            self._stop.wait(self.interval_seconds)
