"""KeePassXC interop: otpbridge reads what keepassxc-cli wrote, and KeePassXC computes the same
codes from what otpbridge wrote (oathtool as a second oracle)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otpbridge.core.codes import code_at
from otpbridge.core.errors import AuthenticationError
from otpbridge.core.model import Account, Algorithm, Kind
from otpbridge.core.otpauth import format_uri
from otpbridge.plugins import keepass_kdbx as kdbx
from tests.support.kdbx import E, keepass_xml, kpxc, kpxc_import, kpxc_version, make_keyfile, needs_keepassxc
from tests.support.oracles import needs_oathtool, oathtool_code
from tests.test_keepass import BROKEN, CONVENTIONS, S, ctx_with, key, kstore, secret

pytestmark = needs_keepassxc

# Conventions KeePassXC computes codes for (it reads no HOTP, no KeePassOTP encoding=,
# and KeePass 2's TimeOtp-Secret-Base32 only from 2.7.10 on).
KPXC_TOTP = {"GitHub", "Title X", "Fill", "KeeOtp", "Legacy", "Steam", "Legacy8", "SteamUri"}


def entry_path(e: E) -> str:
    return f"{e.folder}/{e.title}" if e.folder else e.title


def assert_kpxc_code(db: Path, path: str, acc: Account, **creds) -> None:
    """KeePassXC's current code equals ours (at the time just before or just after it ran)."""
    before = time.time()
    shown = kpxc(["show", "-t", path], db, **creds).stdout.strip()
    after = time.time()
    assert shown in {code_at(acc, before), code_at(acc, after)}, path


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """A KDBX 3.1 database that KeePassXC built from a KeePass XML with every convention."""
    folder = tmp_path_factory.mktemp("kpxc")
    xml = keepass_xml(
        [e for e, _ in CONVENTIONS] + [e for e, _, _ in BROKEN] + [E("Plain", "nobody", "secret-pw", "", {"PIN": "9"})],
        recycled=[E("Deleted", "x", "", "", {"otp": f"otpauth://totp/Gone:x?secret={S[30]}"})],
    )
    return kpxc_import(xml, folder / "imported.kdbx")


def test_keepassxc_import_is_kdbx31_aes(imported):
    header = kdbx.read_header(imported.read_bytes())
    assert (header.major, header.minor, header.kdf.kind) == (3, 1, "aes") and header.kdf.rounds > 100_000


def test_reader_gives_the_tree_pykeepass_gives_on_keepassxc_31(imported):
    """KDBX 3.1: AES-CBC payload, hashed blocks, Salsa20 inner stream (keepass_kdbx.open_for_reading)."""
    from lxml import etree
    from pykeepass import PyKeePass

    from otpbridge.core.secrets import Secret

    db = kdbx.open_for_reading(imported.read_bytes(), Secret("pw"), None, "k")
    assert db.version == (3, 1)
    assert etree.tostring(db.tree) == etree.tostring(PyKeePass(str(imported), "pw").tree)


def test_reads_every_convention_keepassxc_stored(imported):
    result = kstore(imported).read()
    assert sorted(map(key, result.accounts)) == sorted(key(a) for _, a in CONVENTIONS)
    assert sorted(e.where for e in result.errors) == sorted(w for _, w, _ in BROKEN)


def test_codes_match_keepassxc(imported):
    supported = set(KPXC_TOTP)
    if kpxc_version() >= (2, 7, 10):
        supported.add("KP2 b32")
    by_secret = {a.secret: a for a in kstore(imported).read().accounts}
    checked = 0
    for entry, expected in CONVENTIONS:
        if entry.title in supported:
            assert_kpxc_code(imported, entry_path(entry), by_secret[expected.secret])
            checked += 1
    assert checked >= len(KPXC_TOTP)


@needs_oathtool
def test_codes_match_oathtool(imported):
    at = 1_700_000_000
    for acc in kstore(imported).read().accounts:
        if acc.kind is not Kind.STEAM and not (acc.kind is Kind.HOTP and acc.algorithm is not Algorithm.SHA1):
            assert code_at(acc, at) == oathtool_code(acc, at), acc.label


def test_keepassxc_reads_the_database_otpbridge_updated(imported, tmp_path):
    """Our save of a KeePassXC KDBX 3.1 file: KeePassXC opens it (header hash), passwords kept."""
    db = tmp_path / "copy.kdbx"
    db.write_bytes(imported.read_bytes())
    rounds = kdbx.read_header(db.read_bytes()).kdf.rounds
    accounts = {a.secret: a for a in kstore(db).read().accounts}
    legacy = accounts[secret(6)].replace(digits=8, period=60)
    new = Account(Kind.TOTP, secret(35), "NewCo", "zoe", algorithm=Algorithm.SHA256, folder="Fresh")
    # an edit of identity fields names the old account too (SPEC §3)
    report = kstore(db).apply([legacy, new], [accounts[secret(1)], accounts[secret(6)]])
    assert len(report.updated) == 1 and len(report.added) == 1 and len(report.removed) == 1
    header = kdbx.read_header(db.read_bytes())
    assert (header.major, header.kdf.kind, header.kdf.rounds) == (3, "aes", rounds)
    assert_kpxc_code(db, "Legacy", legacy)
    assert_kpxc_code(db, "Fresh/NewCo", new)
    assert kpxc(["show", "-s", "-a", "Password", "Dev/GitHub"], db).stdout.strip() == "pw-a"
    assert kpxc(["show", "-t", "Dev/GitHub"], db, check=False).returncode != 0  # its OTP is gone, the entry is not
    assert kpxc(["show", "-s", "-a", "PIN", "Plain"], db).stdout.strip() == "9"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[Account]]:
    """A new database otpbridge created, with every kind KeePassXC can show."""
    path = tmp_path_factory.mktemp("written") / "ours.kdbx"
    accounts = [
        Account(Kind.TOTP, secret(1), "Plain Co", "a@example.com"),
        Account(Kind.TOTP, secret(2), "Sha256", "b", algorithm=Algorithm.SHA256, digits=8, folder="Work"),
        Account(Kind.TOTP, secret(3), "Sha512", "c", algorithm=Algorithm.SHA512, digits=7, period=60, folder="Work/Deep"),
        Account(Kind.TOTP, secret(4), "", "nameonly"),
        Account(Kind.STEAM, secret(5), "Steam", "d"),
        Account(Kind.HOTP, secret(13), "Bank", "e", counter=17),
        Account(Kind.HOTP, secret(14), "Odd Bank", "f", algorithm=Algorithm.SHA256, digits=7, counter=3),
    ]
    with pytest.MonkeyPatch.context() as mp:
        from otpbridge.plugins import keepass

        mp.setattr(keepass, "NEW_DATABASE_ARGON2", {"memory": 1 << 20, "iterations": 2, "parallelism": 1})
        report = kstore(path).apply(accounts)
    assert len(report.added) == len(accounts) and not report.errors
    return path, accounts


def test_keepassxc_shows_our_totp_codes(written):
    path, accounts = written
    for acc in accounts:
        if acc.kind is not Kind.HOTP:
            where = "/".join(p for p in (acc.folder, acc.issuer or acc.name) if p)
            assert_kpxc_code(path, where, acc)


@needs_oathtool
def test_our_codes_match_oathtool(written):
    path, accounts = written
    at = 1_234_567_890
    for acc in kstore(path).read().accounts:
        if acc.kind is not Kind.STEAM and not (acc.kind is Kind.HOTP and acc.algorithm is not Algorithm.SHA1):
            assert code_at(acc, at) == oathtool_code(acc, at)
    assert sorted(map(key, kstore(path).read().accounts)) == sorted(map(key, accounts))


def test_hotp_is_stored_as_keepass_hmacotp_fields(written):
    path, _ = written
    out = kpxc(["show", "-a", "HmacOtp-Secret-Base32", "-a", "HmacOtp-Counter", "Bank"], path).stdout.split()
    assert out == [S[13], "17"]
    assert kpxc(["show", "-a", "otp", "Bank"], path, check=False).returncode != 0  # no otp attribute


def test_hotp_keepass_cannot_compute_is_a_protected_otpbridge_hotp_uri(written):
    """KeePassXC keeps it (protected, shown in the advanced attributes) and shows no wrong code for it."""
    path, accounts = written
    odd = next(a for a in accounts if a.issuer == "Odd Bank")
    assert kpxc(["show", "-a", "otpbridge-hotp", "Odd Bank"], path).stdout.strip() == format_uri(odd)
    assert "otpbridge-hotp: PROTECTED" in kpxc(["show", "--all", "Odd Bank"], path).stdout
    assert kpxc(["show", "-t", "Odd Bank"], path, check=False).returncode != 0  # no otp attribute


def test_keyfile_only_kdbx31(tmp_path):
    keyfile = make_keyfile(tmp_path / "db.key")
    db = kpxc_import(keepass_xml([CONVENTIONS[0][0]]), tmp_path / "k.kdbx", password=None, keyfile=keyfile)
    store = kstore(db, ctx_with(None), keyfile=str(keyfile))
    assert [a.secret for a in store.read().accounts] == [secret(1)]
    store.apply([Account(Kind.TOTP, secret(36), "Added", "x")])
    assert kpxc(["show", "-a", "Title", "Added"], db, password=None, keyfile=keyfile).stdout.strip() == "Added"
    with pytest.raises(AuthenticationError):
        kstore(db, ctx_with(None), keyfile=str(make_keyfile(tmp_path / "wrong.key"))).read()


def test_password_and_keyfile_kdbx31(tmp_path):
    keyfile = make_keyfile(tmp_path / "db.key")
    db = kpxc_import(keepass_xml([CONVENTIONS[0][0]]), tmp_path / "k.kdbx", password="pw", keyfile=keyfile)
    assert [a.secret for a in kstore(db, keyfile=str(keyfile)).read().accounts] == [secret(1)]
    with pytest.raises(AuthenticationError):
        kstore(db).read()


def test_wrong_password_kdbx31_is_exit_3(imported):
    with pytest.raises(AuthenticationError) as info:
        kstore(imported, ctx_with("not-the-password")).read()
    assert info.value.exit_code == 3
