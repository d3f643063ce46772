"""freeotp2: — FreeOTP 2 backups: six public fixtures, crafted streams, wrong password, hostile input."""

from __future__ import annotations

import hashlib
import json
import struct
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import FormatError
from otpbridge.core.model import Kind
from otpbridge.plugins.freeotp2 import FreeOtp2Store
from otpbridge.plugins.javaser import decode_modified_utf8
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.morefmt import MORE, assert_clean_read
from tests.support.oracles import needs_oathtool

FO = MORE / "freeotp2"
store = F.store_opener(FreeOtp2Store, "freeotp2", password_env="FO_PW")
NOISSUER = C.fix_where(lambda a: a.issuer == "NoIssuer", issuer="")  # FreeOTP: no issuerExt


@pytest.mark.parametrize("api", [23, 25, 27, 34])
def test_reads_aegis_fixtures_of_every_android_version(api):
    result = store(FO / f"freeotp_v2_api{api}.xml", "test").read()
    assert result.errors == [] and len(result.accounts) == 6
    C.assert_matches(result.accounts, C.AEGIS_VECTORS[:6])


def test_reads_the_token_without_algorithm_digits_or_period():
    result = store(FO / "freeotp_v2_null_algo.xml", "test").read()
    assert result.errors == [] and len(result.accounts) == 1
    C.assert_matches(result.accounts, C.AEGIS_VECTORS[:1])


def test_reads_stratums_fixture():
    result = store(FO / "freeotp.bin", "test").read()
    assert result.errors == [] and len(result.accounts) == 7
    C.assert_matches(result.accounts, C.STRATUM, fixups=[NOISSUER])


@pytest.mark.parametrize("name, wrong", [("freeotp.bin", "test1"), ("freeotp_v2_api23.xml", "wrong"),
                                         ("freeotp_v2_api34.xml", "")])  # fmt: skip
def test_wrong_password_is_exit_3(name, wrong):
    F.assert_wrong_password(store(FO / name, wrong).read)


@needs_oathtool
def test_codes_agree_with_oathtool():
    assert C.assert_codes_match_oathtool(store(FO / "freeotp_v2_api34.xml", "test").read().accounts) >= 4


# -- crafted backups (an independent writer: Java serialisation + FreeOTP's crypto) ------------
def _mutf8(text: str) -> bytes:
    units = text.encode("utf-16-be", "surrogatepass")
    out = b"".join(
        chr(int.from_bytes(units[i : i + 2], "big")).encode("utf-8", "surrogatepass") for i in range(0, len(units), 2)
    )
    return out.replace(b"\x00", b"\xc0\x80")


def _jstring(text: str) -> bytes:
    data = _mutf8(text)
    return b"\x74" + struct.pack(">H", len(data)) + data


_BOOLEAN_TRUE = (  # new java.lang.Boolean(true), as ObjectOutputStream writes it
    b"\x73\x72" + struct.pack(">H", 17) + b"java.lang.Boolean" + bytes.fromhex("cd207280d59cfaee")
    + b"\x02\x00\x01Z" + struct.pack(">H", 5) + b"value" + b"\x78\x70" + b"\x01"
)  # fmt: skip


def java_hashmap(items: list[tuple[str, object]]) -> bytes:
    out = bytearray(b"\xac\xed\x00\x05\x73\x72" + struct.pack(">H", 17) + b"java.util.HashMap")
    out += bytes.fromhex("0507dac1c31660d1") + b"\x03\x00\x02"
    out += b"F" + struct.pack(">H", 10) + b"loadFactor" + b"I" + struct.pack(">H", 9) + b"threshold"
    out += b"\x78\x70" + struct.pack(">fi", 0.75, 12) + b"\x77\x08" + struct.pack(">ii", 16, len(items))
    for key, value in items:
        out += _jstring(key)
        out += _jstring(value) if isinstance(value, str) else value  # type: ignore[operator]
    return bytes(out + b"\x78")


def _signed(data: bytes) -> list[int]:
    return [b - 256 if b > 127 else b for b in data]


def _ek(key: bytes, plaintext: bytes, aad: str, nonce: bytes) -> dict:
    sealed = AESGCM(key).encrypt(nonce, plaintext, aad.encode())
    params = b"\x30\x11\x04\x0c" + nonce + b"\x02\x01\x10"
    return {"mCipher": "AES/GCM/NoPadding", "mCipherText": _signed(sealed), "mParameters": _signed(params), "mToken": aad}


def crafted(tokens: list[dict], *, password: str = "pw", extra: list[tuple[str, object]] = (), iterations: int = 1000):
    """A FreeOTP 2 backup; ``iterations`` is what the file claims (the key uses 1000 when it is implausible)."""
    salt, master = bytes(range(32)), bytes(range(32, 64))
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations if 0 < iterations <= 1000 else 1000, 32)
    mk = {"mAlgorithm": "PBKDF2withHmacSHA512", "mEncryptedKey": _ek(key, master, "AES", bytes(12)),
          "mIterations": iterations, "mSalt": _signed(salt)}  # fmt: skip
    items: list[tuple[str, object]] = [("masterKey", json.dumps(mk))]
    for n, tok in enumerate(tokens):
        tid = str(uuid.UUID(int=n + 1))
        secret = tok.pop("_secret", b"12345678901234567890")
        wrapped = _ek(master, secret, "Hmac" + tok.get("algo", "SHA1"), n.to_bytes(12, "big"))
        items += [(tid, json.dumps({"key": json.dumps(wrapped)})), (tid + "-token", json.dumps(tok))]
    return java_hashmap(items + list(extra))


def test_modified_utf8_decoding():
    assert decode_modified_utf8(_mutf8("a\x00b 😀 é")) == "a\x00b 😀 é"


def test_crafted_backup_with_emoji_steam_boolean_and_incomplete_tokens(tmp_path):
    data = crafted(
        [
            {"type": "TOTP", "issuerExt": "Bank 😀", "label": "me", "digits": 8, "period": 60, "algo": "SHA256"},
            {"type": "TOTP", "issuerExt": "Steam", "label": "gamer"},
            {"type": "HOTP", "issuerExt": "Old", "issuerAlt": "Renamed", "label": "x", "labelAlt": "y", "counter": 7},
        ],
        extra=[
            ("restoreComplete", _BOOLEAN_TRUE),
            ("deadbeef-0000-4000-8000-000000000000-token", json.dumps({"type": "TOTP", "issuerExt": "Orphan"})),
            ("cafebabe-0000-4000-8000-000000000000", json.dumps({"key": "{}"})),
        ],
    )
    path = tmp_path / "externalBackup.xml"
    path.write_bytes(data)
    assert detect_kind(path) == "freeotp2"
    result = store(path, "pw").read()
    got = {(a.kind, a.issuer, a.name, a.digits, a.period, a.counter, a.algorithm.value) for a in result.accounts}
    assert got == {
        (Kind.TOTP, "Bank 😀", "me", 8, 60, 0, "SHA256"),
        (Kind.STEAM, "Steam", "gamer", 5, 30, 0, "SHA1"),
        (Kind.HOTP, "Renamed", "y", 6, 30, 7, "SHA1"),
    }
    assert all(a.secret == b"12345678901234567890" for a in result.accounts)
    reasons = sorted(e.reason for e in result.errors)
    assert len(reasons) == 2 and "key is missing" in reasons[0] and "settings are missing" in reasons[1]


def test_a_token_that_does_not_decrypt_is_an_entry_error(tmp_path):
    data = crafted([{"type": "TOTP", "issuerExt": "A", "label": "a"}, {"type": "TOTP", "issuerExt": "B", "label": "b"}])
    i = data.index(b"mCipherText", data.index(b"-token") - 900)  # inside the first token's key
    tampered = data[: i + 20] + (b"9" if data[i + 20 : i + 21] != b"9" else b"8") + data[i + 21 :]
    path = tmp_path / "t.xml"
    path.write_bytes(tampered)
    result = assert_clean_read(store(path, "pw"))
    assert result is not None and len(result.accounts) + len(result.errors) == 2


@pytest.mark.parametrize(
    "iterations, error", [(10_000_000, FormatError), (0, FormatError)]  # bounded before PBKDF2 runs
)
def test_kdf_parameters_are_bounded_before_deriving(tmp_path, iterations, error):
    path = tmp_path / "k.xml"
    path.write_bytes(crafted([], iterations=iterations))
    F.assert_raises_exactly(error, store(path, "pw").read)


@pytest.mark.parametrize(
    "content",
    [b"", b"\xac\xed\x00\x05", b"\xac\xed\x00\x05\x74\x00\x01a", b"<?xml version='1.0'?><map/>",
     java_hashmap([("a", "b")]), java_hashmap([("masterKey", "{not json")]), java_hashmap([("k", "v")])[:-1],
     java_hashmap([("k", "v")]) + b"\x00"],
)  # fmt: skip
def test_damaged_files_are_exit_4(tmp_path, content):
    path = tmp_path / "d.xml"
    path.write_bytes(content)
    with pytest.raises(FormatError) as err:
        store(path, "pw").read()
    assert err.value.exit_code == 4


# -- detection and hostile input -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in FO.iterdir()))
def test_detected(name):
    assert detect_kind(FO / name) == "freeotp2"


def test_does_not_claim_other_formats():
    for path in F.other_fixtures(FO):
        assert not FreeOtp2Store.sniff(path, path.read_bytes()[: 256 * 1024]), path


_DATA = (FO / "freeotp_v2_api34.xml").read_bytes()


@F.examples(60)
@given(data=st.data())
def test_mutated_backups_fail_cleanly(tmp_path, data):
    path = tmp_path / "m.xml"
    path.write_bytes(F.mutate_bytes(data, _DATA, truncate=True))
    result = assert_clean_read(store(path, "test"), codes=(3, 4))
    if result is not None:
        # Never more accounts than the file's six tokens. A token is two map entries (its key
        # under "<uuid>", its settings under "<uuid>-token"); each damaged name splits one token
        # into a key without settings and settings without a key, so every token gives at most
        # two outcomes, however many names the mutations hit.
        assert len(result.accounts) <= 6 and len(result.accounts) + len(result.errors) <= 2 * 6


@F.examples(60)
@given(blob=F.flipped_and_cut(_DATA, max_flips=2))
def test_flipped_and_cut_backups_fail_cleanly(tmp_path, blob):
    path = tmp_path / "f.xml"
    path.write_bytes(blob)
    assert_clean_read(store(path, "test"), codes=(3, 4))
