"""The engine over a real pass store: incremental reads through the sealed store cache."""

from __future__ import annotations

import os
import stat

import pytest

from otpbridge.core.otpauth import format_uri
from tests.support.engine import Device, make_account
from tests.support.gpg import needs_gpg

pytestmark = needs_gpg


def _stats(result) -> dict:
    for line in result.err.splitlines():
        if line.startswith("otpbridge-stats: "):
            import json

            return json.loads(line.split(": ", 1)[1])
    raise AssertionError(f"no stats line in: {result.err}")


def test_second_sync_after_one_change_makes_one_gpg_call(tmp_path, pass_dir):
    for i in range(6):
        acc = make_account(f"p{i}")
        pass_dir.write(f"Svc{i}/user{i}", f"pw{i}\n{format_uri(acc)}\n".encode())
    pass_dir.write("plain/password-only", b"hunter2\n")
    dev = Device(tmp_path / "laptop", str(tmp_path / "remote"), "laptop")
    dev.env.update(pass_dir.env())
    dev.env["GNUPGHOME"] = os.environ["GNUPGHOME"]
    res = dev.run("init", dev.remote, "--store", f"pass:{pass_dir.path}", "--device", "laptop", "--kdf", "insecure-test")
    assert res.code == 0, res.err
    first = dev.run("--stats", "sync", "--json")
    assert first.code == 0, first.err
    assert first.json()["accounts"] == 6
    # The cache that makes the next read cheap holds secrets: it is sealed, never plain.
    sealed = dev.home / "state" / "store-cache.sealed"
    assert sealed.exists() and stat.S_IMODE(sealed.stat().st_mode) == 0o600
    assert b"otpauth" not in sealed.read_bytes()
    unchanged = dev.run("--stats", "sync", "--json")
    assert unchanged.code == 0 and _stats(unchanged).get("gpg", 0) == 0
    pass_dir.write("Svc2/user2", f"new-password\n{format_uri(make_account('p2'))}\n".encode())
    one = dev.run("--stats", "sync", "--json")
    assert one.code == 0, one.err
    assert _stats(one).get("gpg", 0) == 1
    assert _stats(one).get("kdf", 0) == 1


@pytest.mark.parametrize("n", [3])
def test_account_from_other_device_lands_in_pass(tmp_path, pass_dir, n):
    remote = str(tmp_path / "remote")
    phone = Device(tmp_path / "phone", remote, "phone")
    phone.write_accounts([make_account(f"o{i}") for i in range(n)])
    assert phone.init().code == 0
    assert phone.sync().code == 0
    laptop = Device(tmp_path / "laptop", remote, "laptop")
    laptop.env.update(pass_dir.env())
    laptop.env["GNUPGHOME"] = os.environ["GNUPGHOME"]
    res = laptop.run("init", remote, "--store", f"pass:{pass_dir.path}", "--device", "laptop")
    assert res.code == 0, res.err
    res = laptop.run("sync", "--json")
    assert res.code == 0, res.err
    files = sorted(p.relative_to(pass_dir.path).as_posix() for p in pass_dir.path.rglob("*.gpg"))
    assert len(files) == n
    assert b"otpauth://" in pass_dir.read(files[0][:-4])


def test_init_saves_the_pass_store_this_shell_means(tmp_path, pass_dir):
    """``pass:`` is PASSWORD_STORE_DIR in the shell that ran init; cron and systemd have no
    such variable, so the saved spec names the folder, and a run without the variable
    syncs the same store (not ~/.password-store)."""
    acc = make_account("p0")
    pass_dir.write("Svc0/user0", f"{format_uri(acc)}\n".encode())
    dev = Device(tmp_path / "laptop", str(tmp_path / "remote"), "laptop")
    dev.env.update(pass_dir.env())
    dev.env["GNUPGHOME"] = os.environ["GNUPGHOME"]
    assert dev.env.get("PASSWORD_STORE_DIR") == str(pass_dir.path)
    res = dev.run("init", dev.remote, "--store", "pass:", "--device", "laptop", "--kdf", "insecure-test")
    assert res.code == 0, res.err
    assert f"pass:{pass_dir.path}" in (dev.home / "config.toml").read_text()
    del dev.env["PASSWORD_STORE_DIR"]
    dev.env["HOME"] = str(tmp_path / "elsewhere")  # no ~/.password-store there
    res = dev.run("sync", "--json")
    assert res.code == 0 and res.json()["accounts"] == 1, res.err
