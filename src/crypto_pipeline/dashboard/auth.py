"""The password page: shown when DASHBOARD_PASSWORD is set, skipped when it is not."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import streamlit as st

from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.settings import Settings

log = logging.getLogger(__name__)

_SIGNED_IN = "dashboard_signed_in"
_FAILURES = "dashboard_failed_logins"
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0


def password_matches(entered: str, expected: str) -> bool:
    """Constant-time comparison; digests first so the length of the password leaks neither."""
    return hmac.compare_digest(hashlib.sha256(entered.encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


def failure_delay(failures: int) -> float:
    """Seconds the answer to the `failures`-th wrong password is held back: doubling."""
    return backoff_seconds(failures, base=FIRST_DELAY_SECONDS, cap=MAX_DELAY_SECONDS,
                           jitter=False)


def signed_in(settings: Settings) -> bool:
    """True when the visitor may see the dashboard; otherwise draws the password page."""
    if not settings.dashboard_password or st.session_state.get(_SIGNED_IN):
        return True
    st.title("Crypto prices")
    with st.form("login"):
        entered = st.text_input("Password", type="password", key="dashboard_password_input")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return False
    if password_matches(entered, settings.dashboard_password):
        st.session_state[_SIGNED_IN] = True
        st.session_state.pop(_FAILURES, None)
        st.rerun()
    failures = st.session_state.get(_FAILURES, 0) + 1
    st.session_state[_FAILURES] = failures
    log.warning("wrong dashboard password (failed try %d in this session)", failures)
    # Each wrong try in a session waits longer before the answer: guessing gets slow.
    time.sleep(failure_delay(failures))
    st.error("Wrong password.")
    return False
