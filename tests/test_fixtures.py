"""The fixtures in tests/fixtures are the upstream files, byte for byte, and all accounted for.

SHA256SUMS (from when the files were collected) lists every data file; the README has a
row for each; only the README, SHA256SUMS and the licence notices are ours.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.support.paths import FIXTURES

OURS = {"README.md", "SHA256SUMS"}


def _sums() -> dict[str, str]:
    sums = {}
    for line in (FIXTURES / "SHA256SUMS").read_text(encoding="ascii").splitlines():
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-f]{64}) [ *]\./(\S.*)", line)
        assert match, f"malformed SHA256SUMS line: {line!r}"
        digest, name = match.groups()
        assert name not in sums, f"listed twice: {name}"
        sums[name] = digest
    return sums


SUMS = _sums()


def _is_ours(name: str) -> bool:
    """Our notes beside the upstream files: READMEs, checksum lists, licence notices."""
    base = name.rsplit("/", 1)[-1]
    return (
        name in OURS
        or (base.startswith("README") and base.endswith(".md"))
        or base.startswith("SHA256SUMS")
        or base.startswith("LICENSE")
    )


def _data_files() -> set[str]:
    files = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*") if p.is_file()}
    return {f for f in files if not _is_ours(f)}


def _more_sums() -> dict[str, str]:
    """Collections added after the first (``SHA256SUMS-<topic>``, ``<dir>/SHA256SUMS``), each with
    its own README naming sources and licences; lines as ``sha256sum`` prints them."""
    sums: dict[str, str] = {}
    for path in sorted(FIXTURES.rglob("SHA256SUMS*")):
        if path == FIXTURES / "SHA256SUMS":
            continue
        base = path.parent.relative_to(FIXTURES).as_posix()
        for line in path.read_text(encoding="ascii").splitlines():
            if not line.strip():
                continue
            match = re.fullmatch(r"([0-9a-f]{64}) [ *](?:\./)?(\S.*)", line)
            assert match, f"{path.name}: malformed line: {line!r}"
            digest, name = match.groups()
            name = name if base == "." else f"{base}/{name}"
            assert name not in sums and name not in SUMS, f"listed twice: {name}"
            sums[name] = digest
    return sums


MORE = _more_sums()


def test_the_sums_cover_the_collection():
    assert len(SUMS) == 52
    assert {name.split("/")[0] for name in SUMS} == {
        "aegis", "andotp", "authy", "bitwarden", "ente_auth", "freeotp_plus",
        "google_authenticator", "otpauth_uri", "twofas",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(SUMS))
def test_fixture_matches_its_sha256(name):
    path = FIXTURES / name
    assert path.is_file(), f"{name} is listed in SHA256SUMS but missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SUMS[name], f"{name} differs from upstream"


def test_every_fixture_file_is_listed():
    assert _data_files() == set(SUMS) | set(MORE), "files in tests/fixtures without a SHA256SUMS line (or stray files)"


@pytest.mark.parametrize("name", sorted(MORE))
def test_later_fixture_matches_its_sha256(name):
    path = FIXTURES / name
    assert path.is_file(), f"{name} is listed but missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MORE[name], f"{name} differs from its checksum"


def test_every_fixture_has_a_readme_row_and_a_licence():
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in SUMS:
            rows[cells[0]] = cells[-1]
    assert set(rows) == set(SUMS), f"no README row: {sorted(set(SUMS) - set(rows))}"
    assert set(rows.values()) <= {"GPL-3.0", "GPL-3.0-only", "MIT"}
    mit = {name for name, licence in rows.items() if licence == "MIT"}
    notices = "".join(p.read_text(encoding="utf-8") for p in FIXTURES.glob("LICENSE.MIT-*"))
    for name in mit:
        assert name.split("/")[-1] in notices, f"{name} is MIT but no notice names it"
