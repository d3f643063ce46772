"""Epoch header version 2 (key slots, docs/FORMAT.md §12): the golden vectors read by
otpbridge and by the independent reader, regeneration, and mutated headers."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, IntegrityError, UsageError
from otpbridge.core.secrets import IdentityKey, RecoveryKey, Secret
from otpbridge.vault import format as vault
from otpbridge.vault import keyring
from tests import independent_reader as ind
from tests.support.vectors import EXIT, REPO, VECTORS, check_vector_set
from tests.support.vectors import field_bytes as _b
from tests.support.vectors import load as _load
from tests.support.vectors import vector_script as _script

FILES = sorted(p for p in VECTORS.glob("*.json") if json.loads(p.read_text("utf-8")).get("header_version") == 2)
CREDENTIAL = {"passphrase": Secret, "recovery": RecoveryKey, "identity": IdentityKey}





def _has_pyrage() -> bool:
    return importlib.util.find_spec("pyrage") is not None


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "success"
    if isinstance(exc, UsageError):
        return "usage"
    if isinstance(exc, AuthenticationError):
        return "wrong-passphrase"
    if isinstance(exc, IntegrityError):
        return "integrity"
    raise AssertionError(f"undocumented error {type(exc).__name__}: {exc}")


def test_vector_set_is_complete():
    docs = check_vector_set(FILES, (
        "success-v2-slots",
        "success-v2-recovery",
        "success-v2-age",
        "success-v2-ssh",
        "success-v2-rekeyed",
        "success-v2-second-passphrase",
        "v2-keyring-tampered-rechecksummed",
        "v2-too-many-slots",
        "v2-kdf-out-of-bounds",
        "v2-scrypt-stanza",
        "v2-truncated",
        "v2-wrong-recovery-code",
        "v2-wrong-passphrase",
    ), {"success": 5, "usage": 1, "wrong-passphrase": 3, "integrity": 10})
    for d in docs:
        assert d["open_with"] in CREDENTIAL
        header = _b(d, "header_b64")
        assert header[:9] == b"otpbEPCH\x02"
    slots = _load(VECTORS / "success-v2-slots.json")
    assert [s["type"] for s in slots["keyring"]] == ["passphrase", "recovery", "age", "ssh"]
    assert slots["open_with"] == "passphrase" and slots["kdf_derivations"] == 1
    assert _load(VECTORS / "v2-wrong-recovery-code.json")["exit_code"] == 2
    assert _load(VECTORS / "v2-wrong-passphrase.json")["exit_code"] == 3


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_otpbridge_reader_meets_vector(path):
    doc = _load(path)
    if doc["open_with"] == "identity" and not _has_pyrage():
        pytest.skip("key-file slots need pyrage")
    header, blob = _b(doc, "header_b64"), _b(doc, "object_b64")
    stats: Counter = Counter()
    credential = CREDENTIAL[doc["open_with"]](doc["credential"])
    if doc["expect"] == "success":
        key = vault.open_epoch(header, credential, stats=stats)
        info = vault.peek_epoch(header)
        assert (info.vault_id.hex(), info.epoch, info.created) == (doc["vault_id_hex"], doc["epoch"], doc["created"])
        assert info.digest == hashlib.sha256(header).hexdigest()
        assert (key.vault_id.hex(), key.epoch, key.slot) == (doc["vault_id_hex"], doc["epoch"], doc["slot"])
        ring = keyring.keyring_of(key)
        assert ring is not None
        assert [{"id": s.id, "type": s.type, "name": s.name} for s in ring.slots] == doc["keyring"]
        assert key.open(blob, **doc["open_as"]) == _b(doc, "plaintext_b64")
    else:
        with pytest.raises((UsageError, AuthenticationError, IntegrityError)) as caught:
            key = vault.open_epoch(header, credential, stats=stats)
            assert blob is not None, "header-only vector opened"
            key.open(blob, **doc["open_as"])
        err = caught.value
        assert _outcome(err) == doc["expect"], str(err)
        assert err.exit_code == doc["exit_code"]
        if doc["expect"] == "wrong-passphrase":
            assert isinstance(err, vault.WrongPassphrase)
        if doc["expect"] == "integrity":
            assert isinstance(err, vault.VaultIntegrityError)
        for secret in (doc["credential"], doc["passphrase"], doc.get("recovery_code")):
            if secret:
                assert secret not in str(err) and secret not in (err.hint or "")
    assert stats["kdf"] == doc["kdf_derivations"]


def _reader_outcome(read) -> str:
    """What the independent reader made of a header: a vector's "expect" value."""
    try:
        read()
    except ind.BadCredential:
        return "usage"
    except ind.WrongPassphrase:
        return "wrong-passphrase"
    except ind.Damaged:
        return "integrity"
    return "success"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_independent_reader_meets_vector(path):
    doc = _load(path)
    header, blob = _b(doc, "header_b64"), _b(doc, "object_b64")
    derivations: list = []
    got: list = []

    def read() -> None:
        vid, epoch, vk = ind.read_any_header(header, doc["open_with"], doc["credential"], derivations)
        assert blob is not None, "header-only vector opened"
        got.append(ind.read_object(blob, vid, epoch, vk, **doc["open_as"]))

    try:
        outcome = _reader_outcome(read)
    except ind.NeedsAge:
        pytest.skip("key-file slots need pyrage")
    got = got[0] if got else None
    assert outcome == doc["expect"]
    if outcome == "success":
        assert got == _b(doc, "plaintext_b64")
        full = ind.read_header_v2(header, doc["open_with"], doc["credential"])
        assert full["slot"] == doc["slot"]
        assert [{"id": s["id"], "type": s["type"], "name": s["name"]} for s in full["keyring"]["slots"]] == doc[
            "keyring"
        ]
    assert len(derivations) == doc["kdf_derivations"]


def test_vector_secrets_are_what_the_keyring_says():
    """The identities and codes stored in the vector belong to the header's slots."""
    doc = _load(VECTORS / "success-v2-slots.json")
    assert keyring.recovery_bytes(RecoveryKey(doc["recovery_code"]))
    assert ind.recovery_code_bytes(doc["recovery_code"]) == keyring.recovery_bytes(RecoveryKey(doc["recovery_code"]))
    key = vault.open_epoch(_b(doc, "header_b64"), Secret(doc["passphrase"]))
    public = {s.type: s.public for s in key.keyring.slots}
    assert public["age"] == doc["age_recipient"]
    assert public["ssh"] == " ".join(doc["ssh_public"].split()[:2])
    if _has_pyrage():
        assert keyring.identity_recipients(IdentityKey(doc["age_identity"])) == [doc["age_recipient"]]
        assert keyring.parse_identities(IdentityKey(doc["ssh_identity"]))


def test_regenerating_gives_identical_bytes():
    """Deterministic rng, fixed clock; age ciphertexts reused from the committed files."""
    pytest.importorskip("pyrage")
    mod = _script()
    built = mod.build_v2_vectors()
    assert sorted(built) == sorted(p.stem for p in FILES)
    for path in FILES:
        assert mod.render(built[path.stem]) == path.read_text("utf-8"), path.stem


def test_regenerating_without_committed_files_makes_valid_age_slots(tmp_path):
    """With no committed vector to reuse, the age and ssh slots are fresh pyrage output:
    other bytes, the same passphrase and recovery wraps' plaintext, and still readable."""
    pytest.importorskip("pyrage")
    mod = _script()
    built = mod.build_v2_vectors(tmp_path)
    doc = built["success-v2-ssh"]
    header = _b(doc, "header_b64")
    committed = _load(VECTORS / "success-v2-ssh.json")
    assert header != _b(committed, "header_b64")  # pyrage drew its own randomness
    key = vault.open_epoch(header, IdentityKey(doc["credential"]))
    assert key.open(_b(doc, "object_b64"), **doc["open_as"]) == _b(doc, "plaintext_b64")
    vid, epoch, vk = ind.read_any_header(header, "identity", doc["credential"])
    assert ind.read_object(_b(doc, "object_b64"), vid, epoch, vk, **doc["open_as"]) == _b(doc, "plaintext_b64")


def _fresh_header(tmp_path, *, age: bool):
    """A random version-2 header (real randomness) with a passphrase, a recovery code and
    optionally an age key, and one object."""
    params = vault.choose_params("insecure-test", {"OTPBRIDGE_ALLOW_INSECURE_KDF": "1"})
    code = keyring.new_recovery_code()
    new = [keyring.NewSlot("passphrase", "me", Secret("hunter2 ünïcode"), params=params),
           keyring.NewSlot("recovery", "", code)]
    identity = ""
    if age:
        import pyrage

        ident = pyrage.x25519.Identity.generate()
        identity = str(ident)
        new.append(keyring.NewSlot("age", "laptop", recipient=str(ident.to_public())))
    raw, vid = os.urandom(32), os.urandom(16)
    header, _ring, _ = keyring.create_header(raw, vault_id=vid, epoch=3, created=1_700_000_000, keep=(), new=new)
    plaintext = b"otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP" * 400
    (tmp_path / "h").write_bytes(header)
    (tmp_path / "o").write_bytes(vault.VaultKey(vid, 3, raw).seal("snapshot", "dev-1", 42, plaintext))
    return code.reveal(), identity, plaintext


def test_independent_reader_cli_reads_what_otpbridge_writes_now(tmp_path):
    code, _identity, plaintext = _fresh_header(tmp_path, age=False)
    argv = [sys.executable, str(REPO / "tests" / "independent_reader.py")]
    files = [str(tmp_path / "h"), str(tmp_path / "o"), "snapshot", "dev-1"]

    def run(*args: str, stdin: bytes = b"", seq: str = "42") -> subprocess.CompletedProcess:
        return subprocess.run([*argv, *args, *files, seq], input=stdin, capture_output=True)

    ok = run(stdin="hunter2 ünïcode\n".encode())
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == plaintext
    by_code = run("--recovery-code", stdin=code.lower().encode() + b"\n")
    assert by_code.returncode == 0 and by_code.stdout == plaintext, by_code.stderr
    assert run(stdin=b"hunter3\n").returncode == 3
    typo = code[:3] + ("A" if code[3] != "A" else "C") + code[4:]
    bad = run("--recovery-code", stdin=typo.encode() + b"\n")
    try:
        keyring.recovery_bytes(RecoveryKey(typo))
    except UsageError:
        assert bad.returncode == 2 and bad.stdout == b""
    assert run("--recovery-code", stdin=keyring.new_recovery_code().reveal().encode()).returncode == 3
    assert run("--recovery-code", stdin=code.encode(), seq="43").returncode == 4


def test_independent_reader_cli_reads_an_age_slot(tmp_path):
    pytest.importorskip("pyrage")
    _code, identity, plaintext = _fresh_header(tmp_path, age=True)
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# created: today\n{identity}\n")
    done = subprocess.run([sys.executable, str(REPO / "tests" / "independent_reader.py"), "--identity",
                           str(key_file), str(tmp_path / "h"), str(tmp_path / "o"), "snapshot", "dev-1", "42"],
                          capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == plaintext
    header = (tmp_path / "h").read_bytes()
    assert vault.open_epoch(header, IdentityKey(key_file.read_text())).epoch == 3


def test_independent_reader_imports_no_otpbridge():
    source = (REPO / "tests" / "independent_reader.py").read_text("utf-8")
    imports = [ln.strip() for ln in source.splitlines() if ln.strip().startswith(("import ", "from "))]
    assert imports and not any("otpbridge" in ln or "bridge" in ln.split()[1] for ln in imports)
    assert {ln.split()[1].split(".")[0] for ln in imports} <= {"__future__", "hashlib", "hmac", "json", "struct",
                                                                "sys", "cryptography", "pyrage"}


# --- mutated headers: only the documented errors, and both readers agree ----------------------
_SUCCESS = _load(VECTORS / "success-v2-slots.json")
_HEADER = base64.b64decode(_SUCCESS["header_b64"])


def _rechecksum(data: bytes) -> bytes:
    return data[:-32] + hashlib.sha256(data[:-32]).digest() if len(data) >= 32 else data


@st.composite
def _mutations(draw) -> bytes:
    data = bytearray(_HEADER)
    how = draw(st.sampled_from(["flip", "set", "truncate", "extend", "splice"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
    elif how == "set":
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    elif how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    else:  # cut a piece out of the middle
        start = draw(st.integers(0, len(data) - 1))
        data = data[:start] + data[start + draw(st.integers(1, 300)) :]
    out = bytes(data)
    return _rechecksum(out) if draw(st.booleans()) else out


def _credentials() -> dict[str, tuple[str, str]]:
    code = _SUCCESS["recovery_code"]
    typo = _load(VECTORS / "v2-wrong-recovery-code.json")["credential"]
    out = {"passphrase": ("passphrase", _SUCCESS["passphrase"]), "recovery": ("recovery", code),
           "typo": ("recovery", typo), "wrong": ("passphrase", "not it")}
    if _has_pyrage():
        out["age"] = ("identity", _SUCCESS["age_identity"])
        out["ssh"] = ("identity", _SUCCESS["ssh_identity"])
    return out


_CREDENTIALS = _credentials()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=_mutations(), which=st.sampled_from(sorted(_CREDENTIALS)))
def test_mutated_header_gives_only_documented_errors(header, which):
    kind, text = _CREDENTIALS[which]
    stats: Counter = Counter()
    try:
        key = vault.open_epoch(header, CREDENTIAL[kind](text), stats=stats)
    except (UsageError, AuthenticationError, IntegrityError) as exc:
        ours = _outcome(exc)
        assert exc.exit_code == EXIT[ours]
        if ours == "usage":
            assert which == "typo"
        assert text not in str(exc)
    else:
        ours = "success"
        assert header == _HEADER  # every byte is authenticated: only the intact header opens
        assert key.open(_b(_SUCCESS, "object_b64"), **_SUCCESS["open_as"]) == _b(_SUCCESS, "plaintext_b64")
    assert stats["kdf"] <= keyring.MAX_PASSPHRASE_SLOTS
    # peek_epoch never raises anything but an integrity error either
    try:
        vault.peek_epoch(header)
    except IntegrityError:
        pass
    derivations: list = []
    theirs = _reader_outcome(lambda: ind.read_any_header(header, kind, text, derivations))
    assert theirs == ours
    assert len(derivations) == stats["kdf"]


def test_mutations_reach_past_the_checksum():
    """The property above is not only checksum failures: re-checksummed edits reach every
    step (sanity check of the strategy's reach with a few hand-picked edits)."""
    spans, keyring_at = _script().slot_spans(_HEADER)
    seen = set()
    for at in (25, 41, spans[0][2] + 20, spans[1][2] + 50, spans[2][2] + 60, keyring_at + 2, keyring_at + 100):
        edited = bytearray(_HEADER)
        edited[at] ^= 0x10
        try:
            vault.open_epoch(_rechecksum(bytes(edited)), Secret(_SUCCESS["passphrase"]))
        except (AuthenticationError, IntegrityError) as exc:
            seen.add(str(exc).split(":")[-1].strip()[:30])
    assert len(seen) >= 4, seen
