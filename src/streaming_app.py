"""The Spark job: ticks on INPUT_TOPIC -> sliding-window statistics on OUTPUT_TOPIC, after
a backfill of the last BACKFILL_HOURS from Binance's klines into the history store.

    python3 src/streaming_app.py
    spark-submit --jars "$(ls .jvm/spark-kafka-*/*.jar | paste -sd,)" src/streaming_app.py
    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:<pyspark version> \\
        src/streaming_app.py

Settings come from the environment and .env (see .env.example). Ctrl-C or SIGTERM stops
both queries cleanly (exit 0); a query that fails ends the process with exit 1.
"""

import contextlib
import logging
import signal
import sys

from kafka.errors import KafkaError
from py4j.protocol import Py4JError

from crypto_pipeline import logs
from crypto_pipeline.backfill import Backfill
from crypto_pipeline.settings import load_or_exit
from crypto_pipeline.spark_session import build_session
from crypto_pipeline.status import write_status
from crypto_pipeline.streaming_job import COMPONENT, StreamingJob, one_line
from crypto_pipeline.topics import ensure_topics

log = logging.getLogger("streaming_app")

APP_NAME = "crypto-aggregates"


def main() -> int:
    settings = load_or_exit()
    logs.configure(settings.log_level)
    # py4j logs every call from the JVM (each batch, each listener event) at INFO, and a
    # batch cut short by a stop as an ERROR; the job logs a query's real failure itself.
    logging.getLogger("py4j").setLevel(logging.CRITICAL)
    try:
        ensure_topics(settings)
    except KafkaError as err:
        log.error("cannot create the topics on %s: %s", settings.kafka_bootstrap_servers,
                  one_line(err))
        write_status(settings.run_dir, COMPONENT, {"state": "failed",
                                                   "last_error": one_line(err)})
        return 1
    spark = build_session(settings, APP_NAME)
    # Before the queries: the backfill ends where the live range begins.
    Backfill(spark, settings).run()
    job = StreamingJob(spark, settings)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: job.request_stop())
    try:
        return job.run()
    finally:
        # Under spark-submit the JVM may have shut down first (it got the signal too).
        with contextlib.suppress(Py4JError, ConnectionError):
            spark.stop()


if __name__ == "__main__":
    sys.exit(main())
