from __future__ import annotations

import pytest

from tests.support.paths import FIXTURES

# Shared fixtures: throw-away gpg homes and pass stores; rclone servers on 127.0.0.1.
pytest_plugins = ["tests.support.gpg", "tests.support.servers"]


@pytest.fixture(scope="session")
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES} (set OTPBRIDGE_SHARED)")
    return FIXTURES
