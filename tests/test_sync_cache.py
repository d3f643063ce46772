"""Issue 20: a sync downloads only objects it has not seen (the sealed download cache), and
tombstones are purged once causally stable (docs/SYNC.md "Download cache", "Bounded remote")."""

from __future__ import annotations

import json
import os
from pathlib import Path

from otpbridge.engine.cache import CACHE_FILE
from otpbridge.engine.fastpath import sync
from tests.support.engine import Device, engine_session, make_account, ok, remote_ids


def devices(tmp_path: Path, n: int) -> list[Device]:
    remote = str(tmp_path / "remote")
    out = []
    for i in range(n):
        d = Device(tmp_path / f"dev{i}", remote, f"dev{i}")
        ok(d.init())
        out.append(d)
    return out


def stats(res) -> dict:
    return res.json()["stats"]


def test_a_one_change_sync_downloads_only_the_new_view(tmp_path):
    devs = devices(tmp_path, 5)
    for i, d in enumerate(devs):
        d.add(make_account(f"start{i}"))
        ok(d.sync())
    for d in devs:
        ok(d.sync())
    a, b = devs[0], devs[1]
    a.add(make_account("new-on-a"))
    res = ok(a.sync())
    assert stats(res)["uploads"] == 1 and stats(res)["downloads"] == 0  # header and views: cached
    res = ok(b.sync())
    assert stats(res)["downloads"] == 1  # a's new view, whatever the number of devices
    assert make_account("new-on-a").secret_id in b.accounts()
    # and the cache changes nothing about what is merged
    assert set(b.accounts()) == set(a.accounts()) == remote_ids(tmp_path / "remote")


def test_a_damaged_or_missing_cache_only_costs_downloads(tmp_path):
    a, b = devices(tmp_path, 2)
    a.add(make_account("1"))
    ok(a.sync())
    b.add(make_account("b0"))
    ok(b.sync())
    cache = next(b.home.rglob(CACHE_FILE))
    blob = bytearray(cache.read_bytes())
    blob[-1] ^= 1
    cache.write_bytes(bytes(blob))
    a.add(make_account("2"))
    ok(a.sync())
    res = ok(b.sync())
    # both devices' newest states again (the damaged cache was dropped): one view each, or
    # with deltas (OTPBRIDGE_TEST_DELTAS=1) a checkpoint and the delta on it each
    assert stats(res)["downloads"] == (4 if os.environ.get("OTPBRIDGE_TEST_DELTAS") else 2)
    assert set(b.accounts()) == set(a.accounts())
    cache.unlink()
    b.add(make_account("3"))
    ok(b.sync())
    ok(a.sync())
    assert set(b.accounts()) == set(a.accounts()) == remote_ids(tmp_path / "remote")


def test_the_cache_holds_no_plaintext(tmp_path):
    (a,) = devices(tmp_path, 1)
    acc = make_account("secret-holder")
    a.add(acc)
    ok(a.sync())
    raw = next(a.home.rglob(CACHE_FILE)).read_bytes()
    assert acc.secret_b32.encode() not in raw and b"secret-holder" not in raw


def test_the_cache_is_dropped_at_a_passphrase_change(tmp_path):
    a, b = devices(tmp_path, 2)
    a.add(make_account("1"))
    ok(a.sync())
    ok(b.sync())
    res = a.run("passphrase", "change", "--json", env={"OTPBRIDGE_NEW_PASSPHRASE": "another passphrase 123"})
    assert res.code == 0, res.err
    new = {"OTPBRIDGE_PASSPHRASE": "another passphrase 123"}
    b.add(make_account("2"))
    res = ok(b.sync(env=new))
    assert stats(res)["downloads"] >= 2  # nothing of the old epoch's cache was used
    ok(a.sync(env=new))
    assert set(a.accounts()) == set(b.accounts()) == ({make_account(t).secret_id for t in ("1", "2")})


def _view_ids(remote: Path) -> dict[str, set[str]]:
    """Record ids in each device's newest view or delta chain (opened with the test passphrase)."""
    from otpbridge.backends.local import LocalBackend
    from otpbridge.core.secrets import Secret
    from otpbridge.engine.layout import Listing
    from otpbridge.engine.remote import open_key, open_state
    from otpbridge.engine.session import Session
    from otpbridge.engine.state import SyncState
    from tests.support.engine import PASS

    s = Session(backend=LocalBackend(str(remote)), state_dir=remote.parent / "probe-state", device_id="0" * 12)
    listing = Listing.parse(s.backend.list())
    key, _ = open_key(s, listing, SyncState(), Secret(PASS))
    # open_state: a delta's whole chain (docs/SYNC.md "Deltas")
    return {dev: set(open_state(s, key, listing, ref)["_records"]) for dev, ref in listing.newest_views(key.epoch).items()}


def _sync(dev: Device, age: float | None) -> dict:
    s = engine_session(dev)
    s.tombstone_age = age
    report = sync(s)
    return report.to_json(s.stats)


def test_tombstones_are_purged_only_once_every_live_device_has_them(tmp_path):
    remote = tmp_path / "remote"
    a, b, c = devices(tmp_path, 3)
    gone = make_account("gone")
    a.add(gone, make_account("keep"))
    for d in (a, b, c):
        ok(d.sync())
    a.remove(gone.secret_id)
    ok(a.sync())
    ok(b.sync())  # b applies the deletion; c stays away
    b.add(make_account("b1"))
    assert _sync(b, 0)["purged_tombstones"] == 0
    a.add(make_account("a1"))
    assert _sync(a, 0)["purged_tombstones"] == 0  # c's view has not seen the deletion
    # c's only view is the empty one it announced at init (before "gone" existed): no
    # version vector of c covers the deletion, so a and b keep the tombstone.
    views = _view_ids(remote)
    assert all(gone.identity in ids for ids in views.values() if ids), (gone.identity, views)
    ok(c.sync())
    assert gone.secret_id not in c.accounts()
    c.add(make_account("c1"))
    assert _sync(c, 0)["purged_tombstones"] == 0  # not old enough is never purged...
    a.add(make_account("a2"))
    assert _sync(a, 3600)["purged_tombstones"] == 0  # ...with a real age either
    for d, tag in ((a, "a3"), (b, "b3"), (c, "c3")):
        d.add(make_account(tag))
        _sync(d, 0)
    for d, tag in ((a, "a4"), (b, "b4"), (c, "c4")):
        d.add(make_account(tag))
        _sync(d, 0)
    views = _view_ids(remote)
    assert all(gone.identity not in ids for ids in views.values()), "every device purged it"
    for d in (a, b, c):
        ok(d.sync())
        assert gone.secret_id not in d.accounts()  # and nothing came back
    want = {make_account(t).secret_id for t in ("keep", "b1", "a1", "c1", "a2", "a3", "b3", "c3", "a4", "b4", "c4")}
    assert remote_ids(remote) == want == set(a.accounts()) == set(b.accounts()) == set(c.accounts())


def test_a_device_that_has_not_applied_a_deletion_keeps_its_tombstone(tmp_path):
    remote = tmp_path / "remote"
    a, b = devices(tmp_path, 2)
    gone = make_account("gone")
    a.add(gone)
    ok(a.sync())
    ok(b.sync())
    a.remove(gone.secret_id)
    ok(a.sync())
    # b merges the deletion into a view it uploads, but its base still holds the account
    # (as after a crash before its store was written): b must not drop the tombstone.
    s = engine_session(b)
    state_file = next(b.home.rglob("sync-state.json"))
    before = json.loads(state_file.read_text())
    b.add(make_account("b1"))
    s.tombstone_age = 0
    sync(s)
    after = json.loads(state_file.read_text())
    after["base"][gone.identity] = before["base"][gone.identity]
    state_file.write_text(json.dumps(after))
    b.add(make_account("b2"))
    assert _sync(b, 0)["purged_tombstones"] == 0
    assert gone.identity in _view_ids(remote)[engine_session(b).device_id]
