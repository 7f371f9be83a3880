"""Run the embedded Kafka broker (or KAFKA_BROKERS-node cluster) in the foreground.

    python3 src/kafka_server.py          # what `./start.sh kafka` runs in the background

Ctrl-C or SIGTERM stops the broker(s) cleanly. Data stays in KAFKA_DATA_DIR.
"""

import logging
import signal
import sys
import threading

from crypto_pipeline import logs
from crypto_pipeline.embedded_kafka import EmbeddedKafka, KafkaNotInstalled, listener_host
from crypto_pipeline.paths import LOG_DIR
from crypto_pipeline.settings import exit_config_error, load_or_exit

log = logging.getLogger("kafka_server")


def main() -> int:
    settings = load_or_exit()
    logs.configure(settings.log_level)
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")
    try:
        kafka = EmbeddedKafka(settings.kafka_data_dir, LOG_DIR, port=int(port),
                              nodes=settings.kafka_brokers, host=listener_host(host),
                              heap=settings.kafka_heap)
    except KafkaNotInstalled as err:
        exit_config_error(str(err))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        kafka.start()
        log.info("Kafka ready at %s (data in %s)", kafka.bootstrap_servers,
                 settings.kafka_data_dir)
        while not stop.wait(1.0):
            dead = [n for n in kafka.nodes if not n.running]
            if dead:
                log.error("Kafka node %d exited (code %s); see %s", dead[0].node_id,
                          dead[0].process.returncode, dead[0].log_file)
                return 1
        log.info("stopping Kafka")
        return 0
    except RuntimeError as err:
        log.error("%s", err)
        return 1
    finally:
        kafka.stop()


if __name__ == "__main__":
    sys.exit(main())
