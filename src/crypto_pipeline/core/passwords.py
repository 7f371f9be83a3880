"""DASHBOARD_PASSWORD as a plain value or a salted hash, and the check of an entered one.

Hashes use the standard library (hashlib.scrypt, hashlib.pbkdf2_hmac) in the layouts
Django writes (`LAYOUTS`: N, R, P are scrypt's cost, block size and parallelism; HASH is
standard base64), so a hash made by either works with the other. A value that does not
start with a scheme's name is a plain password. Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

SCRYPT, PBKDF2 = SCHEMES = ("scrypt", "pbkdf2_sha256")
LAYOUTS = {SCRYPT: "scrypt$N$SALT$R$P$HASH", PBKDF2: "pbkdf2_sha256$ITERATIONS$SALT$HASH"}
# About Django's work factors: 0.1 s (scrypt, 16 MiB) and 0.5 s (PBKDF2) a check here.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
PBKDF2_ITERATIONS = 1_000_000
_HASH_BYTES = 32


@dataclass(frozen=True)
class _Hashed:
    scheme: str
    salt: str
    digest: bytes
    params: tuple[int, ...]  # scrypt: (n, r, p); pbkdf2: (iterations,)

    def compute(self, password: str) -> bytes:
        if self.scheme == SCRYPT:
            n, r, p = self.params
            # hashlib's default memory limit (32 MiB) is below what larger N need.
            return hashlib.scrypt(password.encode(), salt=self.salt.encode(), n=n, r=r, p=p,
                                  maxmem=256 * n * r * p, dklen=len(self.digest))
        return hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt.encode(),
                                   self.params[0], dklen=len(self.digest))

    def text(self) -> str:
        encoded = base64.b64encode(self.digest).decode()
        if self.scheme == SCRYPT:
            n, r, p = self.params
            return f"{SCRYPT}${n}${self.salt}${r}${p}${encoded}"
        return f"{PBKDF2}${self.params[0]}${self.salt}${encoded}"


def is_hash(value: str) -> bool:
    """Whether the value is meant as a hash (it names a scheme), valid or not."""
    return value.startswith(tuple(f"{scheme}$" for scheme in SCHEMES))


def _parse(value: str) -> _Hashed:
    scheme, *fields = value.split("$")
    try:
        if scheme == SCRYPT and len(fields) == 5:
            n, salt, r, p, encoded = fields
            params = (int(n), int(r), int(p))
            # scrypt's cost must be a power of two.
            valid = params[0] > 1 and params[0] & (params[0] - 1) == 0 and min(params) > 0
        elif scheme == PBKDF2 and len(fields) == 3:
            iterations, salt, encoded = fields
            params = (int(iterations),)
            valid = params[0] > 0
        else:
            valid = False
        if valid:
            hashed = _Hashed(scheme, salt, base64.b64decode(encoded, validate=True), params)
            valid = bool(hashed.salt and hashed.digest)
    except ValueError:  # int() and b64decode (binascii.Error is a ValueError)
        valid = False
    if not valid:
        raise ValueError(f"expected {LAYOUTS[scheme]}, as `pipelinectl.py hash-password` "
                         f"prints it")
    return hashed


def check_stored(value: str) -> str:
    """DASHBOARD_PASSWORD's parser: a plain password, or a hash that can be used."""
    if is_hash(value):
        _parse(value)
    return value


def hash_password(password: str, scheme: str = SCRYPT) -> str:
    """A new salted hash of `password` for DASHBOARD_PASSWORD."""
    params = (SCRYPT_N, SCRYPT_R, SCRYPT_P) if scheme == SCRYPT else (PBKDF2_ITERATIONS,)
    hashed = _Hashed(scheme, secrets.token_urlsafe(16), b"\0" * _HASH_BYTES, params)
    return _Hashed(scheme, hashed.salt, hashed.compute(password), params).text()


def matches(entered: str, stored: str) -> bool:
    """Whether the entered password is the one `stored` holds (plain or hashed)."""
    if is_hash(stored):
        hashed = _parse(stored)
        return hmac.compare_digest(hashed.compute(entered), hashed.digest)
    # Digests first, so the time taken does not depend on the password's length either.
    return hmac.compare_digest(hashlib.sha256(entered.encode()).digest(),
                               hashlib.sha256(stored.encode()).digest())
