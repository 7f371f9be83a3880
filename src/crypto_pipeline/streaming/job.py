"""The Spark job: ticks on INPUT_TOPIC -> sliding-window aggregates on OUTPUT_TOPIC and
1-minute candles on CANDLES_TOPIC, both also in the history store; rejected input ->
DLQ_TOPIC.

Two queries of one SparkSession, each with its own checkpoint, so a restart resumes
both where they stopped: `aggregates` (update mode, foreachBatch to Kafka and the history
store; the candles come out of the same aggregation, see transforms.py) and `dead
letters` (append mode, Kafka sink). A listener writes RUN_DIR/spark.json after every
micro-batch. A history database that goes away fails the batch, and so the job:
restarted, it runs the batch again from the checkpoint (every write is idempotent). The
history's retention is applied on start and then daily (retention.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from typing import Any, Callable, Iterable

from py4j.protocol import Py4JError
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from crypto_pipeline.alerts.publisher import SpikeAlerts
from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.history import HistoryStore, open_history
from crypto_pipeline.core.schema import format_time, parse_time
from crypto_pipeline.core.settings import EXIT_CONFIG_ERROR, Settings
from crypto_pipeline.core.status import BackfillProgress, SparkStatus, State
from crypto_pipeline.kafka_io.clients import spark_options
from crypto_pipeline.kafka_io.keyed_records import send_confirmed
from crypto_pipeline.streaming.retention import HistoryRetention
from crypto_pipeline.streaming.transforms import (
    aggregate_records,
    aggregate_windows,
    candle_records,
    candles,
    dead_letter_records,
    parse_records,
    rejected_records,
    valid_ticks,
)

log = logging.getLogger(__name__)

DEAD_LETTER_METRIC = "dead_letters"
# The state is one row per symbol and open window (thousands, not millions): Spark's
# in-memory store does a batch about a quarter faster than RocksDB at that size
# (measured, README). The choice is recorded in the checkpoint, so it is set here, not
# left to a spark-defaults file.
STATE_STORE_CONF = {
    "spark.sql.streaming.stateStore.providerClass":
        "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
}
# How the Kafka source fetches: each consumer poll hands over at most max.poll.records
# (500 by default), and a poll costs about as much as copying thousands of records out
# of a fetch already made; far fewer polls make reading about 1.5x faster.
# read_committed: a tick is visible once the producer's transaction that holds it commits;
# an aborted or open transaction (a killed producer) never reaches an aggregate.
KAFKA_SOURCE_OPTIONS = {"kafka.max.poll.records": "20000",
                        "kafka.isolation.level": "read_committed"}
# Rejects are rare and nobody waits for them to the second; each micro-batch costs the
# same planning, offset and commit work however few records it has, so the dead-letter
# query runs at most this often.
DEAD_LETTER_TRIGGER_SECONDS = 10.0
# Spark's errors for a checkpoint whose state another version of the query wrote.
STATE_MISMATCH_ERRORS = ("STREAMING_STATEFUL_OPERATOR_NOT_MATCH_IN_STATE_METADATA",
                         "STATE_STORE_KEY_SCHEMA_NOT_COMPATIBLE",
                         "STATE_STORE_VALUE_SCHEMA_NOT_COMPATIBLE")
# How often the waiting main thread looks at a stop request (signals only set a flag).
_STOP_POLL_SECONDS = 1.0


class StreamingJob:
    def __init__(self, spark: SparkSession, settings: Settings,
                 history: HistoryStore | None = None, *,
                 symbols_seen: Callable[[Iterable[str]], None] | None = None):
        """`symbols_seen`: told the symbols of each batch's aggregates (the backfill
        fetches the history of one it has not seen)."""
        self.spark = spark
        self.settings = settings
        self.symbols_seen = symbols_seen
        self.history = history or open_history(settings.history_url)
        self.alerts = SpikeAlerts(settings, self.history)
        self.retention = HistoryRetention(self.history, settings.history_retention)
        self.aggregates_name = f"aggregates to {settings.output_topic}"
        self.dead_letters_name = f"dead letters to {settings.dlq_topic}"
        self.status = StatusReporter(settings, self.aggregates_name, self.dead_letters_name)
        self.queries: list[StreamingQuery] = []
        self._stop_requested = False

    def start(self) -> None:
        """Start both queries (they run on Spark's threads until `stop`)."""
        self.status.report(State.STARTING)
        for key, value in STATE_STORE_CONF.items():
            self.spark.conf.set(key, value)
        self.spark.streams.resetTerminated()
        self.spark.streams.addListener(self.status)
        self.queries.append(self._start_aggregates())
        self.queries.append(self._start_dead_letters())
        self.retention.start()
        log.info("reading %s from %s; aggregates to %s and candles to %s (checkpoint %s) and "
                 "the history %s, dead letters to %s", self.settings.input_topic,
                 self.settings.kafka_bootstrap_servers, self.settings.output_topic,
                 self.settings.candles_topic, self.settings.checkpoint_dir,
                 self.history.location, self.settings.dlq_topic)

    def request_stop(self) -> None:
        """Ask `run` to stop; safe to call from a signal handler."""
        self._stop_requested = True

    def run(self) -> int:
        """Start, then block until a stop is requested (returns 0) or a query dies: 1, or
        EXIT_CONFIG_ERROR when only moving the checkpoint away can help (a restart cannot)."""
        try:
            self.start()
        except Exception as err:  # noqa: BLE001 - whatever stops the start is reported
            log.exception("could not start the queries")
            self._stop_queries()
            return self._failed(err)
        try:
            while not (self._stop_requested
                       or self.spark.streams.awaitAnyTermination(_STOP_POLL_SECONDS)):
                pass
        except StreamingQueryException:
            pass  # stop() reports the failed query's exception
        except (Py4JError, ConnectionError) as err:
            # Under spark-submit, Ctrl-C and SIGTERM reach the JVM, which then stops
            # Spark itself (the checkpoints stay consistent) and drops the gateway.
            if self._stop_requested:
                self.status.report(State.STOPPED, final=True)
                return 0
            log.error("lost the Spark JVM: %s", err)
            self.status.report(State.FAILED, final=True,
                               last_error=f"lost the Spark JVM: {one_line(err)}")
            return 1
        return self.stop()

    def stop(self) -> int:
        """Stop both queries and write the final state: 0 when both were still running,
        1 when one had failed. A batch cut short by stopping is not committed, so the
        next start runs it again (checkpoints stay consistent)."""
        errors = self._stop_queries()
        if not errors:
            self.status.report(State.STOPPED, final=True)
            log.info("stopped both queries")
            return 0
        # The first line names the error; Spark has logged the whole of it, plan and all.
        log.error("a query failed: %s", one_line(errors[0]))
        return self._failed(errors[0])

    def _failed(self, error: BaseException) -> int:
        """Report a failure; its exit code. Errors of the checkpoint itself get advice and
        EXIT_CONFIG_ERROR, so the supervisor does not restart into the same error."""
        text = str(error)
        advice = None
        if "KAFKA_DATA_LOSS" in text:
            advice = (f"ticks this checkpoint expects are gone from {self.settings.input_topic} "
                      f"(topic re-created or retention passed)")
        elif any(code in text for code in STATE_MISMATCH_ERRORS):
            advice = "the checkpoint's state was written by another version of the aggregation"
        if advice:
            advice += (f"; to start over from the earliest offsets, move "
                       f"{self.settings.checkpoint_dir} and {self.settings.dlq_checkpoint_dir} "
                       f"away")
            log.error("%s", advice)
        self.status.report(State.FAILED, final=True, last_error=one_line(error))
        return EXIT_CONFIG_ERROR if advice else 1

    def _stop_queries(self) -> list[StreamingQueryException]:
        """Stop every query started; returns the errors of those that had failed."""
        errors = [query.exception() for query in self.queries if query.exception()]
        for query in self.queries:
            query.stop()
        self.spark.streams.removeListener(self.status)
        # After the queries: no batch can raise an alert or write the history any more.
        self.retention.stop()
        self.alerts.close()
        self.history.close()
        return errors

    # --- the queries -------------------------------------------------------------------

    def _parsed_source(self) -> DataFrame:
        source = (self.spark.readStream.format("kafka")
                  .options(**spark_options(self.settings))
                  .option("subscribe", self.settings.input_topic)
                  .option("startingOffsets", "earliest")
                  .option("maxOffsetsPerTrigger", str(self.settings.max_offsets_per_trigger))
                  .options(**KAFKA_SOURCE_OPTIONS)
                  # Ticks deleted before they were read (retention, topic re-created)
                  # stop the job with Spark's explanation instead of vanishing silently.
                  .option("failOnDataLoss", "true")
                  .load())
        return parse_records(source, self.settings.max_clock_skew)

    def _start_aggregates(self) -> StreamingQuery:
        aggregates = aggregate_windows(valid_ticks(self._parsed_source()), self.settings)
        return (aggregates.writeStream.queryName(self.aggregates_name)
                .outputMode("update")
                .foreachBatch(self._write_aggregates)
                .option("checkpointLocation", str(self.settings.checkpoint_dir))
                .trigger(processingTime=self.settings.trigger_interval.spark)
                .start())

    def _write_aggregates(self, batch: DataFrame, batch_id: int) -> None:
        """One micro-batch's changed windows and their candles -> OUTPUT_TOPIC and
        CANDLES_TOPIC, then the history store, then the alerts. Any error propagates and
        fails the query; the batch is re-run on restart and every write is idempotent per
        key. The records are few (symbols x open windows): collected in one Spark job and
        sent from the driver."""
        output, candles_topic = self.settings.output_topic, self.settings.candles_topic
        batch = batch.persist()
        try:
            collected = (aggregate_records(batch).withColumn("topic", F.lit(output))
                         .unionByName(candle_records(candles(batch))
                                      .withColumn("topic", F.lit(candles_topic)))
                         .select("topic", "key", "value").collect())
        finally:
            batch.unpersist()
        if not collected:
            return
        for topic in (output, candles_topic):
            send_confirmed(self.settings, topic, ((row.key, row.value.encode())
                                                  for row in collected if row.topic == topic))
        rows = [json.loads(row.value) for row in collected if row.topic == output]
        candle_rows = [json.loads(row.value) for row in collected if row.topic == candles_topic]
        self.history.upsert(rows)
        self.history.upsert_candles(candle_rows)
        self.alerts.check(rows)
        if self.symbols_seen is not None:
            self.symbols_seen({row["symbol"] for row in rows})
        self.status.count_emitted(len(rows))
        log.debug("batch %d: %d aggregates and %d candles written", batch_id, len(rows),
                  len(candle_rows))

    def _start_dead_letters(self) -> StreamingQuery:
        seconds = max(self.settings.trigger_interval.seconds, DEAD_LETTER_TRIGGER_SECONDS)
        rejected = rejected_records(self._parsed_source()).observe(
            DEAD_LETTER_METRIC, F.count(F.lit(1)).alias("rows"))
        return (dead_letter_records(rejected).writeStream.queryName(self.dead_letters_name)
                .format("kafka").options(**spark_options(self.settings))
                .option("topic", self.settings.dlq_topic)
                .option("checkpointLocation", str(self.settings.dlq_checkpoint_dir))
                .outputMode("append")
                .trigger(processingTime=f"{round(1000 * seconds)} milliseconds")
                .start())


class StatusReporter(StreamingQueryListener):
    """Keeps RUN_DIR/spark.json current: Spark calls it after every micro-batch."""

    def __init__(self, settings: Settings, aggregates_name: str, dead_letters_name: str):
        self.run_dir = settings.run_dir
        self.aggregates_name = aggregates_name
        self.dead_letters_name = dead_letters_name
        self._lock = threading.Lock()
        self._finished = False
        self._aggregates_id = None
        self._status = SparkStatus(input_topic=settings.input_topic,
                                   output_topic=settings.output_topic,
                                   dlq_topic=settings.dlq_topic)

    def report(self, state: State, *, final: bool = False, **fields: Any) -> None:
        with self._lock:
            self._status = dataclasses.replace(self._status, state=state, **fields)
            self._write()
            self._finished = self._finished or final

    def snapshot(self) -> SparkStatus:
        """The status as it is now (a copy: the listener goes on changing its own)."""
        with self._lock:
            return dataclasses.replace(self._status)

    def report_backfill(self, progress: BackfillProgress) -> None:
        """The backfill's progress, from its thread (a copy: it goes on changing its own)."""
        with self._lock:
            self._status.backfill = dataclasses.replace(progress)
            self._write()

    def count_emitted(self, rows: int) -> None:
        with self._lock:
            self._status.emitted_rows += rows

    def onQueryStarted(self, event: Any) -> None:
        if event.name == self.aggregates_name:
            self._aggregates_id = event.id

    def onQueryIdle(self, event: Any) -> None:
        """No new ticks: the query is up all the same (after a restart, before the first
        batch) and the status stays fresh."""
        if event.id == self._aggregates_id:
            self.report(State.ACTIVE, query_id=str(event.id))

    def onQueryProgress(self, event: Any) -> None:
        progress = event.progress
        with self._lock:
            if progress.name == self.dead_letters_name:
                metric = progress.observedMetrics.get(DEAD_LETTER_METRIC)
                self._status.dlq_rows += metric.rows if metric else 0
            elif progress.name == self.aggregates_name:
                self._status = dataclasses.replace(self._status, state=State.ACTIVE,
                                                   **aggregates_progress(progress))
                self._status.late_rows += sum(operator.numRowsDroppedByWatermark
                                              for operator in progress.stateOperators)
            else:
                return
            self._write()

    def _write(self) -> None:
        """Caller holds the lock; after the final state, late progress events change
        nothing on disk."""
        if not self._finished:
            self._status.write(self.run_dir)

    def onQueryTerminated(self, event: Any) -> None:
        """The job's main thread reports the end (it knows whether it asked for it)."""


def aggregates_progress(progress: Any) -> dict[str, Any]:
    """Status fields from one progress report of the aggregates query."""
    source = progress.sources[0] if progress.sources else None
    return {
        "query_id": str(progress.id),
        "batch_id": progress.batchId,
        "last_batch_at": format_time(parse_time(progress.timestamp)),
        "batch_duration_ms": progress.durationMs.get("triggerExecution"),
        "input_rows": progress.numInputRows,
        "input_rows_per_second": progress.inputRowsPerSecond,
        "processed_rows_per_second": progress.processedRowsPerSecond,
        "backlog": kafka_backlog(source.endOffset, source.latestOffset) if source else None,
        "state_rows": sum(operator.numRowsTotal for operator in progress.stateOperators),
        "watermark": progress.eventTime.get("watermark"),
    }


def kafka_backlog(end_offset: str | None, latest_offset: str | None) -> int | None:
    """Records on the topic not yet read, or None when unknown: the Kafka source
    reports offsets as JSON `{"topic": {"partition": offset}}`, and as "None" (not
    JSON) in the first batch after a restart."""
    try:
        return max(0, total_offset(latest_offset) - total_offset(end_offset))
    except (TypeError, ValueError, AttributeError):
        return None


def total_offset(offsets: str | None) -> int:
    """The sum over all partitions of a Kafka source offset (JSON, as progress has it)."""
    return sum(sum(partitions.values()) for partitions in json.loads(offsets).values())
