"""SPEC §7: no child process gets a secret it does not need (issue 17, item 4).

Real runs of the installed console script (init, sync, convert, passphrase change) over a
pass store with git and a KeePass database, with every spawned program wrapped by a
script that saves its own ``/proc/self/environ`` before it ``exec``s the real one: gpg,
git, rclone (and the rcd daemon), the passphrase command and a store's password command.
The gpg-agent that gpg starts outlives the run; its ``/proc/PID/environ`` is read after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from otpbridge.core.childenv import child_env, note_secret_env
from otpbridge.core.otpauth import format_uri
from tests.support.cli import CONSOLE_SCRIPT
from tests.support.engine import NEW_PASS, PASS, base_env, make_account
from tests.support.gpg import kill_agent, needs_gpg
from tests.support.kdbx import E, make_kdbx4

KP_SECRET = "kp-password-only-for-keepass-1"
KP2_SECRET = "kp2-password-only-for-keepass-2"
DECOY_STORE = "store-password-decoy-3"
DECOY_KEEPASS = "keepass-password-decoy-4"


def _wrapper(folder: Path, name: str, real: str, dumps: Path) -> Path:
    path = folder / name
    path.write_text(f'#!/bin/sh\ncat /proc/$$/environ > "{dumps}/{name}.$$"\nexec "{real}" "$@"\n')
    path.chmod(0o755)
    return path


def _printer(folder: Path, name: str, value: str, dumps: Path) -> Path:
    path = folder / name
    path.write_text(f'#!/bin/sh\ncat /proc/$$/environ > "{dumps}/{name}.$$"\nprintf "%s\\n" "{value}"\n')
    path.chmod(0o755)
    return path


def _agents_of(home: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"gpg-agent" in cmdline and (str(home).encode() in cmdline or f"GNUPGHOME={home}".encode() in environ):
            found.append(int(entry.name))
    return found


@needs_gpg
def test_no_child_of_a_real_run_sees_a_secret_it_does_not_need(tmp_path, pass_dir):
    rclone = shutil.which("rclone", path=os.path.dirname(CONSOLE_SCRIPT)) or shutil.which("rclone")
    assert rclone, "rclone is needed"
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    wrap = tmp_path / "wrap"
    wrap.mkdir()
    for name in ("gpg", "git"):
        _wrapper(wrap, name, shutil.which(name), dumps)
    rclone_wrapper = _wrapper(wrap, "rclone", rclone, dumps)
    passcmd = _printer(wrap, "passcmd", PASS, dumps)
    newpasscmd_value = NEW_PASS
    kp2cmd = _printer(wrap, "kp2cmd", KP2_SECRET, dumps)

    pass_dir.write("Svc0/user0", f"pw0\n{format_uri(make_account('p0'))}\n".encode())
    pass_dir.git_init()
    kdbx = make_kdbx4(tmp_path / "otp.kdbx", [E("Svck", "user-k", fields={"otp": format_uri(make_account("k"))})], password=KP_SECRET)
    kill_agent(pass_dir.home.path)  # the agent must be one that otpbridge's gpg starts

    env = base_env(**pass_dir.env())
    env.pop("OTPBRIDGE_PASSPHRASE")
    env.update(
        PATH=f"{wrap}:{env.get('PATH', os.defpath)}",
        OTPBRIDGE_RCLONE=str(rclone_wrapper),
        OTPBRIDGE_PASSCOMMAND=str(passcmd),
        OTPBRIDGE_HOME=str(tmp_path / "home"),
        KP_PW=KP_SECRET,
        OTPBRIDGE_STORE_PASSWORD=DECOY_STORE,
        OTPBRIDGE_KEEPASS_PASSWORD=DECOY_KEEPASS,
    )
    remote = f":local:{tmp_path / 'remote'}"
    keepass = f"keepass:{kdbx}?password-env=KP_PW"

    def run(*args: str, **extra: str) -> None:
        proc = subprocess.run(
            [CONSOLE_SCRIPT, *args], env={**env, **extra}, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
        )
        assert proc.returncode == 0, (args, proc.stderr)

    run("init", remote, "--store", f"pass:{pass_dir.path}", "--store", keepass, "--kdf", "insecure-test")
    run("sync")  # KeePass's account lands in pass: gpg encrypts, git commits
    run("convert", keepass, f"keepass:{tmp_path / 'out.kdbx'}?password-command={kp2cmd}")
    run("convert", f"pass:{pass_dir.path}", f"keepass:{tmp_path / 'out2.kdbx'}?password-env=KP_PW")
    run("passphrase", "change", OTPBRIDGE_NEW_PASSPHRASE=newpasscmd_value)
    assert any("Svck" in line or "user-k" in line for line in pass_dir.git_log()) or len(pass_dir.git_log()) > 1

    agents = _agents_of(pass_dir.home.path)
    dumped = {p.name: p.read_bytes() for p in dumps.iterdir()}
    for pid in agents:
        dumped[f"gpg-agent.{pid}"] = Path(f"/proc/{pid}/environ").read_bytes()
    kinds = {name.split(".")[0] for name in dumped}
    assert {"gpg", "git", "rclone", "passcmd", "kp2cmd", "gpg-agent"} <= kinds, kinds

    secrets = [KP_SECRET, KP2_SECRET, PASS, NEW_PASS, DECOY_STORE, DECOY_KEEPASS]
    leaks = []
    for name, raw in dumped.items():
        variables = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        for secret in secrets:
            if secret.encode() in raw:
                leaks.append(f"{name} holds {secret!r}")
        for var in variables:
            if var.startswith(b"OTPBRIDGE_") and var not in (b"OTPBRIDGE_RUNNING",):
                leaks.append(f"{name} has {var.decode()}")
            if var in (b"KP_PW",):
                leaks.append(f"{name} has {var.decode()}")
    assert leaks == []
    print(f"child environments checked: {len(dumped)} processes ({', '.join(sorted(kinds))})")


def test_child_env_drops_our_variables_and_named_store_passwords():
    note_secret_env("MY_KDBX_PW")
    env = {
        "PATH": "/bin",
        "HOME": "/h",
        "GNUPGHOME": "/g",
        "MY_KDBX_PW": "x",
        "EXTRA_PW": "y",
        "OTPBRIDGE_PASSPHRASE": "p",
        "OTPBRIDGE_NEW_PASSPHRASE": "n",
        "OTPBRIDGE_PASSCOMMAND": "c",
        "OTPBRIDGE_RUNNING": "1",
        "RCLONE_CONFIG_PASS": "r",
        "RCLONE_CONFIG_NAS_PASS": "o",
        "RCLONE_CONFIG": "/c.conf",
    }
    assert child_env(env, hide=["EXTRA_PW"]) == {"PATH": "/bin", "HOME": "/h", "GNUPGHOME": "/g", "RCLONE_CONFIG": "/c.conf"}
    assert child_env(env, rclone=True, hide=["EXTRA_PW"]) == {
        "PATH": "/bin", "HOME": "/h", "GNUPGHOME": "/g",
        "RCLONE_CONFIG_PASS": "r", "RCLONE_CONFIG_NAS_PASS": "o", "RCLONE_CONFIG": "/c.conf",
    }  # fmt: skip
    assert child_env(env, keep=["OTPBRIDGE_RUNNING", "MY_KDBX_PW"])["OTPBRIDGE_RUNNING"] == "1"
    assert "MY_KDBX_PW" not in child_env(env, keep=["MY_KDBX_PW"])  # a store's password is never kept


@pytest.mark.parametrize("spec", ["keepass:/x.kdbx?password-env=SPEC_PW_A", "aegis:/b.json?password-env=SPEC_PW_A&x=1"])
def test_parsing_a_store_spec_hides_its_password_variable(spec):
    from otpbridge.stores import registry
    from otpbridge.stores.base import StoreSpec

    StoreSpec.parse(spec, registry.plugin_kinds())
    assert "SPEC_PW_A" not in child_env({"SPEC_PW_A": "secret", "PATH": "/bin"})
