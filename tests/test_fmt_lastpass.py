"""lastpass: — LastPass Authenticator JSON exports: every fixture, folders, lenient secrets, hostile input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import FormatError
from otpbridge.core.model import Kind
from otpbridge.plugins.lastpass import LastPassStore
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.morefmt import MORE, assert_clean_read, secrets_in

LP = MORE / "lastpass"
store = F.store_opener(LastPassStore, "lastpass")


@pytest.mark.parametrize(
    "name, count, lenient",
    [
        ("lastpass.json", 3, 2),  # Android v3; two hand-typed secrets of impossible length
        ("lastpass_ios_export.json", 2, 0),  # iOS v1: no device fields, seconds timestamps
        ("lastpass_missing_fields.json", 1, 1),  # empty issuer
        ("lastpass_stratum.json", 6, 0),
    ],
)
def test_reads_every_fixture_with_the_expected_count(name, count, lenient):
    s = store(LP / name)
    result = s.read()
    assert len(result.accounts) == count and result.errors == []
    assert all(a.kind is Kind.TOTP for a in result.accounts)
    assert sum("non-standard secret" in w for w in s.warnings) == lenient


def test_proton_fixture_values():
    accounts = store(LP / "lastpass.json").read().accounts
    got = [(a.issuer, a.name, a.algorithm.value, a.digits, a.period) for a in accounts]
    assert got == [
        ("issuer", "account name default", "SHA1", 6, 30),
        ("other", "", "SHA256", 8, 20),
        ("", "sha512 name", "SHA512", 6, 30),
    ]
    # 19 Base32 characters = 95 bits: the 11 whole bytes are kept, as lenient decoders do
    assert len(accounts[0].secret) == 11


def test_stratum_fixture_matches_the_stratum_accounts_and_folders():
    accounts = store(LP / "lastpass_stratum.json").read().accounts
    noissuer = C.fix_where(lambda a: a.issuer == "NoIssuer", issuer="", name="NoIssuer")
    C.assert_matches(accounts, C.without(C.STRATUM, "Standard") + C.STRATUM[5:6], fixups=[noissuer])
    assert {a.name: a.folder for a in accounts} == {
        "Totp": "Favorites", "Period": "Favorites", "Digits": "Group", "NoIssuer": "Group", "256": "", "512": "",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(p.name for p in LP.iterdir()))
def test_detected_as_lastpass(name):
    assert detect_kind(LP / name) == "lastpass"


def test_does_not_claim_other_formats():
    for path in F.other_fixtures(LP):
        assert not LastPassStore.sniff(path, path.read_bytes()[: 256 * 1024]), path


def test_bad_entries_are_listed_and_the_rest_read(tmp_path):
    def change(doc):
        doc["accounts"][0]["secret"] = "not base32 !"
        doc["accounts"][1]["digits"] = "eight"
        doc["accounts"][2]["algorithm"] = "MD5"
        doc["accounts"][3]["timeStep"] = 0

    path = F.tampered_json(LP / "lastpass_stratum.json", tmp_path / "t.json", change)
    result = store(path).read()
    assert len(result.accounts) == 2 and len(result.errors) == 4
    assert [e.where for e in result.errors][0] == "entry 1 (Standard / Totp)"
    secrets = secrets_in((LP / "lastpass_stratum.json").read_bytes())
    assert not any(s in str(e) for e in result.errors for s in secrets)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"accounts": 3}', b"\xff\xfe", b"null"])
def test_damaged_files_are_exit_4(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(FormatError) as err:
        store(path).read()
    assert err.value.exit_code == 4


_DATA = (LP / "lastpass_stratum.json").read_bytes()


@F.examples(80)
@given(data=st.data())
def test_mutated_files_fail_cleanly(tmp_path, data):
    path = tmp_path / "m.json"
    path.write_bytes(F.mutate_bytes(data, _DATA, truncate=True))
    result = assert_clean_read(store(path))
    if result is not None:
        assert len(result.accounts) + len(result.errors) <= 6


@F.examples(80)
@given(value=F.json_values(), index=st.integers(0, 5), key=st.sampled_from(
    ["secret", "issuerName", "userName", "digits", "timeStep", "algorithm", "folderData", None]))  # fmt: skip
def test_random_json_in_entries_gives_entry_errors(tmp_path, value, index, key):
    doc = json.loads(_DATA)
    if key is None:
        doc["accounts"][index] = value
    else:
        doc["accounts"][index][key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    result = assert_clean_read(store(path), secrets=secrets_in(_DATA))
    assert result is not None and len(result.accounts) + len(result.errors) == 6
