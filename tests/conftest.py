from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import settings

from tests.support.paths import FIXTURES

# Property tests are repeatable by default: the README's test command (and CI) draws the
# same examples on every run, so a red run is a defect anyone can reproduce, never a roll
# of the dice. HYPOTHESIS_PROFILE=explore draws new examples each run (and
# OTPBRIDGE_EXAMPLES_SCALE=N draws N times as many) to look for new defects by hand;
# whatever it finds is pinned by a bound that holds for every input, not only the seen one.
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# Shared fixtures: throw-away gpg homes and pass stores; rclone servers on 127.0.0.1.
pytest_plugins = ["tests.support.gpg", "tests.support.servers"]


@pytest.fixture(scope="session")
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.fail(f"test fixtures not found at {FIXTURES} (they are part of the repository)")
    return FIXTURES


def pytest_configure(config):
    # Caches otpbridge keeps under the user's cache dir (the rclone version check) go to
    # a throw-away folder, not the developer's home.
    folder = tempfile.mkdtemp(prefix="otpbridge-test-cache-")
    config._otpbridge_cache = folder
    os.environ["XDG_CACHE_HOME"] = folder


def pytest_unconfigure(config):
    folder = getattr(config, "_otpbridge_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


# Figures some tests measure (the fuzz and crash matrices, issue 17): recorded with
# ``record_property("figure", text)`` and printed at the end of the run, with or without
# -s and with xdist (user properties travel with the reports to the controller).
_FIGURES: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call":
        _FIGURES.extend(str(value) for key, value in report.user_properties if key == "figure")


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("otpbridge figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
