"""Issue 20 item 2: a device uploads a delta on its previous object instead of its whole
view (docs/SYNC.md "Deltas"): bytes in proportion to the change, and every guarantee of
full views kept — chains read whole, a missing link, a replayed or swapped delta and a
rollback refused, snapshots and a passphrase change that keep chains readable."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.support.engine import (
    NEW_PASS,
    Device,
    device_id,
    joined_pair,
    make_account,
    ok,
    remote_ids,
)

OLD = time.time() - 3600  # older than any upload in flight (remote.UPLOAD_GRACE)


def pair(tmp_path: Path, *, deltas: bool = True) -> tuple[Device, Device, Path]:
    return joined_pair(tmp_path, deltas=deltas)


def objects(remote: Path, dev: Device, suffix: str = "*") -> list[Path]:
    return sorted((remote / "devices" / device_id(dev)).glob(f"*.{suffix}"), key=lambda p: p.name.split("-")[1])


def stats_of(res) -> dict:
    line = next(x for x in res.err.splitlines() if x.startswith("otpbridge-stats: "))
    data = json.loads(line.partition(": ")[2])
    return {k: data.get(k, 0) for k in ("uploads", "upload_bytes", "downloads", "download_bytes")}


def grow_chain(a: Device, n: int, tag: str = "c") -> None:
    for i in range(n):
        a.add(make_account(f"{tag}{i}"))
        uploaded = ok(a.sync()).json()["uploaded"]
        assert uploaded.endswith(".delta"), uploaded


def age(paths) -> None:
    for p in paths:
        os.utime(p, (OLD, OLD))


def assert_planted_copy_refused(source: Path, planted: Path, reader: Device) -> None:
    """An object copied under another name (old enough to be no upload in flight): the
    reader's next sync is exit 4 naming it."""
    shutil.copy(source, planted)
    age([planted])
    res = reader.sync()
    assert res.code == 4 and planted.name in res.err, res.err


# --- bytes in proportion to the change -----------------------------------------------------
def test_one_change_at_2000_accounts_uploads_one_small_delta(tmp_path):
    """The default ("auto") rule: a one-account change uploads one 16 KiB delta, not the
    512 KiB view, and the device that pulls it downloads just that delta."""
    a, b, remote = pair(tmp_path, deltas=False)
    a.add(*[make_account(f"bulk{i}") for i in range(2000)])
    first = ok(a.run("--stats", "sync", "--json"))
    assert first.json()["uploaded"].endswith(".view") and stats_of(first)["upload_bytes"] > 256 * 1024
    ok(b.sync())
    a.add(make_account("one-more"))
    res = ok(a.run("--stats", "sync", "--json"))
    assert res.json()["uploaded"].endswith(".delta"), res.json()["uploaded"]
    st = stats_of(res)
    assert st["uploads"] == 1 and st["upload_bytes"] <= 64 * 1024, st
    assert st["downloads"] == 0, st  # its own chain comes from the download cache
    pull = ok(b.run("--stats", "sync", "--json"))
    st = stats_of(pull)
    assert st["downloads"] == 1 and st["download_bytes"] <= 64 * 1024, st
    assert make_account("one-more").secret_id in b.accounts()
    # an edit and a deletion are deltas of the same size (one padded bucket)
    a.edit(make_account("bulk7").secret_id, name="renamed")
    a.remove(make_account("bulk8").secret_id)
    res = ok(a.run("--stats", "sync", "--json"))
    assert res.json()["uploaded"].endswith(".delta") and stats_of(res)["upload_bytes"] == st["download_bytes"]
    ok(b.sync())
    assert set(b.accounts()) == set(a.accounts()) == remote_ids(remote)
    assert b.accounts()[make_account("bulk7").secret_id].name == "renamed"


def test_small_vaults_keep_writing_views_on_auto(tmp_path):
    """A delta is never smaller than the 16 KiB floor, so a small vault's view is one too."""
    a, _b, remote = pair(tmp_path, deltas=False)
    a.add(make_account("3"))
    assert ok(a.sync()).json()["uploaded"].endswith(".view")
    assert not list(remote.rglob("*.delta"))


def test_a_chain_reads_whole_cold_and_warm(tmp_path):
    a, b, remote = pair(tmp_path)
    grow_chain(a, 3)
    a.remove(make_account("c1").secret_id)
    a.edit(make_account("2").secret_id, name="edited")
    assert ok(a.sync()).json()["uploaded"].endswith(".delta")
    res = ok(b.sync())
    assert res.json()["stats"]["downloads"] == 4  # the four new deltas, nothing else
    assert set(b.accounts()) == set(a.accounts()) == remote_ids(remote)  # remote_ids: a cold read
    assert b.accounts()[make_account("2").secret_id].name == "edited"
    # a device with no cache reads the chain from its checkpoint
    c = Device(tmp_path / "c", str(remote), "c")
    ok(c.init())
    ok(c.sync())
    assert set(c.accounts()) == set(a.accounts())
    rep = ok(a.run("verify", "--json")).json()
    assert rep["ok"] and rep["accounts"] == len(a.accounts())


def test_a_checkpoint_every_16_deltas_and_retention_keeps_chains(tmp_path):
    a, b, remote = pair(tmp_path)
    grow_chain(a, 16)
    a.add(make_account("seventeenth"))
    assert ok(a.sync()).json()["uploaded"].endswith(".view")  # K = 16 deltas, then a checkpoint
    grow_chain(a, 2, "after")
    ok(b.sync())
    assert set(b.accounts()) == set(a.accounts())
    # a policy of one: the newest delta keeps its checkpoint and every link in between
    res = ok(a.run("forget", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0", "--json"))
    kept = res.json()["kept"]
    assert len(kept) == 3, kept  # the checkpoint and two deltas
    ok(b.sync())
    assert set(b.accounts()) == set(a.accounts()) == remote_ids(remote)
    assert ok(a.run("verify", "--json")).json()["ok"]


def test_a_snapshot_of_a_delta_is_its_chain(tmp_path):
    a, _b, remote = pair(tmp_path)
    grow_chain(a, 2)
    snap = f"{device_id(a)}-{objects(remote, a)[-1].name.split('-')[1].lstrip('0')}"
    before = set(a.accounts())
    a.remove(make_account("1").secret_id)
    a.add(make_account("later"))
    ok(a.sync())
    target = tmp_path / "restored.txt"
    ok(a.run("restore", "--snapshot", snap, "--into", f"uris:{target}"))
    restored = Device(tmp_path / "probe", str(remote), "probe")
    restored.store_path = target
    assert set(restored.accounts()) == before
    diff = ok(a.run("snapshots", "diff", snap, "--json")).json()
    assert diff["removed"] == [make_account("1").label] and diff["added"] == [make_account("later").label]


def test_passphrase_change_reseals_deltas_as_deltas(tmp_path):
    a, b, remote = pair(tmp_path)
    grow_chain(a, 3)
    deltas = {p.name for p in remote.rglob("*.delta")}
    ok(a.run("passphrase", "change", env={"OTPBRIDGE_NEW_PASSPHRASE": NEW_PASS}))
    after = {p.name for p in remote.rglob("*.delta")}
    assert len(after) == len(deltas) and {n[10:] for n in after} == {n[10:] for n in deltas}  # same seq, base, time
    new = {"OTPBRIDGE_PASSPHRASE": NEW_PASS}
    ok(b.sync(env=new))
    assert set(b.accounts()) == set(a.accounts()) == remote_ids(remote, NEW_PASS)
    a.add(make_account("after-change"))
    ok(a.sync(env=new))
    ok(b.sync(env=new))
    assert make_account("after-change").secret_id in b.accounts()


# --- integrity: a chain is whole or the run stops --------------------------------------------
@pytest.mark.parametrize("reader", ["warm", "cold"])
def test_a_deleted_middle_delta_is_an_integrity_failure_naming_it(tmp_path, reader):
    a, b, remote = pair(tmp_path)
    grow_chain(a, 3)
    chain = objects(remote, a)
    middle = chain[-2]
    seq = int(middle.name.split("-")[1])
    middle.unlink()
    if reader == "warm":
        res = b.sync()
    else:
        res = Device(tmp_path / "c", str(remote), "c").run("restore", str(remote), "--into",
                                                            f"uris:{tmp_path / 'r.txt'}")
    assert res.code == 4, res.err
    assert f"#{seq}" in res.err and chain[-1].name in res.err and "missing" in res.err, res.err
    assert "Traceback" not in res.err
    rep = a.run("verify", "--json")
    assert rep.code == 4 and any(f"#{seq}" in f for f in rep.json()["failures"])


@pytest.mark.parametrize("whose", ["other", "own"])
def test_a_deleted_link_already_read_is_found_from_the_listing(tmp_path, whose):
    """The download cache keeps each chain's sequence numbers: a link deleted after it was
    read is an integrity failure at the next sync, without downloading the chain again."""
    a, b, remote = pair(tmp_path)
    grow_chain(a, 3)
    ok(b.sync())
    view = objects(remote, a, "view")[-1]  # the checkpoint of a's chain
    view.unlink()
    reader = b if whose == "other" else a
    reader.add(make_account("more"))
    res = reader.sync()
    assert res.code == 4 and "missing" in res.err and f"#{int(view.name.split('-')[1])}" in res.err, res.err
    assert json.loads(ok(reader.run("status", "--json")).out).get("last_error")


@pytest.mark.parametrize("whose", ["other", "own"])
@pytest.mark.parametrize("how", ["truncated", "rewritten"])
def test_a_link_changed_in_place_after_it_was_read_is_found_from_the_listing(tmp_path, whose, how):
    """The download cache keeps each link's listed size and time: a link truncated or
    rewritten after it was read stops the next sync (exit 4 naming it) before it writes a
    new delta on a chain nobody could read back."""
    a, b, remote = pair(tmp_path)
    grow_chain(a, 4)
    ok(b.sync())
    ok(a.sync())
    middle = objects(remote, a)[-2]
    if how == "truncated":
        with open(middle, "r+b") as fh:
            fh.truncate(middle.stat().st_size // 2)
    else:  # the same size, written again (another link's bytes would not open either)
        stat = middle.stat()
        middle.write_bytes(bytes(stat.st_size))
        os.utime(middle, (stat.st_atime, stat.st_mtime + 5))
    reader = b if whose == "other" else a
    before = sorted(p.name for p in remote.rglob("*") if p.is_file())
    reader.add(make_account("more"))
    res = reader.run("sync")
    assert res.code == 4, res.err
    assert middle.name in res.err and "changed on the remote" in res.err and "Traceback" not in res.err, res.err
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == before  # nothing written on it


def test_a_damaged_middle_delta_is_an_integrity_failure_naming_it(tmp_path):
    a, b, remote = pair(tmp_path)
    grow_chain(a, 3)
    middle = objects(remote, a)[-2]
    middle.write_bytes(objects(remote, a)[-3].read_bytes())  # an older delta's bytes under its name
    res = Device(tmp_path / "c", str(remote), "c").run("restore", str(remote), "--into", f"uris:{tmp_path / 'r.txt'}")
    assert res.code == 4 and middle.name in res.err, res.err


def test_a_replayed_delta_is_refused(tmp_path):
    """An older delta of the device under a newer sequence number: the associated data binds
    the sequence number, so it does not open (and it is no upload in flight)."""
    a, b, remote = pair(tmp_path)
    grow_chain(a, 2)
    ok(b.sync())
    old = objects(remote, a)[-2]
    parts = old.name.split("-")
    parts[1] = f"{int(parts[1]) + 5:012d}"
    replay = old.with_name("-".join(parts))
    assert_planted_copy_refused(old, replay, b)


def test_a_delta_swapped_for_a_view_or_another_device_is_refused(tmp_path):
    a, b, remote = pair(tmp_path)
    grow_chain(a, 1)
    delta = objects(remote, a, "delta")[-1]
    epoch, seq, _base, when = delta.stem.split("-")
    as_view = delta.with_name(f"{epoch}-{int(seq) + 1:012d}-{when}.view")
    assert_planted_copy_refused(delta, as_view, b)  # read as a view: the kind in the associated data differs
    as_view.unlink()
    ok(b.sync())
    other = remote / "devices" / device_id(b) / f"{epoch}-{int(seq) + 7:012d}-{_base}-{when}.delta"
    assert_planted_copy_refused(delta, other, a)  # under another device: the device id differs


def test_a_deleted_newest_delta_is_a_rollback(tmp_path):
    a, b, remote = pair(tmp_path)
    grow_chain(a, 2)
    ok(b.sync())
    objects(remote, a)[-1].unlink()
    b.add(make_account("b-new"))
    res = b.sync()
    assert res.code == 4 and "rollback" in res.err, res.err
    res = a.sync()
    assert res.code == 4 and "rollback" in res.err, res.err


def test_a_crash_after_a_delta_upload_is_recognised(tmp_path):
    """The state is saved only after the upload: the next run finds its own delta (the
    pending nonce) and builds the next delta on it."""
    from otpbridge.backends.faults import FaultyBackend, SimulatedCrash
    from otpbridge.backends.local import LocalBackend
    from otpbridge.engine.fastpath import sync
    from tests.support.engine import engine_session

    a, b, remote = pair(tmp_path)
    grow_chain(a, 1)
    a.add(make_account("crashed"))
    faulty = FaultyBackend(LocalBackend(str(remote)), crash_after={"write": [1]})
    with pytest.raises(SimulatedCrash):
        sync(engine_session(a, faulty))
    assert objects(remote, a)[-1].suffix == ".delta"
    a.add(make_account("next"))
    res = ok(a.sync()).json()
    assert res["uploaded"].endswith(".delta")
    ok(b.sync())
    assert set(b.accounts()) == set(a.accounts()) == remote_ids(remote)
    assert ok(a.run("verify", "--json")).json()["ok"]


def test_never_writes_only_views(tmp_path):
    a, _b, remote = pair(tmp_path)
    a.set_deltas("never")
    a.add(make_account("3"))
    assert ok(a.sync()).json()["uploaded"].endswith(".view")
    a.set_deltas("sometimes")
    a.add(make_account("4"))
    res = a.sync()
    assert res.code == 2 and "deltas" in res.err
