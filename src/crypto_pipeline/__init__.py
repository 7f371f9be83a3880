"""Binance prices -> Kafka -> Spark Structured Streaming -> Streamlit: the shared library."""
