"""How every component connects to Kafka: one client configuration (in the dialect of each
client library: kafka-python, librdkafka, Spark), one readiness check."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from crypto_pipeline.core.errors import one_line
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.waiting import wait_until

log = logging.getLogger(__name__)

READINESS_TOPIC = "_crypto_pipeline_ready"
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


def client_config(settings: Settings) -> dict[str, Any]:
    """kafka-python keyword arguments shared by producers, consumers and admin clients."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=settings.kafka_sasl_password)
    if settings.kafka_ssl_cafile:
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return config


def librdkafka_config(settings: Settings) -> dict[str, Any]:
    """The same connection for librdkafka (confluent-kafka), the producer's client."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        # Java's partitioner (and kafka-python's): a symbol lands in the partition any
        # other client computes for it, so the producer can find its own last records.
        "partitioner": "murmur2_random",
        # librdkafka's own lines (each failed connection attempt) go to this logger, which
        # core.logs keeps quiet: the pipeline reports an outage once, in words.
        "logger": LIBRDKAFKA_LOG,
    }
    if settings.kafka_sasl_mechanism:
        config.update({"sasl.mechanisms": settings.kafka_sasl_mechanism,
                       "sasl.username": settings.kafka_sasl_username,
                       "sasl.password": settings.kafka_sasl_password})
    if settings.kafka_ssl_cafile:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    return config


def java_client_properties(settings: Settings) -> dict[str, str]:
    """The same connection for Kafka's Java clients: Spark's Kafka source and sink, Kafka's
    own command-line tools (scripts/kafka.sh)."""
    properties = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        module = ("org.apache.kafka.common.security.plain.PlainLoginModule"
                  if settings.kafka_sasl_mechanism == "PLAIN"
                  else "org.apache.kafka.common.security.scram.ScramLoginModule")
        username = settings.kafka_sasl_username.replace('"', '\\"')
        password = settings.kafka_sasl_password.replace('"', '\\"')
        properties["sasl.mechanism"] = settings.kafka_sasl_mechanism
        properties["sasl.jaas.config"] = (
            f'{module} required username="{username}" password="{password}";')
    if settings.kafka_ssl_cafile:
        properties["ssl.truststore.type"] = "PEM"
        properties["ssl.truststore.location"] = str(settings.kafka_ssl_cafile)
    return properties


def spark_options(settings: Settings) -> dict[str, str]:
    """The Java client properties as options of Spark's Kafka source and sink."""
    return {f"kafka.{key}": value for key, value in java_client_properties(settings).items()}


def properties_file_text(properties: dict[str, str]) -> str:
    """A Java .properties file of `properties` (backslashes and line breaks escaped, as
    java.util.Properties reads them back)."""
    def escaped(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")

    return "".join(f"{escaped(key)}={escaped(value)}\n" for key, value in properties.items())


def round_trip(config: dict[str, Any], timeout: float = 5.0) -> None:
    """Produce one record and read it back; raises if the cluster cannot do that in time."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    marker = uuid.uuid4().hex.encode()
    budget_ms = int(timeout * 1000)
    producer = KafkaProducer(acks="all", request_timeout_ms=budget_ms, max_block_ms=budget_ms,
                             **config)
    try:
        sent = producer.send(READINESS_TOPIC, marker, partition=0).get(timeout=timeout)
    finally:
        producer.close(timeout=1)
    consumer = KafkaConsumer(request_timeout_ms=max(budget_ms, 1000) + 1000, **config)
    try:
        partition = TopicPartition(READINESS_TOPIC, 0)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                if any(record.value == marker for record in records):
                    return
        raise TimeoutError("produced a record but could not read it back")
    finally:
        consumer.close()


def wait_until_ready(config: dict[str, Any], timeout: float) -> None:
    """Poll `round_trip` until it succeeds; WaitTimeout after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    failures: list[Exception] = []

    def ready() -> bool:
        try:
            round_trip(config, timeout=max(1.0, min(5.0, deadline - time.monotonic())))
            return True
        except Exception as err:  # noqa: BLE001 - any failure means "not ready yet"
            failures.append(err)
            return False

    wait_until(ready, timeout, f"produce/consume round trip with Kafka at "
               f"{','.join(config['bootstrap_servers'])}", interval=0.25,
               reason=lambda: one_line(failures[-1], named=True) if failures else None)
