"""The dashboard: live window aggregates from Kafka, in the browser.

    streamlit run src/dashboard.py          (or ./start.sh dashboard)

Listens on 127.0.0.1:8501 (.streamlit/config.toml); --server.port and --server.address
override that. Settings (KAFKA_BOOTSTRAP_SERVERS, OUTPUT_TOPIC, DASHBOARD_PASSWORD, ...)
come from the environment and .env, as for every component.
"""

import logging

import streamlit as st

from crypto_pipeline import logs
from crypto_pipeline.dashboard import page
from crypto_pipeline.settings import Settings, SettingsError

log = logging.getLogger("dashboard")


@st.cache_resource(show_spinner=False)
def _configure_logging(level: str) -> None:
    """Once per server process, not on every rerun."""
    logs.configure(level)


def main() -> None:
    st.set_page_config(page_title="Crypto prices", page_icon=":chart_with_upwards_trend:",
                       layout="wide")
    # Not load_or_exit(): ending the process would leave a blank page; the one line
    # naming the bad setting goes on the page instead.
    try:
        settings = Settings.load()
    except SettingsError as err:
        log.error("bad setting: %s", err)
        st.error(f"The dashboard cannot start: {err}. Fix it in .env or the environment, "
                 f"then reload this page.")
        return
    _configure_logging(settings.log_level)
    page.run(settings)


if __name__ == "__main__":
    main()
