"""Issue 18, "a day in the life": what a KeePassXC, pass and restic user trips over,
through the real CLI with real stores."""

from __future__ import annotations

from tests.support.engine import Device, make_account, ok


def make(tmp_path, name, remote=None):
    return Device(tmp_path / name, str(remote or tmp_path / "remote"), name)


def _two_store_device(tmp_path, name):
    d = make(tmp_path, name)
    second = d.root / "p1b.txt"
    d.write_accounts([])
    second.write_text("", encoding="utf-8")
    ok(d.run("init", d.remote, "--store", d.store, "--store", f"uris:{second}", "--device", name,
             "--kdf", "insecure-test"))
    return d, second


def test_restore_undoes_a_deletion_for_good_on_every_device(tmp_path):
    from otpbridge.core.otpauth import format_uri

    x, y = make_account("X"), make_account("Y")
    h1, p1b = _two_store_device(tmp_path, "h1")
    h1.add(x, y)
    p1b.write_text(format_uri(x) + "\n", encoding="utf-8")
    ok(h1.sync())
    h2 = make(tmp_path, "h2")
    ok(h2.init())
    ok(h2.sync())
    assert x.identity in h2.accounts()
    h2.remove(x.identity)
    ok(h2.sync())
    res = ok(h1.run("sync"))
    assert "remove here: SvcX" in res.out
    snaps = ok(h1.run("snapshots", "--json")).json()
    first = min((sn for sn in snaps if sn["device_name"] == "h1"), key=lambda sn: sn["seq"])
    res = ok(h1.run("restore", "--snapshot", first["id"]))
    assert "add: SvcX (user-X)" in res.out and "sent to the vault" in res.out
    assert x.identity in h1.accounts()
    res = ok(h1.run("sync"))
    assert "remove" not in res.out, res.out
    assert x.identity in h1.accounts()
    res = ok(h2.run("sync"))
    assert "add here: SvcX (user-X)" in res.out
    assert x.identity in h2.accounts()
    assert "remove" not in ok(h1.run("sync")).out
    assert x.identity in h1.accounts()


def test_restore_one_account_by_pattern(tmp_path):
    x, y = make_account("X"), make_account("Y")
    h1 = make(tmp_path, "h1")
    h1.write_accounts([x, y])
    ok(h1.init())
    ok(h1.sync())
    h1.write_accounts([])
    ok(h1.run("sync", "--allow-deletions"))
    snaps = ok(h1.run("snapshots", "--json")).json()
    first = min(snaps, key=lambda sn: sn["seq"])
    res = ok(h1.run("restore", "--snapshot", f"h1-{first['seq']}", "--account", "SvcY"))
    assert "add: SvcY (user-Y)" in res.out and "SvcX" not in res.out
    assert set(h1.accounts()) == {y.identity}
    assert "remove" not in ok(h1.run("sync")).out
    assert set(h1.accounts()) == {y.identity}
    res = h1.run("restore", "--snapshot", first["id"], "--account", "nothing-like-it")
    assert res.code == 2 and "matches" in res.err
