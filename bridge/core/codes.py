"""One-time codes through pyotp.

pyotp refuses secrets under 112 bits, digits outside 6–10 and periods over 120 s, but
real services issue 80-bit secrets, and 5-digit and long-period accounts exist. The
subclasses below keep pyotp's RFC 4226 truncation and Steam alphabet and lift only
those policy checks; the model has already validated the parameters.
"""

from __future__ import annotations

import hashlib
import time as _time

import pyotp
from pyotp.contrib.steam import Steam

from otpbridge.core.model import Account, Algorithm, Kind

_DIGESTS = {Algorithm.SHA1: hashlib.sha1, Algorithm.SHA256: hashlib.sha256, Algorithm.SHA512: hashlib.sha512}


class _Hotp(pyotp.HOTP):
    min_secret_length_bits = 8

    def __init__(self, account: Account) -> None:  # noqa: D107 - bypasses pyotp's digit/length policy
        self.secret = account.secret_b32
        self.digits = account.digits
        self.digest = _DIGESTS[account.algorithm]
        self.name = "Secret"
        self.issuer = None
        self.initial_count = 0


class _Steam(Steam):
    min_secret_length_bits = 8

    def __init__(self, account: Account) -> None:  # noqa: D107
        self.secret = account.secret_b32
        self.digits = 10
        self.digest = hashlib.sha1
        self.interval = account.period
        self.name = "Secret"
        self.issuer = None


def code_at(account: Account, at: float | None = None, *, counter: int | None = None) -> str:
    """The code shown at time ``at`` (TOTP/Steam) or for ``counter`` (HOTP, default: next)."""
    if account.kind is Kind.HOTP:
        return _Hotp(account).generate_otp(account.counter if counter is None else counter)
    now = _time.time() if at is None else at
    step = int(now // account.period)
    if account.kind is Kind.STEAM:
        return _Steam(account).generate_otp(step)
    return _Hotp(account).generate_otp(step)


def seconds_left(account: Account, at: float | None = None) -> int | None:
    """Seconds until a time-based code changes; ``None`` for HOTP."""
    if account.kind is Kind.HOTP:
        return None
    now = _time.time() if at is None else at
    return int(account.period - (now % account.period))
