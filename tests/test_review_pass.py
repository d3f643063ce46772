"""Adversarial review of the pass: store with real gpg and git: data loss, leaks, hangs."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from otpbridge.core.model import Account, Kind, b32decode
from otpbridge.plugins import pass_entry as pe
from tests.support.gpg import gpg as run_gpg
from tests.support.gpg import kill_agent, needs_gpg

pytestmark = needs_gpg

SECRET = "JBSWY3DPEHPK3PXP"
SECRET2 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def totp(issuer="Acme", name="alice", secret=SECRET, **kw) -> Account:
    return Account(kind=Kind.TOTP, secret=b32decode(secret), issuer=issuer, name=name, **kw)


def git(pass_dir, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(pass_dir.path), *args], capture_output=True, text=True, env=pass_dir.env(), check=True)
    return out.stdout


def head_files(pass_dir) -> set[str]:
    return set(git(pass_dir, "show", "--name-only", "--format=", "HEAD").splitlines())


def recipients_of(pass_dir, file) -> set[str]:
    out = run_gpg(pass_dir.home.path, "--status-fd", "1", "--list-packets", str(file), check=False).stdout.decode()
    return {line.split()[2] for line in out.splitlines() if line.startswith("[GNUPG:] ENC_TO ")}


# -- git: only our paths, never the user's ----------------------------------------------------
def test_git_commit_never_sweeps_in_user_changes_through_glob_pathspecs(pass_dir):
    """An issuer named ``*`` gives the path ``*/alice.gpg``: git reads it as a glob."""
    pass_dir.write("Other/alice", b"old password\n")
    pass_dir.git_init()
    pass_dir.write("Other/alice", b"user's half-done edit\n")  # dirty, not ours
    pass_dir.store().apply([totp(issuer="*")])
    assert head_files(pass_dir) == {"*/alice.gpg"}
    assert " M Other/alice.gpg" in git(pass_dir, "status", "--porcelain").splitlines()


def test_git_commit_leaves_the_users_staged_changes_staged(pass_dir):
    pass_dir.write("Mine/note", b"v1\n")
    pass_dir.git_init()
    pass_dir.write("Mine/note", b"v2\n")
    git(pass_dir, "add", "Mine/note.gpg")
    pass_dir.store().apply([totp()])
    assert head_files(pass_dir) == {"Acme/alice.gpg"}
    assert "M  Mine/note.gpg" in git(pass_dir, "status", "--porcelain").splitlines()


def test_removing_an_untracked_entry_does_not_block_the_commit_of_the_others(pass_dir):
    pass_dir.write("Acme/alice", f"otpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    pass_dir.git_init()
    pass_dir.write("Loose/bob", f"otpauth://totp/Loose:bob?secret={SECRET2}&issuer=Loose\n".encode())  # never committed
    store = pass_dir.store()
    accs = {a.name: a for a in store.read().accounts}
    store.apply([accs["alice"].replace(digits=8)], [accs["bob"], accs["alice"]])
    assert not (pass_dir.path / "Loose/bob.gpg").exists()
    assert head_files(pass_dir) == {"Acme/alice.gpg"}, pass_dir.warnings
    assert not [w for w in pass_dir.warnings if "git" in w]
    assert pass_dir.git_clean()


def test_commit_messages_and_git_history_metadata_hold_no_secret(pass_dir):
    pass_dir.git_init()
    pass_dir.store().apply([totp(), totp(issuer="Bank", name="bob", secret=SECRET2)])
    log = git(pass_dir, "log", "--format=%B")
    assert SECRET not in log and SECRET2 not in log and "otpauth" not in log


# -- pinentry: a non-interactive run must fail fast ----------------------------------------------
@pytest.fixture
def protected_home(gpg_keys, tmp_path):
    """A home whose only key needs a passphrase and whose pinentry never answers (a GUI nobody sees)."""
    home = gpg_keys.copy("alice")
    sleeper = tmp_path / "pinentry-sleeps"
    sleeper.write_text("#!/bin/sh\nsleep 30\n")
    sleeper.chmod(0o755)
    for name in os.listdir(home.path):
        if name.endswith(".gnupg") or name in ("private-keys-v1.d", "pubring.kbx", "pubring.kbx~", "trustdb.gpg"):
            p = home.path / name
            if p.is_dir():
                import shutil

                shutil.rmtree(p)
            else:
                p.unlink()
    home.run("--pinentry-mode", "loopback", "--passphrase", "pw", "--quick-gen-key", "P <p@example.org>", "ed25519", "sign,cert", "never")
    fpr = next(
        line.split(":")[9] for line in home.run("--with-colons", "-k", "p@example.org").stdout.decode().splitlines() if line.startswith("fpr:")
    )
    home.run("--pinentry-mode", "loopback", "--passphrase", "pw", "--quick-add-key", fpr, "cv25519", "encr", "never")
    (home.path / "gpg-agent.conf").write_text(f"pinentry-program {sleeper}\nallow-loopback-pinentry\n")
    kill_agent(home.path)
    yield home, fpr
    home.close()


def test_a_passphrase_prompt_fails_fast_without_a_tty(pass_dir, protected_home, monkeypatch):
    home, fpr = protected_home
    pass_dir.init(fpr)
    for i in range(3):
        file = pass_dir.path / f"e{i}.gpg"
        home.run("--trust-model", "always", "--compress-algo=none", "-e", "-r", fpr, "-o", str(file), input=b"pw\n")
    ctx = pass_dir.ctx()
    ctx.environ = dict(ctx.environ, GNUPGHOME=str(home.path))
    monkeypatch.setattr(os, "isatty", lambda fd: False)
    start = time.monotonic()
    from otpbridge.core.errors import OtpBridgeError

    with pytest.raises(OtpBridgeError) as info:
        pass_dir.store(ctx).read()
    assert time.monotonic() - start < 10, "gpg waited for a pinentry nobody can answer"
    assert "passphrase" in str(info.value)


def test_symmetric_session_packet_behind_a_public_key_packet_never_reaches_gpg(pass_dir, gpg_keys):
    """PKESK(bob) + SKESK: gpg would ask for the symmetric passphrase (a pinentry)."""
    bob_file = pass_dir.path / "hostile.gpg"
    pass_dir.home.run(
        "--pinentry-mode", "loopback", "--passphrase", "x", "--compress-algo=none",
        "-e", "-c", "-r", gpg_keys.bob.fingerprint, "-o", str(bob_file), input=b"otpauth://totp/X:y?secret=JBSWY3DPEHPK3PXP\n",
    )
    pass_dir.write("ok", f"otpauth://totp/S:a?secret={SECRET}\n".encode())
    store = pass_dir.store()
    result = store.read()
    assert [a.name for a in result.accounts] == ["a"]
    assert [e.where for e in result.errors] == ["hostile"]
    assert store.ctx.stats["gpg"] == 1


# -- recipients: exactly those pass would use now -----------------------------------------------
def test_update_reencrypts_to_the_nearest_gpg_id_as_it_is_now(pass_dir, gpg_keys):
    alice, bob = gpg_keys.alice, gpg_keys.bob
    pass_dir.init(alice.fingerprint, bob.fingerprint, subdir="team")
    pass_dir.write("team/Acme/alice", f"pw\notpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    store = pass_dir.store()
    (acc,) = store.read().accounts
    # between read and write, the team folder is re-initialised for bob only (pass init -p team bob)
    pass_dir.init(f"  {bob.email}  # only bob now\r", "# comment", "", subdir="team")
    store.apply([acc.replace(digits=8)], [acc])
    file = pass_dir.path / "team/Acme/alice.gpg"
    assert recipients_of(pass_dir, file) == {bob.encryption_keyid}
    with gpg_keys.copy("bob").temporary() as bob_home:
        assert pass_dir.read("team/Acme/alice", home=bob_home).startswith(b"pw\n")


# -- content that is not ours ------------------------------------------------------------------
@pytest.mark.parametrize(
    "before",
    [
        b"pw\r\notpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme\r\nurl: x\r\n",
        b"pw\notpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme",
        b"pw\notpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme\notpauth://totp/Other:x?secret=GEZDGNBV\n",
        b"\xff\xfe\x00bin\notpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme\n\x00\x01tail",
    ],
    ids=["crlf", "no-final-newline", "two-otp-lines", "binary"],
)
def test_update_and_removal_keep_every_other_byte(pass_dir, before):
    pass_dir.write("Acme/alice", before)
    store = pass_dir.store()
    (acc,) = store.read().accounts
    store.apply([acc.replace(digits=8)], [acc])
    after = pass_dir.read("Acme/alice")
    where = pe.find_otp_line(before)
    assert after == before[: where.start] + pe.uri_for(acc.replace(digits=8)).encode() + before[where.end :]
    store = pass_dir.store()
    (acc8,) = [a for a in store.read().accounts if a.secret == acc.secret]
    store.apply([], [acc8])
    left = pass_dir.read("Acme/alice")
    # the password line stays; only a line break that belonged to the URI may go
    assert b"JBSWY3DPEHPK3PXP" not in left and left.startswith(before[: where.start].rstrip(b"\n"))
    assert left.endswith(before[where.end :].lstrip(b"\r\n")) or not before[where.end :].strip()


def test_symlinked_duplicate_entry_removal_does_not_fail_halfway(pass_dir):
    pass_dir.write("A/x", f"otpauth://totp/A:x?secret={SECRET}&issuer=A\n".encode())
    pass_dir.write("B/other", f"otpauth://totp/B:o?secret={SECRET2}&issuer=B\n".encode())
    os.symlink("../A/x.gpg", pass_dir.path / "B/x.gpg")
    store = pass_dir.store()
    accs = {a.name: a for a in store.read().accounts}
    store.apply([], [accs["x"], accs["o"]])
    assert not (pass_dir.path / "A/x.gpg").exists()
    assert not (pass_dir.path / "B/other.gpg").exists()


def test_entry_names_with_newlines_and_dots_are_entry_errors_not_crashes(pass_dir):
    pass_dir.write("bad\nname", f"otpauth://totp/?secret={SECRET}\n".encode())
    pass_dir.write("ok", f"otpauth://totp/S:ok?secret={SECRET2}\n".encode())
    result = pass_dir.store().read()
    assert [a.name for a in result.accounts] == ["ok"]
    assert len(result.errors) == 1 and SECRET not in result.errors[0].reason
    report = pass_dir.store().apply([totp(issuer="..", name="../../etc")])
    assert report.added
    assert all(pass_dir.path in p.resolve().parents for p in pass_dir.path.rglob("*.gpg"))
