"""andotp: — andOTP backups: plain, both encrypted formats, wrong passwords, garbage, writing."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, FormatError, UsageError
from otpbridge.core.model import Kind
from otpbridge.plugins.andotp import AndOtpStore
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.oracles import needs_oathtool
from tests.support.paths import FIXTURES

ANDOTP = FIXTURES / "andotp"


store = F.store_opener(AndOtpStore, "andotp", password_env="ANDOTP_PW")


@pytest.mark.parametrize(
    "name, password, expected",
    [
        ("andotp_plain.json", None, C.AEGIS_VECTORS),
        ("andotp_encrypted.bin", "test", C.AEGIS_VECTORS),
        # The old-format file predates Steam support and has "Issuer - Issuer:name" labels.
        ("andotp_encrypted_old.bin", "test", C.without(C.AEGIS_VECTORS, "Boeing")),
    ],
)
def test_reads_aegis_vectors(name, password, expected):
    result = store(ANDOTP / name, password).read()
    assert result.errors == []
    C.assert_matches(result.accounts, expected)


STRATUM_STEAM = ("BBBBBBBBBBBBBBBBBA", Kind.STEAM, "Steam", "Steam", "Tag")


@pytest.mark.parametrize(
    "name, password", [("andotp.unencrypted.json", None), ("andotp.encrypted.bin", "testtest")]
)
def test_reads_stratum_files_and_reports_motp(name, password):
    result = store(ANDOTP / name, password).read()
    assert len(result.accounts) == 8 and len(result.errors) == 1  # Stratum: 8 imported + 1 failure
    assert "mOTP" in result.errors[0].reason and result.errors[0].where == "entry 8 (Motp / motp)"
    steam = [a for a in result.accounts if a.kind is Kind.STEAM]
    assert [(a.secret_b32, a.kind, a.issuer, a.name, a.folder) for a in steam] == [STRATUM_STEAM]
    # andOTP keeps "NoIssuer" as the label with an empty issuer, and tags it "Tag".
    no_issuer = C.fix_where(lambda a: a.issuer == "NoIssuer", issuer="")
    C.assert_matches([a for a in result.accounts if a not in steam], C.STRATUM, fixups=[no_issuer])
    assert {a.name: a.folder for a in result.accounts if a.folder} == {"NoIssuer": "Tag", "Steam": "Tag"}


def test_asmw_test_files():
    for name in ("accounts_new_123456.json.aes", "accounts_old_123456.json.aes"):
        result = store(ANDOTP / name, "123456").read()
        assert [(a.issuer, a.name, a.kind) for a in result.accounts] == [("", "test", Kind.TOTP)]
    result = store(ANDOTP / "accounts_issuer_123456.json.aes", "123456").read()
    assert len(result.accounts) == 7 and result.errors == []
    assert sum(a.issuer == "asmw.org" for a in result.accounts) == 3
    assert sum("acme" in a.issuer.lower() for a in result.accounts) == 2


@needs_oathtool
def test_codes_agree_with_oathtool():
    accounts = F.accounts_of(store(ANDOTP / "andotp_plain.json"), store(ANDOTP / "andotp.unencrypted.json"))
    assert C.assert_codes_match_oathtool(accounts) >= 8


@pytest.mark.parametrize(
    "name, wrong, options",
    [
        ("andotp.encrypted.bin", "test", {}),  # README: the wrong password of this file
        ("andotp_encrypted.bin", "wrong", {}),
        ("accounts_new_123456.json.aes", "654321", {"format": "new"}),
        ("accounts_old_123456.json.aes", "654321", {"format": "old"}),
    ],
)
def test_wrong_password_is_exit_3(name, wrong, options):
    F.assert_wrong_password(store(ANDOTP / name, wrong, **options).read)


def test_a_truncated_backup_with_the_right_password_says_it_may_be_damaged(tmp_path):
    """AES-GCM cannot tell a cut file from a wrong key: the message names both."""
    cut = tmp_path / "cut.bin"
    data = (ANDOTP / "andotp.encrypted.bin").read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    err = F.assert_wrong_password(store(cut, "testtest").read)
    assert "truncated or altered" in str(err) and "damaged" in (err.hint or "")


def test_garbage_is_a_format_error():
    with pytest.raises(FormatError) as err:
        store(ANDOTP / "garbage.json.aes", "123456").read()
    assert err.value.exit_code == 4 and "not an andOTP backup" in str(err.value)
    with pytest.raises(FormatError):
        store(ANDOTP / "garbage.json.aes", "123456", format="new").read()


def test_old_format_with_wrong_password_in_auto_mode_explains_both(tmp_path):
    with pytest.raises(FormatError) as err:
        store(ANDOTP / "accounts_old_123456.json.aes", "654321").read()
    assert "format=old" in (err.value.hint or "")


def test_bad_format_option():
    with pytest.raises(UsageError):
        store(ANDOTP / "andotp_encrypted.bin", "test", format="newest").read()


# -- hostile input -------------------------------------------------------------------------
_NEW = (ANDOTP / "accounts_new_123456.json.aes").read_bytes()


@pytest.mark.parametrize(
    "data, error",
    [
        (struct.pack(">i", 2**31 - 1) + _NEW[4:], FormatError),  # absurd iterations: refused before PBKDF2
        (struct.pack(">i", 0) + _NEW[4:], FormatError),
        (struct.pack(">i", -5) + _NEW[4:], FormatError),
        (_NEW[:20], FormatError),
        (b"\x00\x00", FormatError),
        (_NEW[:-1], AuthenticationError),  # plausible header, tag broken: cannot tell from a wrong password
        (_NEW[:40] + bytes([_NEW[40] ^ 1]) + _NEW[41:], AuthenticationError),
    ],
)
def test_tampered_encrypted_files(tmp_path, data, error):
    path = tmp_path / "t.json.aes"
    path.write_bytes(data)
    F.assert_raises_exactly(error, store(path, "123456").read)


def test_absurd_iterations_with_format_new_is_refused_fast(tmp_path):
    path = tmp_path / "t.json.aes"
    path.write_bytes(struct.pack(">i", 10_000_001) + _NEW[4:])
    with pytest.raises(FormatError):
        store(path, "123456", format="new").read()


_PLAIN = (ANDOTP / "andotp.unencrypted.json").read_bytes()


@F.examples(60)
@given(data=st.data())
def test_mutated_plain_files_never_crash(tmp_path, data):
    path = tmp_path / "m.json"
    path.write_bytes(F.mutate_bytes(data, _PLAIN))
    F.read_or_refuse(store(path, "pw", format="old"))  # if it stops looking like JSON, the cheap old format is tried


_JSON = F.json_values()


@F.examples(80)
@given(data=st.data())
def test_structurally_mutated_entries_never_crash(tmp_path, data):
    entries = json.loads(_PLAIN)
    index = data.draw(st.integers(0, len(entries) - 1))
    if data.draw(st.booleans()):
        entries[index][data.draw(st.sampled_from(sorted(entries[index])))] = data.draw(_JSON)
    else:
        entries[index] = data.draw(_JSON)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(entries))
    result = store(path).read()
    assert len(result.accounts) + len(result.errors) == len(entries)


# -- writing (plain only) ------------------------------------------------------------------
def test_write_plain_round_trip_and_independent_read(tmp_path):
    accounts = [a.replace(folder="Tag" if i % 2 else "") for i, a in enumerate(C.AEGIS_VECTORS + C.STRATUM)]
    path = tmp_path / "otp_accounts.json"
    s = store(path)
    s.write_all(accounts)
    F.assert_private_and_warned(path, s)
    entries = json.loads(path.read_text())
    for entry, acc in zip(entries, accounts, strict=True):
        assert base64.b32decode(entry["secret"]) == acc.secret  # padded, as andOTP writes
        assert (entry["issuer"], entry["label"], entry["type"], entry["algorithm"], entry["digits"]) == (
            acc.issuer, acc.name, acc.kind.value.upper(), acc.algorithm.value, acc.digits,
        )  # fmt: skip
        assert entry["tags"] == ([acc.folder] if acc.folder else [])
        assert entry.get("counter" if acc.kind is Kind.HOTP else "period") == (
            acc.counter if acc.kind is Kind.HOTP else acc.period
        )
    assert store(path).read().accounts == accounts


def test_decrypts_a_file_encrypted_independently(tmp_path):
    """A current-format file built here from the documented layout reads back."""
    entries = json.loads((ANDOTP / "andotp_plain.json").read_text())
    salt, iv, iterations = b"s" * 12, b"i" * 12, 1000
    key = PBKDF2HMAC(algorithm=hashes.SHA1(), length=32, salt=salt, iterations=iterations).derive(b"pw")
    blob = (
        struct.pack(">i", iterations)
        + salt
        + iv
        + AESGCM(key).encrypt(iv, json.dumps(entries).encode(), None)
    )
    path = tmp_path / "x.json.aes"
    path.write_bytes(blob)
    C.assert_matches(store(path, "pw").read().accounts, C.AEGIS_VECTORS)


@F.examples(40)
@given(accounts=F.account_lists())
def test_plain_round_trip_is_lossless_except_notes(tmp_path, accounts):
    F.assert_round_trips(store, tmp_path / "h.json", accounts)


# -- detection -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in ANDOTP.iterdir() if p.is_file()))
def test_detected_as_andotp(name):
    assert detect_kind(ANDOTP / name) == "andotp"


def test_text_files_named_like_andotp_are_not_claimed(tmp_path):
    for name in ("andotp-export.txt", "otp_accounts.json.aes"):
        path = tmp_path / name
        path.write_text("otpauth://totp/A:b?secret=AAAAAAAAAAAAAAAA\n")
        assert not AndOtpStore.sniff(path, path.read_bytes())


def test_does_not_claim_other_formats():
    others = F.other_fixtures(ANDOTP)
    for path in others:
        assert not AndOtpStore.sniff(path, path.read_bytes()[: 256 * 1024]), path
