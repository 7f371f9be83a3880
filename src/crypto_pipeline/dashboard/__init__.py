"""The Streamlit dashboard: a feed that follows Kafka, a store, view models and the page."""
