"""Authy Android shared_prefs: plain and encrypted fixtures, mixed passwords, hostile XML."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from html import escape

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given

from otpbridge.core.codes import code_at
from otpbridge.core.errors import FormatError, UsageError
from otpbridge.core.model import Algorithm
from otpbridge.plugins.authy import AuthyStore
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.oracles import needs_oathtool, oathtool_code
from tests.support.paths import FIXTURES

DIR = FIXTURES / "authy"
PASSWORD = "testtest"


# The Aegis reference vectors the Authy fixtures hold, normalised as Aegis's importer test
# does: Authy stores no algorithm or period, so every token is SHA1 with a 30 s period.
EXPECTED = F.by_secret(
    a.replace(algorithm=Algorithm.SHA1, period=30) for a in C.AEGIS_VECTORS if a.issuer in ("Deno", "SPDX", "Airbnb")
)


def make(path, password: str | None = PASSWORD) -> AuthyStore:
    env = {} if password is None else {"OTPBRIDGE_STORE_PASSWORD": password}
    return AuthyStore(StoreSpec("authy", str(path)), Context(environ=env))


def encrypt_secret(b32: str, salt: str, password: str) -> str:
    """Authy's scheme written out independently of the plugin (PBKDF2-SHA1 1000, AES-CBC, zero IV)."""
    key = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), 1000, 32)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(b32.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return base64.b64encode(enc.update(padded) + enc.finalize()).decode()


def prefs(tokens: list[dict], name: str = "com.authy.storage.tokens.authenticator.key") -> bytes:
    body = escape(json.dumps(tokens), quote=True)
    return (
        "<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\n<map>\n"
        '    <int name="key_version" value="121" />\n'
        f'    <string name="{name}">{body}</string>\n</map>\n'
    ).encode()


def token(name: str, b32: str | None = None, **extra) -> dict:
    issuer, _, account = name.partition(":")
    tok = {"accountType": "authenticator", "digits": 6, "originalIssuer": issuer, "originalName": name,
           "name": f"{issuer}: {account}", "timestamp": 1608374963, "id": "1"}
    if b32:
        tok["decryptedSecret"] = b32
    tok.update(extra)
    return tok


# -- the fixtures ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["authy_plain.xml", "authy_encrypted.xml"])
def test_fixture_matches_reference(name):
    result = make(DIR / name).read()
    assert result.errors == []
    assert len(result.accounts) == 3  # README "Parsed"
    for acc in result.accounts:
        assert acc == EXPECTED[acc.secret], acc


def test_plain_fixture_needs_no_password():
    # No password source at all: a plain file must not ask for one (it would be a UsageError).
    assert len(make(DIR / "authy_plain.xml", password=None).read().accounts) == 3


def test_encrypted_fixture_without_password_source_is_a_usage_error():
    with pytest.raises(UsageError):
        make(DIR / "authy_encrypted.xml", password=None).read()


@pytest.mark.parametrize("wrong", ["test", "testtest1", ""])
def test_wrong_password_is_exit_3(wrong):
    F.assert_wrong_password(make(DIR / "authy_encrypted.xml", password=wrong).read, match="wrong Authy backup password")


@needs_oathtool
def test_codes_agree_with_oathtool():
    at = time.time()
    for acc in make(DIR / "authy_encrypted.xml").read().accounts:
        assert code_at(acc, at) == oathtool_code(acc, at)


@pytest.mark.parametrize("name", ["authy_plain.xml", "authy_encrypted.xml"])
def test_detected_as_authy(name):
    assert detect_kind(DIR / name) == "authy"


# -- crafted files ----------------------------------------------------------------------------
def test_independently_encrypted_tokens_decrypt(tmp_path):
    secrets = ["JBSWY3DPEHPK3PXP", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"]
    tokens = [token(f"Svc{i}:user{i}", encryptedSecret=encrypt_secret(s, f"salt-{i}-xyz", "pw"), salt=f"salt-{i}-xyz")
              for i, s in enumerate(secrets)]
    path = tmp_path / "p.xml"
    path.write_bytes(prefs(tokens))
    result = make(path, "pw").read()
    assert [a.secret for a in result.accounts] == [F.b32decode_unpadded(s) for s in secrets]
    assert [(a.issuer, a.name) for a in result.accounts] == [("Svc0", "user0"), ("Svc1", "user1")]


def test_mixed_passwords_import_what_opens_and_list_the_rest(tmp_path):
    # Authy re-encrypts only new tokens after a backup-password change.
    tokens = [
        token("Old:a", encryptedSecret=encrypt_secret("JBSWY3DPEHPK3PXP", "s1", "old"), salt="s1"),
        token("New:b", encryptedSecret=encrypt_secret("GEZDGNBVGY3TQOJQ", "s2", "new"), salt="s2"),
    ]
    path = tmp_path / "p.xml"
    path.write_bytes(prefs(tokens))
    result = make(path, "new").read()
    assert [a.issuer for a in result.accounts] == ["New"]
    assert len(result.errors) == 1 and result.errors[0].where.startswith("token 1 (Old")
    assert "does not decrypt" in result.errors[0].reason


def test_authy_native_tokens_use_ten_second_period(tmp_path):
    path = tmp_path / "p.xml"
    path.write_bytes(prefs([{"accountType": "authy", "digits": 7, "name": "Twilio", "secretSeed": "00" * 8 + "ff" * 8}],
                           name="com.authy.storage.tokens.authy.key"))
    (acc,) = make(path).read().accounts
    assert (acc.period, acc.digits, acc.secret) == (10, 7, bytes(8) + b"\xff" * 8)


def test_names_without_colon_fall_back_like_aegis(tmp_path):
    path = tmp_path / "p.xml"
    path.write_bytes(prefs([
        {"accountType": "authenticator", "digits": 6, "originalName": "alice", "name": "Google - alice",
         "decryptedSecret": "JBSWY3DPEHPK3PXP"},
        {"accountType": "facebook", "digits": 6, "originalName": "bob", "name": "bob",
         "decryptedSecret": "GEZDGNBVGY3TQOJQ"},
    ]))
    accounts = make(path).read().accounts
    assert [(a.issuer, a.name) for a in accounts] == [("Google", "alice"), ("Facebook", "bob")]


def test_tampered_ciphertext_in_one_token_is_an_entry_error(tmp_path):
    data = (DIR / "authy_encrypted.xml").read_bytes()
    # Replace the first token's ciphertext by one made with another key: bad padding or non-Base32.
    first = data.index(b"encryptedSecret&quot;:&quot;") + len(b"encryptedSecret&quot;:&quot;")
    end = data.index(b"&quot;", first)
    forged = encrypt_secret("JBSWY3DPEHPK3PXP", "x", "other").encode()
    path = tmp_path / "p.xml"
    path.write_bytes(data[:first] + forged + data[end:])
    result = make(path).read()
    assert len(result.accounts) == 2 and len(result.errors) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "not valid XML"),
        (b"<map><string name='x'>", "not valid XML"),
        (b"<?xml version='1.0'?><notmap/>", "no <map>"),
        (b"<map><string name='other.key'>[]</string></map>", "no Authy token list"),
        (b"<map><string name='com.authy.storage.tokens.authenticator.key'>{oops</string></map>", "not valid JSON"),
        (b"<map><string name='com.authy.storage.tokens.authenticator.key'>{}</string></map>", "not a JSON array"),
        (b"<map><string name='com.authy.storage.tokens.authenticator.key'>" + b"[" * 50000 + b"</string></map>",
         "not valid JSON"),
        (b"\xff\xfe<\x00m\x00", "not a UTF-8"),
    ],
)
def test_broken_files_are_format_errors(tmp_path, body, message):
    path = tmp_path / "p.xml"
    path.write_bytes(body)
    with pytest.raises(FormatError, match=message):
        make(path).read()


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!DOCTYPE map [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        b'<!DOCTYPE map SYSTEM "file:///etc/passwd">',
        b'<!doctype map [<!entity x SYSTEM "http://127.0.0.1:9/">]>',
    ],
)
def test_dtds_and_entities_are_refused_before_parsing(tmp_path, doctype):
    path = tmp_path / "p.xml"
    path.write_bytes(b"<?xml version='1.0'?>" + doctype +
                     b"<map><string name='com.authy.storage.tokens.authenticator.key'>[]</string></map>")
    with pytest.raises(FormatError, match="DTD"):
        make(path).read()


def test_bad_tokens_are_entry_errors(tmp_path):
    path = tmp_path / "p.xml"
    path.write_bytes(prefs([
        token("A:ok", "JBSWY3DPEHPK3PXP"),
        token("B:nosecret"),
        token("C:badb32", "not base32!"),
        token("D:digits", "JBSWY3DPEHPK3PXP", digits="six"),
        token("E:b64", encryptedSecret="***", salt="s"),
        token("F:short", encryptedSecret=base64.b64encode(b"123").decode(), salt="s"),
        "not a dict",
    ]))
    result = make(path).read()
    assert len(result.accounts) == 1
    assert len(result.errors) == 6
    assert "not Base64" in result.errors[3].reason


def test_sniffer_leaves_other_formats_alone():
    for path in [FIXTURES / "aegis" / "aegis_plain.json", FIXTURES / "freeotp_plus" / "freeotp_plus.json",
                 FIXTURES / "bitwarden" / "bitwarden.json", FIXTURES / "otpauth_uri" / "plain.txt"]:
        assert not AuthyStore.sniff(path, path.read_bytes())


def test_read_only():
    assert not AuthyStore.can_write()


FIXTURE_BYTES = (DIR / "authy_plain.xml").read_bytes()


@F.examples(150)
@given(raw=F.flipped_and_cut(FIXTURE_BYTES, max_flips=4))
def test_hypothesis_mutated_fixture_never_crashes(tmp_path, raw):
    path = tmp_path / "p.xml"
    path.write_bytes(raw)
    F.read_or_refuse(make(path, password="x"))
