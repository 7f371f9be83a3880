"""Kafka for every process: client configuration, the topics, confirmed keyed records, and
the embedded KRaft broker."""
