"""The dashboard's script body: what `streamlit run src/dashboard.py` runs on every rerun."""

from __future__ import annotations

import logging

import streamlit as st

from crypto_pipeline.core import logs
from crypto_pipeline.core.settings import Settings, SettingsError
from crypto_pipeline.dashboard import page

log = logging.getLogger(__name__)


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
