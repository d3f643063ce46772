"""proton-authenticator: — Proton Authenticator exports: fixtures, protected exports, writing, hostile input."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, FormatError
from otpbridge.core.model import Account, Kind
from otpbridge.plugins.proton_authenticator import ProtonAuthenticatorStore
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.morefmt import MORE, assert_clean_read, secrets_in

PA = MORE / "proton_authenticator"
store = F.store_opener(ProtonAuthenticatorStore, "proton-authenticator", password_env="PA_PW")

# What Proton Authenticator can say: no HOTP; a Steam account's issuer is always "Steam".
PROTON = C.fix_where(lambda a: a.kind is Kind.STEAM, issuer="Steam")


def test_reads_the_aegis_fixture():
    result = store(PA / "proton_authenticator.json").read()
    assert result.errors == [] and len(result.accounts) == 3
    C.assert_matches(result.accounts, C.AEGIS_VECTORS[:3])


def test_reads_the_protected_export():
    result = store(PA / "protected.json", "test").read()
    assert result.errors == [] and len(result.accounts) == 4
    C.assert_matches(result.accounts, C.AEGIS_VECTORS[:3] + C.AEGIS_VECTORS[6:], fixups=[PROTON])
    assert [a.note for a in result.accounts] == ["", "work phone", "", ""]


def test_wrong_password_is_exit_3():
    F.assert_wrong_password(store(PA / "protected.json", "wrong").read)


def test_empty_password_is_refused():
    F.assert_wrong_password(store(PA / "protected.json", "").read)


def _protected(tmp_path, change):
    return F.tampered_json(PA / "protected.json", tmp_path / "p.json", change)


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda d: d.update(salt="AAAA"), FormatError),  # 3 bytes: refused before Argon2
        (lambda d: d.update(salt="!!"), FormatError),
        (lambda d: d.update(content="AAAA"), FormatError),
        (lambda d: d.update(version=2), FormatError),
        (lambda d: d.update(content=d["content"][:-8] + "AAAAAAA="), AuthenticationError),  # tag altered
    ],
)
def test_damaged_protected_exports(tmp_path, change, error):
    F.assert_raises_exactly(error, store(_protected(tmp_path, change), "test").read)


def test_per_entry_problems_are_listed(tmp_path):
    def change(doc):
        doc["entries"][0]["content"]["uri"] = "otpauth://totp/x?secret=!!"
        doc["entries"][1]["content"]["entry_type"] = "Motp"
        doc["entries"][2]["content"] = "nope"

    result = store(F.tampered_json(PA / "proton_authenticator.json", tmp_path / "e.json", change)).read()
    assert result.accounts == [] and len(result.errors) == 3
    assert result.errors[0].where == "entry 1 (Mason)"


# -- writing -------------------------------------------------------------------------------
def _independent_decrypt(doc: dict, password: str) -> dict:
    salt = base64.b64decode(doc["salt"])
    blob = base64.b64decode(doc["content"])
    key = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19 * 1024).derive(password.encode())
    return json.loads(AESGCM(key).decrypt(blob[:12], blob[12:], b"proton.authenticator.export.v1"))


def test_write_plain_and_read_back(tmp_path):
    accounts = [a.replace(note="n" if a.kind is Kind.TOTP else "") for a in C.AEGIS_VECTORS]
    path = tmp_path / "out.json"
    s = store(path)
    s.write_all(accounts)
    F.assert_private_and_warned(path, s)
    assert any("HOTP" in w for w in s.warnings)
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and len(doc["entries"]) == 4  # 3 HOTP skipped
    assert doc["entries"][3]["content"] == {"uri": "steam://JRZCL47CMXVOQMNPZR2F7J4RGI", "entry_type": "Steam", "name": "Sophia"}
    back = store(path).read().accounts
    C.assert_matches(back, [a for a in accounts if a.kind is not Kind.HOTP], fixups=[PROTON])


def test_write_protected_is_readable_independently(tmp_path):
    path = tmp_path / "enc.json"
    store(path, "pässword").write_all(list(C.AEGIS_VECTORS[:3]))
    doc = json.loads(path.read_text())
    assert set(doc) == {"version", "salt", "content"} and b"Deno" not in path.read_bytes()
    plain = _independent_decrypt(doc, "pässword")
    assert [e["content"]["name"] for e in plain["entries"]] == ["Mason", "James", "Elijah"]
    C.assert_matches(store(path, "pässword").read().accounts, C.AEGIS_VECTORS[:3])


def test_apply_lists_hotp_as_skipped_and_keeps_ids(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes((PA / "proton_authenticator.json").read_bytes())
    hotp = Account(kind=Kind.HOTP, secret=b"0123456789", issuer="H", name="h", counter=3)
    totp = Account(kind=Kind.TOTP, secret=b"abcdefghij", issuer="T", name="t")
    report = store(path).apply([hotp, totp])
    assert [e.where for e in report.errors] == [hotp.label] and report.added == [totp]
    ids = [e["id"] for e in json.loads(path.read_text())["entries"]]
    assert ids[:3] == [e["id"] for e in json.loads((PA / "proton_authenticator.json").read_text())["entries"]]


def test_a_protected_file_stays_protected(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes((PA / "protected.json").read_bytes())
    new = Account(kind=Kind.TOTP, secret=b"abcdefghij", issuer="New", name="me")
    store(path, "test").apply([new])
    assert "entries" not in json.loads(path.read_text())
    assert len(store(path, "test").read().accounts) == 5


@F.examples(30)
@given(accounts=F.account_lists(kind=st.just(Kind.TOTP), note=st.text(max_size=20), folder=None))
def test_plain_round_trip_is_lossless_for_what_proton_holds(tmp_path, accounts):
    F.assert_round_trips(store, tmp_path / "h.json", accounts)


# -- detection and hostile input -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in PA.iterdir()))
def test_detected(name):
    assert detect_kind(PA / name) == "proton-authenticator"


def test_does_not_claim_other_formats():
    for path in F.other_fixtures(PA):
        assert not ProtonAuthenticatorStore.sniff(path, path.read_bytes()[: 256 * 1024]), path


_PLAIN = (PA / "proton_authenticator.json").read_bytes()
_PROTECTED = (PA / "protected.json").read_bytes()


@F.examples(80)
@given(data=st.data())
def test_mutated_plain_exports_fail_cleanly(tmp_path, data):
    path = tmp_path / "m.json"
    path.write_bytes(F.mutate_bytes(data, _PLAIN, truncate=True))
    assert_clean_read(store(path, "test"), codes=(3, 4))


@F.examples(15)
@given(blob=F.flipped_and_cut(_PROTECTED))
def test_mutated_protected_exports_fail_cleanly(tmp_path, blob):
    path = tmp_path / "m.json"
    path.write_bytes(blob)
    assert_clean_read(store(path, "test"), codes=(3, 4))


@F.examples(60)
@given(value=F.json_values(), index=st.integers(0, 2), key=st.sampled_from(["uri", "entry_type", "name", None]))
def test_random_json_in_entries_gives_entry_errors(tmp_path, value, index, key):
    doc = json.loads(_PLAIN)
    if key is None:
        doc["entries"][index]["content"] = value
    else:
        doc["entries"][index]["content"][key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    result = assert_clean_read(store(path), secrets=secrets_in(_PLAIN))
    assert result is not None and len(result.accounts) + len(result.errors) == 3


def test_a_steam_account_with_another_period_is_skipped_not_changed(tmp_path):
    """A steam:// entry holds only the secret (30 s): a 10 s 'Steam' account would come
    back as 30 s without a word; it is skipped and named instead (exit 7 in convert)."""
    steam10 = Account(kind=Kind.STEAM, secret=b"steam-ten-s", issuer="Steam", name="ten", period=10)
    steam30 = Account(kind=Kind.STEAM, secret=b"steam-thirty", issuer="Steam", name="thirty")
    s = store(tmp_path / "out.json")
    report = s.apply([steam10, steam30])
    assert [a.name for a in report.added] == ["thirty"]
    assert [e.where for e in report.errors] == [steam10.label] and "10-second" in report.errors[0].reason
    assert [(a.name, a.period) for a in store(tmp_path / "out.json").read().accounts] == [("thirty", 30)]
