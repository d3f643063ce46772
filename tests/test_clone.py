"""Copied homes (docs/SYNC.md "Copied homes"): two live homes with one device id.

A home copied with ``shutil.copytree`` (a new laptop restored from the old one's backup,
a dotfiles sync, ``cp -r``) shares the device id, the state and its history with the
original. Each test proves that the second copy to sync is refused with nothing changed,
that the documented ways out lose no account, and that the ordinary cases (a crash after
the upload, a state of an older version) are not mistaken for a copy. Real local-folder
remotes, real crypto, the real CLI; a listing filter only to interleave two copies.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from otpbridge.backends.faults import FaultyBackend, SimulatedCrash
from otpbridge.backends.local import LocalBackend
from otpbridge.core.errors import OtpBridgeError
from otpbridge.engine.fastpath import sync
from tests.support.engine import Device, device_id, engine_session, joined_pair, make_account, ok, remote_ids


def ids(*tags: str) -> set[str]:
    return {make_account(t).secret_id for t in tags}


@pytest.fixture(autouse=True, params=["views", "deltas"])
def objects_kind(request, monkeypatch):
    """Every test here twice: with full views, and with a delta on every upload the chain
    allows (docs/SYNC.md "Deltas": copied homes keep their guarantees with chains)."""
    if request.param == "deltas":
        monkeypatch.setenv("OTPBRIDGE_TEST_DELTAS", "1")
    else:
        monkeypatch.delenv("OTPBRIDGE_TEST_DELTAS", raising=False)
    return request.param


def setup(tmp_path: Path) -> tuple[Device, Device, Path]:
    """Device a with accounts 1 and 2, and another device b, both synced."""
    return joined_pair(tmp_path)


def copy_home(src: Device, root: Path) -> Device:
    """``cp -r`` of the whole home and its store; the copy's config points at its own store."""
    shutil.copytree(src.root, root)
    dev = Device(root, src.remote, src.name)
    cfg = dev.home / "config.toml"
    cfg.write_text(cfg.read_text().replace(str(src.store_path), str(dev.store_path)))
    return dev


def remote_files(remote: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(remote)), p.stat().st_size) for p in remote.rglob("*") if p.is_file())


def assert_refused(dev: Device, remote: Path) -> None:
    """Refused as a copy (exit 6, not a rollback); neither the remote nor the store changed."""
    before_remote, before_store = remote_files(remote), dev.store_path.read_bytes()
    state = _state(dev)
    res = dev.sync()
    assert res.code == 6, res.err
    assert "another copy of this home" in res.err and "nothing was changed" in res.err
    assert "--adopt-device" in res.err and "init" in res.err and "rollback" not in res.err
    assert remote_files(remote) == before_remote
    assert dev.store_path.read_bytes() == before_store
    assert _state(dev) == state


def _state(dev: Device) -> dict:
    """The sync state but the last error (recorded on purpose: ``status`` shows it)."""
    data = json.loads(next(dev.home.rglob("sync-state.json")).read_text())
    data.pop("last_error")
    return data


# --- two copies, both changing, synced in either order --------------------------------------
@pytest.mark.parametrize("first", ["original", "copy"])
@pytest.mark.parametrize("way_out", ["adopt", "fresh-home"])
def test_copied_home_second_to_sync_is_refused_and_nothing_is_lost(tmp_path, first, way_out):
    a, b, remote = setup(tmp_path)
    c = copy_home(a, tmp_path / "c")
    assert device_id(c) == device_id(a)
    a.add(make_account("a-new"))
    a.edit(make_account("1").secret_id, issuer="EditedOnA")
    c.add(make_account("c-new"))
    c.remove(make_account("2").secret_id)
    early, late = (a, c) if first == "original" else (c, a)
    ok(early.sync())
    assert_refused(late, remote)
    b.add(make_account("b-new"))
    ok(b.sync())
    if way_out == "adopt":
        res = ok(late.sync("--adopt-device")).json()
        assert any("took over device id" in w for w in res["warnings"])
        assert_refused(early, remote)  # the other copy is refused from now on
        # ... and leaves with a fresh home: a new device id, every account kept.
        shutil.rmtree(early.home)
        ok(early.init())
        assert device_id(early) != device_id(late)
        ok(early.sync())
        ok(late.sync())
    else:
        shutil.rmtree(late.home)
        ok(late.init())
        assert device_id(late) != device_id(early)
        ok(late.sync())
        ok(early.sync())
    ok(b.sync())
    ok(a.sync())
    ok(c.sync())
    # Every account any copy or device added is in the vault; nothing a copy holds went.
    every = ids("1", "a-new", "c-new", "b-new")
    assert every <= remote_ids(remote)
    assert set(a.accounts()) == set(b.accounts()) == set(c.accounts()) == remote_ids(remote)


def test_copy_without_changes_takes_the_fast_path_until_the_other_syncs(tmp_path):
    a, _b, remote = setup(tmp_path)
    c = copy_home(a, tmp_path / "c")
    assert ok(c.sync()).json()["uploaded"] is None  # the copied store file has a new inode: a slow run
    res = ok(c.sync()).json()
    assert res["fast_path"] and res["stats"]["kdf"] == 0
    a.add(make_account("3"))
    ok(a.sync())
    assert_refused(c, remote)  # even a copy with nothing to send: it would mistake a's view for its own
    ok(c.sync("--adopt-device"))
    assert make_account("3").secret_id in c.accounts()


# --- two copies uploading at the same moment -----------------------------------------------
class _Hiding(LocalBackend):
    """The remote as listed just before another copy's upload landed (the race)."""

    def __init__(self, root: str, hide: set[str]) -> None:
        super().__init__(root)
        self.hide = hide

    def list(self, prefix: str = ""):
        return [i for i in super().list(prefix) if i.name not in self.hide]


def _objects(remote):
    """Every device object: views, and deltas (docs/SYNC.md "Deltas")."""
    return [*remote.rglob("*.view"), *remote.rglob("*.delta")]


@pytest.mark.parametrize("same_name", [False, True])
def test_copies_racing_for_one_sequence_number_lose_nothing(tmp_path, same_name):
    a, _b, remote = setup(tmp_path)
    c = copy_home(a, tmp_path / "c")
    before = {str(p.relative_to(remote)) for p in _objects(remote)}
    a.add(make_account("a-new"))
    ok(a.sync())
    a_view = ({str(p.relative_to(remote)) for p in _objects(remote)} - before).pop()
    c.add(make_account("c-new"))
    s = engine_session(c, _Hiding(str(remote), {a_view}))
    when = int(a_view.rsplit("-", 1)[1].split(".")[0])
    s.now = lambda: when if same_name else when + 7
    sync(s)  # c writes the same sequence number: beside a's view, or over it
    views = {str(p.relative_to(remote)) for p in _objects(remote)} - before
    assert len(views) == (1 if same_name else 2)
    if same_name:
        # Same name, same padded size: the listing looks unchanged, so a's no-change run
        # cannot notice (no download on the fast path); its next real run does.
        assert ok(a.sync()).json()["fast_path"]
        a.add(make_account("a-more"))
    # Whoever syncs next is told; nothing was uploaded or changed by the refused run.
    assert_refused(a, remote)
    if not same_name:
        assert_refused(c, remote)
    ok(a.sync("--adopt-device"))  # a's account comes back even if its view was overwritten
    want = ids("1", "2", "a-new", "c-new", *(["a-more"] if same_name else []))
    assert want <= remote_ids(remote)
    shutil.rmtree(c.home)
    ok(c.init())
    ok(c.sync())
    ok(a.sync())
    assert set(a.accounts()) == set(c.accounts()) == remote_ids(remote) == want


# --- what must not look like a copy ---------------------------------------------------------
def test_crash_after_the_upload_is_not_a_copy(tmp_path):
    a, _b, remote = setup(tmp_path)
    a.add(make_account("3"))
    faulty = FaultyBackend(LocalBackend(str(remote)), crash_after={"write": [1]})
    with pytest.raises(SimulatedCrash):
        sync(engine_session(a, faulty))
    a.add(make_account("4"))
    res = ok(a.sync()).json()
    assert res["uploaded"]
    ok(a.sync())  # and the view it did not know it had written is its own from now on
    assert ids("1", "2", "3", "4") == remote_ids(remote)


def test_state_of_an_older_version_and_views_without_nonce_still_sync(tmp_path):
    """Old views carry no writer nonce and old states no history: no check, no refusal."""
    from otpbridge.core.secrets import Secret
    from otpbridge.engine.layout import VIEW_KIND, encode_view
    from otpbridge.engine.remote import load_remote
    from tests.support.engine import PASS

    a, b, remote = setup(tmp_path)
    s = engine_session(a)
    rem = load_remote(s, s.load_state(), Secret(PASS))
    ref, data = rem.views[s.device_id]
    old = {k: v for k, v in data.items() if k not in ("_records", "w", "home", "prev")}
    s.backend.write(ref.name, rem.key.seal(VIEW_KIND, ref.device, ref.seq, encode_view(old)))
    state_file = next(a.home.rglob("sync-state.json"))
    raw = json.loads(state_file.read_text())
    for key in ("token", "writes", "pending"):
        raw.pop(key)
    state_file.write_text(json.dumps(raw))
    a.add(make_account("3"))
    ok(a.sync())
    assert json.loads(state_file.read_text())["token"]  # history starts now
    ok(b.sync())
    assert ids("1", "2", "3") == set(b.accounts())


def test_config_copied_without_its_state_joins_under_a_new_device_id(tmp_path):
    """A dotfiles sync of config.toml alone: ``init`` must not reuse an id in use."""
    a, _b, remote = setup(tmp_path)
    d = Device(tmp_path / "d", str(remote), "a")
    d.home.mkdir(parents=True)
    cfg = (a.home / "config.toml").read_text().replace(str(a.store_path), str(d.store_path))
    (d.home / "config.toml").write_text(cfg)
    d.write_accounts([make_account("d-only")])
    res = ok(d.init())
    assert "already has views" in res.err
    assert device_id(d) != device_id(a)
    ok(d.sync())
    a.add(make_account("a-more"))
    ok(a.sync())  # the original is not disturbed
    ok(d.sync())
    assert set(d.accounts()) == set(a.accounts()) == ids("1", "2", "d-only", "a-more") == remote_ids(remote)


# --- devices remove of an unknown id ------------------------------------------------------------
@pytest.mark.parametrize("dry", [True, False])
def test_removing_an_unknown_device_is_a_usage_error(tmp_path, dry):
    a, _b, remote = setup(tmp_path)
    before = remote_files(remote)
    res = a.run("devices", "remove", "0123456789ab", *(["--dry-run"] if dry else []), "--json")
    assert res.code == 2 and "no such device" in res.err, (res.code, res.out, res.err)
    assert remote_files(remote) == before


def test_engine_refusal_is_raised_before_any_write(tmp_path):
    a, _b, remote = setup(tmp_path)
    c = copy_home(a, tmp_path / "c")
    a.add(make_account("x"))
    ok(a.sync())
    c.add(make_account("y"))
    faulty = FaultyBackend(LocalBackend(str(remote)), crash_on={"write": "all", "delete": "all"})
    with pytest.raises(OtpBridgeError) as info:
        sync(engine_session(c, faulty))
    assert info.value.exit_code == 6
    assert not [e for e in faulty.events if e[0] in ("write", "delete")]
