"""The dashboard's /metrics (DASHBOARD_METRICS_PORT): its feed's health and the server's
sign-ins, read at each scrape. One collector per server process (app.py); the page hands
it the feed and the sign-ins once they exist."""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client.core import Metric

from crypto_pipeline.core.metrics import Families
from crypto_pipeline.core.status import DASHBOARD
from crypto_pipeline.dashboard.auth import Logins
from crypto_pipeline.dashboard.feed import KafkaFeed


class DashboardCollector:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.feed: KafkaFeed | None = None
        self.logins: Logins | None = None
        self._clock = clock

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
        return metrics.families
