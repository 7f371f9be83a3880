"""Binance prices (or a replay, or a simulation: PRICE_SOURCE) into Kafka's INPUT_TOPIC.

    python3 src/api_producer.py          # what `./start.sh producer` runs in the background

Polls every POLL_INTERVAL_SECONDS for every symbol of SYMBOLS; progress goes to the log
once a minute and to RUN_DIR/producer.json after every poll. Ctrl-C or SIGTERM stops
polling, delivers what was accepted and exits 0.
"""

import signal
import sys
import threading

from crypto_pipeline import logs
from crypto_pipeline.binance_rest import UnknownSymbolError
from crypto_pipeline.price_sources import ReplayFileError
from crypto_pipeline.producer_app import run_producer
from crypto_pipeline.settings import SettingsError, exit_config_error, load_or_exit


def main() -> int:
    settings = load_or_exit()
    logs.configure(settings.log_level)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        return run_producer(settings, stop)
    except (SettingsError, UnknownSymbolError, ReplayFileError) as err:
        exit_config_error(str(err))


if __name__ == "__main__":
    sys.exit(main())
