"""The producer process: price sources -> the Kafka tick sink (src/api_producer.py)."""
