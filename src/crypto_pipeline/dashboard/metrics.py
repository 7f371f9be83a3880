"""The dashboard's /metrics (DASHBOARD_METRICS_PORT): its feed's health and the server's
sign-ins, read at each scrape. One collector per server process (app.py); the page hands
it the feed and the sign-ins once they exist."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from typing import Callable

from prometheus_client.core import Metric

from crypto_pipeline.core.metrics import Families
from crypto_pipeline.core.status import DASHBOARD
from crypto_pipeline.dashboard.auth import Logins
from crypto_pipeline.dashboard.feed import KafkaFeed

# Page runs whose server time the median and 95th percentile are of, per part.
RECENT_RUNS = 200
PARTS = ("page", "panels")


class DashboardCollector:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.feed: KafkaFeed | None = None
        self.logins: Logins | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._runs = {part: deque(maxlen=RECENT_RUNS) for part in PARTS}
        self._run_totals = {part: [0, 0.0] for part in PARTS}  # count, seconds

    def rendered(self, part: str, seconds: float) -> None:
        """One run of the page's script (`page`) or of its live panels (`panels`: what a
        refresh reruns), with the server time it took."""
        with self._lock:
            self._runs[part].append(seconds)
            self._run_totals[part][0] += 1
            self._run_totals[part][1] += seconds

    def run_times(self) -> dict[str, dict[str, float | int | None]]:
        """Per part: runs, their total seconds, and the last, median, 95th percentile and
        longest of the recent ones."""
        with self._lock:
            result = {}
            for part, recent in self._runs.items():
                ordered = sorted(recent)
                count, total = self._run_totals[part]
                result[part] = {
                    "runs": count, "seconds": total,
                    "last": recent[-1] if recent else None,
                    "p50": statistics.median(ordered) if ordered else None,
                    "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
                    if ordered else None,
                    "max": ordered[-1] if ordered else None}
            return result

    def collect(self) -> list[Metric]:
        metrics = Families(DASHBOARD)
        feed, logins = self.feed, self.logins
        health = feed.health() if feed else None
        newest = feed.store.newest_emitted_at if feed else None
        metrics.gauge("kafka_reachable", "1 while the feed reads Kafka, else 0 (no sample "
                      "before the first visitor starts the feed)",
                      None if health is None else int(health.kafka == "ok"))
        metrics.gauge("feed_lag_records", "records on the aggregates and alerts topics the "
                      "feed has not read yet", health.backlog if health else None)
        metrics.gauge("newest_aggregate_age_seconds", "age of the newest aggregate the feed "
                      "holds (from its emitted_at)",
                      None if newest is None else max(0.0, self._clock() - newest.timestamp()))
        metrics.counter("records_read_total", "records the feed read",
                        health.records_read if health else 0)
        metrics.counter("records_skipped_total", "malformed records the feed skipped",
                        health.malformed if health else 0)
        metrics.gauge("signed_in_sessions", "browser sessions signed in now",
                      logins.signed_in_sessions() if logins else 0)
        metrics.counter("failed_logins_total", "wrong passwords (checked)",
                        logins.failed_total if logins else 0)
        metrics.counter("refused_logins_total", "sign-ins refused unchecked: locked out, or "
                        "sent while the answer to the last was held back",
                        logins.refused_total if logins else 0)
        metrics.counter("login_lockouts_total", "addresses locked out",
                        logins.lockouts_total if logins else 0)
        metrics.gauge("locked_out_addresses", "addresses locked out now",
                      logins.locked_out() if logins else 0)
        runs = self.run_times()
        metrics.counters("page_runs_total", "runs of the page's script (page: a whole run, "
                         "as a visitor's first render; panels: the live panels, all a "
                         "refresh runs)", "part", {p: r["runs"] for p, r in runs.items()})
        metrics.counters("page_run_seconds_total", "server time of those runs", "part",
                         {p: r["seconds"] for p, r in runs.items()})
        metrics.labelled_gauge("page_run_seconds", "server time of the recent runs "
                               f"(the last {RECENT_RUNS})", ("part", "stat"),
                               {(p, stat): r[stat] for p, r in runs.items()
                                for stat in ("last", "p50", "p95", "max")
                                if r[stat] is not None})
        return metrics.families
