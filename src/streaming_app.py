"""The Spark job: ticks on INPUT_TOPIC -> sliding-window statistics on OUTPUT_TOPIC, after
a backfill of the last BACKFILL_HOURS from Binance's klines into the history store.

    python3 src/streaming_app.py
    spark-submit --jars "$(ls .jvm/spark-kafka-*/*.jar | paste -sd,)" src/streaming_app.py
    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:<pyspark version> \\
        src/streaming_app.py

Settings come from the environment and .env (see .env.example). Ctrl-C or SIGTERM stops
both queries cleanly (exit 0); a query that fails ends the process with exit 1.
"""

import sys

from crypto_pipeline.streaming.app import main

if __name__ == "__main__":
    sys.exit(main())
