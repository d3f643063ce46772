"""The Python API (otpbridge.api, exported lazily from ``otpbridge``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import otpbridge
from otpbridge.core.errors import AuthenticationError, DataLossRefused, PartialError, UsageError
from otpbridge.core.otpauth import parse_uri
from tests.support.paths import FIXTURES

PASSPHRASE = "api test passphrase 314"
URI_A = "otpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme"
URI_B = "otpauth://hotp/Beta:bob?secret=KRUGS4ZANFZSAYJAORSXG5BAONSWG4TF&issuer=Beta&counter=7"


@pytest.fixture
def env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("OTPBRIDGE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("OTPBRIDGE_ALLOW_INSECURE_KDF", "1")
    return dict(os.environ)


def uris_file(path: Path, *uris: str) -> str:
    path.write_text("".join(u + "\n" for u in uris))
    return f"uris:{path}"


def test_import_is_cheap_and_names_are_exported():
    code = "import sys, otpbridge; assert 'otpbridge.api' not in sys.modules; assert 'click' not in sys.modules; print(sorted(otpbridge.__all__))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ("open_store", "read_accounts", "convert", "Device", "backup", "sync", "restore"):
        assert name in proc.stdout
        assert callable(getattr(otpbridge, name))
    with pytest.raises(AttributeError):
        _ = otpbridge.no_such_name


def test_read_accounts_and_partial_entries():
    accounts = otpbridge.read_accounts(f"aegis:{FIXTURES / 'aegis' / 'aegis_plain.json'}")
    assert len(accounts) == 7
    # andOTP export with one MOTP entry: strict raises with the reason, lenient returns the rest
    spec = f"andotp:{FIXTURES / 'andotp' / 'andotp.unencrypted.json'}"
    with pytest.raises(PartialError) as info:
        otpbridge.read_accounts(spec)
    assert info.value.exit_code == 7 and info.value.entries
    assert len(otpbridge.read_accounts(spec, strict=False)) == 8
    result = otpbridge.read(spec)
    assert len(result.accounts) == 8 and len(result.errors) == 1


def test_read_with_store_password_from_environ():
    spec = f"aegis:{FIXTURES / 'aegis' / 'aegis_encrypted.json'}?password-env=AEGIS_PW"
    assert len(otpbridge.read_accounts(spec, environ={"AEGIS_PW": "test"})) == 7
    with pytest.raises(AuthenticationError):
        otpbridge.read_accounts(spec, environ={"AEGIS_PW": "test1"})


def test_convert_dry_run_refusal_and_merge(tmp_path):
    src = f"gauth:{FIXTURES / 'google_authenticator' / 'example_export.txt'}"
    dest = tmp_path / "out.txt"
    n = len(otpbridge.read_accounts(src))  # the export repeats secrets; identities count once
    assert n >= 2
    report = otpbridge.convert(src, f"uris:{dest}", dry_run=True)
    assert len(report.added) == n and not dest.exists()
    report = otpbridge.convert(src, f"uris:{dest}")
    assert len(report.added) == n and dest.exists()
    assert {a.identity for a in otpbridge.read_accounts(f"uris:{dest}")} == {a.identity for a in report.added}
    with pytest.raises(DataLossRefused):
        otpbridge.convert(src, f"uris:{dest}")
    again = otpbridge.convert(src, f"uris:{dest}", merge=True)
    assert not again.added and again.unchanged == n


def test_open_store_gives_the_plugin():
    store = otpbridge.open_store(f"{FIXTURES / 'aegis' / 'aegis_plain.json'}")  # kind detected
    assert store.kind == "aegis" and len(store.read().accounts) == 7


def test_device_init_sync_restore_between_two_homes(tmp_path, env):
    remote = tmp_path / "remote"
    remote.mkdir()
    a_store = uris_file(tmp_path / "a.txt", URI_A, URI_B)
    a = otpbridge.Device(tmp_path / "home-a", passphrase=PASSPHRASE, environ=env)
    result = a.init(str(remote), [a_store], device_name="laptop", kdf="insecure-test")
    assert result.created
    report = a.sync()
    assert sorted(report.added) and report.uploaded and report.accounts == 2
    assert a.sync().fast_path  # nothing changed: no key, no upload
    # a second device, passphrase from a function, joins and receives both
    b_store = uris_file(tmp_path / "b.txt")
    b = otpbridge.Device(tmp_path / "home-b", passphrase=lambda: PASSPHRASE, environ=env)
    assert not b.init(str(remote), [b_store], device_name="server").created
    b.sync()
    got = {parse_uri(line).identity for line in (tmp_path / "b.txt").read_text().splitlines() if line}
    want = {parse_uri(URI_A).identity, parse_uri(URI_B).identity}
    assert got == want
    # a new machine restores with nothing but the remote and the passphrase
    fresh = otpbridge.Device(tmp_path / "home-c", passphrase=PASSPHRASE, environ=env)
    (tmp_path / "c.txt").write_text("")
    rep = fresh.restore(f"uris:{tmp_path / 'c.txt'}", remote=str(remote))
    assert rep.accounts == 2 and len(rep.added) == 2
    status = a.status()
    assert status["accounts"] == 2 and status["last_verified_backup"] and status["device"]["name"] == "laptop"
    # the CLI sees what the API did: same config, same state
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "otpbridge"), "status", "--json"],
        env={**env, "OTPBRIDGE_HOME": str(tmp_path / "home-a")},
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["vault_id"] == status["vault_id"]


def test_device_wrong_passphrase_and_missing_vault(tmp_path, env):
    remote = tmp_path / "remote"
    remote.mkdir()
    a = otpbridge.Device(tmp_path / "home-a", passphrase=PASSPHRASE, environ=env)
    a.init(str(remote), [uris_file(tmp_path / "a.txt", URI_A)], kdf="insecure-test")
    a.sync()
    intruder = otpbridge.Device(tmp_path / "home-x", passphrase="not the passphrase", environ=env)
    with pytest.raises(AuthenticationError):
        intruder.init(str(remote), [uris_file(tmp_path / "x.txt")])
    with pytest.raises(UsageError):
        otpbridge.Device(tmp_path / "home-none", passphrase=PASSPHRASE, environ=env).sync()
    with pytest.raises(TypeError):
        otpbridge.Device(tmp_path / "home-y", passphrase=42, environ=env)  # type: ignore[arg-type]


def test_shortcuts_take_the_passphrase_from_the_environment(tmp_path, env, monkeypatch):
    remote = tmp_path / "remote"
    remote.mkdir()
    monkeypatch.setenv("OTPBRIDGE_PASSPHRASE", PASSPHRASE)
    home = str(tmp_path / "home")
    otpbridge.init(str(remote), [uris_file(tmp_path / "a.txt", URI_A)], home=home, kdf="insecure-test")
    assert otpbridge.backup(home=home).uploaded
    assert otpbridge.sync(home=home).fast_path
    (tmp_path / "r.txt").write_text("")
    assert otpbridge.restore(f"uris:{tmp_path / 'r.txt'}", home=home).accounts == 1
