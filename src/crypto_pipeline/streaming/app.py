"""The Spark job's process: the history database, topics, the session, then both queries
until a signal or a failure, with the backfill in a thread beside them (what
`src/streaming_app.py` runs).

A history database that cannot be used stops the process with one line naming
HISTORY_URL and EXIT_CONFIG_ERROR (not restarted); one that does not answer yet (a
server restarting, after it failed the previous run's batch) is waited for first."""

from __future__ import annotations

import contextlib
import logging
import signal

from kafka.errors import KafkaError
from py4j.protocol import Py4JError

from crypto_pipeline.core import logs, metrics
from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.history import HistoryUnavailable, open_history, ready_history
from crypto_pipeline.core.settings import exit_config_error, load_or_exit
from crypto_pipeline.core.status import SparkStatus, State
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.backfill import Backfill, BackgroundBackfill
from crypto_pipeline.streaming.job import StreamingJob
from crypto_pipeline.streaming.metrics import SparkCollector
from crypto_pipeline.streaming.session import build_session

log = logging.getLogger(__name__)

APP_NAME = "crypto-aggregates"
# The backfill's Spark jobs share the cores with the micro-batches instead of queueing
# them behind a whole chunk of history (backfill.py runs them in a pool of their own).
SESSION_CONF = {"spark.scheduler.mode": "FAIR"}


def main() -> int:
    settings = load_or_exit()
    logs.configure(settings.log_level)
    # py4j logs every call from the JVM (each batch, each listener event) at INFO, and a
    # batch cut short by a stop as an ERROR; the job logs a query's real failure itself.
    logging.getLogger("py4j").setLevel(logging.CRITICAL)
    try:
        history = ready_history(settings.history_url, settings.history_connect_timeout.seconds)
    except HistoryUnavailable as err:
        SparkStatus(state=State.FAILED, last_error=str(err)).write(settings.run_dir)
        exit_config_error(str(err))
    try:
        ensure_topics(settings)
    except KafkaError as err:
        log.error("cannot create the topics on %s: %s", settings.kafka_bootstrap_servers,
                  one_line(err))
        SparkStatus(state=State.FAILED, last_error=one_line(err)).write(settings.run_dir)
        return 1
    spark = build_session(settings, APP_NAME, **SESSION_CONF)
    job = StreamingJob(spark, settings, history)
    # Its own store: the backfill writes from its thread while the batches write theirs.
    backfill = BackgroundBackfill(Backfill(spark, settings,
                                           history=open_history(settings.history_url),
                                           report=job.status.report_backfill))
    job.symbols_seen = backfill.seen
    server = metrics.serve(settings.spark_metrics_port, settings.metrics_address,
                           SparkCollector(job.status.snapshot))
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: job.request_stop())
        # It ends each symbol's history at the minute it starts, where the live range begins.
        backfill.start()
        return job.run()
    finally:
        backfill.stop()
        backfill.backfill.history.close()
        if server:
            server.close()
        # Under spark-submit the JVM may have shut down first (it got the signal too).
        with contextlib.suppress(Py4JError, ConnectionError):
            spark.stop()
