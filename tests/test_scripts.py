"""Every migration recipe in scripts/ runs top to bottom against real, temporary data.

Each script runs as ``python scripts/NAME.py`` in a subprocess (no terminal, a timeout),
configured only through its documented environment variables. Real parts: KDBX files
written by pykeepass, a pass store encrypted by gpg (throw-away GNUPGHOME), the shared
Google Authenticator and Aegis fixtures, and a local-folder vault remote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from otpbridge.core.otpauth import parse_uri
from tests.support.kdbx import E, make_kdbx4
from tests.support.paths import FIXTURES, REPO

SCRIPTS = REPO / "scripts"
TIMEOUT = 300
PASSPHRASE = "scripts test passphrase 2718"



URIS = [
    "otpauth://totp/GitHub:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=GitHub",
    "otpauth://totp/Short:bob?secret=JBSWY3DPEHPK3PXP&issuer=Short&period=60&digits=8",  # 80 bits, period 60
    "otpauth://hotp/Bank:carol?secret=KRUGS4ZANFZSAYJAORSXG5BAONSWG4TF&issuer=Bank&counter=5",
]


def run_script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OTPBRIDGE_", "OTPB_"))}
    full.update(env)
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / name)],
        env=full,
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        start_new_session=True,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def kdbx_with(path: Path, uris: list[str], password: str = "kp-pass") -> str:
    entries = [E(title=f"entry {i}", username=parse_uri(u).name, password="pw", fields={"otp": u}) for i, u in enumerate(uris)]
    make_kdbx4(path, entries, password=password)
    return f"keepass:{path}"


def test_every_script_is_percent_format_and_documents_its_inputs():
    names = ["keepassxc_to_pass.py", "gauth_to_keepassxc.py", "aegis_to_pass_and_cloud.py", "restore_new_laptop.py", "audit.py"]
    for name in names:
        text = (SCRIPTS / name).read_text()
        assert text.startswith("# %% [markdown]\n# # "), name
        assert text.count("\n# %%\n") >= 3, name  # several code cells
        assert "os.environ.get(" in text and "OTPB_" in text, name
        compile(text, name, "exec")


def test_keepassxc_to_pass(tmp_path, pass_dir):
    source = kdbx_with(tmp_path / "Passwords.kdbx", URIS)
    env = {**pass_dir.env(), "OTPB_SOURCE": source, "OTPB_DEST": f"pass:{pass_dir.path}", "OTPBRIDGE_KEEPASS_PASSWORD": "kp-pass"}
    dry = run_script("keepassxc_to_pass.py", {**env, "OTPB_DRY_RUN": "1"})
    assert "would add 3" in dry.stdout
    assert not list(pass_dir.path.rglob("*.gpg"))
    proc = run_script("keepassxc_to_pass.py", env)
    assert "ok: all 3 account(s)" in proc.stdout
    assert len(list(pass_dir.path.rglob("*.gpg"))) == 3
    again = run_script("keepassxc_to_pass.py", env)  # idempotent
    assert "would add 0" in again.stdout


def test_gauth_to_keepassxc(tmp_path):
    export = FIXTURES / "google_authenticator" / "example_export.txt"
    db = tmp_path / "otp.kdbx"
    env = {"OTPB_SOURCE": f"gauth:{export}", "OTPB_DEST": f"keepass:{db}?password-env=KP", "KP": "new-db-password"}
    proc = run_script("gauth_to_keepassxc.py", env)
    assert "ok: all" in proc.stdout and db.exists()
    # what the script wrote opens with the password it was given, by pykeepass too
    from pykeepass import PyKeePass

    kp = PyKeePass(str(db), password="new-db-password")
    assert len(kp.entries) >= 2


def test_aegis_to_pass_and_cloud(tmp_path, pass_dir):
    remote = tmp_path / "remote"
    env = {
        **pass_dir.env(),
        "OTPB_SOURCE": f"aegis:{FIXTURES / 'aegis' / 'aegis_encrypted.json'}?password-env=AEGIS_PW",
        "AEGIS_PW": "test",
        "OTPB_DEST": f"pass:{pass_dir.path}",
        "OTPB_REMOTE": str(remote),
        "OTPB_HOME": str(tmp_path / "home"),
        "OTPB_DEVICE": "laptop",
        "OTPB_KDF": "insecure-test",
        "OTPBRIDGE_ALLOW_INSECURE_KDF": "1",
        "OTPBRIDGE_PASSPHRASE": PASSPHRASE,
    }
    proc = run_script("aegis_to_pass_and_cloud.py", env)
    assert "created vault" in proc.stdout and "ok:" in proc.stdout
    assert any(remote.rglob("*"))
    # the cloud copy restores elsewhere with the passphrase alone (CLI, another home)
    out = tmp_path / "restored.txt"
    out.write_text("")
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "otpbridge"), "restore", str(remote), "--into", f"uris:{out}", "--json"],
        env={**env, "OTPBRIDGE_HOME": str(tmp_path / "other-home")},
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["accounts"] == 7


def test_restore_new_laptop(tmp_path):
    import otpbridge

    remote = tmp_path / "remote"
    remote.mkdir()
    codes = tmp_path / "old-laptop.txt"
    codes.write_text("".join(u + "\n" for u in URIS))
    old = otpbridge.Device(tmp_path / "old-home", passphrase=PASSPHRASE, environ={**os.environ, "OTPBRIDGE_ALLOW_INSECURE_KDF": "1"})
    old.init(str(remote), [f"uris:{codes}"], device_name="old", kdf="insecure-test")
    old.backup()
    db = tmp_path / "new" / "otp.kdbx"
    db.parent.mkdir()
    make_kdbx4(db, [E(title="bank login", username="me", password="keep-me")], password="laptop-db-pw")  # cheap KDF
    env = {
        "OTPB_REMOTE": str(remote),
        "OTPB_DEST": f"keepass:{db}",
        "OTPBRIDGE_KEEPASS_PASSWORD": "laptop-db-pw",
        "OTPB_HOME": str(tmp_path / "new-home"),
        "OTPB_DEVICE": "new-laptop",
        "OTPB_JOIN": "1",
        "OTPBRIDGE_ALLOW_INSECURE_KDF": "1",
        "OTPBRIDGE_PASSPHRASE": PASSPHRASE,
    }
    proc = run_script("restore_new_laptop.py", env)
    assert "the vault holds 3 account(s)" in proc.stdout and "ok: 3 account(s)" in proc.stdout
    assert len(otpbridge.read_accounts(f"keepass:{db}", environ={"OTPBRIDGE_KEEPASS_PASSWORD": "laptop-db-pw"})) == 3
    from pykeepass import PyKeePass

    kept = PyKeePass(str(db), password="laptop-db-pw").find_entries(title="bank login", first=True)
    assert kept is not None and kept.password == "keep-me"  # an existing database only gains OTP fields


def test_audit(tmp_path):
    import otpbridge

    tiny = "otpauth://totp/Tiny:dan?secret=GEZDGNBV&issuer=Tiny"  # 40 bits
    kdbx = kdbx_with(tmp_path / "a.kdbx", URIS[:2] + [URIS[0].replace("alice", "alice2"), tiny])  # a duplicate secret
    uris = tmp_path / "b.txt"
    uris.write_text(URIS[2].replace("counter=5", "counter=9") + "\n")
    remote = tmp_path / "remote"
    remote.mkdir()
    vault_codes = tmp_path / "vault.txt"
    vault_codes.write_text(URIS[2] + "\n")
    env_base = {**os.environ, "OTPBRIDGE_ALLOW_INSECURE_KDF": "1"}
    dev = otpbridge.Device(tmp_path / "home", passphrase=PASSPHRASE, environ=env_base)
    dev.init(str(remote), [f"uris:{vault_codes}"], kdf="insecure-test")
    dev.backup()
    report = tmp_path / "audit.json"
    gauth = FIXTURES / "google_authenticator" / "example_export.txt"
    env = {
        "OTPB_SOURCES": f"{kdbx}; uris:{uris}\ngauth:{gauth}; aegis:{tmp_path}/missing.json",
        "OTPBRIDGE_KEEPASS_PASSWORD": "kp-pass",
        "OTPB_HOME": str(tmp_path / "home"),
        "OTPB_REPORT": str(report),
        "OTPBRIDGE_ALLOW_INSECURE_KDF": "1",
        "OTPBRIDGE_PASSPHRASE": PASSPHRASE,
    }
    proc = run_script("audit.py", env)
    assert "cannot read" in proc.stdout  # the missing file is reported, the audit goes on
    data = json.loads(report.read_text())
    kinds = {(f["kind"], f["account"]) for f in data["findings"]}
    assert any(k == "short-secret" and "Tiny" in a for k, a in kinds)
    assert not any(k == "short-secret" and "Short" in a for k, a in kinds)  # 80 bits is the floor, not below it
    assert any(k == "period" and "Short" in a for k, a in kinds)
    assert any(k == "digits" and "Short" in a for k, a in kinds)
    assert any(k == "duplicate" for k, _ in kinds)
    assert any(k == "hotp-counter" and "Bank" in a for k, a in kinds)
    assert "vault" in data["sources"] and data["sources"]["vault"] == 1
    assert not any(k == "short-secret" and "GitHub" in a for k, a in kinds)  # 160 bits is fine
    text = report.read_text() + proc.stdout
    assert "JBSWY3DPEHPK3PXP" not in text and PASSPHRASE not in text  # no secrets in the output
