"""The pass: store with real gpg (throw-away keys); pass itself is not needed here."""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpbridge.core.errors import (
    AuthenticationError,
    EntryError,
    OtpBridgeError,
    UnreachableError,
    UsageError,
)
from otpbridge.core.model import Account, Algorithm, Kind, b32decode
from otpbridge.plugins import pass_entry as pe
from otpbridge.plugins.passstore import PassStore
from otpbridge.stores.base import StoreSpec
from tests.support.formats import account_lists
from tests.support.gpg import needs_gpg

pytestmark = needs_gpg

SECRET = "JBSWY3DPEHPK3PXP"  # 10 bytes: the common short secret
SECRET2 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def totp(issuer="Acme", name="alice", secret=SECRET, **kw) -> Account:
    return Account(kind=Kind.TOTP, secret=b32decode(secret), issuer=issuer, name=name, **kw)


def hotp(counter, issuer="Bank", name="bob", secret=SECRET2) -> Account:
    return Account(kind=Kind.HOTP, secret=b32decode(secret), issuer=issuer, name=name, counter=counter)


def by_name(result):
    return {(a.issuer, a.name): a for a in result.accounts}


def all_bytes_under(path):
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                yield os.path.join(dirpath, f), fh.read()


# -- reading --------------------------------------------------------------------------------
def test_reads_single_and_multi_line_entries(pass_dir):
    pass_dir.write("Acme/alice", f"otpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    pass_dir.write(
        "web/example.com",
        f"hunter2\nlogin: carol\n   otpauth://totp/Example:carol?secret={SECRET2}&issuer=Example&digits=8&algorithm=SHA256\nurl: x\n".encode(),
    )
    pass_dir.write("email/plain", b"just a password\nno otp here\n")
    (pass_dir.path / ".git").mkdir()
    pass_dir.write(".git/ignored", f"otpauth://totp/X:y?secret={SECRET}\n".encode())
    pass_dir.write(".extensions/ignored", f"otpauth://totp/X:z?secret={SECRET}\n".encode())
    result = pass_dir.store().read()
    assert result.errors == []
    got = by_name(result)
    assert set(got) == {("Acme", "alice"), ("Example", "carol")}
    assert got[("Acme", "alice")].folder == ""  # the issuer's own folder is not a user folder
    carol = got[("Example", "carol")]
    assert (carol.digits, carol.algorithm, carol.folder) == (8, Algorithm.SHA256, "web")
    assert carol.note == ""  # the password and other lines never leak into the model
    assert carol.mtime is not None


def test_issuer_and_name_come_from_the_path_when_the_uri_lacks_them(pass_dir):
    pass_dir.write("GitHub/octo", f"otpauth://totp/?secret={SECRET}\n".encode())
    pass_dir.write("work/Gitlab/me", f"pw\notpauth://totp/me?secret={SECRET2}\n".encode())
    got = by_name(pass_dir.store().read())
    assert got[("GitHub", "octo")].folder == ""
    assert got[("Gitlab", "me")].folder == "work"


def test_hotp_counter_is_pass_otps_last_used_plus_one(pass_dir):
    pass_dir.write("Bank/bob", f"otpauth://hotp/Bank:bob?secret={SECRET2}&issuer=Bank&counter=5\n".encode())
    (acc,) = pass_dir.store().read().accounts
    assert acc.counter == 6


def test_damaged_counter_from_pass_otp_is_recovered_with_a_warning(pass_dir):
    pass_dir.write("Bank/bob", f"otpauth://hotp/Bank:bob?secret={SECRET2}&issuer=Bank&counter=5counter=6\n".encode())
    result = pass_dir.store().read()
    (acc,) = result.accounts
    assert acc.counter == 7  # 6 was used last
    assert result.errors == []
    assert any("Bank/bob" in w and "counter=5counter=6" in w and "6" in w for w in pass_dir.warnings)
    assert not any(SECRET2 in w for w in pass_dir.warnings)


def test_damaged_entries_are_reported_and_the_rest_is_read(pass_dir, gpg_keys):
    pass_dir.write("ok", f"otpauth://totp/Acme:ok?secret={SECRET}\n".encode())
    pass_dir.write("garbage-line", b"pw\notpauth://totp/Acme:x?secret=!!!notbase32\n")
    pass_dir.write("unknown-kind", f"otpauth://motp/Acme:x?secret={SECRET}\n".encode())
    pass_dir.write("hotp-word", f"otpauth://hotp/A:x?secret={SECRET}&counter=five\n".encode())
    pass_dir.write("for-bob", f"otpauth://totp/B:x?secret={SECRET2}\n".encode(), recipients=[gpg_keys.bob.fingerprint])
    (pass_dir.path / "not-gpg.gpg").write_bytes(b"hello, I am plain text\n")
    (pass_dir.path / "truncated.gpg").write_bytes((pass_dir.path / "ok.gpg").read_bytes()[:40])
    result = pass_dir.store().read()
    assert [a.name for a in result.accounts] == ["ok"]
    errors = {e.where: e.reason for e in result.errors}
    assert set(errors) == {"garbage-line", "unknown-kind", "hotp-word", "for-bob", "not-gpg", "truncated"}
    assert "Base32" in errors["garbage-line"]
    assert "motp" in errors["unknown-kind"]
    assert gpg_keys.bob.encryption_keyid in errors["for-bob"] and "no secret key" in errors["for-bob"]
    for reason in errors.values():
        assert SECRET not in reason and SECRET2 not in reason


def test_a_store_no_key_can_open_is_an_authentication_error(pass_dir, gpg_keys):
    for i in range(3):
        pass_dir.write(f"e{i}", f"otpauth://totp/B:x{i}?secret={SECRET2}\n".encode(), recipients=[gpg_keys.bob.fingerprint])
    with pytest.raises(AuthenticationError, match="none of the 3 entries"):
        pass_dir.store().read()


def test_missing_store_is_unreachable(pass_dir, tmp_path):
    store = PassStore(StoreSpec("pass", str(tmp_path / "nope")), pass_dir.ctx())
    assert not store.exists() and store.fingerprint() is None
    with pytest.raises(UnreachableError):
        store.read()


def test_default_location_and_sniff(pass_dir, tmp_path):
    ctx = pass_dir.ctx()
    assert PassStore(StoreSpec("pass", ""), ctx).path == pass_dir.path  # $PASSWORD_STORE_DIR
    ctx.environ = {k: v for k, v in ctx.environ.items() if k != "PASSWORD_STORE_DIR"}
    assert PassStore(StoreSpec("pass", ""), ctx).path.name == ".password-store"
    assert PassStore.sniff(pass_dir.path, b"")
    assert not PassStore.sniff(tmp_path, b"")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=300), prefix=st.sampled_from([b"", b"\x85", b"\xc1", b"\x84\x0c\x03", b"\x8c"]))
def test_random_garbage_is_an_entry_error_never_a_crash(pass_dir, junk, prefix):
    if not (pass_dir.path / "good.gpg").exists():
        pass_dir.write("good", f"otpauth://totp/Acme:good?secret={SECRET}\n".encode())
    (pass_dir.path / "junk.gpg").write_bytes(prefix + junk)
    result = pass_dir.store().read()
    assert [a.name for a in result.accounts] == ["good"]
    assert [e.where for e in result.errors] == ["junk"]
    assert all(isinstance(e, EntryError) for e in result.errors)


# -- incremental reads and the fingerprint -------------------------------------------------
def test_second_read_decrypts_only_changed_entries(pass_dir):
    for i in range(5):
        pass_dir.write(f"svc/e{i}", f"pw{i}\notpauth://totp/S:e{i}?secret={SECRET}{'AB' * i}\n".encode() if i < 3 else b"pw only\n")
    cache: dict[str, bytes] = {}
    first = pass_dir.store(store_cache=cache)
    assert len(first.read().accounts) == 3
    assert first.ctx.stats["gpg"] == 5
    again = pass_dir.store(store_cache=cache)
    assert len(again.read().accounts) == 3
    assert again.ctx.stats["gpg"] == 0
    os.utime(pass_dir.path / "svc/e1.gpg")
    touched = pass_dir.store(store_cache=cache)
    assert {a.name for a in touched.read().accounts} == {"e0", "e1", "e2"}
    assert touched.ctx.stats["gpg"] == 1
    pass_dir.write("svc/e2", f"otpauth://totp/S:renamed?secret={SECRET}ABAB\n".encode())  # rewritten: new inode/ctime
    changed = pass_dir.store(store_cache=cache)
    assert {a.name for a in changed.read().accounts} == {"e0", "e1", "renamed"}
    assert changed.ctx.stats["gpg"] == 1
    (pass_dir.path / "svc/e0.gpg").unlink()
    gone = pass_dir.store(store_cache=cache)
    assert {a.name for a in gone.read().accounts} == {"e1", "renamed"}
    assert gone.ctx.stats["gpg"] == 0
    assert not any(k.endswith("svc/e0") for k in cache)


def test_cache_dir_alone_holds_no_secret_and_skips_entries_without_otp(pass_dir, tmp_path):
    pass_dir.write("a", f"otpauth://totp/S:a?secret={SECRET}\n".encode())
    for i in range(3):
        pass_dir.write(f"pw{i}", b"password only\n")
    cache_dir = tmp_path / "cache"
    first = pass_dir.store(pass_dir.ctx(cache_dir=cache_dir))
    first.read()
    assert first.ctx.stats["gpg"] == 4
    second = pass_dir.store(pass_dir.ctx(cache_dir=cache_dir))
    assert len(second.read().accounts) == 1
    assert second.ctx.stats["gpg"] == 1  # only the OTP entry, whose secret is not cached on disk
    for _name, data in all_bytes_under(cache_dir):
        assert SECRET.encode() not in data and b"otpauth" not in data


def test_failed_decryption_is_not_cached(pass_dir, gpg_keys):
    pass_dir.write("bob", f"otpauth://totp/B:x?secret={SECRET2}\n".encode(), recipients=[gpg_keys.bob.fingerprint, gpg_keys.alice.fingerprint])
    pass_dir.write("ok", f"otpauth://totp/A:x?secret={SECRET}\n".encode())
    cache: dict[str, bytes] = {}
    assert len(pass_dir.store(store_cache=cache).read().accounts) == 2
    # the same file, unreadable now (only bob's key in a home without it) → error, retried next time
    pass_dir.write("bob", f"otpauth://totp/B:x?secret={SECRET2}\n".encode(), recipients=[gpg_keys.bob.fingerprint])
    store = pass_dir.store(store_cache=cache)
    assert [e.where for e in store.read().errors] == ["bob"]
    again = pass_dir.store(store_cache=cache)
    assert [e.where for e in again.read().errors] == ["bob"]
    # retried: one quiet attempt, and one verbose run that says why it failed (pass_gpg.decrypt_file)
    assert again.ctx.stats["gpg"] == 2


def test_fingerprint_changes_with_entries_and_recipients(pass_dir):
    pass_dir.write("a", f"otpauth://totp/S:a?secret={SECRET}\n".encode())
    store = pass_dir.store()
    fp = store.fingerprint()
    assert fp == store.fingerprint()
    assert store.ctx.stats["gpg"] == 0
    os.utime(pass_dir.path / "a.gpg", ns=(1, 1))
    fp2 = store.fingerprint()
    assert fp2 != fp
    (pass_dir.path / ".gpg-id").write_text(pass_dir.keys.alice.fingerprint + "\n" + pass_dir.keys.bob.fingerprint + "\n")
    fp3 = store.fingerprint()
    assert fp3 != fp2
    pass_dir.write("sub/b", b"pw\n")
    assert store.fingerprint() != fp3


# -- writing ------------------------------------------------------------------------------
def test_add_writes_what_pass_otp_insert_writes(pass_dir):
    store = pass_dir.store()
    report = store.apply([totp(), hotp(7)])
    assert len(report.added) == 2 and not report.dry_run
    alice = pass_dir.read("Acme/alice")
    assert alice == f"otpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme&algorithm=SHA1&digits=6&period=30\n".encode()
    bob = pass_dir.read("Bank/bob")
    assert bob.endswith(b"&counter=6\n")  # pass-otp stores the last used counter
    assert oct((pass_dir.path / "Acme/alice.gpg").stat().st_mode & 0o777) == "0o600"
    assert oct((pass_dir.path / "Acme").stat().st_mode & 0o777) == "0o700"
    # binary (not armored), uncompressed: gpg --list-packets shows no compressed packet
    data = (pass_dir.path / "Acme/alice.gpg").read_bytes()
    assert not data.startswith(b"-----BEGIN")
    packets = pass_dir.home.run("--list-packets", str(pass_dir.path / "Acme/alice.gpg")).stdout.decode()
    assert "compressed packet" not in packets
    # no plaintext, no backup files, no temp files inside the store
    for name, blob in all_bytes_under(pass_dir.path):
        assert SECRET.encode() not in blob, name
        assert not name.endswith((".bak", ".tmp")), name
    again = by_name(pass_dir.store().read())
    assert again[("Acme", "alice")] == totp()
    assert again[("Bank", "bob")].counter == 7


def test_unused_hotp_counter_is_stored_as_zero_and_not_rewritten_every_time(pass_dir):
    store = pass_dir.store()
    store.apply([hotp(0)])
    assert pass_dir.read("Bank/bob").endswith(b"&counter=0\n")
    assert pass_dir.store().read().accounts[0].counter == 1
    mtime = (pass_dir.path / "Bank/bob.gpg").stat().st_mtime_ns
    report = pass_dir.store().apply([hotp(0)])
    assert report.unchanged == 1 and not report.changed
    assert (pass_dir.path / "Bank/bob.gpg").stat().st_mtime_ns == mtime


def test_update_replaces_only_the_otp_line_byte_for_byte(pass_dir):
    original = f"s3cr3t pw  \r\nlogin: alice\r\n  otpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\r\nurl: https://x\r\n\r\n".encode()
    pass_dir.write("sites/acme", original)
    store = pass_dir.store()
    (old,) = store.read().accounts
    new = old.replace(name="alice2", digits=8)
    report = store.apply([new], [old])  # an edit: new + old (SPEC §3)
    assert report.updated == [new]
    after = pass_dir.read("sites/acme")
    line = pe.uri_for(new).encode()
    assert after == original.replace(f"  otpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme".encode(), line)
    # no trailing newline is kept as such
    pass_dir.write("sites/bare", f"pw\notpauth://totp/B:x?secret={SECRET2}".encode())
    (acc,) = [a for a in pass_dir.store().read().accounts if a.issuer == "B"]
    pass_dir.store().apply([acc.replace(period=60)], [acc])
    assert pass_dir.read("sites/bare") == b"pw\n" + pe.uri_for(acc.replace(period=60)).encode()


def test_folder_changes_elsewhere_do_not_move_or_rewrite_entries(pass_dir):
    pass_dir.write("Acme/alice", f"otpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    before = (pass_dir.path / "Acme/alice.gpg").read_bytes()
    report = pass_dir.store().apply([totp(folder="Internet/2FA", note="from keepass")])
    assert report.unchanged == 1 and not report.changed
    assert (pass_dir.path / "Acme/alice.gpg").read_bytes() == before


def test_removal_keeps_the_password_and_deletes_otp_only_files(pass_dir):
    pass_dir.write("sites/acme", f"pw1\notpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\nnote: keep me\n".encode())
    pass_dir.write("deep/er/Bank/bob", f"otpauth://hotp/Bank:bob?secret={SECRET2}&issuer=Bank&counter=1\n".encode())
    store = pass_dir.store()
    accounts = store.read().accounts
    report = store.apply([], accounts)
    assert len(report.removed) == 2
    assert pass_dir.read("sites/acme") == b"pw1\nnote: keep me\n"
    assert not (pass_dir.path / "deep").exists()  # empty folders pruned like pass rm
    assert (pass_dir.path / ".gpg-id").exists()
    assert pass_dir.store().read().accounts == []


def test_new_account_at_a_password_entry_is_appended(pass_dir):
    pass_dir.write("Acme/alice", b"the password\nuser: alice")
    report = pass_dir.store().apply([totp()])
    assert len(report.added) == 1
    assert pass_dir.read("Acme/alice") == b"the password\nuser: alice\n" + pe.uri_for(totp()).encode() + b"\n"


def test_same_path_different_secret_is_an_update_only_when_the_old_account_goes(pass_dir):
    pass_dir.write("Acme/alice", f"pw\notpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    (old,) = pass_dir.store().read().accounts
    rekeyed = totp(secret=SECRET2)
    # SPEC §3: a write touches only the entries it names — an upsert alone never
    # overwrites another account that happens to live at the same path
    report = pass_dir.store().apply([rekeyed], dry_run=True)
    assert report.added == [rekeyed] and not report.updated
    report = pass_dir.store().apply([rekeyed], [old])  # re-keyed: the old account goes
    assert report.updated == [rekeyed]
    assert pass_dir.read("Acme/alice") == b"pw\n" + pe.uri_for(rekeyed).encode() + b"\n"


def test_hostile_names_stay_inside_the_store(pass_dir, tmp_path):
    evil = [
        totp(issuer="..", name="../../escape", secret="GEZDGNBV"),
        totp(issuer="", name="/etc/passwd", secret="GEZDGNBW"),
        totp(issuer=".hidden", name=".", secret="GEZDGNBX", folder="../../x/./.."),
        totp(issuer="", name="", secret="GEZDGNBY"),
        totp(issuer="Same", name="one", secret="GEZDGNBZ"),
        totp(issuer="Same", name="one", secret="GEZDGNB2"),
    ]
    pass_dir.store().apply(evil)
    inside = {p.relative_to(pass_dir.path).as_posix()[:-4] for p in pass_dir.path.rglob("*.gpg")}
    assert len(inside) == 6, inside
    assert all(not part.startswith(".") for rel in inside for part in rel.split("/")), inside
    assert {"Same/one", "Same/one-2"} <= inside
    assert not (tmp_path / "escape.gpg").exists() and not any(tmp_path.glob("*.gpg"))
    assert len(pass_dir.store().read().accounts) == 6


def test_recipients_nearest_gpg_id_several_keys_and_override(pass_dir, gpg_keys, monkeypatch):
    alice, bob = gpg_keys.alice, gpg_keys.bob
    pass_dir.init(f"{alice.fingerprint}  # me", "", f"{bob.email}", subdir="shared")
    pass_dir.init(bob.fingerprint, subdir="shared/bobonly")
    pass_dir.store().apply(
        [totp(folder="shared", secret="GEZDGNBV"), totp(folder="shared/bobonly/deeper", secret="GEZDGNBW"), totp(secret="GEZDGNBX")]
    )
    with gpg_keys.copy("bob").temporary() as bob_home:
        # shared/: both keys, each on its own
        assert b"GEZDGNBV" in pass_dir.read("shared/Acme/alice", home=bob_home)
        assert b"GEZDGNBV" in pass_dir.read("shared/Acme/alice")
        # shared/bobonly: only bob
        assert b"GEZDGNBW" in pass_dir.read("shared/bobonly/deeper/Acme/alice", home=bob_home)
        assert pass_dir.home.run("--decrypt", str(pass_dir.path / "shared/bobonly/deeper/Acme/alice.gpg"), check=False).returncode != 0
        # root: only alice
        assert pass_dir.home.run("--decrypt", str(pass_dir.path / "Acme/alice.gpg")).returncode == 0
        assert bob_home.run("--decrypt", str(pass_dir.path / "Acme/alice.gpg"), check=False).returncode != 0
        # PASSWORD_STORE_KEY overrides every .gpg-id
        ctx = pass_dir.ctx()
        ctx.environ = dict(ctx.environ, PASSWORD_STORE_KEY=bob.fingerprint)
        pass_dir.store(ctx).apply([totp(issuer="Override", secret="GEZDGNB2")])
        assert b"GEZDGNB2" in pass_dir.read("Override/alice", home=bob_home)
        assert pass_dir.home.run("--decrypt", str(pass_dir.path / "Override/alice.gpg"), check=False).returncode != 0


def test_missing_recipient_key_fails_clearly_and_writes_nothing(pass_dir, gpg_keys):
    pass_dir.write("Acme/alice", f"pw\notpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    before = {p: p.read_bytes() for p in pass_dir.path.rglob("*.gpg")}
    (pass_dir.path / ".gpg-id").write_text(f"{gpg_keys.alice.fingerprint}\nnobody@nowhere.invalid\n")
    store = pass_dir.store()
    (acc,) = store.read().accounts
    with pytest.raises(OtpBridgeError) as info:
        store.apply([acc.replace(digits=8), totp(issuer="New", secret=SECRET2)], [acc])
    assert "nobody@nowhere.invalid" in str(info.value) and "no public key" in str(info.value)
    assert SECRET not in str(info.value) and SECRET2 not in str(info.value)
    assert {p: p.read_bytes() for p in pass_dir.path.rglob("*.gpg")} == before
    assert not list(pass_dir.path.rglob("*.tmp")) and not (pass_dir.path / "New").exists()


def test_signed_gpg_id_is_enforced_when_pass_would_enforce_it(pass_dir, gpg_keys):
    ctx = pass_dir.ctx()
    ctx.environ = dict(ctx.environ, PASSWORD_STORE_SIGNING_KEY=gpg_keys.alice.fingerprint)
    with pytest.raises(OtpBridgeError, match="signature"):
        pass_dir.store(ctx).apply([totp()])
    pass_dir.home.run("--detach-sign", "-o", str(pass_dir.path / ".gpg-id.sig"), str(pass_dir.path / ".gpg-id"))
    pass_dir.store(ctx).apply([totp()])
    assert pass_dir.read("Acme/alice").startswith(b"otpauth://")


def test_git_store_gets_one_commit_per_apply(pass_dir):
    pass_dir.write("sites/acme", f"pw\notpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    pass_dir.git_init()
    store = pass_dir.store()
    (acc,) = store.read().accounts
    store.apply([acc.replace(digits=8), hotp(3)], [acc])
    log = pass_dir.git_log()
    assert log[0] == "otpbridge: update 1, add 1 OTP entries" and log[1] == "init"
    assert pass_dir.git_clean()
    pass_dir.store().apply([], [acc.replace(digits=8)])
    assert pass_dir.git_log()[0] == "otpbridge: remove OTP from sites/acme"
    pass_dir.store().apply([], [hotp(4)])
    assert pass_dir.git_log()[0] == "otpbridge: remove OTP from Bank/bob"
    assert pass_dir.git_clean()
    assert "Bank" not in subprocess.run(["git", "-C", str(pass_dir.path), "ls-files"], capture_output=True, text=True).stdout
    # nothing to do: no commit
    n = len(pass_dir.git_log())
    pass_dir.store().apply([])
    assert len(pass_dir.git_log()) == n


def test_dry_run_changes_nothing(pass_dir):
    pass_dir.write("sites/acme", f"pw\notpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    before = {p: p.read_bytes() for p in pass_dir.path.rglob("*") if p.is_file()}
    store = pass_dir.store()
    (acc,) = store.read().accounts
    report = store.apply([acc.replace(digits=8), hotp(2)], [acc], dry_run=True)
    assert report.dry_run and len(report.updated) == 1 and len(report.added) == 1
    assert {p: p.read_bytes() for p in pass_dir.path.rglob("*") if p.is_file()} == before


def test_round_trip_between_stores_is_stable(pass_dir, tmp_path):
    pass_dir.write("GitHub/octo", f"otpauth://totp/?secret={SECRET}\n".encode())
    pass_dir.write("work/Gitlab/me", f"pw\notpauth://totp/me?secret={SECRET2}&digits=8\n".encode())
    pass_dir.write("Bank/bob", b"otpauth://hotp/Bank:bob?secret=GEZDGNBV&issuer=Bank&counter=9\n")
    accounts = sorted(pass_dir.store().read().accounts, key=lambda a: a.name)
    other_path = tmp_path / "other"
    other = PassStore(StoreSpec("pass", str(other_path)), pass_dir.ctx())
    other_path.mkdir()
    (other_path / ".gpg-id").write_text(pass_dir.keys.alice.fingerprint + "\n")
    other.apply(accounts)
    again = sorted(other.read().accounts, key=lambda a: a.name)
    assert again == accounts
    assert [a.folder for a in again] == [a.folder for a in accounts]
    assert sorted(p.relative_to(other_path).as_posix() for p in other_path.rglob("*.gpg")) == [
        "Bank/bob.gpg",
        "GitHub/octo.gpg",
        "work/Gitlab/me.gpg",
    ]
    assert other.apply(accounts).unchanged == 3


def test_apply_keeps_the_cache_warm(pass_dir):
    cache: dict[str, bytes] = {}
    pass_dir.store(store_cache=cache).apply([totp(), hotp(1)])
    store = pass_dir.store(store_cache=cache)
    assert len(store.read().accounts) == 2
    assert store.ctx.stats["gpg"] == 0


def test_apply_to_a_store_that_does_not_exist(pass_dir, tmp_path, gpg_keys):
    missing = PassStore(StoreSpec("pass", str(tmp_path / "new")), pass_dir.ctx())
    with pytest.raises(UsageError, match="no such password store") as info:
        missing.apply([totp()])
    assert "pass init" in info.value.hint
    ctx = pass_dir.ctx()
    ctx.environ = dict(ctx.environ, PASSWORD_STORE_KEY=gpg_keys.alice.fingerprint)
    created = PassStore(StoreSpec("pass", str(tmp_path / "new")), ctx)
    created.apply([totp()])
    assert oct((tmp_path / "new").stat().st_mode & 0o777) == "0o700"
    assert [a.name for a in created.read().accounts] == ["alice"]


def test_progress_bar_does_not_disturb_reading(pass_dir):
    for i in range(3):
        pass_dir.write(f"e{i}", f"otpauth://totp/S:e{i}?secret={SECRET}\n".encode())
    assert len(pass_dir.store(pass_dir.ctx(progress=True)).read().accounts) == 3


def test_gpg_environment_drops_otpbridge_secrets(pass_dir):
    from otpbridge.plugins.pass_gpg import Gpg

    gpg = Gpg({"PATH": os.environ["PATH"], "OTPBRIDGE_PASSPHRASE": "x", "GNUPGHOME": "/g"})
    assert "OTPBRIDGE_PASSPHRASE" not in gpg.environ and gpg.environ["GNUPGHOME"] == "/g"


def test_spawn_reads_both_pipes_to_the_end_and_keeps_the_exit_code():
    """More than a pipe buffer on stdout and stderr at once must not deadlock (pass_gpg._spawn_read)."""
    import sys

    from otpbridge.plugins.pass_gpg import _spawn_read

    code = "import sys; sys.stdout.write('o' * 300000); sys.stderr.write('e' * 300000); sys.stdout.flush(); sys.exit(3)"
    rc, out, err = _spawn_read(sys.executable, [sys.executable, "-c", code], {"PATH": os.environ["PATH"]})
    assert (rc, len(out), len(err), set(out), set(err)) == (3, 300000, 300000, {ord("o")}, {ord("e")})
    # the environment given, nothing else of ours (PATH is not passed here); stdin is /dev/null
    probe = "import os, sys; print(os.environ.get('A'), 'PATH' in os.environ, repr(sys.stdin.read()))"
    rc, out, _ = _spawn_read(sys.executable, [sys.executable, "-c", probe], {"A": "1"})
    assert (rc, out.decode().strip()) == (0, "1 False ''")


# -- the pure content rules ------------------------------------------------------------
@pytest.mark.parametrize(
    "plain, expected",
    [
        (b"otpauth://totp/a?secret=A\n", None),
        (b"pw\notpauth://totp/a?secret=A\n", b"pw\n"),
        (b"pw\notpauth://totp/a?secret=A", b"pw"),
        (b"pw\r\notpauth://totp/a?secret=A\r\nx\r\n", b"pw\r\nx\r\n"),
        (b"pw\r\notpauth://totp/a?secret=A", b"pw"),
        (b"\n\notpauth://totp/a?secret=A\n\n", None),
        (b"otpauth://totp/a?secret=A\notpauth://totp/b?secret=B\n", b"otpauth://totp/b?secret=B\n"),
    ],
)
def test_remove_otp_line(plain, expected):
    where = pe.find_otp_line(plain)
    assert where is not None and where.text.startswith("otpauth://totp/a")
    assert pe.remove_otp_line(plain, where) == expected


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30), max_size=6), st.booleans())
def test_replace_keeps_every_other_byte(lines, trailing):
    uri_at = len(lines) // 2
    body = list(lines)
    body.insert(uri_at, "otpauth://totp/a?secret=AAAA")
    text = "\n".join(line.replace("\n", "") for line in body) + ("\n" if trailing else "")
    plain = text.encode()
    where = pe.find_otp_line(plain)
    out = pe.replace_otp_line(plain, where, "otpauth://totp/NEW?secret=BBBB")
    assert out.replace(b"otpauth://totp/NEW?secret=BBBB", plain[where.start : where.end], 1) == plain


def test_counter_repair_rules():
    assert pe.repair_counter("otpauth://hotp/a?secret=A&counter=10counter=11")[0].endswith("&counter=11")
    assert pe.repair_counter("otpauth://hotp/a?secret=A&counter=10counter=11&digits=6")[0] == "otpauth://hotp/a?secret=A&counter=11&digits=6"
    assert pe.repair_counter("otpauth://hotp/a?secret=A&counter=10")[1] is None
    assert pe.repair_counter("otpauth://hotp/a?secret=A&counter=ten")[1] is None


def test_huge_files_are_skipped_with_a_warning(pass_dir):
    pass_dir.write("a", f"otpauth://totp/S:a?secret={SECRET}\n".encode())
    (pass_dir.path / "video.mp4.gpg").write_bytes(b"\x85" + b"\0" * (5 << 20))
    store = pass_dir.store()
    result = store.read()
    assert [a.name for a in result.accounts] == ["a"] and result.errors == []
    assert store.ctx.stats["gpg"] == 1
    assert any("video.mp4" in w and "MiB" in w for w in pass_dir.warnings)


def test_same_path_never_overwrites_an_account_that_is_kept(pass_dir):
    pass_dir.write("Acme/alice", f"otpauth://totp/Acme:alice?secret={SECRET}&issuer=Acme\n".encode())
    report = pass_dir.store().apply([totp(), totp(secret=SECRET2)])
    assert report.unchanged == 1 and len(report.added) == 1
    assert {a.secret for a in pass_dir.store().read().accounts} == {b32decode(SECRET), b32decode(SECRET2)}
    assert (pass_dir.path / "Acme/alice-2.gpg").is_file()


def test_an_account_without_issuer_in_a_folder_round_trips(pass_dir):
    """``Group/Username.gpg`` would read back with issuer "Group" (pass-otp's
    <issuer>/<account> rule): another account, sent as new at every sync. The line
    says "no issuer" explicitly instead (an empty issuer= parameter)."""
    accounts = [totp(issuer="", name="Username", folder="Group"),
                totp(issuer="", name="deep", folder="a/b", secret=SECRET2),
                totp(issuer="", name="top", secret="GEZDGNBV")]
    store = pass_dir.store()
    store.apply(accounts)
    back = sorted(store.read().accounts, key=lambda a: a.name)
    assert back == sorted(accounts, key=lambda a: a.name)
    assert sorted(p.relative_to(pass_dir.path).as_posix() for p in pass_dir.path.rglob("*.gpg")) == [
        "Group/Username.gpg", "a/b/deep.gpg", "top.gpg"]
    report = pass_dir.store().apply(accounts)
    assert report.unchanged == 3 and not report.added
    # an entry pass-otp wrote without an issuer still takes its folder's name as issuer
    pass_dir.write("Acme/alice", f"otpauth://totp/alice?secret={SECRET}\n".encode())
    assert any(a.issuer == "Acme" and a.folder == "" for a in pass_dir.store().read().accounts)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accounts=account_lists(max_size=4, kind=st.sampled_from([Kind.TOTP, Kind.HOTP]),
                              folder=st.sampled_from(["", "work", "a/b", "Acme"]),
                              issuer=st.sampled_from(["", "Acme", "Bank", "x/y"]),
                              name=st.sampled_from(["", "alice", "bob", "Acme"])))
def test_any_accounts_read_back_as_written(pass_dir, accounts):
    """read → write → read is stable for issuers, names and folders in every combination
    that pass-otp's layout makes ambiguous."""
    import shutil

    for child in pass_dir.path.iterdir():
        if child.name not in (".gpg-id", ".git"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    store = pass_dir.store()
    store.apply(accounts)
    back = store.read().accounts
    assert sorted(a.identity for a in back) == sorted(a.identity for a in accounts)
    assert pass_dir.store().apply(accounts).unchanged == len(accounts)


def test_merging_an_older_hotp_counter_keeps_the_stores(pass_dir):
    store = pass_dir.store()
    store.apply([hotp(19)])
    report = pass_dir.store().apply([hotp(3)])
    assert not report.updated and report.unchanged == 1
    (back,) = pass_dir.store().read().accounts
    assert back.counter == 19
