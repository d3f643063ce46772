"""The issue #16 formats through the real CLI: exit 3 / 4 / 7 with one clear line, never a traceback."""

from __future__ import annotations

import pytest

from tests.support.cli import run_module
from tests.support.morefmt import MORE, secrets_in


def _run(tmp_path, *args, env=None):
    return run_module(*args, env={"OTPBRIDGE_HOME": str(tmp_path / "home"), **(env or {})})


@pytest.mark.parametrize(
    "spec, wrong",
    [
        ("stratum:{m}/stratum/backup.strong.authpro", "testing1"),
        ("stratum:{m}/stratum/backup.legacy.authpro", "testing1"),
        ("freeotp2:{m}/freeotp2/freeotp.bin", "test1"),
        ("proton-authenticator:{m}/proton_authenticator/protected.json", "nope"),
    ],
)
def test_wrong_password_is_exit_3(tmp_path, spec, wrong):
    proc = _run(tmp_path, "list", spec.format(m=MORE) + "?password-env=PW", env={"PW": wrong})
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "wrong password" in proc.stderr


@pytest.mark.parametrize(
    "name, content",
    [
        ("x.authpro", b"AUTHENTICATORPRO" + bytes(20)),
        ("externalBackup.xml", (MORE / "freeotp2" / "freeotp.bin").read_bytes()[:900]),
        ("export.zip", (MORE / "proton_pass" / "PassExport.zip").read_bytes()[:1500]),
        ("databases", (MORE / "google_authenticator_db" / "google_authenticator.sqlite").read_bytes()[:5000]),
    ],
)
def test_damaged_files_are_exit_4(tmp_path, name, content):
    kind = {"x.authpro": "stratum", "externalBackup.xml": "freeotp2", "export.zip": "proton-pass", "databases": "gauth-db"}[name]
    path = tmp_path / name
    path.write_bytes(content)
    proc = _run(tmp_path, "list", f"{kind}:{path}?password-env=PW", env={"PW": "test"})
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3


@pytest.mark.parametrize(
    "rel, skipped",
    [
        ("stratum/backup.unencrypted.authpro", "entry 14 (Company VPN / john@example.com)"),
        ("proton_pass/PassExport.zip", "field 'Malformed totp'"),
    ],
)
def test_skipped_entries_are_exit_7_and_named(tmp_path, rel, skipped):
    proc = _run(tmp_path, "list", str(MORE / rel))  # kind detected from the content
    assert proc.returncode == 7, proc.stderr
    assert skipped in proc.stderr and "Traceback" not in proc.stderr
    assert not any(s in proc.stderr + proc.stdout for s in secrets_in((MORE / rel).read_bytes()))


def test_formats_lists_every_new_kind(tmp_path):
    out = _run(tmp_path, "formats").stdout
    for kind in ("lastpass", "proton-authenticator", "proton-pass", "stratum", "1password", "gauth-db", "andotp-gpg", "freeotp2"):
        assert f"\n{kind} — " in "\n" + out, kind
