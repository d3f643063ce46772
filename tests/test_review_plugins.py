"""Adversarial review of the store plugins: each test failed before the fix it guards.

Themes: rewriting a file must not drop what could not be read (SPEC §3), hostile files end
in an OtpBridgeError (never a traceback) and KDF parameters are bounded before deriving,
writes fail cleanly, and nothing secret lands in a message.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
from pathlib import Path

import pytest

from otpbridge.core import fileio
from otpbridge.core.errors import FormatError, OtpBridgeError
from otpbridge.plugins import appcrypto, bitwarden, ente
from otpbridge.stores.base import Context
from otpbridge.stores.registry import open_store
from tests.support.cli import run

SECRET = "JBSWY3DPEHPK3PXP"
OTHER = "KRSXG5CTMVRXEZLU"
NEW = "GEZDGNBVGY3TQOJQ"


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "src.txt"
    path.write_text(f"otpauth://totp/New:a?secret={NEW}\n")
    return path


def _aegis_plain(entries, groups=None) -> str:
    return json.dumps(
        {
            "version": 1,
            "header": {"slots": None, "params": None},
            "db": {"version": 3, "entries": entries, "groups": groups or []},
        }
    )


# -- 1. rewriting a file keeps what it could not read ------------------------------------
def _uris(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text(f"# keep me\notpauth://totp/A:b?secret={SECRET}\notpauth://motp/M:x?secret=ABCDEF12\n")
    return "uris", path, ["# keep me", "otpauth://motp/M:x?secret=ABCDEF12"]


def _ente(tmp_path):
    path = tmp_path / "d.txt"
    trashed = f"otpauth://totp/T:x?secret={OTHER}&issuer=T&codeDisplay=%7B%22trashed%22%3Atrue%7D"
    yandex = "otpauth://yaotp/Y:y?secret=ABCDEFGH&pin=1234&codeDisplay=%7B%7D"
    path.write_text(f"otpauth://totp/K:y?secret={SECRET}&issuer=K&codeDisplay=%7B%7D\n{trashed}\n{yandex}\n")
    return "ente", path, [trashed, yandex]


def _aegis(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        _aegis_plain(
            [
                {"type": "totp", "uuid": "u1", "name": "ok", "issuer": "I", "info": {"secret": SECRET}},
                {"type": "totp", "uuid": "u2", "name": "md5", "issuer": "I", "info": {"secret": OTHER, "algo": "MD5"}},
                {"type": "futurekind", "uuid": "u3", "name": "future", "issuer": "I", "info": {"x": 1}},
            ]
        )
    )
    return "aegis", path, ['"md5"', '"futurekind"', '"MD5"']


def _andotp(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        json.dumps(
            [
                {"secret": SECRET, "type": "TOTP", "label": "ok", "issuer": "I"},
                {"secret": OTHER, "type": "MOTP", "label": "motp-entry", "issuer": "I", "pin": "1234"},
            ]
        )
    )
    return "andotp", path, ['"motp-entry"', '"MOTP"', '"1234"']


def _freeotp(tmp_path):
    path = tmp_path / "d.json"
    token = {"secret": list(range(1, 11)), "type": "TOTP", "label": "ok", "issuerExt": "I", "digits": 6, "period": 30}
    other = {"secret": list(range(2, 12)), "type": "MOTP", "label": "odd", "issuerExt": "I"}
    path.write_text(json.dumps({"tokens": [token, other], "tokenOrder": ["I:ok", "I:odd"]}))
    return "freeotp+", path, ['"odd"', '"MOTP"', '"I:odd"']


def _twofas(tmp_path):
    path = tmp_path / "d.2fas"
    path.write_text(
        json.dumps(
            {
                "schemaVersion": 4,
                "services": [
                    {"name": "ok", "secret": SECRET, "otp": {"tokenType": "TOTP"}},
                    {"name": "yan", "secret": OTHER, "otp": {"tokenType": "YANDEX"}, "groupId": "g2"},
                ],
                "groups": [{"id": "g1", "name": "Empty group"}, {"id": "g2", "name": "Yandex group"}],
            }
        )
    )
    return "2fas", path, ['"yan"', '"YANDEX"', '"Empty group"', '"Yandex group"']


@pytest.mark.parametrize("make", [_uris, _ente, _aegis, _andotp, _freeotp, _twofas], ids=lambda f: f.__name__[1:])
def test_merge_keeps_entries_the_reader_skipped(capsys, tmp_path, source, make):
    """Was: `convert --merge` rewrote the file without them, exit 0, nothing said."""
    kind, path, kept = make(tmp_path)
    code, _, err = run(capsys, "convert", f"uris:{source}", f"{kind}:{path}", "--merge")
    assert code == 0, err
    text = path.read_text()
    for needle in kept:
        assert needle in text, f"{needle} was dropped"
    if kind != "freeotp+":  # FreeOTP+ keeps secrets as byte arrays
        assert NEW in text and SECRET in text
    result = open_store(f"{kind}:{path}", Context(warn=lambda m: None)).read()
    assert len(result.accounts) == 2 and result.errors  # still skipped, still reported


def test_code_advance_keeps_other_lines(capsys, tmp_path):
    """Was: `code --advance` on a URI list deleted every line it could not parse."""
    path = tmp_path / "h.txt"
    path.write_text(f"otpauth://hotp/H:x?secret={SECRET}&counter=1\notpauth://motp/M:x?secret=ABCDEF12\n")
    code, _, _ = run(capsys, "code", f"uris:{path}", "--advance")
    assert code == 7  # the motp line is reported as skipped…
    text = path.read_text()
    assert "otpauth://motp/M:x?secret=ABCDEF12" in text  # …and kept
    assert "counter=2" in text


def test_store_that_cannot_keep_unreadable_entries_refuses(capsys, tmp_path, source):
    """A writer without keeps_unreadable (gauth) must refuse (exit 6), not drop the entry."""
    from otpbridge.plugins.gauth import migration_payload_class, migration_uri

    cls = migration_payload_class()
    payload = cls(version=1, batch_size=1, batch_index=0, batch_id=1)
    payload.otp_parameters.append(cls.OtpParameters(secret=b"0123456789", name="ok", algorithm=1, digits=1, type=2))
    payload.otp_parameters.append(cls.OtpParameters(secret=b"9876543210", name="md5", algorithm=4, digits=1, type=2))
    path = tmp_path / "g.txt"
    path.write_text(migration_uri(payload.SerializeToString()) + "\n")
    before = path.read_bytes()
    code, _, err = run(capsys, "convert", f"uris:{source}", f"gauth:{path}", "--merge")
    assert code == 6, err
    assert "cannot read" in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_groups_without_entries_survive_a_rewrite(capsys, tmp_path, source):
    """Was: Aegis and 2FAS dropped every group no written entry used."""
    path = tmp_path / "a.json"
    path.write_text(
        _aegis_plain(
            [{"type": "totp", "uuid": "u1", "name": "ok", "issuer": "I", "info": {"secret": SECRET}}],
            groups=[{"uuid": "gu1", "name": "Lonely"}],
        )
    )
    assert run(capsys, "convert", f"uris:{source}", f"aegis:{path}", "--merge")[0] == 0
    groups = json.loads(path.read_text())["db"]["groups"]
    assert {"uuid": "gu1", "name": "Lonely"} in groups


# -- 2. writes fail cleanly and atomically -------------------------------------------------
@pytest.mark.parametrize("kind", ["uris", "aegis", "andotp", "freeotp+", "2fas", "ente", "gauth"])
def test_unwritable_destination_is_one_clear_error(capsys, tmp_path, source, kind):
    """Was: FileExistsError traceback when a file stands where the folder should be."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "convert", f"uris:{source}", f"{kind}:{blocker}/out")
    assert code == 1, err
    assert "cannot write" in err and "Traceback" not in err


@pytest.mark.parametrize("fault", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=["interrupt", "enospc"])
def test_crash_between_temp_write_and_rename_leaves_old_file(capsys, tmp_path, source, monkeypatch, fault):
    path = tmp_path / "d.txt"
    path.write_text(f"otpauth://totp/A:b?secret={SECRET}\n")
    before = path.read_bytes()

    def boom(src, dst):
        if Path(dst) == path:
            raise fault
        return real(src, dst)

    real = os.replace
    monkeypatch.setattr(fileio.os, "replace", boom)
    code, _, err = run(capsys, "convert", f"uris:{source}", f"uris:{path}", "--merge")
    assert code != 0 and "Traceback" not in err
    assert path.read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


ENCRYPTING = {"aegis": "?encrypt=yes&password-env=PW", "2fas": "?encrypt=yes&password-env=PW"}


@pytest.mark.parametrize(
    "kind, suffix, clear",
    [
        ("uris", "", True),
        ("aegis", "", True),
        ("aegis", ENCRYPTING["aegis"], False),
        ("2fas", "", True),
        ("2fas", ENCRYPTING["2fas"], False),
        ("andotp", "", True),
        ("freeotp+", "", True),
        ("ente", "", True),
        ("gauth", "", True),
    ],
)
def test_every_output_is_0600_and_plaintext_warns(capsys, tmp_path, source, monkeypatch, kind, suffix, clear):
    monkeypatch.setenv("PW", "correct horse")
    out = tmp_path / "out"
    code, _, err = run(capsys, "convert", f"uris:{source}", f"{kind}:{out}{suffix}")
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert ("clear text" in err) is clear
    if not clear:
        assert NEW not in out.read_text()


# -- 3. hostile input: an OtpBridgeError, never a traceback ----------------------------------
HUGE_INT = "1" + "0" * 5000  # past Python's int-from-text limit: json raises a bare ValueError
DEEP = "[" * 900 + "]" * 900  # parses, then blows the recursion limit in copy.deepcopy


@pytest.mark.parametrize(
    "kind, body",
    [
        ("aegis", _aegis_plain([{"type": "totp", "info": {"secret": SECRET, "digits": 0}}]).replace('"digits": 0', f'"digits": {HUGE_INT}')),
        ("2fas", '{"schemaVersion": 4, "services": [], "x": HUGE}'.replace("HUGE", HUGE_INT)),
        ("andotp", json.dumps([{"secret": SECRET, "type": "TOTP", "label": "x", "digits": 0}]).replace(": 0", ": " + HUGE_INT)),
        ("aegis", _aegis_plain([{"type": "totp", "icon": 0, "info": {"secret": SECRET}}]).replace('"icon": 0', f'"icon": {DEEP}')),
        ("2fas", json.dumps({"schemaVersion": 4, "services": [{"name": "x", "secret": SECRET, "icon": 0}]}).replace('"icon": 0', '"icon": ' + DEEP)),
    ],
    ids=["aegis-bigint", "2fas-bigint", "andotp-bigint", "aegis-deep", "2fas-deep"],
)
def test_hostile_json_is_a_format_error(tmp_path, kind, body):
    """Was: AttributeError ('ValueError' has no .msg) and RecursionError tracebacks."""
    path = tmp_path / "f.json"
    path.write_text(body)
    with pytest.raises(FormatError) as info:
        open_store(f"{kind}:{path}", Context(warn=lambda m: None)).read()
    assert info.value.exit_code == 4


def test_non_text_otp_type_is_not_quoted(tmp_path):
    """Was: 'unknown OTP type "{'secret': 'jbswy3dp"' — part of a value echoed back."""
    path = tmp_path / "a.json"
    path.write_text(_aegis_plain([{"type": {"secret": OTHER}, "info": {"secret": SECRET}}]))
    result = open_store(f"aegis:{path}", Context()).read()
    text = " ".join(str(e) for e in result.errors)
    assert result.errors and OTHER[:6].lower() not in text.lower()


# -- 4. KDF parameters bounded before deriving -----------------------------------------------
class KdfRan(Exception):
    pass


def _forbid(*_a, **_k):
    raise KdfRan("a key derivation ran on hostile parameters")


def test_aegis_slot_scrypt_work_bounded(tmp_path, monkeypatch):
    """Was: N=2^20, r=8 per slot accepted (1 GiB, ~6 s each, up to 8 slots)."""
    path = tmp_path / "a.json"
    ctx = Context(environ={"PW": "pw"}, warn=lambda m: None)
    from otpbridge.core.model import Account, Kind, b32decode

    store = open_store(f"aegis:{path}?password-env=PW", ctx)
    store.write_all([Account(Kind.TOTP, b32decode(SECRET), "I", "n")])
    doc = json.loads(path.read_text())
    doc["header"]["slots"][0]["n"] = 1 << 20
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(appcrypto, "scrypt", _forbid)
    with pytest.raises(FormatError, match="scrypt"):
        open_store(f"aegis:{path}?password-env=PW", ctx).read()


def test_andotp_iterations_bounded(tmp_path, monkeypatch):
    """Was: 10 000 000 PBKDF2-SHA1 rounds accepted (~9 s)."""
    path = tmp_path / "x.json.aes"
    path.write_bytes(struct.pack(">i", 10_000_000) + os.urandom(12 + 12 + 48))
    monkeypatch.setattr(appcrypto, "pbkdf2", _forbid)
    with pytest.raises(OtpBridgeError) as info:
        open_store(f"andotp:{path}?password-env=PW", Context(environ={"PW": "pw"})).read()
    assert info.value.exit_code == 4


@pytest.mark.parametrize(
    "params",
    [
        {"kdfType": 1, "kdfIterations": 64, "kdfMemory": 2048, "kdfParallelism": 4},
        {"kdfType": 1, "kdfIterations": 3, "kdfMemory": 1024, "kdfParallelism": 64},
        {"kdfType": 0, "kdfIterations": 10_000_000},
    ],
)
def test_bitwarden_kdf_bounded(tmp_path, monkeypatch, params):
    """Was: Argon2id 2 GiB × 64 passes (minutes) and 10 M PBKDF2 rounds accepted."""
    path = tmp_path / "bw.json"
    enc = "2." + "|".join(base64.b64encode(b) .decode() for b in (b"\0" * 16, b"\0" * 16, b"\0" * 32))
    doc = {"encrypted": True, "passwordProtected": True, "salt": "s", **params,
           "encKeyValidation_DO_NOT_EDIT": enc, "data": enc}
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(bitwarden, "_argon2id", _forbid)
    monkeypatch.setattr(bitwarden.hashlib, "pbkdf2_hmac", _forbid)
    with pytest.raises(FormatError, match="outside the accepted range"):
        open_store(f"bitwarden:{path}?password-env=PW", Context(environ={"PW": "pw"})).read()


def test_ente_kdf_bounded(tmp_path, monkeypatch):
    """Was: 2 GiB × ops 8 accepted (~25 s and 2 GiB of memory)."""
    path = tmp_path / "e.json"
    b64 = lambda n: base64.b64encode(b"\0" * n).decode()  # noqa: E731
    doc = {"version": 1, "kdfParams": {"memLimit": 2 * 1024**3, "opsLimit": 8, "salt": b64(16)},
           "encryptedData": b64(40), "encryptionNonce": b64(24)}
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(ente, "derive_key", _forbid)
    with pytest.raises(FormatError, match="memLimit"):
        open_store(f"ente:{path}?password-env=PW", Context(environ={"PW": "pw"})).read()
