from __future__ import annotations

import pytest

from tests.support.paths import FIXTURES


@pytest.fixture(scope="session")
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES} (set OTPBRIDGE_SHARED)")
    return FIXTURES
