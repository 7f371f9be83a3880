"""Binance prices (or a replay, or a simulation: PRICE_SOURCE) into Kafka's INPUT_TOPIC.

    python3 src/api_producer.py          # what `./start.sh producer` runs in the background

Polls every POLL_INTERVAL_SECONDS for every symbol of SYMBOLS; progress goes to the log
once a minute and to RUN_DIR/producer.json after every poll. Ctrl-C or SIGTERM stops
polling, delivers what was accepted and exits 0.
"""

import sys

from crypto_pipeline.producer.app import main

if __name__ == "__main__":
    sys.exit(main())
