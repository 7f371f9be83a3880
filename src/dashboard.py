"""The dashboard: live window aggregates from Kafka, in the browser.

    streamlit run src/dashboard.py          (or ./start.sh dashboard)

Listens on 127.0.0.1:8501 (.streamlit/config.toml); --server.port and --server.address
override that. Settings (KAFKA_BOOTSTRAP_SERVERS, OUTPUT_TOPIC, DASHBOARD_PASSWORD, ...)
come from the environment and .env, as for every component.
"""

from crypto_pipeline.dashboard.app import main

if __name__ == "__main__":
    main()
