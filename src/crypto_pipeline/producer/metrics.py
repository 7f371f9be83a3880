"""The producer's /metrics (PRODUCER_METRICS_PORT): its status record, read at each scrape."""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client.core import Metric

from crypto_pipeline.core.metrics import Families
from crypto_pipeline.core.schema import parse_time
from crypto_pipeline.core.status import PRODUCER, ProducerStatus


class ProducerCollector:
    def __init__(self, status: Callable[[], ProducerStatus],
                 clock: Callable[[], float] = time.time):
        self._status = status
        self._clock = clock
        self._started_at = clock()

    def collect(self) -> list[Metric]:
        status = self._status()
        now = self._clock()
        last_success = (parse_time(status.last_success_at).timestamp()
                        if status.last_success_at else self._started_at)
        metrics = Families(PRODUCER)
        metrics.state(status.state)
        metrics.counter("polls_total", "requests to the price source (reads of a trade "
                        "stream, steps of a replay)", status.polls)
        metrics.counter("ticks_sent_total", "ticks Kafka confirmed", status.ticks_sent)
        metrics.counter("ticks_failed_total", "ticks Kafka refused for good",
                        status.ticks_failed)
        metrics.counter("ticks_dropped_total", "oldest ticks dropped from a full buffer "
                        "(PRODUCER_BUFFER_TICKS) while Kafka was unreachable",
                        status.ticks_dropped)
        metrics.gauge("ticks_buffered", "ticks waiting to be handed to Kafka",
                      status.ticks_buffered)
        metrics.counter("bad_entries_total", "entries of the source's answers skipped as "
                        "malformed", status.bad_entries)
        metrics.counters("errors_total", "failed polls and deliveries, by kind", "kind",
                         status.errors)
        metrics.gauge("last_success_age_seconds", "seconds since the source last answered "
                      "well (since the start, before its first good answer)",
                      max(0.0, now - last_success))
        metrics.gauge("symbols", "symbols tracked", len(status.symbols))
        metrics.counter("symbols_joined_total", "symbols that joined when SYMBOLS' patterns "
                        "were matched again (new listings)", status.symbols_joined)
        metrics.counter("symbols_left_total", "symbols that left when SYMBOLS' patterns were "
                        "matched again (halted, delisted)", status.symbols_left)
        metrics.gauge("kafka_reachable", "1 while Kafka takes the ticks, else 0",
                      int(status.kafka_reachable))
        return metrics.families
