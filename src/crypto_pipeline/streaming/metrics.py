"""The Spark job's /metrics (SPARK_METRICS_PORT): the status its listener keeps, read at each
scrape. Spark's own metrics are on its UI (`spark.ui.prometheus.enabled`, session.py)."""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client.core import Metric

from crypto_pipeline.core.metrics import Families
from crypto_pipeline.core.schema import parse_time
from crypto_pipeline.core.status import SPARK, SparkStatus


class SparkCollector:
    def __init__(self, status: Callable[[], SparkStatus],
                 clock: Callable[[], float] = time.time):
        self._status = status
        self._clock = clock
        self._started_at = clock()

    def collect(self) -> list[Metric]:
        status = self._status()
        last_batch = (parse_time(status.last_batch_at).timestamp() if status.last_batch_at
                      else self._started_at)
        duration = (None if status.batch_duration_ms is None
                    else status.batch_duration_ms / 1000)
        metrics = Families(SPARK)
        metrics.state(status.state)
        metrics.gauge("batch_id", "the aggregates query's last micro-batch", status.batch_id)
        metrics.gauge("batch_duration_seconds", "how long the last micro-batch took", duration)
        metrics.gauge("input_rows_per_second", "ticks arriving per second (last batch)",
                      status.input_rows_per_second)
        metrics.gauge("processed_rows_per_second", "ticks processed per second (last batch)",
                      status.processed_rows_per_second)
        metrics.gauge("backlog_records", "ticks on the input topic not read yet",
                      status.backlog)
        metrics.gauge("state_rows", "rows held in the state stores (dedupe and windows)",
                      status.state_rows)
        metrics.gauge("last_batch_age_seconds", "seconds since the last micro-batch (since "
                      "the start, before the first)", max(0.0, self._clock() - last_batch))
        metrics.counter("late_ticks_total", "ticks dropped as older than the watermark",
                        status.late_rows)
        metrics.counter("dead_letters_total", "rejected records written to the dead-letter "
                        "topic", status.dlq_rows)
        metrics.counter("aggregates_emitted_total", "window aggregates written to the "
                        "output topic", status.emitted_rows)
        backfill = status.backfill
        metrics.gauge("backfill_symbols_left", "symbols the backfill has yet to fetch",
                      None if backfill is None
                      else backfill.symbols_total - backfill.symbols_done)
        metrics.counter("backfill_requests_total", "klines requests the backfill made",
                        backfill.requests if backfill else 0)
        metrics.counter("backfill_windows_total", "windows the backfill wrote",
                        backfill.windows_written if backfill else 0)
        return metrics.families
