"""1password: — 1Password .1pux and CSV exports: fixtures, several TOTPs per item, zip bounds, hostile input."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import FormatError
from otpbridge.plugins.onepassword import OnePasswordStore
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.morefmt import MORE, assert_clean_read

OP = MORE / "onepassword"
PUX = OP / "1PasswordExport.1pux"
store = F.store_opener(OnePasswordStore, "1password")
DATA = json.loads(zipfile.ZipFile(PUX).read("export.data"))


def test_reads_keepassxcs_1pux_with_two_totps_on_one_login():
    result = store(PUX).read()
    assert result.errors == [] and len(result.accounts) == 2
    assert [(a.issuer, a.name, a.folder) for a in result.accounts] == [("Login", "team@keepassxc.org", "Personal")] * 2
    assert [a.secret_b32 for a in result.accounts] == ["DFDFDEA", "DFDFDEFDEE"]  # bare secrets, re-encoded canonically (unused low bits 0)


def test_reads_pass_imports_csv_without_any_otp():
    result = store(OP / "1password8.csv").read()
    assert result.accounts == [] and result.errors == []  # 14 logins, none with a one-time password


def test_reads_a_csv_with_otpauth_uris():
    result = store(OP / "1password8_otp.csv").read()
    assert result.errors == [] and len(result.accounts) == 3
    C.assert_matches(result.accounts, C.AEGIS_VECTORS[:3])
    assert all(a.note == "" for a in result.accounts)  # item notes are not copied


def _pux(tmp_path, doc, name="e.1pux"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("export.attributes", json.dumps({"version": 3}))
        z.writestr("export.data", json.dumps(doc))
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return path


def _login_fields(doc):
    return doc["accounts"][0]["vaults"][0]["items"][0]["details"]["sections"]


def test_uris_bad_secrets_and_other_kinds_per_field(tmp_path):
    doc = json.loads(json.dumps(DATA))
    fields = [f for s in _login_fields(doc) for f in s.get("fields", []) if "totp" in f["value"]]
    fields[0]["value"]["totp"] = "otpauth://totp/GitHub:me?secret=JBSWY3DPEHPK3PXP&issuer=GitHub"
    fields[1]["value"]["totp"] = "not base32 !"
    result = store(_pux(tmp_path, doc)).read()
    assert [(a.issuer, a.name) for a in result.accounts] == [("GitHub", "me")]
    assert [e.where for e in result.errors] == ["item 1 (Login), one-time password 2"]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", b"Title,Url\n", b"\xff\xfe", b'Title,Url,Username,Password,OTPAuth\n"a'])
def test_damaged_files_are_exit_4(tmp_path, content):
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(FormatError) as err:
        store(path).read()
    assert err.value.exit_code == 4


def test_unsafe_member_names_are_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("export.data", json.dumps(DATA))
        z.writestr("files/../../../home/x", b"x")
    path = tmp_path / "evil.1pux"
    path.write_bytes(buf.getvalue())
    with pytest.raises(FormatError, match="unsafe path"):
        store(path).read()


@pytest.mark.parametrize("name", sorted(p.name for p in OP.iterdir()))
def test_detected(name):
    assert detect_kind(OP / name) == "1password"


def test_does_not_claim_other_formats():
    for path in F.other_fixtures(OP):
        assert not OnePasswordStore.sniff(path, path.read_bytes()[: 256 * 1024]), path


_PUX = PUX.read_bytes()
_CSV = (OP / "1password8_otp.csv").read_bytes()


@F.examples(60)
@given(blob=F.flipped_and_cut(_PUX, max_flips=4))
def test_mutated_1pux_fail_cleanly(tmp_path, blob):
    path = tmp_path / "m.1pux"
    path.write_bytes(blob)
    assert_clean_read(store(path))


@F.examples(60)
@given(data=st.data())
def test_mutated_csv_fail_cleanly(tmp_path, data):
    path = tmp_path / "m.csv"
    path.write_bytes(F.mutate_bytes(data, _CSV, truncate=True))
    result = assert_clean_read(store(path))
    if result is not None:
        assert len(result.accounts) + len(result.errors) <= 6


@F.examples(60)
@given(value=F.json_values(), where=st.sampled_from(["details", "sections", "fields", "value", "overview", "item"]))
def test_random_json_in_items_gives_entry_errors(tmp_path, value, where):
    doc = json.loads(json.dumps(DATA))
    item = doc["accounts"][0]["vaults"][0]["items"][0]
    section = next(s for s in item["details"]["sections"] if any("totp" in f["value"] for f in s.get("fields", [])))
    field = next(f for f in section["fields"] if "totp" in f["value"])
    if where == "details":
        item["details"] = value
    elif where == "sections":
        item["details"]["sections"] = value
    elif where == "fields":
        section["fields"] = value
    elif where == "value":
        field["value"] = {"totp": value}
    elif where == "overview":
        item["overview"] = value
    else:
        doc["accounts"][0]["vaults"][0]["items"][0] = value
    result = assert_clean_read(store(_pux(tmp_path, doc)))
    assert result is not None and len(result.accounts) + len(result.errors) <= 2
