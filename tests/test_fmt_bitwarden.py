"""Bitwarden exports: JSON, CSV, Authenticator, password-protected (PBKDF2/Argon2id), refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.codes import code_at
from otpbridge.core.errors import AuthenticationError, FormatError, OtpBridgeError
from otpbridge.core.model import Account, Kind
from otpbridge.plugins.bitwarden import AccountRestrictedExport, BitwardenStore
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.oracles import needs_oathtool, oathtool_code
from tests.support.paths import FIXTURES

DIR = FIXTURES / "bitwarden"
PASSWORD = "rud9^5S6$^Ewmr%d"


# The Aegis vectors Bitwarden can hold (no HOTP), by secret.
AEGIS = F.by_secret(a for a in C.AEGIS_VECTORS if a.kind is not Kind.HOTP)



def _as_bitwarden(a: Account) -> Account:
    """A Stratum vector (the same ones its Ente/FreeOTP+ fixtures hold) as the Bitwarden file has it."""
    if (a.issuer, a.name) == ("Standard", "Hotp"):
        # Stored as a bare Base32 secret: a TOTP whose issuer and name come from the item's
        # name and username.
        return Account(Kind.TOTP, a.secret, "Secret", "Only")
    return a.replace(folder="My Folder") if a.issuer in ("Long", "Many", "NoIssuer") else a


STRATUM = [
    *map(_as_bitwarden, C.STRATUM),
    Account(Kind.STEAM, F.b32decode_unpadded("GJD4ZX3RQMLCAXKCT7GGQ4U27VN4FPK6"), "Steam", "john@example.com"),
]


def make(path, password: str | None = PASSWORD) -> BitwardenStore:
    env = {} if password is None else {"OTPBRIDGE_STORE_PASSWORD": password}
    return BitwardenStore(StoreSpec("bitwarden", str(path)), Context(environ=env))


# -- an independent writer of password-protected exports (PBKDF2), for crafted files ---------------
def _keys(password: str, salt: str, iterations: int) -> tuple[bytes, bytes]:
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations, 32)
    return (HKDFExpand(hashes.SHA256(), 32, b"enc").derive(key), HKDFExpand(hashes.SHA256(), 32, b"mac").derive(key))


def encstring(plain: bytes, enc: bytes, mac: bytes, *, pad: bool = True) -> str:
    iv = os.urandom(16)
    if pad:
        padder = padding.PKCS7(128).padder()
        plain = padder.update(plain) + padder.finalize()
    e = Cipher(algorithms.AES(enc), modes.CBC(iv)).encryptor()
    ct = e.update(plain) + e.finalize()
    tag = hmac.new(mac, iv + ct, hashlib.sha256).digest()
    return "2." + "|".join(base64.b64encode(x).decode() for x in (iv, ct, tag))


def protected_export(inner: bytes, password: str = "pw", iterations: int = 5000, **overrides) -> dict:
    salt = "c2FsdHNhbHRzYWx0c2FsdA=="
    enc, mac = _keys(password, salt, iterations)
    doc = {"encrypted": True, "passwordProtected": True, "salt": salt, "kdfType": 0, "kdfIterations": iterations,
           "kdfMemory": None, "kdfParallelism": None,
           "encKeyValidation_DO_NOT_EDIT": encstring(b"6a1f1c0e-validation", enc, mac),
           "data": encstring(inner, enc, mac)}
    doc.update(overrides)
    return doc


# -- the fixtures ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bitwarden.json", "bitwarden.csv"])
def test_aegis_fixtures_match_reference(name):
    result = make(DIR / name).read()
    assert result.errors == []
    assert len(result.accounts) == 4
    for acc in result.accounts:
        ref = AEGIS[acc.secret]
        if acc.kind is Kind.STEAM:
            # steam://SECRET carries no names: Aegis's test checks the secret only; ours
            # takes the item's name instead.
            assert ref.kind is Kind.STEAM and acc.issuer in ("Test Steam", "Test 4")
        else:
            assert acc == ref, acc


@pytest.mark.parametrize(
    "name", ["bitwarden.unencrypted.json", "bitwarden.encrypted.pbkdf2.json", "bitwarden.encrypted.argon2id.json"]
)
def test_stratum_fixtures_plain_and_password_protected(name):
    result = make(DIR / name).read()
    assert result.errors == []
    # Stratum: 8 authenticators, 1 category, 3 bindings; cards, identities and notes ignored.
    assert sorted(result.accounts, key=lambda a: a.secret) == sorted(STRATUM, key=lambda a: a.secret)
    assert sum(1 for a in result.accounts if a.folder == "My Folder") == 3


def test_bitwarden_authenticator_export():
    result = make(DIR / "bitwardenauthenticator.json").read()
    assert result.errors == []
    assert len(result.accounts) == 6
    assert {(a.issuer, a.name) for a in result.accounts} == {
        ("Standard", "Totp"), ("NoIssuer", "NoIssuer"), ("Sha", "256"), ("Sha", "512"), ("Many", "Digits"),
        ("Long", "Period")}
    stratum = {a.secret: a for a in STRATUM}
    for acc in result.accounts:
        assert acc == stratum[acc.secret].replace(folder="")


@pytest.mark.parametrize("name", ["bitwarden.encrypted.pbkdf2.json", "bitwarden.encrypted.argon2id.json"])
@pytest.mark.parametrize("wrong", ["hunter2-guess", "rud9^5S6$^Ewmr%D"])
def test_wrong_password_is_exit_3(name, wrong):
    err = F.assert_wrong_password(make(DIR / name, wrong).read, match="wrong password")
    assert wrong not in str(err) and PASSWORD not in str(err)


def test_empty_password_is_refused():
    with pytest.raises(AuthenticationError):
        make(DIR / "bitwarden.encrypted.pbkdf2.json", "").read()


def test_account_restricted_export_is_refused_with_a_clear_hint():
    with pytest.raises(AccountRestrictedExport) as info:
        make(DIR / "bitwarden.encrypted.accountrestricted.json", "anything").read()
    err = info.value
    assert err.exit_code == 1 and isinstance(err, OtpBridgeError)
    assert "account key" in str(err) and "Password protected" in err.hint


@needs_oathtool
@pytest.mark.parametrize("name", ["bitwarden.json", "bitwarden.unencrypted.json"])
def test_codes_agree_with_oathtool(name):
    at = time.time()
    for acc in make(DIR / name).read().accounts:
        if acc.kind is Kind.TOTP and acc.digits <= 8:  # oathtool stops at 8 digits
            assert code_at(acc, at) == oathtool_code(acc, at), acc


@pytest.mark.parametrize("path", sorted(p for p in DIR.iterdir() if p.is_file()), ids=lambda p: p.name)
def test_detected_as_bitwarden(path):
    assert detect_kind(path) == "bitwarden"


@pytest.mark.parametrize(
    "path",
    [
        FIXTURES / "aegis" / "aegis_plain.json",
        FIXTURES / "aegis" / "aegis_encrypted.json",
        FIXTURES / "twofas" / "2fas_authenticator_encrypted_v4.2fas",
        FIXTURES / "twofas" / "twofas.unencrypted.2fas",
        FIXTURES / "andotp" / "andotp_plain.json",
        FIXTURES / "ente_auth" / "ente.encrypted.json",
        FIXTURES / "freeotp_plus" / "freeotp_plus.json",
        FIXTURES / "google_authenticator" / "example_output.csv",
        FIXTURES / "otpauth_uri" / "plain.txt",
    ],
    ids=lambda p: p.name,
)
def test_sniffer_leaves_other_formats_alone(path):
    assert not BitwardenStore.sniff(path, path.read_bytes())


# -- password-protected: damage vs wrong password ---------------------------------------------
def _tamper(encstr: str, part: int) -> str:
    head, rest = encstr.split(".", 1)
    parts = rest.split("|")
    raw = bytearray(base64.b64decode(parts[part]))
    raw[len(raw) // 2] ^= 0x01
    parts[part] = base64.b64encode(bytes(raw)).decode()
    return head + "." + "|".join(parts)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_tampered_data_with_right_password_is_exit_4(tmp_path, part):
    doc = json.loads((DIR / "bitwarden.encrypted.pbkdf2.json").read_text())
    doc["data"] = _tamper(doc["data"], part)
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="modified or damaged") as info:
        make(path).read()
    assert info.value.exit_code == 4


def test_tampered_validation_looks_like_a_wrong_password(tmp_path):
    # Documented limit: the validation string is the password check, so damage there is exit 3.
    doc = json.loads((DIR / "bitwarden.encrypted.pbkdf2.json").read_text())
    doc["encKeyValidation_DO_NOT_EDIT"] = _tamper(doc["encKeyValidation_DO_NOT_EDIT"], 1)
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AuthenticationError):
        make(path).read()


def test_truncated_encrypted_file_is_exit_4(tmp_path):
    data = (DIR / "bitwarden.encrypted.argon2id.json").read_bytes()
    path = tmp_path / "x.json"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="invalid JSON"):
        make(path).read()


def test_crafted_export_from_independent_writer_is_read(tmp_path):
    inner = {"encrypted": False, "folders": [{"id": "f1", "name": "Work/Servers"}], "items": [
        {"type": 1, "name": "Corp VPN", "folderId": "f1",
         "login": {"username": "alice", "totp": "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&digits=8"}},
        {"type": 1, "name": "Nothing", "login": {"username": "bob", "totp": None}},
        {"type": 2, "name": "A note"},
    ]}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(protected_export(json.dumps(inner).encode())))
    (acc,) = make(path, "pw").read().accounts
    assert (acc.issuer, acc.name, acc.digits, acc.folder) == ("Corp VPN", "alice", 8, "Work/Servers")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kdfIterations": 10**9}, "kdfIterations"),
        ({"kdfIterations": 0}, "kdfIterations"),
        ({"kdfIterations": "600000"}, "kdfIterations"),
        ({"kdfType": 1, "kdfIterations": 3, "kdfMemory": 1024 * 1024, "kdfParallelism": 4}, "kdfMemory"),
        ({"kdfType": 1, "kdfIterations": 1000, "kdfMemory": 64, "kdfParallelism": 4}, "kdfIterations"),
        ({"kdfType": 1, "kdfIterations": 3, "kdfMemory": 64, "kdfParallelism": None}, "kdfParallelism"),
        ({"kdfType": 7}, "unsupported kdfType"),
        ({"salt": ""}, "no salt"),
        ({"data": "0.abc"}, "not an AES-CBC-HMAC EncString"),
        ({"data": "2.a|b"}, "damaged"),
        ({"data": "2.***|***|***"}, "not Base64"),
        ({"data": None}, "data is missing"),
    ],
)
def test_hostile_parameters_are_format_errors_before_any_slow_kdf(tmp_path, overrides, message):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(protected_export(b"{}", **overrides)))
    started = time.monotonic()
    with pytest.raises(FormatError, match=message):
        make(path, "pw").read()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("inner, message", [(b"[]", "not a plain JSON export"), (b"\xff", "not a JSON export"),
                                            (b'{"encrypted": true}', "not a plain JSON export")])
def test_bad_inner_payload_is_exit_4(tmp_path, inner, message):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(protected_export(inner)))
    with pytest.raises(FormatError, match=message):
        make(path, "pw").read()


def test_bad_padding_under_a_valid_mac_is_exit_4(tmp_path):
    salt = "c2FsdHNhbHRzYWx0c2FsdA=="
    enc, mac = _keys("pw", salt, 5000)
    doc = protected_export(b"{}", data=encstring(b"\x00" * 32, enc, mac, pad=False))
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="padding"):
        make(path, "pw").read()


# -- plain exports: odd items ------------------------------------------------------------------
def test_odd_items_become_entry_errors_or_are_ignored(tmp_path):
    doc = {"encrypted": False, "folders": [{"id": ["unhashable"]}, "x"], "collections": [{"id": "c", "name": "Team"}],
           "items": [
               {"type": 1, "name": "Good", "login": {"totp": "JBSWY3DPEHPK3PXP"}, "collectionIds": ["c"]},
               {"type": 1, "name": "Bad b32", "login": {"totp": "not-base32!"}},
               {"type": 1, "name": "Bad uri", "login": {"totp": "otpauth://motp/x?secret=JBSWY3DPEHPK3PXP"}},
               {"type": 1, "name": "Other scheme", "login": {"totp": "http://example.com"}},
               {"type": 1, "name": "Number", "login": {"totp": 12345}},
               {"type": 1, "name": "Empty", "login": {"totp": "  "}},
               {"type": 3, "name": "Card", "card": {}},
               {"type": 1, "name": "No login"},
               "garbage",
           ]}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    result = make(path).read()
    assert [(a.issuer, a.folder) for a in result.accounts] == [("Good", "Team")]
    assert [e.where for e in result.errors] == ["item 2 (Bad b32)", "item 3 (Bad uri)", "item 4 (Other scheme)",
                                                 "item 5 (Number)", "item 9"]
    assert all("JBSWY3DP" not in e.reason for e in result.errors)


def test_csv_with_folders_and_non_login_rows(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        "folder,favorite,type,name,notes,fields,login_uri,login_username,login_password,login_totp\n"
        "Work,,login,Corp,,,,alice,pw,JBSWY3DPEHPK3PXP\n"
        ",,note,Secret note,hello,,,,,\n"
        ",,login,Broken,,,,bob,,otpauth://totp/x?digits=6\n"
    )
    result = make(path).read()
    assert [(a.issuer, a.name, a.folder) for a in result.accounts] == [("Corp", "alice", "Work")]
    assert [e.where for e in result.errors] == ["line 4 (Broken)"]


@pytest.mark.parametrize("body, message", [(b"", "neither JSON nor a CSV"), (b"{", "invalid JSON"),
                                           (b"[1]", "neither JSON"), (b'"x"', "neither JSON"),
                                           (b'{"encrypted": false, "items": {}}', "not a list"),
                                           (b"\xff\xfe", "not a UTF-8"), (b"[" * 100000, "neither JSON")])
def test_broken_files_are_format_errors(tmp_path, body, message):
    path = tmp_path / "x.json"
    path.write_bytes(body)
    with pytest.raises(FormatError, match=message):
        make(path).read()


def test_read_only():
    assert not BitwardenStore.can_write()


# -- hypothesis: never anything but our errors --------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=10) | st.just("JBSWY3DPEHPK3PXP")
    | st.just("steam://JBSWY3DPEHPK3PXP") | st.just("otpauth://totp/a:b?secret=JBSWY3DPEHPK3PXP&period=0"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "name", "login", "totp", "username", "folderId", "id", "collectionIds"]), inner,
        max_size=5),
    max_leaves=15,
)


@F.examples(200)
@given(items=json_values, folders=json_values)
def test_hypothesis_structured_garbage_never_crashes(tmp_path, items, folders):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"encrypted": False, "folders": folders, "items": items}))
    try:
        make(path).read()
    except FormatError:
        pass


PLAIN = (DIR / "bitwarden.unencrypted.json").read_bytes()
CSV = (DIR / "bitwarden.csv").read_bytes()


@F.examples(150)
@given(which=st.sampled_from([PLAIN, CSV]), data=st.data())
def test_hypothesis_mutated_fixtures_never_crash(tmp_path, which, data):
    path = tmp_path / "x.json"
    path.write_bytes(data.draw(F.flipped_and_cut(which, max_flips=4)))
    F.read_or_refuse(make(path))
