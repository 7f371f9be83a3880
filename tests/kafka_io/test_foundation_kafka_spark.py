"""The foundation against real services: the embedded broker, topics, the Spark connector."""

import json
import uuid

import pytest

from crypto_pipeline.kafka_io.clients import client_config, round_trip, spark_options
from crypto_pipeline.kafka_io.topics import ensure_topics, topic_configs
from support.helpers import read_topic, wait_for

pytestmark = pytest.mark.integration


def test_produce_consume_round_trip(kafka, settings):
    from kafka import KafkaProducer

    round_trip(client_config(settings), timeout=10)
    producer = KafkaProducer(acks="all", **client_config(settings))
    for i in range(10):
        producer.send(settings.input_topic, key=b"BTCUSDT", value=f"tick {i}".encode())
    producer.flush()
    producer.close()
    records = read_topic(kafka, settings.input_topic, min_records=10, idle=0.2)
    assert [r.value for r in records] == [f"tick {i}".encode() for i in range(10)]
    assert {r.key for r in records} == {b"BTCUSDT"}


def test_topic_creation_is_idempotent_and_compacts_aggregates(settings):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    created = ensure_topics(settings)
    assert sorted(created) == sorted(
        [settings.input_topic, settings.output_topic, settings.dlq_topic, settings.alerts_topic,
         settings.candles_topic])
    assert ensure_topics(settings) == []

    admin = KafkaAdminClient(**client_config(settings))
    try:
        described = admin.describe_topics([settings.output_topic, settings.input_topic])
        assert all(len(t["partitions"]) == settings.topic_partitions for t in described)
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.output_topic)])
        values = {k: v["value"] for k, v in configs["topic"][settings.output_topic].items()}
    finally:
        admin.close()
    assert values["cleanup.policy"] == "compact,delete"
    assert values["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert topic_configs(settings)[settings.input_topic] == {}


def test_spark_reads_and_writes_kafka_with_the_local_connector(spark, kafka, settings, tmp_path):
    """Kafka source -> transform -> Kafka sink: the connector jars match pyspark."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**client_config(settings))
    sent = [{"n": i, "id": uuid.uuid4().hex} for i in range(20)]
    for message in sent:
        producer.send(settings.input_topic, json.dumps(message).encode())
    producer.flush()
    producer.close()

    options = spark_options(settings)
    source = (spark.readStream.format("kafka").options(**options)
              .option("subscribe", settings.input_topic)
              .option("startingOffsets", "earliest").load())
    query = (source.selectExpr("CAST(NULL AS STRING) AS key",
                               "upper(CAST(value AS STRING)) AS value")
             .writeStream.format("kafka").options(**options)
             .option("topic", settings.output_topic)
             .option("checkpointLocation", str(tmp_path / "ck"))
             .trigger(processingTime="500 milliseconds").start())
    try:
        def all_copied():
            assert query.exception() is None, query.exception()
            return len(read_topic(kafka, settings.output_topic, idle=0, timeout=5)) >= 20

        wait_for(all_copied, 120, "Spark to copy 20 records")
    finally:
        query.stop()
    copied = [r.value.decode() for r in read_topic(kafka, settings.output_topic, idle=0.2)]
    assert sorted(copied) == sorted(json.dumps(m).upper() for m in sent)


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    # 0xf8 encodes to "-" first: the storage tool would take such an id for an option.
    from crypto_pipeline.kafka_io import embedded as embedded_kafka

    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(16))])
    monkeypatch.setattr(embedded_kafka.uuid, "uuid4", lambda: next(drawn))
    assert embedded_kafka.random_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
