"""Scaffolding for the tests of the formats whose fixtures live in tests/fixtures/ (issue #16).

``MORE``: that folder. :func:`assert_clean_read` is the hostile-input property every
format test runs on mutated and truncated fixtures: the read either succeeds (possibly
with per-entry errors, exit 7 at the CLI) or raises one of our errors with one of the
documented exit codes — never another exception — and no message quotes a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from otpbridge.core.errors import OtpBridgeError
from otpbridge.stores.base import ReadResult

MORE = Path(__file__).resolve().parents[1] / "fixtures"

#: Base32 runs as long as a real secret: what must never appear in a message.
_SECRETISH = re.compile(r"[A-Z2-7]{16,}")


def secrets_in(data: bytes) -> set[str]:
    """Base32-looking runs of ``data`` (the fixture's secrets), to look for in messages."""
    return set(_SECRETISH.findall(data.decode("latin-1")))


def assert_clean_read(store, *, codes: Iterable[int] = (4,), secrets: Iterable[str] = ()) -> ReadResult | None:
    """``store.read()`` gives a result or an OtpBridgeError with an exit code in ``codes``."""
    codes = tuple(codes)
    try:
        result = store.read()
    except OtpBridgeError as exc:
        assert exc.exit_code in codes, f"exit {exc.exit_code} ({exc}), expected one of {codes}"
        texts = [str(exc), exc.hint or ""]
        result = None
    else:
        texts = [str(e) for e in result.errors]
    texts += list(getattr(store, "warnings", []))
    for secret in secrets:
        assert not any(secret in t for t in texts), "a message quotes a secret"
    return result
