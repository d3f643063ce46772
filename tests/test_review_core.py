"""Adversarial review of the backup/sync core: each test proves one way to lose or leak data.

Every test here failed before the fix it names (see the review report); the rest pin
edge cases that held up, so they stay held up. Real local-folder remotes, real crypto,
the real CLI; FaultyBackend only to interleave two devices or inject a fault.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from otpbridge.backends.faults import FaultyBackend, SimulatedCrash
from otpbridge.backends.local import LocalBackend
from otpbridge.core.errors import OtpBridgeError
from otpbridge.core.secrets import Secret
from otpbridge.engine.fastpath import sync
from otpbridge.engine.rotation import change_passphrase
from tests.support.engine import (
    NEW_PASS,
    PASS,
    Device,
    engine_session,
    joined_pair,
    make_account,
    ok,
    remote_ids,
)

NEW = {"OTPBRIDGE_NEW_PASSPHRASE": NEW_PASS}
HOURS_AGO = 3 * 3600


def pair(tmp_path: Path) -> tuple[Device, Device, Path]:
    return joined_pair(tmp_path, accounts=())


def past_sync(dev: Device, *, ago: float = HOURS_AGO) -> None:
    """A sync whose view is named as written ``ago`` seconds back (an old snapshot)."""
    s = engine_session(dev)
    s.now = lambda: time.time() - ago
    sync(s)


# --- passphrase change racing another device's sync -------------------------------------
def test_sync_during_rotation_does_not_delete_the_new_epoch(tmp_path):
    """B lists before A's commit point and cleans "orphans" after A finished: nothing lost.

    Re-encrypted views keep their original (old) time in their name, so B's cleanup took
    the new epoch's views for leftovers of a crashed change and deleted them while A was
    deleting the old epoch: the vault was left with a header and no views.
    """
    a, b, remote = pair(tmp_path)
    a.add(make_account("a1"), make_account("a2"))
    past_sync(a)
    b.add(make_account("b1"))
    past_sync(b)
    past_sync(a)
    everything = set(a.accounts())
    assert len(everything) == 3

    b_ready, a_done = threading.Event(), threading.Event()
    b_errors: list[BaseException] = []

    def b_blocks_before_delete(k, name):
        b_ready.set()
        a_done.wait(30)
        return False

    def run_b():
        try:
            sync(engine_session(b, FaultyBackend(LocalBackend(str(remote)), fail_on={"delete": b_blocks_before_delete})))
        except BaseException as exc:  # noqa: BLE001 - reported below
            b_errors.append(exc)
        finally:
            b_ready.set()

    thread = threading.Thread(target=run_b)

    def a_commits(k, name):
        if name.startswith("epochs/") and not thread.is_alive() and not b_ready.is_set():
            thread.start()
            b_ready.wait(30)  # B has listed and opened the old epoch (or finished)
        return False

    change_passphrase(engine_session(a, FaultyBackend(LocalBackend(str(remote)), fail_on={"write": a_commits})),
                      lambda: Secret(NEW_PASS))
    a_done.set()
    thread.join(30)
    assert not b_errors or all(isinstance(e, OtpBridgeError) for e in b_errors), b_errors
    assert remote_ids(remote, NEW_PASS) == everything


def test_finishing_a_change_with_a_wrong_old_passphrase_deletes_nothing(tmp_path):
    """After the commit point, a rerun whose OLD passphrase is mistyped must not delete
    old-epoch objects that are still readable (with the real old passphrase) and hold
    changes not yet folded into the new epoch."""
    a, b, remote = pair(tmp_path)
    a.add(make_account("a1"))
    ok(a.sync())
    ok(b.sync())
    late = make_account("late")

    def straggle_then_crash(k, name):
        if name.startswith("epochs/"):
            b.add(late)
            ok(b.sync())  # B writes under the old epoch right before the commit point
        return False

    faulty = FaultyBackend(LocalBackend(str(remote)), fail_on={"write": straggle_then_crash},
                           crash_after={"write": lambda k, name: name.startswith("epochs/")})
    with pytest.raises(SimulatedCrash):
        change_passphrase(engine_session(a, faulty), lambda: Secret(NEW_PASS))
    res = a.run("passphrase", "change", env={**NEW, "OTPBRIDGE_PASSPHRASE": "not the old passphrase"})
    assert res.code == 3, res.err
    assert "Traceback" not in res.err
    ok(a.run("passphrase", "change", env=NEW))  # the right old passphrase finishes the job
    assert late.secret_id in remote_ids(remote, NEW_PASS)


# --- restore into an existing store ---------------------------------------------------------
def test_restore_never_moves_a_hotp_counter_backwards(tmp_path):
    """The target already used codes up to counter 40; the vault knows 5. A restore that
    writes 5 back re-offers 35 used codes (and the service rejects them as replays)."""
    a, _b, remote = pair(tmp_path)
    h = make_account("hot", kind="hotp", counter=5)
    a.add(h)
    ok(a.sync())
    other = Device(tmp_path / "other", str(remote), "other")
    other.write_accounts([h.replace(counter=40, name="renamed here")])
    res = ok(other.run("restore", str(remote), "--into", other.store, "--json"))
    from tests.support.engine import parse_uri

    lines = [parse_uri(x) for x in other.store_path.read_text().splitlines() if x.strip()]
    # SPEC §3: the renamed copy is another account; it stays, and the vault's is added
    assert sorted(a.name for a in lines) == sorted([h.name, "renamed here"]), res.out
    assert all(a.counter == 40 for a in lines), res.out  # codes below 40 were used with this secret


def test_restore_accept_rollback_is_honoured(tmp_path):
    a, b, remote = pair(tmp_path)
    b.add(make_account("1"))
    ok(b.sync())
    old = max((remote / "devices").rglob("*.view"), key=lambda p: p.name)  # b's newest (after its join view)
    saved = old.read_bytes()
    b.add(make_account("2"))
    ok(b.sync())
    ok(a.sync())
    for p in list((remote / "devices").rglob("*.view")):
        p.unlink()  # a's own view too: its first sync uploaded one holding account 2 (issue 20)
    old.write_bytes(saved)  # the provider served an old copy of the devices' folders
    target = f"uris:{tmp_path / 'out.txt'}"
    assert a.run("restore", "--into", target).code == 4
    res = a.run("restore", "--into", target, "--accept-rollback", "--json")
    assert res.code == 0, res.err
    assert res.json()["accounts"] == 1


# --- hostile but authenticated content, reprs -------------------------------------------------
def _vault_key(dev: Device, passphrase: str = PASS):
    from otpbridge.engine.layout import Listing
    from otpbridge.engine.remote import open_key

    s = engine_session(dev, passphrase=passphrase)
    return open_key(s, Listing.parse(s.backend.list()), s.load_state(), Secret(passphrase))[0]


@pytest.mark.parametrize(
    "payload",
    [
        {"records": ["not a record"]},
        {"records": [{"id": "x", "c": 1, "d": "cccccccccccc", "a": ["list"]}]},
        {"records": [], "removed": ["not", "a", "dict"]},
        {"records": [], "removed": {"cccccccccccc": "not a dict"}},
        {"records": [], "devices": "nope"},
        {"records": [{"id": "x", "c": None, "d": "cccccccccccc", "a": None}]},
    ],
)
def test_malformed_view_from_a_key_holder_is_exit_4_not_a_traceback(tmp_path, payload):
    """A buggy or hostile device that holds the key writes a view of the wrong shape."""
    from otpbridge.engine.layout import encode_view, view_name

    a, _b, remote = pair(tmp_path)
    a.add(make_account("1"))
    ok(a.sync())
    key = _vault_key(a)
    dev = "cccccccccccc"
    body = {"v": 1, "device": dev, "seq": 1, "epoch": 1, "time": 1, "clock": 1, **payload}
    path = remote / view_name(dev, 1, 1, time.time())
    path.parent.mkdir(parents=True)
    path.write_bytes(key.seal("view", dev, 1, encode_view(body)))
    a.add(make_account("2"))
    res = a.sync()
    # a new view that does not parse is skipped with a warning, like a half-written one
    assert res.code in (0, 4), res.err
    assert "Traceback" not in res.err
    res = a.run("verify")
    assert res.code == 4 and "Traceback" not in res.err


def test_remote_repr_shows_no_secret(tmp_path):
    from otpbridge.engine.remote import load_remote

    a, _b, _remote = pair(tmp_path)
    acc = make_account("1")
    a.add(acc)
    ok(a.sync())
    s = engine_session(a)
    remote = load_remote(s, s.load_state(), Secret(PASS))
    text = repr(remote) + repr(s)
    assert acc.secret_b32 not in text and acc.secret_b32.rstrip("=") not in text


# --- the rclone child's environment --------------------------------------------------------
def _rclone_spy(tmp_path: Path) -> tuple[Path, Path]:
    from otpbridge.backends.rclone_exec import find_rclone

    real = find_rclone(os.environ)
    dump = tmp_path / "rclone-env.txt"
    spy = tmp_path / "rclone-spy"
    spy.write_text(f'#!/bin/sh\nenv >> "{dump}"\necho "ARGV $*" >> "{dump}"\nexec "{real}" "$@"\n')
    spy.chmod(0o700)
    return spy, dump


@pytest.mark.skipif(sys.platform == "win32", reason="shell script spy")
def test_store_password_env_does_not_reach_rclone(tmp_path):
    pytest.importorskip("pykeepass")
    spy, dump = _rclone_spy(tmp_path)
    remote = f":local:{tmp_path / 'remote'}"
    dev = Device(tmp_path / "kp", remote, "kp")
    dev.env.update(OTPBRIDGE_RCLONE=str(spy), KP_MASTER="kdbx-master-password-1234")
    spec = f"keepass:{tmp_path / 'kp' / 'otp.kdbx'}?password-env=KP_MASTER"
    ok(dev.run("init", remote, "--store", spec, "--device", "kp", "--kdf", "insecure-test", "--create"))
    ok(dev.sync())
    text = dump.read_text()
    assert "ARGV" in text  # the spy really ran
    assert "kdbx-master-password-1234" not in text
    assert PASS not in text


# --- hostile remotes: sizes, names, vanishing objects ----------------------------------------
def _sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)


def test_huge_objects_are_not_downloaded(tmp_path):
    """A view or header bigger than any valid one is refused from the listing alone."""
    from otpbridge.engine.layout import header_name, view_name
    from otpbridge.vault.format import PAD_MAX

    a, _b, remote = pair(tmp_path)
    a.add(make_account("1"))
    ok(a.sync())
    big = remote / view_name("dddddddddddd", 1, 1, time.time())
    _sparse(big, PAD_MAX + 4096)
    a.add(make_account("2"))
    faulty = FaultyBackend(LocalBackend(str(remote)))
    rep = sync(engine_session(a, faulty))
    assert any("dddddddddddd" in w for w in rep.warnings)
    assert not [e for e in faulty.events if e[0] == "read" and e[2] == big.relative_to(remote).as_posix()]
    hdr = remote / header_name(2, "dddddddddddd", time.time())  # the newest epoch: it must be read
    _sparse(hdr, 50 * 1024 * 1024)
    faulty = FaultyBackend(LocalBackend(str(remote)))
    a.add(make_account("3"))
    with pytest.raises(OtpBridgeError) as info:
        sync(engine_session(a, faulty))
    assert info.value.exit_code == 4
    assert not [e for e in faulty.events if e[0] == "read" and e[2].startswith("epochs/0000000002-dddd")]


# --- unreadable stores must never look empty --------------------------------------------------
def _remote_count(remote: Path, passphrase: str = PASS) -> int:
    return len(remote_ids(remote, passphrase))


def test_store_emptied_is_refused_by_the_guard(tmp_path):
    a, _b, remote = pair(tmp_path)
    a.add(make_account("1"), make_account("2"))
    ok(a.sync())
    a.store_path.write_text("")  # truncated to nothing (a crashed editor, a bad copy)
    res = a.sync()
    assert res.code == 6, res.err
    res = a.run("backup")
    assert res.code == 6, res.err
    assert _remote_count(remote) == 2


def test_keepass_wrong_password_is_exit_3_and_sends_nothing(tmp_path):
    pytest.importorskip("pykeepass")
    remote = tmp_path / "remote"
    dev = Device(tmp_path / "kp", str(remote), "kp")
    dev.env["KP"] = "right-password"
    spec = f"keepass:{tmp_path / 'kp' / 'otp.kdbx'}?password-env=KP"
    ok(dev.run("init", str(remote), "--store", spec, "--device", "kp", "--kdf", "insecure-test", "--create"))
    feeder = Device(tmp_path / "feeder", str(remote), "feeder")
    ok(feeder.init())
    feeder.add(*[make_account(str(i)) for i in range(5)])
    ok(feeder.sync())
    ok(dev.sync())
    assert _remote_count(remote) == 5
    feeder.add(make_account("more"))
    ok(feeder.sync())  # the remote changed: no fast path, the store must be opened
    res = dev.sync(env={"KP": "wrong-password"})
    assert res.code == 3, res.err
    res = dev.sync("--allow-deletions", env={"KP": "wrong-password"})
    assert res.code == 3, res.err
    assert _remote_count(remote) == 6


def test_pass_store_without_the_gpg_key_deletes_nothing(tmp_path, gpg_keys, monkeypatch):
    from otpbridge.core.otpauth import format_uri
    from tests.support.gpg import PassDir

    alice = gpg_keys.copy("alice")
    bob = gpg_keys.copy("bob")
    try:
        store = PassDir(tmp_path / "store", alice)
        store.init(gpg_keys.alice.fingerprint)
        accs = [make_account(f"p{i}") for i in range(4)]
        for acc in accs:
            store.write(f"site{acc.issuer}", (format_uri(acc) + "\n").encode())
        remote = tmp_path / "remote"
        dev = Device(tmp_path / "dev", str(remote), "dev")
        dev.env["GNUPGHOME"] = str(alice.path)
        ok(dev.run("init", str(remote), "--store", f"pass:{store.path}", "--device", "dev", "--kdf", "insecure-test"))
        ok(dev.sync())
        assert _remote_count(remote) == 4
        feeder = Device(tmp_path / "feeder", str(remote), "feeder")
        ok(feeder.init())
        ok(feeder.sync())
        feeder.add(make_account("more"))
        ok(feeder.sync())  # the remote changed: no fast path, the store must be read
        # the same store read where the key is missing (another user, a locked smartcard)
        for p in dev.home.rglob("store-cache.sealed"):
            p.unlink()
        res = dev.sync("--allow-deletions", env={"GNUPGHOME": str(bob.path)})
        assert res.code != 0, res.out
        assert "Traceback" not in res.err
        assert _remote_count(remote) == 5
    finally:
        alice.close()
        bob.close()


def test_read_only_primary_fails_before_changing_the_remote(tmp_path):
    """A primary that cannot be written (a Bitwarden export) cannot receive: say so up
    front instead of uploading and then failing every run after the upload."""
    import shutil

    from tests.support.paths import FIXTURES

    src = FIXTURES / "bitwarden" / "bitwarden.unencrypted.json"
    remote = tmp_path / "remote"
    feeder = Device(tmp_path / "feeder", str(remote), "feeder")
    ok(feeder.init())
    feeder.add(make_account("from-feeder"))
    ok(feeder.sync())
    bw = Device(tmp_path / "bw", str(remote), "bw")
    export = tmp_path / "bw" / "export.json"
    shutil.copy(src, export)
    ok(bw.run("init", str(remote), "--store", f"bitwarden:{export}", "--device", "bw", "--kdf", "insecure-test"))
    before = sorted(p.name for p in remote.rglob("*"))
    res = bw.sync()
    assert res.code == 2, (res.code, res.err)
    assert sorted(p.name for p in remote.rglob("*")) == before
    assert "backup" in res.err
    ok(bw.run("backup"))  # one-way still works
    assert _remote_count(remote) == 9


# --- merge edge cases, end to end ------------------------------------------------------------
def test_delete_here_edit_there_keeps_the_later_change(tmp_path):
    a, b, remote = pair(tmp_path)
    acc = make_account("x")
    a.add(acc, make_account("y"), make_account("z"))
    ok(a.sync())
    ok(b.sync())
    a.remove(acc.secret_id)
    b.edit(acc.secret_id, name="edited on b")
    ok(a.sync())
    res = ok(b.sync()).json()  # b's edit is newer than a's deletion: the account lives
    assert [c["id"] for c in res["conflicts"]] == [acc.identity]  # the record id: the identity when first seen
    ok(a.sync())
    assert a.accounts()[acc.secret_id].name == "edited on b"
    assert acc.secret_id in remote_ids(remote)


def test_concurrent_edits_with_equal_clocks_converge(tmp_path):
    """Both devices edit from the same base without seeing each other: equal Lamport
    clocks, the device id breaks the tie, and both end with the same fields."""
    a, b, remote = pair(tmp_path)
    acc = make_account("x")
    a.add(acc)
    ok(a.sync())
    ok(b.sync())
    a.edit(acc.secret_id, name="from a")
    b.edit(acc.secret_id, name="from b")

    def b_syncs_first(k, name):
        ok(b.sync())  # b lists before a uploads, a listed before b uploads
        return False

    sync(engine_session(a, FaultyBackend(LocalBackend(str(remote)), fail_on={"write": lambda k, n: k == 1 and b_syncs_first(k, n)})))
    for _ in range(2):
        ok(a.sync())
        ok(b.sync())
    assert a.accounts()[acc.secret_id].name == b.accounts()[acc.secret_id].name
    assert a.accounts()[acc.secret_id].name in ("from a", "from b")


def test_old_copy_of_the_store_does_not_move_hotp_backwards(tmp_path):
    a, b, remote = pair(tmp_path)
    h = make_account("h", kind="hotp", counter=3)
    a.add(h)
    ok(a.sync())
    old_store = a.store_path.read_bytes()
    a.edit(h.secret_id, counter=20)
    ok(a.sync())
    a.store_path.write_bytes(old_store)  # the user restored yesterday's file
    ok(a.sync())
    ok(b.sync())
    assert a.accounts()[h.secret_id].counter == 20
    assert b.accounts()[h.secret_id].counter == 20


def test_state_file_deleted_then_rejoin_loses_nothing(tmp_path):
    a, b, remote = pair(tmp_path)
    a.add(make_account("1"), make_account("2"))
    ok(a.sync())
    b.add(make_account("3"))
    ok(b.sync())
    ok(a.sync())
    for p in (a.home).rglob("sync-state.json"):
        p.unlink()
    a.add(make_account("4"))
    res = a.sync()
    assert res.code == 2 and "init" in res.err  # not joined any more: told how to fix
    ok(a.init())
    ok(a.sync())
    ok(b.sync())
    want = {make_account(t).secret_id for t in "1234"}
    assert set(a.accounts()) == want == set(b.accounts()) == remote_ids(remote)


def test_home_restored_from_an_old_backup_is_no_rollback_and_loses_nothing(tmp_path):
    """A restored home cannot be told from a live copy of it (docs/SYNC.md "Copied homes"):
    it is refused (exit 6, not a rollback) with nothing changed, and --adopt-device then
    merges everything and loses nothing."""
    import shutil

    a, b, remote = pair(tmp_path)
    a.add(make_account("1"))
    ok(a.sync())
    backup = tmp_path / "a-backup"
    shutil.copytree(a.root, backup)
    a.add(make_account("2"))
    ok(a.sync())
    a.remove(make_account("1").secret_id)
    ok(a.sync())
    b.add(make_account("3"))
    ok(b.sync())
    shutil.rmtree(a.root)
    shutil.copytree(backup, a.root)  # the whole home and store, as they were
    before = sorted(p.name for p in remote.rglob("*"))
    res = a.sync()
    assert res.code == 6 and "rollback" not in res.err and "--adopt-device" in res.err, res.err
    assert sorted(p.name for p in remote.rglob("*")) == before
    assert set(a.accounts()) == {make_account("1").secret_id}  # the store was not touched
    ok(a.sync("--adopt-device"))
    ok(b.sync())
    want = {make_account("2").secret_id, make_account("3").secret_id}
    assert set(a.accounts()) == want == set(b.accounts()) == remote_ids(remote)


def test_account_in_two_stores_with_different_settings_is_not_lost(tmp_path):
    from otpbridge.core.otpauth import format_uri

    remote = tmp_path / "remote"
    a = Device(tmp_path / "a", str(remote), "a")
    extra = tmp_path / "a" / "extra.txt"
    acc = make_account("dual", kind="hotp", counter=2)
    a.write_accounts([acc.replace(name="primary name")])
    extra.write_text(format_uri(acc.replace(name="secondary name", counter=9)) + "\n")
    ok(a.run("init", str(remote), "--store", a.store, "--store", f"uris:{extra}", "--device", "a",
             "--kdf", "insecure-test"))
    ok(a.sync())
    assert a.accounts()[acc.secret_id].counter == 9  # the highest counter wins everywhere
    a.write_accounts([])  # deleted from the primary, still in the secondary
    ok(a.sync())
    assert acc.secret_id in remote_ids(remote)


def test_read_only_primary_can_still_change_the_passphrase(tmp_path):
    import shutil

    from tests.support.paths import FIXTURES

    src = FIXTURES / "bitwarden" / "bitwarden.unencrypted.json"
    remote = tmp_path / "remote"
    bw = Device(tmp_path / "bw", str(remote), "bw")
    export = tmp_path / "bw" / "export.json"
    shutil.copy(src, export)
    ok(bw.run("init", str(remote), "--store", f"bitwarden:{export}", "--device", "bw", "--kdf", "insecure-test"))
    ok(bw.run("backup"))
    ok(bw.run("passphrase", "change", env=NEW))
    assert _remote_count(remote, NEW_PASS) == 8


# --- hostile remotes and rollback (SPEC §5 exit codes, §6 rollback) ---------------------------
def _snapshot(remote: Path) -> dict[str, bytes]:
    return {p.relative_to(remote).as_posix(): p.read_bytes() for p in remote.rglob("*") if p.is_file()}


def _synced_pair(tmp_path):
    a, b, remote = pair(tmp_path)
    a.add(make_account("1"), make_account("2"))
    ok(a.sync())
    b.add(make_account("3"))
    ok(b.sync())
    ok(a.sync())
    a.add(make_account("4"))  # a pending change: every run below must read the remote
    return a, b, remote


def test_header_of_another_vault_as_newest_epoch_is_exit_4(tmp_path):
    from otpbridge.engine.layout import header_name
    from otpbridge.vault.format import PRESETS, create_epoch

    a, _b, remote = _synced_pair(tmp_path)
    foreign, _key = create_epoch(Secret(PASS), params=PRESETS["insecure-test"], epoch=2)
    (remote / header_name(2, "eeeeeeeeeeee", time.time())).write_bytes(foreign)
    before = _snapshot(remote)
    res = a.sync()
    assert res.code == 4 and "another vault" in res.err and "Traceback" not in res.err
    assert _snapshot(remote) == before


def test_attacker_header_with_another_passphrase_changes_nothing(tmp_path):
    """Anyone who can write to the remote can add a header for the same vault id and a
    newer epoch: devices must refuse (exit 3, told who 'changed' it) and delete nothing."""
    from otpbridge.engine.layout import header_name
    from otpbridge.vault.format import PRESETS, create_epoch

    a, _b, remote = _synced_pair(tmp_path)
    vid = _vault_key(a).vault_id  # public: it is in every header
    evil, _key = create_epoch(Secret("attacker"), params=PRESETS["insecure-test"], vault_id=vid, epoch=2)
    (remote / header_name(2, "eeeeeeeeeeee", time.time())).write_bytes(evil)
    before = _snapshot(remote)
    res = a.sync()
    assert res.code == 3 and "changed on device" in res.err
    res = a.run("passphrase", "change", env=NEW)
    assert res.code == 3, res.err
    assert _snapshot(remote) == before
    target = tmp_path / "out.txt"
    res = ok(a.run("restore", "--into", f"uris:{target}", "--json"))
    assert res.json()["accounts"] == 3 and "using epoch 1" in res.err


def test_empty_or_missing_remote_is_refused(tmp_path):
    import shutil

    a, _b, remote = _synced_pair(tmp_path)
    shutil.rmtree(remote)
    res = a.sync()  # a folder that is not there at all: an unmounted drive (exit 5), nothing made
    assert res.code == 5 and "does not exist" in res.err and not remote.exists(), res.err
    remote.mkdir()
    res = a.sync()  # there, but emptied: the vault is gone (exit 4)
    assert res.code == 4 and "no vault" in res.err and "Traceback" not in res.err
    assert not any(remote.iterdir())


def test_garbage_objects_and_names_are_ignored(tmp_path):
    a, _b, remote = _synced_pair(tmp_path)
    (remote / "devices" / "not-a-device").mkdir()
    (remote / "devices" / "not-a-device" / "x.view").write_bytes(b"junk")
    (remote / "epochs" / "0000000001-zzzz.hdr").write_bytes(b"junk")
    (remote / "README").write_text("hello")
    (remote / "devices" / "cccccccccccc").mkdir()
    (remote / "devices" / "cccccccccccc" / "0000000001-000000000001-1.view").write_bytes(b"\0" * 100)
    res = ok(a.sync()).json()
    assert any("cccccccccccc" in w for w in res["warnings"])
    res = a.run("verify")
    assert res.code == 4 and "Traceback" not in res.err


def test_listed_object_that_cannot_be_read(tmp_path):
    """The listing shows a view that is gone when read (deleted in between, eventual
    consistency): a new one is skipped, one verified before is exit 4."""
    a, b, remote = _synced_pair(tmp_path)
    b.add(make_account("5"))
    ok(b.sync())
    b_dir = next(p for p in (remote / "devices").iterdir() if p.name != engine_session(a).device_id)
    newest = max(b_dir.glob("*.view"))

    def vanish(k, name):
        if name == newest.relative_to(remote).as_posix() and newest.exists():
            newest.rename(newest.with_suffix(".hidden"))
        return False

    rep = sync(engine_session(a, FaultyBackend(LocalBackend(str(remote)), fail_on={"read": vanish})))
    assert any("skipped" in w for w in rep.warnings)
    newest.with_suffix(".hidden").rename(newest)
    # The listing is back to what the skipping run saw: the fast path must not take it
    # for "nothing changed" - b's view was never read, its account never received.
    res = ok(a.sync()).json()
    assert not res["fast_path"]
    assert make_account("5").secret_id in a.accounts()  # now a has verified b's newest view
    a.add(make_account("6"))
    # Verified and kept in the download cache (issue 20): not downloaded again, so its
    # disappearance costs nothing while the listing still shows it...
    ok_rep = sync(engine_session(a, FaultyBackend(LocalBackend(str(remote)), fail_on={"read": vanish})))
    assert ok_rep.uploaded and not any("skipped" in w for w in ok_rep.warnings)
    assert newest.exists()  # never read
    # ...but a run that reads it again (a cold cache) and cannot is exit 4.
    next(a.home.rglob("remote-cache.sealed")).unlink()
    a.add(make_account("7"))
    with pytest.raises(OtpBridgeError) as info:
        sync(engine_session(a, FaultyBackend(LocalBackend(str(remote)), fail_on={"read": vanish})))
    assert info.value.exit_code == 4


@pytest.mark.parametrize("whose", ["other", "own"])
def test_deleting_the_newest_view_is_a_rollback(tmp_path, whose):
    a, b, remote = _synced_pair(tmp_path)
    ok(b.sync())
    a_id = engine_session(a).device_id
    folder = next(p for p in (remote / "devices").iterdir() if (p.name == a_id) == (whose == "own"))
    views = sorted(folder.glob("*.view"))
    if len(views) < 2:  # make sure an older one stays behind
        (b if whose == "other" else a).add(make_account("extra"))
        ok((b if whose == "other" else a).sync())
        if whose == "other":
            ok(a.sync())
        views = sorted(folder.glob("*.view"))
    views[-1].unlink()
    a.add(make_account("7"))
    res = a.sync()
    assert res.code == 4 and "rollback" in res.err, res.err


# --- leaks: outputs, files, temp folders -------------------------------------------------------
def test_no_secret_in_outputs_state_or_temp_files(tmp_path):
    import tempfile

    tmp_root = Path(tempfile.gettempdir())
    before = {p.name for p in tmp_root.glob("otpbridge-*")}
    a, b, remote = pair(tmp_path)
    acc = make_account("leaky", kind="hotp", counter=3)
    a.add(acc)
    outs = [ok(a.sync()), ok(b.sync())]
    a.edit(acc.secret_id, name="edited-a")
    b.edit(acc.secret_id, name="edited-b")
    outs += [ok(a.sync()), ok(b.sync()), ok(a.run("restore", "--into", f"uris:{tmp_path / 'r.txt'}", "--json"))]
    outs += [ok(a.run("verify", "--json")), ok(a.run("snapshots", "--json")), ok(a.run("status", "--json"))]
    outs += [ok(a.run("passphrase", "change", "--json", env=NEW)),
             ok(b.sync(env={"OTPBRIDGE_PASSPHRASE": NEW_PASS}))]
    secret = acc.secret_b32.rstrip("=")
    for res in outs:
        assert secret not in res.out + res.err
        assert PASS not in res.out + res.err and NEW_PASS not in res.out + res.err
    for home in (a.home, b.home):
        for p in home.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                assert secret.encode() not in data and acc.secret not in data, p
                assert PASS.encode() not in data and NEW_PASS.encode() not in data, p
    for folder in tmp_root.glob("otpbridge-*"):  # other tests' folders too: content decides
        if folder.name in before:
            continue
        for p in folder.rglob("*"):
            with contextlib.suppress(OSError):
                if p.is_file():
                    assert secret.encode() not in p.read_bytes() and acc.secret not in p.read_bytes(), p


@pytest.mark.parametrize("edit", ["add", "delete"])
def test_an_edit_made_while_a_sync_runs_is_sent_by_the_next_run(tmp_path, edit):
    """The user edits the store while a sync uploads: the next run must not take the
    no-change fast path over it (the fingerprint it compares is taken before the read)."""
    from otpbridge.backends.local import LocalBackend
    from otpbridge.engine.fastpath import sync
    from tests.support.engine import Device, engine_session, remote_ids

    remote = tmp_path / "remote"
    a = Device(tmp_path / "a", str(remote), "a")
    first, during = make_account("first"), make_account("during")
    a.add(first)
    if edit == "delete":
        a.add(during)
    ok(a.init())
    ok(a.sync())
    a.add(make_account("sent"))  # a change, so the run uploads

    class EditWhileUploading(LocalBackend):
        done = False

        def write(self, name, data):
            super().write(name, data)
            if not self.done:
                self.done = True
                a.add(during) if edit == "add" else a.remove(during.secret_id)

    s = engine_session(a, EditWhileUploading(str(remote)))
    with s.backend:
        sync(s)
    res = ok(a.sync())
    assert res.json()["fast_path"] is False, res.out
    held = remote_ids(remote)
    assert (during.secret_id in held) is (edit == "add"), res.out
    assert (during.secret_id in a.accounts()) is (edit == "add")
    assert ok(a.sync()).json()["fast_path"] is True
