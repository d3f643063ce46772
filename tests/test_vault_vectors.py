"""The golden vectors pin vault format v1: our reader, an independent one, and regeneration."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from otpbridge.core.errors import AuthenticationError, IntegrityError
from otpbridge.core.secrets import Secret
from otpbridge.vault import format as vault
from tests import independent_reader as ind
from tests.support.vectors import REPO, VECTORS, check_vector_set
from tests.support.vectors import field_bytes as _b
from tests.support.vectors import load as _load
from tests.support.vectors import vector_script as _script

# Version-2 headers (key slots, FORMAT.md §12) have their own test: tests/test_vault_v2_vectors.py.
FILES = sorted(p for p in VECTORS.glob("*.json") if json.loads(p.read_text("utf-8")).get("header_version", 1) == 1)





def test_vector_set_is_complete():
    check_vector_set(FILES, (
        "success-small",
        "wrong-passphrase",
        "header-bitflip",
        "header-truncated",
        "object-bitflip-ciphertext",
        "object-truncated",
        "object-wrong-kind",
        "object-wrong-device",
        "object-wrong-seq",
        "kdf-memory-too-large",
        "kdf-iterations-too-large",
        "kdf-lanes-too-large",
    ), {"success": 3, "wrong-passphrase": 1, "integrity": 10})


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_otpbridge_reader_meets_vector(path):
    doc = _load(path)
    header, blob = _b(doc, "header_b64"), _b(doc, "object_b64")
    stats = Counter()
    secret = Secret(doc["passphrase"])
    if doc["expect"] == "success":
        key = vault.open_epoch(header, secret, stats=stats)
        info = vault.peek_epoch(header)
        assert (info.vault_id.hex(), info.epoch, info.created) == (
            doc["vault_id_hex"],
            doc["epoch"],
            doc["created"],
        )
        assert (key.vault_id.hex(), key.epoch) == (doc["vault_id_hex"], doc["epoch"])
        assert key.open(blob, **doc["open_as"]) == _b(doc, "plaintext_b64")
        assert len(blob) == vault.padded_size(len(_b(doc, "plaintext_b64")))
    else:
        want = vault.WrongPassphrase if doc["expect"] == "wrong-passphrase" else vault.VaultIntegrityError
        with pytest.raises(want) as info:
            key = vault.open_epoch(header, secret, stats=stats)
            assert blob is not None, "header-only vector opened"
            key.open(blob, **doc["open_as"])
        assert info.value.exit_code == doc["exit_code"]
        assert isinstance(info.value, AuthenticationError if doc["exit_code"] == 3 else IntegrityError)
        assert doc["passphrase"] not in str(info.value)
    assert stats["kdf"] == doc["kdf_derivations"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_independent_reader_meets_vector(path):
    doc = _load(path)
    header, blob = _b(doc, "header_b64"), _b(doc, "object_b64")
    derivations: list = []
    try:
        vid, epoch, vk = ind.read_header(header, doc["passphrase"], derivations)
        assert blob is not None, "header-only vector opened"
        got = ind.read_object(blob, vid, epoch, vk, **doc["open_as"])
        outcome = "success"
    except ind.WrongPassphrase:
        outcome = "wrong-passphrase"
    except ind.Damaged:
        outcome = "integrity"
    assert outcome == doc["expect"]
    if outcome == "success":
        assert got == _b(doc, "plaintext_b64")
    assert len(derivations) == doc["kdf_derivations"]


def test_independent_reader_reads_what_otpbridge_writes_now(tmp_path):
    """Beyond the frozen vectors: a fresh random epoch and object, through the CLI form."""
    env = {"OTPBRIDGE_ALLOW_INSECURE_KDF": "1"}
    header, key = vault.create_epoch(
        Secret("hunter2 ünïcode"), params=vault.choose_params("insecure-test", env)
    )
    plaintext = b"otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP" * 400
    (tmp_path / "h").write_bytes(header)
    (tmp_path / "o").write_bytes(key.seal("snapshot", "dev-1", 42, plaintext))
    argv = [
        sys.executable,
        str(REPO / "tests" / "independent_reader.py"),
        str(tmp_path / "h"),
        str(tmp_path / "o"),
    ]
    ok = subprocess.run(
        [*argv, "snapshot", "dev-1", "42"], input=b"hunter2 \xc3\xbcn\xc3\xafcode\n", capture_output=True
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == plaintext
    wrong = subprocess.run([*argv, "snapshot", "dev-1", "42"], input=b"hunter3\n", capture_output=True)
    assert wrong.returncode == 3 and wrong.stdout == b""
    swapped = subprocess.run(
        [*argv, "snapshot", "dev-1", "43"], input=b"hunter2 \xc3\xbcn\xc3\xafcode\n", capture_output=True
    )
    assert swapped.returncode == 4 and swapped.stdout == b""


def test_regenerating_gives_identical_bytes():
    mod = _script()
    built = mod.build_vectors()
    assert sorted(built) == sorted(p.stem for p in FILES)
    for path in FILES:
        assert mod.render(built[path.stem]) == path.read_text("utf-8"), path.stem
    assert mod.check() == []


def test_independent_reader_imports_no_otpbridge():
    source = (REPO / "tests" / "independent_reader.py").read_text("utf-8")
    imports = [ln for ln in source.splitlines() if ln.startswith(("import ", "from "))]
    assert imports and not any("otpbridge" in ln or "bridge" in ln.split()[1] for ln in imports)
