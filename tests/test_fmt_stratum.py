"""stratum: — Authenticator Pro / Stratum backups: plain, strong and legacy fixtures, writing, hostile input."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, FormatError
from otpbridge.core.model import Account, Kind
from otpbridge.plugins.stratum import StratumStore
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.morefmt import MORE, assert_clean_read, secrets_in
from tests.support.oracles import needs_oathtool

ST = MORE / "stratum"
store = F.store_opener(StratumStore, "stratum", password_env="ST_PW")
NOISSUER = C.fix_where(lambda a: a.issuer == "NoIssuer", name="")  # Stratum: Username null


@pytest.mark.parametrize("name, password", [("stratum_plain.json", None), ("stratum_encrypted.bin", "test"),
                                            ("stratum_encrypted_legacy.bin", "test")])  # fmt: skip
def test_reads_the_aegis_fixtures(name, password):
    result = store(ST / name, password).read()
    assert result.errors == [] and len(result.accounts) == 7
    C.assert_matches(result.accounts, C.AEGIS_VECTORS)


@pytest.mark.parametrize("name", ["backup.strong.authpro", "backup.legacy.authpro"])
def test_reads_stratums_own_encrypted_backups(name):
    result = store(ST / name, "test").read()
    assert result.errors == [] and len(result.accounts) == 7
    C.assert_matches(result.accounts, C.STRATUM, fixups=[NOISSUER])


def test_reads_the_full_unencrypted_backup():
    s = store(ST / "backup.unencrypted.authpro")
    result = s.read()
    assert len(result.accounts) == 14 and len(result.errors) == 1
    assert "mOTP" in result.errors[0].reason and result.errors[0].where == "entry 14 (Company VPN / john@example.com)"
    kinds = [a.kind for a in result.accounts]
    assert kinds.count(Kind.HOTP) == 1 and kinds.count(Kind.STEAM) == 1
    folders = {a.issuer: a.folder for a in result.accounts if a.folder}
    assert folders == {"DigitalOcean": "Work", "Slack": "Work", "GitHub": "Work", "Microsoft": "Work", "HOTP example": "Banking"}
    # two of Stratum's fake secrets have impossible Base32 lengths: read leniently, with a warning
    assert sum("non-standard secret" in w for w in s.warnings) == 2


@pytest.mark.parametrize("name, wrong", [("backup.strong.authpro", "testing1"), ("backup.legacy.authpro", "testing1"),
                                         ("stratum_encrypted.bin", "wrong")])  # fmt: skip
def test_wrong_password_is_exit_3(name, wrong):
    F.assert_wrong_password(store(ST / name, wrong).read)


@needs_oathtool
def test_codes_agree_with_oathtool():
    assert C.assert_codes_match_oathtool(store(ST / "stratum_plain.json").read().accounts) >= 4


@pytest.mark.parametrize("content", [b"", b"{", b"AUTHENTICATORPRO", b"AUTHENTICATORPRO" + bytes(40),
                                     b"AuthenticatorPro" + bytes(60), b'{"Authenticators": {}}'])  # fmt: skip
def test_damaged_files_are_exit_4(tmp_path, content):
    path = tmp_path / "x.authpro"
    path.write_bytes(content)
    with pytest.raises(FormatError) as err:
        store(path, "test").read()
    assert err.value.exit_code == 4


# -- writing -------------------------------------------------------------------------------
def _everything():
    return [a.replace(folder=["", "Work", "Bank"][i % 3]) for i, a in enumerate(C.AEGIS_VECTORS)]


def test_write_plain_round_trip(tmp_path):
    path = tmp_path / "out.authpro"
    s = store(path)
    s.write_all(_everything())
    F.assert_private_and_warned(path, s)
    doc = json.loads(path.read_text())
    assert [e["Type"] for e in doc["Authenticators"]] == [2, 2, 2, 1, 1, 1, 4]
    assert {c["Name"] for c in doc["Categories"]} == {"Work", "Bank"} and len(doc["AuthenticatorCategories"]) == 4
    assert store(path).read().accounts == _everything()


def test_write_strong_is_readable_independently(tmp_path):
    path = tmp_path / "enc.authpro"
    store(path, "pw").write_all(_everything())
    data = path.read_bytes()
    assert data[:16] == b"AUTHENTICATORPRO"
    key = Argon2id(salt=data[16:32], length=32, iterations=3, lanes=4, memory_cost=65536).derive(b"pw")
    doc = json.loads(AESGCM(key).decrypt(data[32:44], data[44:], None))
    assert len(doc["Authenticators"]) == 7
    assert store(path, "pw").read().accounts == _everything()
    with pytest.raises(AuthenticationError):
        store(path, "pW").read()


def test_rewrite_keeps_icons_categories_and_motp(tmp_path):
    path = tmp_path / "b.authpro"
    path.write_bytes((ST / "backup.unencrypted.authpro").read_bytes())
    before = json.loads(path.read_text())
    new = Account(kind=Kind.TOTP, secret=b"abcdefghij", issuer="New", name="me", folder="Work")
    report = store(path).apply([new])
    assert report.added == [new]
    after = json.loads(path.read_text())
    assert after["CustomIcons"] == before["CustomIcons"]
    motp = [e for e in after["Authenticators"] if e["Type"] == 3]
    assert motp == [e for e in before["Authenticators"] if e["Type"] == 3]
    icons = {e["Issuer"]: e["Icon"] for e in after["Authenticators"]}
    assert icons["HOTP example"] == "@5aec08af" and icons["Amazon"] == "amazon" and icons["New"] is None
    assert {c["Name"] for c in after["Categories"]} == {c["Name"] for c in before["Categories"]}
    result = store(path).read()
    assert len(result.accounts) == 15 and len(result.errors) == 1
    assert {a.issuer: a.folder for a in result.accounts}["New"] == "Work"


def test_an_encrypted_backup_is_never_rewritten_in_clear(tmp_path):
    path = tmp_path / "e.authpro"
    path.write_bytes((ST / "backup.legacy.authpro").read_bytes())
    store(path, "test").apply([Account(kind=Kind.TOTP, secret=b"abcdefghij", issuer="N")])
    assert path.read_bytes()[:16] == b"AUTHENTICATORPRO"  # rewritten in the current format
    assert len(store(path, "test").read().accounts) == 8


def test_digits_stratum_refuses_are_listed(tmp_path):
    bad = Account(kind=Kind.HOTP, secret=b"0123456789", issuer="H", digits=9)
    short = Account(kind=Kind.TOTP, secret=b"abcdefghij", issuer="T", digits=5)
    report = store(tmp_path / "n.authpro").apply([bad, short, C.AEGIS_VECTORS[0]])
    assert len(report.errors) == 2 and report.added == [C.AEGIS_VECTORS[0]]


@F.examples(30)
@given(accounts=F.account_lists(issuer=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=8).filter(str.strip),
                                digits=st.integers(6, 8)).filter(lambda accs: len({a.secret for a in accs}) == len(accs)))  # fmt: skip
def test_plain_round_trip_is_lossless(tmp_path, accounts):
    F.assert_round_trips(store, tmp_path / "h.authpro", accounts)


# -- detection and hostile input -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in ST.iterdir()))
def test_detected(name):
    assert detect_kind(ST / name) == "stratum"


def test_does_not_claim_other_formats():
    for path in F.other_fixtures(ST):
        assert not StratumStore.sniff(path, path.read_bytes()[: 256 * 1024]), path


_PLAIN = (ST / "stratum_plain.json").read_bytes()
_LEGACY = (ST / "stratum_encrypted_legacy.bin").read_bytes()
_STRONG = (ST / "stratum_encrypted.bin").read_bytes()


@F.examples(80)
@given(data=st.data())
def test_mutated_plain_backups_fail_cleanly(tmp_path, data):
    path = tmp_path / "m.json"
    path.write_bytes(F.mutate_bytes(data, _PLAIN, truncate=True))
    assert_clean_read(store(path, "test"), codes=(3, 4))


@F.examples(40)
@given(blob=F.flipped_and_cut(_LEGACY))
def test_mutated_legacy_backups_fail_cleanly(tmp_path, blob):
    path = tmp_path / "m.bin"
    path.write_bytes(blob)
    assert_clean_read(store(path, "test"), codes=(3, 4))


@F.examples(8)
@given(blob=F.flipped_and_cut(_STRONG))
def test_mutated_strong_backups_fail_cleanly(tmp_path, blob):
    path = tmp_path / "m.bin"
    path.write_bytes(blob)
    assert_clean_read(store(path, "test"), codes=(3, 4))


@F.examples(60)
@given(value=F.json_values(), index=st.integers(0, 6),
       key=st.sampled_from(["Type", "Secret", "Issuer", "Digits", "Period", "Counter", "Algorithm", None]))  # fmt: skip
def test_random_json_in_entries_gives_entry_errors(tmp_path, value, index, key):
    doc = json.loads(_PLAIN)
    if key is None:
        doc["Authenticators"][index] = value
    else:
        doc["Authenticators"][index][key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    result = assert_clean_read(store(path), secrets=secrets_in(_PLAIN))
    assert result is not None and len(result.accounts) + len(result.errors) == 7


def test_a_second_account_with_the_same_secret_is_listed(tmp_path):
    totp = Account(kind=Kind.TOTP, secret=b"0123456789", issuer="Same", name="t")
    hotp = Account(kind=Kind.HOTP, secret=b"0123456789", issuer="Same", name="h", counter=2)
    report = store(tmp_path / "s.authpro").apply([totp, hotp])
    assert report.added == [totp] and [e.where for e in report.errors] == [hotp.label]
    assert "same secret" in report.errors[0].reason
    assert store(tmp_path / "s.authpro").read().accounts == [totp]
