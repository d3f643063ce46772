"""passphrase change: the old passphrase opens nothing left; other devices are told why."""

from __future__ import annotations

import pytest

from otpbridge.backends.faults import FaultyBackend
from otpbridge.backends.local import LocalBackend
from otpbridge.core.secrets import Secret
from otpbridge.engine.rotation import change_passphrase
from otpbridge.vault.format import VaultIntegrityError, WrongPassphrase, open_epoch
from tests.support.engine import NEW_PASS, PASS, Device, engine_session, make_account, ok, remote_ids

NEW = {"OTPBRIDGE_NEW_PASSPHRASE": NEW_PASS}


@pytest.fixture
def trio(tmp_path):
    remote = tmp_path / "remote"
    devs = [Device(tmp_path / n, str(remote), n) for n in ("laptop", "server", "phone")]
    for d in devs:
        ok(d.init())
    devs[0].add(make_account("l1"), make_account("hot", kind="hotp", counter=4))
    devs[1].add(make_account("s1"))
    devs[2].add(make_account("p1"))
    for d in devs + devs:
        ok(d.sync())
    return devs, remote


def every_object_refuses(remote, passphrase):
    headers = list((remote / "epochs").glob("*.hdr"))
    keys = []
    for h in headers:
        try:
            keys.append(open_epoch(h.read_bytes(), Secret(passphrase)))
        except (WrongPassphrase, VaultIntegrityError):
            continue
    assert not keys, "a header still opens with the old passphrase"
    epochs = {int(h.name[:10]) for h in headers}
    for view in (remote / "devices").rglob("*.view"):
        assert int(view.name[:10]) in epochs  # no object of a dead epoch is left


def test_change_rekeys_everything_and_others_get_exit_3(trio):
    (laptop, server, phone), remote = trio
    everything = set(laptop.accounts())
    server.add(make_account("s2"))  # not yet synced: it must survive the change on laptop
    ok(server.sync())
    snaps_before = len(list((remote / "devices").rglob("*.view")))
    res = ok(laptop.run("passphrase", "change", env=NEW))
    assert "versioning" in res.err or "trash" in res.err
    every_object_refuses(remote, PASS)
    assert len(list((remote / "devices").rglob("*.view"))) >= snaps_before - 1  # snapshots re-encrypted
    assert remote_ids(remote, NEW_PASS) == everything | {make_account("s2").secret_id}
    phone.add(make_account("p2"))
    res = phone.sync()
    assert res.code == 3
    assert "the passphrase was changed on device 'laptop'" in res.err
    ok(phone.sync(env={"OTPBRIDGE_PASSPHRASE": NEW_PASS}))
    ok(laptop.sync(env={"OTPBRIDGE_PASSPHRASE": NEW_PASS}))
    assert make_account("p2").secret_id in laptop.accounts()
    assert make_account("s2").secret_id in laptop.accounts()
    # snapshots still restore after the change
    snaps = ok(laptop.run("snapshots", "--json")).json()
    old = [s for s in snaps if not s["latest"]]
    assert old
    target = laptop.root / "snap.txt"
    ok(laptop.run("restore", "--into", f"uris:{target}", "--snapshot", old[-1]["id"],
                  env={"OTPBRIDGE_PASSPHRASE": NEW_PASS}))


def test_discard_remote_only_lists_then_drops(trio):
    (laptop, server, phone), remote = trio
    # laptop forgets the accounts other devices added (as if it were a fresh phone)
    laptop.remove(make_account("s1").secret_id, make_account("p1").secret_id)
    res = ok(laptop.run("passphrase", "change", "--discard-remote-only", "--dry-run", "--json", env=NEW))
    assert res.json()["dry_run"] is True
    # remove() above is a local deletion too; dry run lists the two accounts lost
    assert sorted(res.json()["lost"]) == ["Svcp1 (user-p1)", "Svcs1 (user-s1)"]
    assert remote_ids(remote, PASS) == {make_account(t).secret_id for t in ("l1", "s1", "p1")} | {
        make_account("hot", kind="hotp").secret_id
    }
    # 2 of 4 accounts: the mass-deletion guard applies to this path too (issue 17)
    res = laptop.run("passphrase", "change", "--discard-remote-only", env=NEW)
    assert res.code == 6, res.err
    ok(laptop.run("passphrase", "change", "--discard-remote-only", "--allow-deletions", env=NEW))
    assert remote_ids(remote, NEW_PASS) == {make_account("l1").secret_id, make_account("hot", kind="hotp").secret_id}


def test_default_change_keeps_remote_only_accounts(trio):
    (laptop, server, phone), remote = trio
    before = remote_ids(remote, PASS)
    ok(laptop.run("passphrase", "change", env=NEW))
    assert remote_ids(remote, NEW_PASS) == before


def test_view_written_during_the_change_is_folded_in(trio):
    """A device that syncs with the old key while the change runs loses nothing."""
    (laptop, server, phone), remote = trio
    late = make_account("late")

    def straggle(k, name):
        if name.startswith("epochs/"):  # just before the commit point
            server.add(late)
            ok(server.sync())
        return False

    faulty = FaultyBackend(LocalBackend(str(remote)), fail_on={"write": straggle})
    change_passphrase(engine_session(laptop, faulty), lambda: Secret(NEW_PASS))
    assert late.secret_id in remote_ids(remote, NEW_PASS)
    every_object_refuses(remote, PASS)


def test_same_or_empty_new_passphrase_refused(trio):
    (laptop, _s, _p), _remote = trio
    assert laptop.run("passphrase", "change", env={"OTPBRIDGE_NEW_PASSPHRASE": PASS}).code == 2
    assert laptop.run("passphrase", "change", drop=("OTPBRIDGE_NEW_PASSPHRASE",)).code == 2


def test_wrong_old_passphrase_changes_nothing(trio):
    (laptop, _s, _p), remote = trio
    before = sorted(p.name for p in remote.rglob("*"))
    res = laptop.run("passphrase", "change", env={**NEW, "OTPBRIDGE_PASSPHRASE": "wrong"})
    assert res.code == 3
    assert sorted(p.name for p in remote.rglob("*")) == before
