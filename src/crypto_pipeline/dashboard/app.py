"""The dashboard's script body: what `streamlit run src/dashboard.py` runs on every rerun."""

from __future__ import annotations

import logging

import streamlit as st

from crypto_pipeline.core import logs, metrics
from crypto_pipeline.core.metrics import MetricsServer
from crypto_pipeline.core.settings import Settings, SettingsError
from crypto_pipeline.dashboard import page
from crypto_pipeline.dashboard.metrics import DashboardCollector

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def _configure_logging(level: str) -> None:
    """Once per server process, not on every rerun."""
    logs.configure(level)


@st.cache_resource(show_spinner=False)
def server_collector() -> DashboardCollector:
    """The one collector of this server process: every session's page feeds it."""
    return DashboardCollector()


def _close(server: MetricsServer | None) -> None:
    if server is not None:
        server.close()


@st.cache_resource(show_spinner=False, max_entries=1, on_release=_close)
def metrics_server(port: int, address: str) -> MetricsServer | None:
    """/metrics, started once per server process, not per rerun or session (a changed
    port or address replaces it)."""
    return metrics.serve(port, address, server_collector())


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
    metrics_server(settings.dashboard_metrics_port, settings.metrics_address)
    page.run(settings, server_collector())
