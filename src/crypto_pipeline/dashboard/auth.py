"""The password page (when DASHBOARD_PASSWORD is set) and the server's record of sign-ins.

Wrong passwords are counted by the server process per client address (`Logins`, one per
server through st.cache_resource), not per browser session: a script that opens a new
session for every guess meets the same count. The answer to each wrong password is held
back twice as long as the one before (0.5 s, 1 s, 2 s ...); after
DASHBOARD_LOGIN_MAX_FAILURES in a row the address is locked out for
DASHBOARD_LOGIN_LOCKOUT, and no password from it is checked meanwhile. Until an answer
has been given, further tries from that address are refused unchecked too, so guessing in
parallel sessions gains nothing. A success clears its own address's count only. A sign-in
lasts DASHBOARD_SESSION_HOURS.

The address is the connection's peer as Streamlit sees it (`st.context.ip_address`);
loopback connections, and a test without a connection, all count as "localhost".
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from crypto_pipeline.core import passwords
from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.settings import Settings

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0
LOCALHOST = "localhost"


def failure_delay(failures: int) -> float:
    """Seconds the answer to the `failures`-th wrong password in a row is held back."""
    return backoff_seconds(failures, base=FIRST_DELAY_SECONDS, cap=MAX_DELAY_SECONDS,
                           jitter=False)


@dataclass
class _Address:
    failures: int = 0  # wrong passwords in a row
    last_failure: float = 0.0
    not_before: float = 0.0  # tries before this moment are refused unchecked
    locked_until: float = 0.0


@dataclass(frozen=True)
class Verdict:
    signed_in: bool
    hold_seconds: float = 0.0  # a wrong password: wait this long before answering
    refused_seconds: float = 0.0  # refused unchecked: this long until a try is checked
    locked: bool = False  # locked out (by this try, or before it)


class Logins:
    """Failed sign-ins by address and the signed-in sessions of one server process.
    `clock` is monotonic (delays, lock-outs); `wall_clock` dates the sign-ins."""

    def __init__(self, max_failures: int, lockout_seconds: float, session_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self.session_seconds = session_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._addresses: dict[str, _Address] = {}
        self._sessions: dict[str, float] = {}  # session id -> signed in at (wall clock)
        self.failed_total = 0
        self.refused_total = 0
        self.lockouts_total = 0

    # --- tries ----------------------------------------------------------------------------

    def attempt(self, address: str, entered: str, expected: str) -> Verdict:
        """Check one try from `address`, unless the address must wait."""
        with self._lock:
            now = self._clock()
            self._forget(now)
            entry = self._addresses.setdefault(address, _Address())
            wait = max(entry.locked_until, entry.not_before) - now
            if wait > 0:
                self.refused_total += 1
                locked = entry.locked_until > now
                log.warning("dashboard sign-in from %s refused unchecked: %s for %.1f s more",
                            address, "locked out" if locked else "the answer to its last try "
                            "is still held back", wait)
                return Verdict(False, refused_seconds=wait, locked=locked)
            # Held while the password is checked and the answer is held back.
            entry.not_before = now + failure_delay(entry.failures + 1)
        correct = passwords.matches(entered, expected)
        with self._lock:
            now = self._clock()
            if correct:
                self._addresses.pop(address, None)
                return Verdict(True)
            entry = self._addresses.setdefault(address, entry)
            entry.failures += 1
            entry.last_failure = now
            self.failed_total += 1
            log.warning("wrong dashboard password from %s (%d in a row)", address,
                        entry.failures)
            if entry.failures >= self.max_failures:
                entry.locked_until = entry.not_before = now + self.lockout_seconds
                self.lockouts_total += 1
                log.warning("locked out %s for %.0f s after %d wrong dashboard passwords in "
                            "a row", address, self.lockout_seconds, entry.failures)
                return Verdict(False, refused_seconds=self.lockout_seconds, locked=True)
            hold = failure_delay(entry.failures)
            entry.not_before = now + hold
            return Verdict(False, hold_seconds=hold)

    def locked_out(self) -> int:
        """Addresses locked out now."""
        with self._lock:
            now = self._clock()
            return sum(entry.locked_until > now for entry in self._addresses.values())

    def _forget(self, now: float) -> None:
        """Drop the addresses whose count has run out: a lock-out's end, or a lock-out's
        length without a failure, clears it (and keeps the table small). Caller locks."""
        for address, entry in list(self._addresses.items()):
            if max(entry.not_before, entry.last_failure + self.lockout_seconds) <= now:
                del self._addresses[address]

    # --- sessions -------------------------------------------------------------------------

    def sign_in(self, session_id: str) -> None:
        with self._lock:
            self._prune_sessions()
            self._sessions[session_id] = self._wall_clock()

    def session(self, session_id: str) -> str:
        """"valid", "expired" (signed in longer ago than a session lasts) or "none"."""
        with self._lock:
            signed_in_at = self._sessions.get(session_id)
        if signed_in_at is None:
            return "none"
        return "valid" if self._wall_clock() - signed_in_at < self.session_seconds \
            else "expired"

    def signed_in_sessions(self) -> int:
        """Sessions signed in, still connected and not expired."""
        with self._lock:
            self._prune_sessions()
            return len(self._sessions)

    def _prune_sessions(self) -> None:
        """Forget expired and disconnected sessions. Caller locks."""
        now = self._wall_clock()
        for session_id, signed_in_at in list(self._sessions.items()):
            if now - signed_in_at >= self.session_seconds or not _connected(session_id):
                del self._sessions[session_id]


def _connected(session_id: str) -> bool:
    # Without a runtime, or with AppTest's stand-in, there is no connection to lose.
    return not runtime.exists() or \
        runtime.get_instance().is_active_session(session_id) is not False


@st.cache_resource(show_spinner=False, max_entries=1)
def server_logins(max_failures: int, lockout_seconds: float, session_seconds: float) -> Logins:
    """The one `Logins` of this server process (other settings start a new one)."""
    return Logins(max_failures, lockout_seconds, session_seconds)


def logins_for(settings: Settings) -> Logins:
    return server_logins(settings.dashboard_login_max_failures,
                         settings.dashboard_login_lockout.seconds,
                         settings.dashboard_session_hours * 3600)


def client_address() -> str:
    address = st.context.ip_address
    # Streamlit's AppTest stands in a mock for the connection; only a text is an address.
    return address if isinstance(address, str) and address else LOCALHOST


def _session_id() -> str:
    return get_script_run_ctx().session_id


def signed_in(settings: Settings) -> bool:
    """True when the visitor may see the dashboard; otherwise draws the password page."""
    if not settings.dashboard_password:
        return True
    logins = logins_for(settings)
    state = logins.session(_session_id())
    if state == "valid":
        return True
    st.title("Crypto prices")
    if state == "expired":
        st.info("Your session has expired: sign in again.")
    with st.form("login"):
        entered = st.text_input("Password", type="password", key="dashboard_password_input")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return False
    verdict = logins.attempt(client_address(), entered, settings.dashboard_password)
    if verdict.signed_in:
        logins.sign_in(_session_id())
        st.rerun()
    # The answer is held back, so a guesser that waits for it is slowed however many
    # sessions it opens; one that does not wait is refused unchecked meanwhile.
    time.sleep(verdict.hold_seconds)
    if verdict.locked:
        st.error(f"Too many wrong passwords: sign-in from your address is locked for "
                 f"{_minutes(verdict.refused_seconds)}.")
    elif verdict.refused_seconds:
        st.error(f"Too fast: wait {math.ceil(verdict.refused_seconds)} s before trying "
                 f"again.")
    else:
        st.error("Wrong password.")
    return False


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def session_expired(settings: Settings) -> bool:
    """For the live panels, which rerun on a timer: whether this session's sign-in ran out
    (the page then asks for the password again)."""
    return bool(settings.dashboard_password) and \
        logins_for(settings).session(_session_id()) != "valid"
