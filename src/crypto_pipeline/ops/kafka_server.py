"""The `kafka` component's process: the embedded broker (or KAFKA_BROKERS-node cluster)
in the foreground until SIGINT/SIGTERM, with its data in KAFKA_DATA_DIR."""

from __future__ import annotations

import logging
import signal
import threading

from crypto_pipeline.core.addresses import bind_host
from crypto_pipeline.core.paths import LOG_DIR
from crypto_pipeline.core.settings import Settings, exit_config_error
from crypto_pipeline.kafka_io.embedded import EmbeddedKafka, KafkaNotInstalled

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    first = settings.kafka_servers[0]
    try:
        kafka = EmbeddedKafka(settings.kafka_data_dir, LOG_DIR, port=first.port,
                              nodes=settings.kafka_brokers, host=bind_host(first.host),
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
