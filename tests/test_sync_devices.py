"""Several devices, one remote: every order of syncs converges; parallel syncs lose nothing."""

from __future__ import annotations

import itertools
import random

import pytest

from tests.support.engine import Device, make_account, ok, remote_ids


def devices(tmp_path, n, remote=None, env=None):
    remote = remote or str(tmp_path / "remote")
    out = []
    for i in range(n):
        d = Device(tmp_path / f"dev{i}", remote, f"dev{i}")
        if env:
            d.env.update(env)
        ok(d.init())
        out.append(d)
    return out


def settle(devs):
    for _ in range(2):
        for d in devs:
            ok(d.sync())


def assert_converged(devs, expected_ids=None):
    views = [d.accounts() for d in devs]
    first = views[0]
    for v in views[1:]:
        assert v == first
    if expected_ids is not None:
        assert set(first) == set(expected_ids)
    return first


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_three_devices_converge_in_every_order(tmp_path, order):
    devs = devices(tmp_path, 3)
    shared = make_account("shared")
    hotp = make_account("hotp", kind="hotp", counter=1)
    devs[0].add(shared, hotp, make_account("gone"))
    ok(devs[0].sync())
    for d in devs[1:]:
        ok(d.sync())
    # each device: an addition, an edit or a deletion, and a HOTP use
    devs[0].add(make_account("a0"))
    devs[0].edit(shared.secret_id, name="renamed-on-0")
    devs[1].add(make_account("a1"))
    devs[1].remove(make_account("gone").secret_id)
    devs[2].add(make_account("a2"))
    for i, d in enumerate(devs):
        d.edit(hotp.secret_id, counter=5 + i)
    for i in order:
        ok(devs[i].sync())
    settle(devs)
    final = assert_converged(devs)
    ids = {make_account(t).secret_id for t in ("shared", "a0", "a1", "a2")} | {hotp.secret_id}
    assert set(final) == ids
    assert final[shared.secret_id].name == "renamed-on-0"
    assert final[hotp.secret_id].counter == 7
    assert remote_ids(tmp_path / "remote") == ids


def test_two_devices_delete_and_readd(tmp_path):
    a, b = devices(tmp_path, 2)
    acc = make_account("x")
    a.add(acc)
    ok(a.sync())
    ok(b.sync())
    b.remove(acc.secret_id)
    ok(b.sync())
    ok(a.sync())
    assert acc.secret_id not in a.accounts()
    a.add(acc.replace(name="back"))  # re-added on purpose: newer than the tombstone
    ok(a.sync())
    ok(b.sync())
    assert b.accounts()[acc.secret_id].name == "back"


def _random_round(rng, devs, model, deleted, r):
    for i, d in enumerate(devs):
        cur = d.accounts()
        mine = [rid for rid in cur if rid in model and model[rid][0] == i]
        op = rng.choice(["add", "add", "edit", "delete", "hotp"])
        if op == "delete" and mine:
            rid = rng.choice(mine)
            d.remove(rid)
            del model[rid]
            deleted.add(rid)
        elif op == "edit" and mine:
            rid = rng.choice(mine)
            d.edit(rid, name=f"r{r}-d{i}")
            model[rid] = (i, f"r{r}-d{i}")
        else:
            acc = make_account(f"r{r}-d{i}")
            d.add(acc)
            model[acc.secret_id] = (i, acc.name)
        hot = make_account("counter", kind="hotp")
        if hot.secret_id in cur:
            d.edit(hot.secret_id, counter=cur[hot.secret_id].counter + rng.randint(1, 3))


@pytest.mark.slow
def test_parallel_syncs_against_a_model(tmp_path):
    """Concurrent `otpbridge sync` processes, several rounds: nothing lost or resurrected."""
    rng = random.Random(5)
    devs = devices(tmp_path, 3)
    hot = make_account("counter", kind="hotp")
    devs[0].add(hot)
    ok(devs[0].sync())
    settle(devs)
    model: dict[str, tuple[int, str]] = {}  # id -> (owner device, name)
    deleted: set[str] = set()
    for r in range(4):
        _random_round(rng, devs, model, deleted, r)
        procs = [d.spawn("sync", "--json") for d in devs]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    settle(devs)
    final = assert_converged(devs)
    assert set(final) == set(model) | {hot.secret_id}
    for rid, (_owner, name) in model.items():
        assert final[rid].name == name
    assert not deleted & set(final)
    counters = final[hot.secret_id].counter
    assert counters >= 1


def test_webdav_two_devices_and_fast_path(tmp_path, webdav_server):  # noqa: F811
    loc = webdav_server.location(f"vault-{tmp_path.name}")
    env = webdav_server.environ()
    env = {k: v for k, v in env.items() if k.startswith("RCLONE_")}
    a, b = devices(tmp_path, 2, remote=loc, env=env)
    a.add(make_account("w1"))
    stats = ok(a.sync()).json()["stats"]
    assert stats["uploads"] == 1 and stats["verifications"] >= 1
    b.add(make_account("w2"))
    ok(b.sync())
    ok(a.sync())
    assert_converged([a, b], {make_account("w1").secret_id, make_account("w2").secret_id})
    res = ok(a.sync(drop=("OTPBRIDGE_PASSPHRASE",))).json()
    assert res["fast_path"] and res["stats"]["kdf"] == 0 and res["stats"]["listings"] == 1


@pytest.mark.slow
def test_keepass_primary_receives_changes_and_keeps_passwords(tmp_path):
    pytest.importorskip("pykeepass")
    from pykeepass import PyKeePass

    a, = devices(tmp_path, 1)
    kp_path = tmp_path / "kp" / "otp.kdbx"
    kp_path.parent.mkdir()
    k = Device(tmp_path / "kp", str(tmp_path / "remote"), "kp")
    k.env["KP"] = "kdbx-test-password"
    spec = f"keepass:{kp_path}?password-env=KP"
    ok(k.run("init", k.remote, "--store", spec, "--device", "kp", "--kdf", "insecure-test", "--create"))
    doomed, kept = make_account("doomed"), make_account("kept")
    a.add(doomed, kept)
    ok(a.sync())
    res = ok(k.sync()).json()
    assert sorted(res["received"]["added"]) == sorted([doomed.label, kept.label])
    db = PyKeePass(str(kp_path), password="kdbx-test-password")
    entry = [e for e in db.entries if e.title == doomed.issuer][0]
    entry.password = "the website password"
    db.save()
    a.remove(doomed.secret_id)
    ok(a.sync())
    res = ok(k.sync()).json()
    assert res["received"]["removed"] == [doomed.label]
    db = PyKeePass(str(kp_path), password="kdbx-test-password")
    entry = [e for e in db.entries if e.title == doomed.issuer][0]
    assert entry.password == "the website password"  # only the OTP data went
    listed = ok(k.run("list", spec, "--json")).json()
    names = {x["issuer"] for x in (listed if isinstance(listed, list) else listed["accounts"])}
    assert names == {kept.issuer}
    assert ok(k.sync()).json()["fast_path"] is True
