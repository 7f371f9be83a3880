"""The dashboard's login: wrong passwords counted by the server per client address, each
answer held back longer, a lock-out after DASHBOARD_LOGIN_MAX_FAILURES in a row, and
sessions that expire. Units with a fake clock here; the password page in AppTest and a
guessing script against the served dashboard further down."""

import logging
import re
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass

import pytest

from crypto_pipeline.core import passwords
from crypto_pipeline.dashboard.auth import FIRST_DELAY_SECONDS, Logins, failure_delay
from support.dashboard_support import offline_settings
from support.helpers import free_port

log = logging.getLogger(__name__)

PASSWORD = "s3cret"
LOCKOUT = 900.0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def logins(clock):
    return Logins(max_failures=4, lockout_seconds=LOCKOUT, session_seconds=3600,
                  clock=clock, wall_clock=clock)


def guess(logins, clock, address, password):
    """A guesser that waits for each answer (held back as the page holds it)."""
    verdict = logins.attempt(address, password, PASSWORD)
    clock.advance(verdict.hold_seconds)
    return verdict


def test_the_delay_doubles():
    assert [failure_delay(n) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_wrong_passwords_are_held_back_longer_then_the_address_is_locked_out(logins, clock):
    holds = [guess(logins, clock, "203.0.113.7", f"guess-{n}").hold_seconds for n in range(3)]
    assert holds == [0.5, 1.0, 2.0]
    locked = guess(logins, clock, "203.0.113.7", "guess-3")
    assert locked.locked and not locked.signed_in and locked.refused_seconds == LOCKOUT
    # Locked out: not even the right password is checked.
    refused = guess(logins, clock, "203.0.113.7", PASSWORD)
    assert refused.locked and not refused.signed_in and refused.refused_seconds == LOCKOUT
    assert (logins.failed_total, logins.lockouts_total, logins.refused_total) == (4, 1, 1)
    assert logins.locked_out() == 1
    # Another address is not affected.
    assert guess(logins, clock, "198.51.100.2", PASSWORD).signed_in
    clock.advance(LOCKOUT)
    assert logins.locked_out() == 0
    assert guess(logins, clock, "203.0.113.7", PASSWORD).signed_in


def test_a_success_clears_its_own_address_only(logins, clock):
    for address in ("203.0.113.7", "198.51.100.2"):
        guess(logins, clock, address, "wrong")
        guess(logins, clock, address, "wrong")
    assert guess(logins, clock, "203.0.113.7", PASSWORD).signed_in
    assert guess(logins, clock, "203.0.113.7", "wrong").hold_seconds == 0.5
    assert guess(logins, clock, "198.51.100.2", "wrong").hold_seconds == 2.0


def test_a_try_sent_before_the_last_answer_is_refused_unchecked(logins, clock):
    # Parallel sessions of one guesser: the second try comes while the first one's answer
    # is still held back.
    assert logins.attempt("203.0.113.7", "wrong", PASSWORD).hold_seconds == 0.5
    clock.advance(0.2)
    early = logins.attempt("203.0.113.7", PASSWORD, PASSWORD)
    assert not early.signed_in and not early.locked and early.refused_seconds == \
        pytest.approx(0.3)
    assert logins.failed_total == 1 and logins.refused_total == 1
    clock.advance(0.3)
    assert logins.attempt("203.0.113.7", PASSWORD, PASSWORD).signed_in


def test_a_quiet_lockout_length_forgets_the_failures(logins, clock):
    for _ in range(3):
        guess(logins, clock, "203.0.113.7", "wrong")
    clock.advance(LOCKOUT)
    assert guess(logins, clock, "203.0.113.7", "wrong").hold_seconds == 0.5


def test_a_sign_in_lasts_its_session_hours(logins, clock):
    assert logins.session("session-1") == "none"
    logins.sign_in("session-1")
    assert logins.session("session-1") == "valid" and logins.signed_in_sessions() == 1
    clock.advance(3599)
    assert logins.session("session-1") == "valid"
    clock.advance(1)
    assert logins.session("session-1") == "expired" and logins.signed_in_sessions() == 0


# --- a guessing script against the served dashboard ----------------------------------------

ANSWERS = re.compile("Wrong password|Too many wrong passwords|Too fast")


@dataclass
class Guess:
    password: str
    answer: str  # the error shown, or "signed in"
    seconds: float


def guesser(chromium, url: str):
    """One guess as a script makes it: a new browser session (nothing kept from the last),
    the password, then the answer. `address`: the client address a proxy in front of the
    dashboard would pass on (X-Forwarded-For; uvicorn believes it from loopback only)."""
    def guess(password: str, address: str | None = None) -> Guess:
        started = time.monotonic()
        context = chromium.new_context(
            extra_http_headers={"X-Forwarded-For": address} if address else None)
        try:
            page = context.new_page()
            page.goto(url)
            page.get_by_label("Password", exact=True).fill(password)
            page.get_by_role("button", name="Sign in").click()
            answer = page.get_by_text(ANSWERS).or_(page.locator(".st-key-freshness"))
            answer.first.wait_for(timeout=60_000)
            text = "signed in" if page.locator(".st-key-freshness").count() else \
                page.get_by_text(ANSWERS).first.inner_text()
            return Guess(password, text, time.monotonic() - started)
        finally:
            context.close()

    return guess


def per_minute(guesses: list[Guess]) -> float:
    return 60 * len(guesses) / sum(g.seconds for g in guesses)


@pytest.mark.integration
@pytest.mark.browser
def test_a_script_opening_a_session_per_guess_is_slowed_then_locked_out(serve, chromium,
                                                                        tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    settings = offline_settings(tmp_path, dashboard_password=passwords.hash_password(PASSWORD),
                                dashboard_metrics_port=free_port())
    served = serve(settings)
    guess = guesser(chromium, served.url)
    metrics_url = f"http://127.0.0.1:{settings.dashboard_metrics_port}/metrics"

    def scraped() -> dict[str, float]:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            text = response.read().decode()
        return {sample.name: sample.value for family in text_string_to_metric_families(text)
                for sample in family.samples}

    slowed = [guess(f"guess-{n}") for n in range(settings.dashboard_login_max_failures)]
    assert [g.answer for g in slowed[:-1]] == ["Wrong password."] * (len(slowed) - 1)
    assert slowed[-1].answer.startswith("Too many wrong passwords: sign-in from your "
                                        "address is locked for 15 min")
    # Each answer waited for its hold: 0.5 s, 1 s, 2 s, 4 s.
    for n, g in enumerate(slowed[:-1], start=1):
        assert g.seconds >= failure_delay(n), (n, g)

    locked = [guess(password) for password in ("guess-a", PASSWORD, "guess-b", PASSWORD)]
    assert all(g.answer.startswith("Too many wrong passwords") for g in locked), locked
    metrics = scraped()
    assert metrics["crypto_pipeline_dashboard_failed_logins_total"] == len(slowed)
    assert metrics["crypto_pipeline_dashboard_login_lockouts_total"] == 1
    assert metrics["crypto_pipeline_dashboard_refused_logins_total"] == len(locked)
    assert metrics["crypto_pipeline_dashboard_locked_out_addresses"] == 1

    # Another address signs in; the locked one stays locked.
    assert guess(PASSWORD, address="198.51.100.7").answer == "signed in"
    assert guess(PASSWORD).answer.startswith("Too many wrong passwords")
    assert scraped()["crypto_pipeline_dashboard_signed_in_sessions"] == 0, \
        "the signed-in session closed with its browser context"

    # Each failure and the lock-out are in the log, with time and address, not the password.
    logged = served.log_file.read_text()
    for line in ("WARNING crypto_pipeline.dashboard.auth: wrong dashboard password from "
                 "localhost (1 in a row)",
                 "WARNING crypto_pipeline.dashboard.auth: locked out localhost for 900 s "
                 "after 5 wrong dashboard passwords in a row"):
        assert re.search(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ {re.escape(line)}$", logged,
                         re.M), line
    assert not any(g.password in logged for g in slowed + locked)

    overhead = statistics.median(g.seconds - failure_delay(n)
                                 for n, g in enumerate(slowed[:-1], start=1))
    log.info("guesses checked per minute, one new session each: %.1f while slowed (%d "
             "guesses), 0 once locked out (%d tries in %.0f s, all refused unchecked, %.1f "
             "tries a minute); a session's own overhead %.2f s, so a guess always held "
             "0.5 s (the old per-session slowdown) would be %.1f a minute",
             per_minute(slowed), len(slowed), len(locked), sum(g.seconds for g in locked),
             per_minute(locked), overhead, 60 / (overhead + FIRST_DELAY_SECONDS))


@pytest.mark.integration
def test_the_dashboard_serves_https_with_the_certificate_settings(serve, tmp_path):
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-keyout", str(key), "-out", str(cert), "-days", "1",
                           "-subj", "/CN=127.0.0.1"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    settings = offline_settings(tmp_path, dashboard_ssl_cert_file=cert,
                                dashboard_ssl_key_file=key)
    url = serve(settings).url
    assert url.startswith("https://127.0.0.1:")
    trusted = ssl.create_default_context(cafile=str(cert))
    trusted.check_hostname = False  # the certificate names the address, not a host name
    with urllib.request.urlopen(f"{url}/_stcore/health", context=trusted, timeout=10) as page:
        assert page.read() == b"ok"
    with pytest.raises(OSError):
        urllib.request.urlopen(url.replace("https://", "http://") + "/_stcore/health",
                               timeout=10)
