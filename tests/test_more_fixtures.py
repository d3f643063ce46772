"""The fixtures made by tests/make_more_fixtures.py are exactly what it makes, and every
fixture file of tests/fixtures/ (issue #16 formats) is recorded in README-more.md."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests import make_more_fixtures as M
from tests.support.morefmt import MORE

OWN = ("andotp_gpg", "freeotp2", "google_authenticator_db", "lastpass", "onepassword", "proton_authenticator",
       "proton_pass", "stratum")  # fmt: skip


@pytest.mark.parametrize("rel", sorted(M.BUILDERS))
def test_made_fixtures_are_reproducible(rel):
    assert (MORE / rel).read_bytes() == M.BUILDERS[rel]()


def test_every_fixture_is_recorded_with_its_checksum():
    readme = (MORE / "README-more.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \|.*\| ([0-9a-f]{8})… \|$", readme, re.M))
    files = sorted(str(p.relative_to(MORE)) for d in OWN for p in (MORE / d).iterdir() if p.is_file())
    assert sorted(rows) == files
    for rel, prefix in rows.items():
        assert hashlib.sha256((MORE / rel).read_bytes()).hexdigest().startswith(prefix), rel
