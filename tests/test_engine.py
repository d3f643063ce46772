"""The engine's guarantees (SPEC §6), one by one, on a local-folder remote."""

from __future__ import annotations

import shutil
import time

import pytest

from otpbridge.backends.faults import FaultyBackend
from otpbridge.backends.local import LocalBackend
from otpbridge.core.errors import IntegrityError, UnreachableError
from otpbridge.engine.fastpath import sync
from otpbridge.engine.layout import Listing, ViewRef
from otpbridge.engine.snapshots import Retention, prune
from tests.support.engine import Device, engine_session, joined_pair, make_account, ok, remote_ids


@pytest.fixture
def pair(tmp_path):
    a, b, _remote = joined_pair(tmp_path, accounts=())
    return a, b


def test_mass_deletion_guard_and_allow_flag(pair, tmp_path):
    a, b = pair
    a.add(*[make_account(str(i)) for i in range(6)])
    ok(a.sync())
    ok(b.sync())
    a.remove(*list(a.accounts())[:4])
    res = a.sync()
    assert res.code == 6 and "--allow-deletions" in res.err
    assert len(remote_ids(tmp_path / "remote")) == 6  # nothing sent
    ok(a.sync("--allow-deletions"))
    assert len(remote_ids(tmp_path / "remote")) == 2
    ok(b.sync())  # remote deletions reach b (already approved on a)
    assert len(b.accounts()) == 2


def test_small_deletion_passes_and_travels_as_tombstone(pair):
    a, b = pair
    a.add(*[make_account(str(i)) for i in range(5)])
    ok(a.sync())
    ok(b.sync())
    gone = make_account("3").secret_id
    b.remove(gone)
    assert ok(b.sync()).json()["sent"]["deleted"] == ["Svc3 (user-3)"]
    res = ok(a.sync()).json()
    assert res["received"]["removed"] == ["Svc3 (user-3)"]
    assert gone not in a.accounts() and len(a.accounts()) == 4


def test_unreadable_store_propagates_no_deletion(pair, tmp_path):
    a, b = pair
    a.add(*[make_account(str(i)) for i in range(3)])
    ok(a.sync())
    a.store_path.write_bytes(b"\xff\xfe not utf-8 \x00")  # the uris reader raises FormatError
    res = a.sync()
    assert res.code == 4
    assert len(remote_ids(tmp_path / "remote")) == 3
    a.store_path.unlink()  # a vanished store is not "empty"
    res = a.sync()
    assert res.code == 5 and "does not exist" in res.err
    assert len(remote_ids(tmp_path / "remote")) == 3


def test_remote_down_exit_5_local_store_untouched(pair, tmp_path):
    a, b = pair
    b.add(make_account("from-b"))
    ok(b.sync())
    a.add(make_account("local"))
    before = a.store_path.read_bytes()
    for op in ("list", "read", "write"):
        s = engine_session(a, FaultyBackend(LocalBackend(str(tmp_path / "remote")), fail_on={op: "all"}))
        with pytest.raises(UnreachableError):
            sync(s)
        assert a.store_path.read_bytes() == before
    ok(a.sync())
    assert make_account("from-b").secret_id in a.accounts()


def test_replayed_older_view_is_a_rollback(pair, tmp_path):
    a, b = pair
    b.add(make_account("1"))
    ok(b.sync())
    old = next((tmp_path / "remote" / "devices").rglob("*.view"))
    saved = old.read_bytes()
    b.add(make_account("2"))
    ok(b.sync())
    ok(a.sync())
    # the attacker (or a bad provider restore) brings back only the older object
    for p in list((tmp_path / "remote" / "devices").rglob("*.view")):
        if p.parent.name != old.parent.name:
            continue
        p.unlink()
    old.write_bytes(saved)
    a.add(make_account("3"))
    res = a.sync()
    assert res.code == 4 and "rollback" in res.err
    ok(a.sync("--accept-rollback"))


def test_renamed_object_fails_authentication(pair, tmp_path):
    a, b = pair
    b.add(make_account("1"))
    ok(b.sync())
    ok(a.sync())
    view = max((tmp_path / "remote" / "devices").rglob("*.view"), key=lambda p: p.name)  # b's newest
    # same device, bumped sequence number: AAD binds seq, so it must not open
    parts = view.name.split("-")
    parts[1] = f"{int(parts[1]) + 5:012d}"
    shutil.copy(view, view.with_name("-".join(parts)))
    view.unlink()
    res = a.sync()
    assert res.code == 4


def test_wrong_passphrase_exit_3(pair):
    a, _b = pair
    a.add(make_account("1"))
    res = a.sync(env={"OTPBRIDGE_PASSPHRASE": "wrong"})
    assert res.code == 3 and "Traceback" not in res.err


def test_conflicting_edits_are_reported(pair):
    a, b = pair
    acc = make_account("1")
    a.add(acc)
    ok(a.sync())
    ok(b.sync())
    a.edit(acc.secret_id, name="from-a")
    b.edit(acc.secret_id, name="from-b")
    ok(a.sync())
    res = ok(b.sync()).json()
    assert len(res["conflicts"]) == 1 and res["conflicts"][0]["id"] == acc.identity  # the record id: the identity when first seen
    ok(a.sync())
    assert a.accounts()[acc.secret_id].name == b.accounts()[acc.secret_id].name


def test_hotp_counter_takes_the_maximum(pair):
    a, b = pair
    h = make_account("h", kind="hotp", counter=3)
    a.add(h)
    ok(a.sync())
    ok(b.sync())
    a.edit(h.secret_id, counter=10)
    b.edit(h.secret_id, counter=7, name="renamed")
    ok(a.sync())
    ok(b.sync())
    ok(a.sync())
    assert a.accounts()[h.secret_id].counter == 10 == b.accounts()[h.secret_id].counter
    assert a.accounts()[h.secret_id].name == b.accounts()[h.secret_id].name


def test_interrupted_upload_leftover_is_cleaned(pair, tmp_path):
    a, _b = pair
    a.add(make_account("1"))
    faulty = FaultyBackend(LocalBackend(str(tmp_path / "remote")), truncate_on={"write": [1]})
    with pytest.raises(UnreachableError):
        sync(engine_session(a, faulty))
    a.add(make_account("2"))
    res = ok(a.sync()).json()
    assert res["cleaned"]
    assert len(remote_ids(tmp_path / "remote")) == 2


def test_verified_view_later_corrupted_is_exit_4(pair, tmp_path):
    a, b = pair
    b.add(make_account("1"))
    ok(b.sync())
    ok(a.sync())
    view = max((tmp_path / "remote" / "devices").rglob("*.view"), key=lambda p: p.name)  # b's newest
    view.write_bytes(view.read_bytes()[:-10])
    a.add(make_account("x"))
    with pytest.raises(IntegrityError):
        sync(engine_session(a))


def test_retention_keeps_recent_daily_weekly():
    day = 86400
    now = int(time.time())
    views = [ViewRef(f"v{i}", 1, "aaaaaaaaaaaa", 1, i, now - (60 - i) * day // 2) for i in range(1, 61)]
    views += [ViewRef(f"burst{i}", 1, "aaaaaaaaaaaa", 1, 100 + i, now + i) for i in range(30)]
    gone = {v.name for v in prune(views, Retention(recent=5, daily=3, weekly=4))}
    kept = [v for v in views if v.name not in gone]
    assert max(views, key=lambda v: v.seq) in kept
    assert any(v.name.startswith("v") for v in kept), "a burst must not push out older copies"
    assert len(kept) <= 5 + 3 + 4


def test_snapshot_pruning_on_the_remote(pair, tmp_path):
    a, _b = pair
    s = engine_session(a)
    s.retention = Retention(recent=2, daily=1, weekly=1)
    for i in range(5):
        a.add(make_account(f"r{i}"))
        sync(s)
    own = Listing.parse(s.backend.list()).views_of(1, s.device_id)
    assert len(own) == 2
    assert len(remote_ids(tmp_path / "remote")) == 5


def test_deletion_detection_across_secondary_store(tmp_path):
    a = Device(tmp_path / "a", str(tmp_path / "remote"), "a")
    extra = tmp_path / "a" / "extra.txt"
    b = Device(tmp_path / "b", str(tmp_path / "remote"), "b")
    a.write_accounts([make_account("p")])
    from otpbridge.core.otpauth import format_uri

    extra.write_text(format_uri(make_account("s")) + "\n")
    ok(a.run("init", a.remote, "--store", a.store, "--store", f"uris:{extra}", "--device", "a", "--kdf", "insecure-test"))
    ok(b.init())
    ok(a.sync())
    ok(b.sync())
    assert set(b.accounts()) == {make_account("p").secret_id, make_account("s").secret_id}
    assert make_account("s").secret_id in a.accounts()  # the primary receives everything
