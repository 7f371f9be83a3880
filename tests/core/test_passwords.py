"""DASHBOARD_PASSWORD as a salted hash: made by `pipelinectl.py hash-password`, checked in
constant time, refused at load when it cannot be used; a plain value keeps working."""

import base64
import hashlib
import subprocess
import sys

import pytest

from crypto_pipeline.core import passwords
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import Settings, SettingsError

CTL = PROJECT_ROOT / "src" / "pipelinectl.py"


@pytest.mark.parametrize("scheme", passwords.SCHEMES)
def test_a_hash_matches_its_password_only(scheme):
    stored = passwords.hash_password("s3cret", scheme)
    assert stored.startswith(f"{scheme}$") and "s3cret" not in stored
    assert passwords.matches("s3cret", stored)
    assert not passwords.matches("s3cre", stored) and not passwords.matches("", stored)
    assert passwords.hash_password("s3cret", scheme) != stored, "a new salt every time"


def test_a_hash_in_djangos_layout_with_other_parameters_is_accepted():
    # What Django's PBKDF2PasswordHasher writes for this salt and iteration count.
    digest = hashlib.pbkdf2_hmac("sha256", b"s3cret", b"fixedsalt", 1000)
    stored = f"pbkdf2_sha256$1000$fixedsalt${base64.b64encode(digest).decode()}"
    assert passwords.matches("s3cret", stored)


def test_a_plain_password_keeps_working():
    assert passwords.matches("s3cret", "s3cret")
    assert not passwords.matches("s3cre", "s3cret") and not passwords.matches("", "s3cret")


@pytest.mark.parametrize("value", ["scrypt$16384$salt$8$1", "scrypt$1000$salt$8$1$AAAA",
                                   "pbkdf2_sha256$many$salt$AAAA", "pbkdf2_sha256$10$$AAAA",
                                   "pbkdf2_sha256$10$salt$not base64!"])
def test_a_broken_hash_is_refused_when_the_settings_load(value):
    with pytest.raises(SettingsError) as err:
        Settings.load(environ={"DASHBOARD_PASSWORD": value}, env_file=None)
    assert str(err.value).startswith("DASHBOARD_PASSWORD=***: expected ")
    assert value not in str(err.value)


def test_hash_password_reads_stdin_and_prints_a_hash_the_settings_take():
    made = subprocess.run([sys.executable, str(CTL), "hash-password"], input="s3cret\n",
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    stored = made.stdout.strip()
    assert stored.startswith("scrypt$") and "s3cret" not in made.stdout + made.stderr
    settings = Settings.load(environ={"DASHBOARD_PASSWORD": stored}, env_file=None)
    assert passwords.matches("s3cret", settings.dashboard_password)
    empty = subprocess.run([sys.executable, str(CTL), "hash-password"], input="",
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1 and "empty password" in empty.stderr
