"""proton-pass: — Proton Pass export zips: the public fixture, placeholders, trash, zip bounds, hostile input."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import FormatError
from otpbridge.plugins import appkit
from otpbridge.plugins.proton_pass import ProtonPassStore
from otpbridge.stores.registry import detect_kind
from tests.support import formats as F
from tests.support.morefmt import MORE, assert_clean_read, secrets_in

PP = MORE / "proton_pass"
FIXTURE = PP / "PassExport.zip"
store = F.store_opener(ProtonPassStore, "proton-pass", password_env="PP_PW")
DATA = json.loads(zipfile.ZipFile(FIXTURE).read("Proton Pass/data.json"))


def test_reads_the_public_fixture_with_one_malformed_uri():
    result = store(FIXTURE).read()
    assert len(result.accounts) == 7 and len(result.errors) == 1
    assert result.errors[0].where == "item 9 (Main TOTP and custom fields), field 'Malformed totp'"
    got = [(a.issuer, a.name, a.folder, a.algorithm.value, a.digits, a.period) for a in result.accounts]
    assert got[:3] == [
        ("Main TOTP (only secret)", "ausername", "TOTP export", "SHA1", 6, 30),
        ("MYISSUER", "MYLABEL", "TOTP export", "SHA256", 8, 15),  # a URI the user supplied is kept as it was
        ("Only custom fields", "TOTP 1", "TOTP export", "SHA1", 6, 30),  # "Proton Pass" placeholder replaced
    ]
    assert not any(a.name == "Proton Pass" for a in result.accounts)


def _zip(members: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name) if name.endswith("/") else name, data)
    return buf.getvalue()


def _export(tmp_path, doc, name="export.zip", **members) -> object:
    path = tmp_path / name
    path.write_bytes(_zip({"Proton Pass/": b"", "Proton Pass/data.json": json.dumps(doc).encode(), **members}))
    return path


def test_trashed_items_bare_secrets_and_old_username_field(tmp_path):
    doc = json.loads(json.dumps(DATA))
    items = doc["vaults"][next(iter(doc["vaults"]))]["items"]
    items[0]["state"] = 2
    items[0]["data"]["content"]["totpUri"] = "JBSWY3DPEHPK3PXP"
    items[1]["data"]["content"] = {"username": "old-style", "totpUri": "JBSWY3DPEHPK3PXQ"}
    result = store(_export(tmp_path, doc)).read()
    trashed = [e for e in result.errors if "trash" in e.reason]
    assert [e.where for e in trashed] == ["item 1 (With a file)"]
    bare = [a for a in result.accounts if a.name == "old-style"]
    assert len(bare) == 1 and bare[0].issuer == "hopefully v1" and bare[0].folder == "Personal"


@pytest.mark.parametrize(
    "members, match",
    [
        ({"../evil": b"x"}, "unsafe path"),
        ({"/etc/passwd": b"x"}, "unsafe path"),
        ({"Proton Pass/../../x": b"x"}, "unsafe path"),
        ({"C:/x": b"x"}, "unsafe path"),
        ({"Proton Pass/data.pgp": b"-----BEGIN PGP MESSAGE-----"}, "encrypted"),
    ],
)
def test_unsafe_or_encrypted_archives_are_refused(tmp_path, members, match):
    path = tmp_path / "x.zip"
    path.write_bytes(_zip({"Proton Pass/data.json" if "data.pgp" not in str(members) else "a": b"{}", **members}))
    with pytest.raises(FormatError, match=match) as err:
        store(path).read()
    assert err.value.exit_code == 4


def test_a_zip_bomb_is_refused_before_unpacking(tmp_path):
    path = tmp_path / "bomb.zip"
    path.write_bytes(_zip({"Proton Pass/data.json": b" " * (appkit.MAX_MEMBER_BYTES + 10)}))
    with pytest.raises(FormatError, match="too large"):
        store(path).read()
    path.write_bytes(_zip({"Proton Pass/data.json": b"{" + b" " * (20 * 1024 * 1024) + b"}"}))
    with pytest.raises(FormatError, match="implausibly well"):
        store(path).read()


def test_too_many_members_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(appkit, "MAX_ZIP_ENTRIES", 10)
    path = tmp_path / "many.zip"
    path.write_bytes(_zip({f"Proton Pass/files/{i}": b"" for i in range(11)} | {"Proton Pass/data.json": b"{}"}))
    with pytest.raises(FormatError, match="members"):
        store(path).read()


def test_a_lying_size_header_does_not_unpack_more_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(appkit, "MAX_MEMBER_BYTES", 1000)
    raw = bytearray(_zip({"Proton Pass/data.json": b"[" + b"0," * 5000 + b"0]"}, compression=zipfile.ZIP_STORED))
    # the local and central headers both claim 10 bytes; zipfile then stops (or fails) early
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = raw.index(sig)
        off = 22 if sig == b"PK\x03\x04" else 24
        raw[at + off : at + off + 4] = (10).to_bytes(4, "little")
    path = tmp_path / "lie.zip"
    path.write_bytes(bytes(raw))
    assert_clean_read(store(path))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", b"not a zip", b"-----BEGIN PGP MESSAGE-----\n\nxx"])
def test_damaged_files_are_exit_4(tmp_path, content):
    path = tmp_path / "x.zip"
    path.write_bytes(content)
    with pytest.raises(FormatError) as err:
        store(path).read()
    assert err.value.exit_code == 4


def test_detected_and_does_not_claim_other_formats():
    assert detect_kind(FIXTURE) == "proton-pass"
    for path in F.other_fixtures(PP):
        assert not ProtonPassStore.sniff(path, path.read_bytes()[: 256 * 1024]), path


_BYTES = FIXTURE.read_bytes()


@F.examples(80)
@given(blob=F.flipped_and_cut(_BYTES, max_flips=4))
def test_mutated_zips_fail_cleanly(tmp_path, blob):
    path = tmp_path / "m.zip"
    path.write_bytes(blob)
    result = assert_clean_read(store(path))
    if result is not None:
        assert len(result.accounts) + len(result.errors) <= 8


_ITEM_PATHS = [("content", "totpUri"), ("extraFields",), ("metadata",), ("content",), ()]


@F.examples(80)
@given(value=F.json_values(), item=st.integers(0, 3), where=st.sampled_from(_ITEM_PATHS))
def test_random_json_in_items_gives_entry_errors(tmp_path, value, item, where):
    doc = json.loads(json.dumps(DATA))
    items = doc["vaults"][list(doc["vaults"])[3]]["items"]
    node = items[item]["data"]
    if not where:
        items[item]["data"] = value
    else:
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
    result = assert_clean_read(store(_export(tmp_path, doc)), secrets=secrets_in(json.dumps(DATA).encode()))
    assert result is not None and len(result.accounts) + len(result.errors) <= 8 + 3


# -- encrypted exports (gpg, symmetric) ----------------------------------------------------------
needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
PGP = PP / "data.pgp"
S2K = ["--s2k-mode", "3", "--s2k-digest-algo", "SHA256", "--s2k-count", "65011712", "--cipher-algo", "AES256"]


def _gpg_symmetric(tmp_path, plaintext: bytes, passphrase: str = "test") -> bytes:
    """What Proton Pass's OpenPGP.js writes, made by gpg: armoured SKESK + SEIPD, Proton's S2K."""
    home = tempfile.mkdtemp(prefix="g", dir="/tmp")
    try:
        src = tmp_path / "plain.bin"
        src.write_bytes(plaintext)
        proc = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
             "--armor", *S2K, "--symmetric", "--output", "-", str(src)],
            input=passphrase.encode(), capture_output=True, check=True,
        )  # fmt: skip
        return proc.stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@needs_gpg
def test_reads_the_public_encrypted_data_pgp():
    result = store(PGP, password="test").read()
    assert result.accounts == [] and result.errors == []  # one note item, no TOTP


@needs_gpg
@pytest.mark.parametrize("name", ["data.pgp", "zip.pgp", "new.zip"])
def test_wrong_passphrase_is_exit_3(tmp_path, name):
    if name == "data.pgp":
        path = PGP
    elif name == "zip.pgp":
        path = tmp_path / name
        path.write_bytes(_gpg_symmetric(tmp_path, FIXTURE.read_bytes()))
    else:
        path = tmp_path / name
        path.write_bytes(_zip({"Proton Pass/data.pgp": _gpg_symmetric(tmp_path, json.dumps(DATA).encode())}))
    F.assert_wrong_password(store(path, password="tset").read)


@needs_gpg
def test_reads_both_encrypted_forms(tmp_path):
    old = tmp_path / "Proton Pass_export.pgp"
    old.write_bytes(_gpg_symmetric(tmp_path, FIXTURE.read_bytes()))  # the whole zip encrypted
    new = tmp_path / "Proton Pass_export.zip"
    new.write_bytes(_zip({"Proton Pass/data.pgp": _gpg_symmetric(tmp_path, json.dumps(DATA).encode())}))
    for path in (old, new):
        assert detect_kind(path) == "proton-pass"
        result = store(path, password="test").read()
        assert len(result.accounts) == 7 and len(result.errors) == 1


@needs_gpg
def test_a_message_for_a_key_is_not_a_proton_pass_export(tmp_path):
    path = tmp_path / "x.pgp"
    path.write_bytes((MORE / "andotp_gpg" / "andotp.gpg").read_bytes())
    with pytest.raises(FormatError, match="for a key"):
        store(path, password="test").read()


_PGP = PGP.read_bytes()


@needs_gpg
@F.examples(12)
@given(blob=F.flipped_and_cut(_PGP, max_flips=2))
def test_mutated_encrypted_exports_fail_cleanly(tmp_path, blob):
    path = tmp_path / "m.pgp"
    path.write_bytes(blob)
    assert_clean_read(store(path, password="test"), codes=(3, 4))
