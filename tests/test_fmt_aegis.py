"""aegis: — Aegis vaults: every fixture, wrong passwords, tampering, writing, detection."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, FormatError, IntegrityError
from otpbridge.core.model import Account, Kind
from otpbridge.plugins.aegis import AegisStore
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.cli import run_module
from tests.support.oracles import needs_oathtool
from tests.support.paths import FIXTURES

AEGIS = FIXTURES / "aegis"


store = F.store_opener(AegisStore, "aegis", password_env="AEGIS_PW")


STRATUM_EXTRAS = {
    # secret (Base32) -> (kind, issuer, name, folder)
    "BBBBBBBBBBBBBBBBBBBBBBBB": (Kind.TOTP, "", "Username", "Group"),
    "CCCCCCCCCCCCCCCCCCCCCCCCCCCCC": (Kind.STEAM, "Steam", "Steam", "Group"),
}


def check_stratum(result):
    extras = [a for a in result.accounts if a.secret_b32 in STRATUM_EXTRAS]
    assert {(a.kind, a.issuer, a.name, a.folder) for a in extras} == set(STRATUM_EXTRAS.values())
    C.assert_matches([a for a in result.accounts if a not in extras], C.STRATUM)
    assert len(result.errors) == 2
    reasons = " ".join(e.reason for e in result.errors)
    assert "mOTP" in reasons and "Yandex" in reasons
    assert {e.where for e in result.errors} == {"entry 8 (Motp / Motp)", "entry 9 (Yandex / Yandex)"}


@pytest.mark.parametrize(
    "name, password",
    [("aegis_plain.json", None), ("aegis_encrypted.json", "test"), ("aegis_plain_grouped_v2.json", None)],
)
def test_reads_aegis_vectors(name, password):
    result = store(AEGIS / name, password).read()
    assert result.errors == []
    assert len(result.accounts) == 7
    C.assert_matches(result.accounts, C.AEGIS_VECTORS)


def test_v2_groups_become_folders():
    result = store(AEGIS / "aegis_plain_grouped_v2.json").read()
    folders = {a.issuer: a.folder for a in result.accounts}
    assert folders == {
        "Deno": "group1", "Airbnb": "group1", "Issuu": "group2",
        "SPDX": "", "Air Canada": "", "WWE": "", "Boeing": "",
    }  # fmt: skip


@pytest.mark.parametrize(
    "name, password", [("aegis.unencrypted.json", None), ("aegis.encrypted.json", "test")]
)
def test_reads_stratum_files_and_reports_motp_yandex(name, password):
    result = store(AEGIS / name, password).read()
    assert len(result.accounts) + len(result.errors) == 11
    check_stratum(result)


@needs_oathtool
def test_codes_agree_with_oathtool():
    accounts = F.accounts_of(store(AEGIS / "aegis_plain.json"), store(AEGIS / "aegis.unencrypted.json"))
    assert C.assert_codes_match_oathtool(accounts) >= 8


@pytest.mark.parametrize(
    "name, wrong", [("aegis_encrypted.json", "wrong"), ("aegis.encrypted.json", "test1")]
)
def test_wrong_password_is_exit_3(name, wrong):
    F.assert_wrong_password(store(AEGIS / name, wrong).read)


def test_wrong_password_through_the_cli_is_one_line_exit_3(tmp_path):
    proc = run_module(
        "list", f"aegis:{AEGIS / 'aegis.encrypted.json'}?password-env=AEGIS_PW",
        env={"AEGIS_PW": "test1", "OTPBRIDGE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "wrong password" in proc.stderr


# -- hostile input -------------------------------------------------------------------------
def _tampered(tmp_path, change):
    return F.tampered_json(AEGIS / "aegis_encrypted.json", tmp_path / "t.json", change)


def _flip_db(v):
    raw = bytearray(base64.b64decode(v["db"]))
    raw[5] ^= 1
    v["db"] = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "change, error",
    [
        (_flip_db, IntegrityError),  # the password is right, the content was altered
        (lambda v: v["header"]["params"].update(tag="00" * 16), IntegrityError),
        (lambda v: v["header"]["slots"][0].update(n=1 << 30), FormatError),  # bounded before scrypt
        (lambda v: v["header"]["slots"][0].update(n=1000), FormatError),
        (lambda v: v["header"]["slots"][0].update(r=10**6), FormatError),
        (lambda v: v["header"]["slots"][0].update(n="32768"), FormatError),
        (lambda v: v["header"]["slots"][0].update(type=2), FormatError),  # biometric only
        (lambda v: v["header"]["slots"][0].update(salt="zz"), FormatError),
        (lambda v: v["header"]["params"].update(nonce="00"), FormatError),
        (lambda v: v.update(db="!!not base64!!"), FormatError),
        (lambda v: v["header"].update(slots=None), FormatError),
        (lambda v: v.update(version=2), FormatError),
        (lambda v: v["header"]["slots"][0].update(key="00" * 32), AuthenticationError),
        (lambda v: v["header"].update(slots=v["header"]["slots"] * 50), FormatError),  # 50 scrypts: refused
    ],
)
def test_tampered_encrypted_vaults(tmp_path, change, error):
    F.assert_raises_exactly(error, store(_tampered(tmp_path, change), "test").read)


def test_garbage_and_truncated_files(tmp_path):
    for content in (b"", b"{", b"[]", b"null", b"\xff\xfe", (AEGIS / "aegis_plain.json").read_bytes()[:500]):
        path = tmp_path / "x.json"
        path.write_bytes(content)
        with pytest.raises(FormatError):
            store(path).read()
    with pytest.raises(FormatError):
        store(tmp_path / "missing.json").read()


_PLAIN = (AEGIS / "aegis.unencrypted.json").read_bytes()


@F.examples(60)
@given(data=st.data())
def test_mutated_plain_vaults_never_crash(tmp_path, data):
    path = tmp_path / "m.json"
    path.write_bytes(F.mutate_bytes(data, _PLAIN, max_delete=50, max_insert=8))
    F.read_or_refuse(store(path))


_JSON_VALUES = F.json_values(text_size=12, max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@F.examples(80)
@given(data=st.data())
def test_structurally_mutated_vaults_never_crash(tmp_path, data):
    """Replace a random node of a valid vault with random JSON: errors are ours only."""
    vault = json.loads(_PLAIN)
    paths = [p for p in _paths(vault) if p]
    target = data.draw(st.sampled_from(paths))
    node = vault
    for key in target[:-1]:
        node = node[key]
    node[target[-1]] = data.draw(_JSON_VALUES)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(vault))
    result = F.read_or_refuse(store(path))
    if result is not None:
        assert len(result.accounts) + len(result.errors) <= 11


# -- writing -------------------------------------------------------------------------------
def _everything():
    accounts = list(C.AEGIS_VECTORS) + list(C.STRATUM)
    folders = ["Work", "Work/Sub", "", "Privé ✓"]
    return [
        a.replace(folder=folders[i % 4], note="line1\nline2" if i % 3 == 0 else "")
        for i, a in enumerate(accounts)
    ]


def _independent_decrypt(vault: dict, password: str) -> dict:
    """Decrypt an Aegis vault straight from vault.md's parameters (not our reader)."""
    slot = next(s for s in vault["header"]["slots"] if s["type"] == 1)
    assert (slot["n"], slot["r"], slot["p"]) == (32768, 8, 1)
    assert len(bytes.fromhex(slot["salt"])) == 32
    key = Scrypt(salt=bytes.fromhex(slot["salt"]), length=32, n=slot["n"], r=slot["r"], p=slot["p"]).derive(
        password.encode()
    )
    kp = slot["key_params"]
    master = AESGCM(key).decrypt(
        bytes.fromhex(kp["nonce"]), bytes.fromhex(slot["key"]) + bytes.fromhex(kp["tag"]), None
    )
    params = vault["header"]["params"]
    content = AESGCM(master).decrypt(
        bytes.fromhex(params["nonce"]), base64.b64decode(vault["db"]) + bytes.fromhex(params["tag"]), None
    )
    return json.loads(content)


def _check_content(db: dict, accounts):
    """What Aegis itself needs: content v3, valid uuids, groups referenced by uuid."""
    assert db["version"] == 3
    groups = {g["uuid"]: g["name"] for g in db["groups"]}
    assert len(groups) == len(db["groups"])
    assert len(db["entries"]) == len(accounts)
    for entry, acc in zip(db["entries"], accounts, strict=True):
        assert entry["type"] == acc.kind.value
        assert F.b32decode_unpadded(entry["info"]["secret"]) == acc.secret
        assert "=" not in entry["info"]["secret"]
        assert entry["info"]["algo"] == acc.algorithm.value and entry["info"]["digits"] == acc.digits
        assert entry["info"].get("counter" if acc.kind is Kind.HOTP else "period") == (
            acc.counter if acc.kind is Kind.HOTP else acc.period
        )
        assert [groups[u] for u in entry["groups"]] == ([acc.folder] if acc.folder else [])
        assert (entry["issuer"], entry["name"], entry["note"]) == (acc.issuer, acc.name, acc.note)
        assert len(entry["uuid"]) == 36


def test_write_plain_round_trip(tmp_path):
    accounts = _everything()
    s = store(tmp_path / "out.json")
    s.write_all(accounts)
    path = tmp_path / "out.json"
    F.assert_private_and_warned(path, s)
    vault = json.loads(path.read_text())
    assert vault["version"] == 1 and vault["header"] == {"slots": None, "params": None}
    _check_content(vault["db"], accounts)
    assert store(path).read().accounts == accounts


def test_write_encrypted_round_trip_and_independent_decrypt(tmp_path):
    accounts = _everything()
    path = tmp_path / "enc.json"
    s = store(path, "correct horse ☃")
    s.write_all(accounts)
    assert not any("clear text" in w for w in s.warnings)
    vault = json.loads(path.read_text())
    assert isinstance(vault["db"], str)
    assert b"Deno" not in path.read_bytes()
    _check_content(_independent_decrypt(vault, "correct horse ☃"), accounts)
    assert store(path, "correct horse ☃").read().accounts == accounts
    with pytest.raises(AuthenticationError):
        store(path, "correct horse").read()


def test_encrypt_yes_uses_the_store_password_variable(tmp_path):
    path = tmp_path / "e.json"
    ctx = Context(environ={"OTPBRIDGE_STORE_PASSWORD": "pw"}, warn=lambda m: None)
    AegisStore(StoreSpec("aegis", str(path), {"encrypt": "yes"}), ctx).write_all(list(C.AEGIS_VECTORS))
    assert isinstance(json.loads(path.read_text())["db"], str)
    assert AegisStore(StoreSpec("aegis", str(path), {}), ctx).read().accounts == list(C.AEGIS_VECTORS)


def test_an_encrypted_vault_is_never_rewritten_in_clear(tmp_path):
    path = tmp_path / "v.json"
    shutil.copy(AEGIS / "aegis_encrypted.json", path)
    ctx = Context(environ={"OTPBRIDGE_STORE_PASSWORD": "test"}, warn=lambda m: None)
    new = Account(kind=Kind.TOTP, secret=b"0123456789", issuer="New", name="me")
    report = AegisStore(StoreSpec("aegis", str(path), {}), ctx).apply([new])
    assert [a.issuer for a in report.added] == ["New"] and report.backup is not None
    assert isinstance(json.loads(path.read_text())["db"], str)
    again = AegisStore(StoreSpec("aegis", str(path), {}), ctx).read().accounts
    assert again == list(C.AEGIS_VECTORS) + [new]


def test_rewrite_keeps_motp_yandex_and_icons(tmp_path):
    path = tmp_path / "s.json"
    shutil.copy(AEGIS / "aegis.unencrypted.json", path)
    before = json.loads(path.read_text())["db"]["entries"]
    new = Account(kind=Kind.HOTP, secret=b"abcdefghij", issuer="New", name="x", counter=3, folder="Group")
    store(path).apply([new])
    after = json.loads(path.read_text())["db"]
    by_uuid = {e["uuid"]: e for e in after["entries"]}
    for old in before:
        kept = by_uuid[old["uuid"]]  # every entry keeps its uuid
        if old["type"] in ("motp", "yandex"):
            assert kept["info"] == old["info"] and kept["type"] == old["type"]
        assert kept.get("icon") == old.get("icon") and kept.get("icon_mime") == old.get("icon_mime")
    group_names = {g["name"] for g in after["groups"]}
    assert group_names == {"Group"}  # the new entry joined the existing group
    result = store(path).read()
    assert len(result.accounts) == 10 and len(result.errors) == 2


hyp_accounts = F.account_lists(note=st.text(max_size=20))


@F.examples(40)
@given(accounts=hyp_accounts)
def test_plain_round_trip_is_lossless(tmp_path, accounts):
    F.assert_round_trips(store, tmp_path / "h.json", accounts)


# -- detection -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in AEGIS.iterdir() if p.is_file()))
def test_detected_as_aegis(name):
    assert detect_kind(AEGIS / name) == "aegis"


def test_does_not_claim_other_formats():
    others = F.other_fixtures(AEGIS)
    assert others
    for path in others:
        head = path.read_bytes()[: 256 * 1024]
        assert not AegisStore.sniff(path, head), path


def test_sniffs_a_vault_larger_than_the_sniff_window(tmp_path):
    vault = json.loads(_PLAIN)
    vault["db"]["entries"][0]["icon"] = "A" * (400 * 1024)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(vault))
    assert detect_kind(Path(path)) == "aegis"
