"""Independent implementations to check our codes against (oathtool when installed)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from otpbridge.core.model import Account, Kind

OATHTOOL = shutil.which("oathtool")
needs_oathtool = pytest.mark.skipif(OATHTOOL is None, reason="oathtool is not installed")


def oathtool_code(account: Account, at: float | None = None) -> str:
    """The code oathtool computes for ``account`` (TOTP at ``at``, HOTP at its next counter).

    The secret goes in as hex on argv: acceptable only in tests with throw-away secrets.
    """
    assert OATHTOOL is not None
    if account.kind is Kind.STEAM:
        raise ValueError("oathtool has no Steam mode")
    argv = [OATHTOOL, f"--digits={account.digits}"]
    if account.kind is Kind.HOTP:
        argv += ["--hotp", f"--counter={account.counter}"]
    else:
        argv += [f"--totp={account.algorithm.value.lower()}", f"--time-step-size={account.period}s"]
        if at is not None:
            argv += [f"--now=@{int(at)}"]
    if account.kind is Kind.HOTP and account.algorithm.value != "SHA1":
        raise ValueError("oathtool's HOTP mode is SHA1 only")
    argv.append(account.secret.hex())
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
