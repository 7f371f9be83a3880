"""The pipeline's topics, created idempotently with the policies each needs."""

from __future__ import annotations

import logging
from typing import Any

from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.clients import client_config

log = logging.getLogger(__name__)


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> Kafka topic config."""
    replicated = {"min.insync.replicas": "2"} if settings.replication_factor >= 3 else {}
    # Aggregates, candles and alerts are keyed state: compaction keeps the latest value per key,
    # so a restarted dashboard rebuilds from the topic; delete drops windows long past.
    # Only closed segments are compacted: hourly segments let a restarted consumer read
    # about one value per key instead of every update of the last week.
    keyed_state = {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(int(settings.aggregates_retention.seconds * 1000)),
        "segment.ms": str(3600 * 1000),
        "min.cleanable.dirty.ratio": "0.1",
        **replicated,
    }
    return {
        settings.input_topic: dict(replicated),
        settings.output_topic: dict(keyed_state),
        settings.candles_topic: dict(keyed_state),
        settings.dlq_topic: dict(replicated),
        settings.alerts_topic: dict(keyed_state),
    }


def ensure_topics(settings: Settings, admin: Any = None) -> list[str]:
    """Create the missing topics; returns the names created (none when all exist)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    own_admin = admin is None
    admin = admin or KafkaAdminClient(**client_config(settings))
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=settings.topic_partitions,
                     replication_factor=settings.replication_factor, topic_configs=configs)
            for name, configs in topic_configs(settings).items() if name not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                # Another process created one in between; the rest were created.
                pass
            for topic in wanted:
                log.info("created topic %s (%d partitions, replication %d, %s)", topic.name,
                         topic.num_partitions, topic.replication_factor,
                         topic.topic_configs or "defaults")
        return [topic.name for topic in wanted]
    finally:
        if own_admin:
            admin.close()
