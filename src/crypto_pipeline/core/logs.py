"""One logging set-up for every entry point: timestamped lines, one named logger per module."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format=FORMAT, force=True)
    # kafka-python and librdkafka log every reconnect attempt at WARNING/ERROR; the
    # pipeline reports broker outages itself, once, in words a user can act on.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
    # py4j logs every call between Python and the JVM at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)
