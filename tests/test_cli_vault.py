"""The vault commands through the real CLI: exit codes, hints, JSON, the cron fast path."""

from __future__ import annotations

import json
import time

from tests.support.engine import PASS, Device, make_account, ok


def make(tmp_path, name="laptop", remote=None):
    return Device(tmp_path / name, str(remote or tmp_path / "remote"), name)


def test_init_creates_then_joins_and_refuses_foreign_folder(tmp_path):
    a = make(tmp_path)
    res = ok(a.init("--json"))
    assert res.json()["created"] is True
    cfg = (a.home / "config.toml").read_text()
    assert "remote" in cfg and a.store in cfg and "[device]" in cfg
    b = make(tmp_path, "server")
    assert ok(b.init("--json")).json()["created"] is False
    c = make(tmp_path, "wrong")
    res = c.init(env={"OTPBRIDGE_PASSPHRASE": "not the passphrase"})
    assert res.code == 3, res.err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    d = Device(tmp_path / "d", str(foreign), "d")
    res = d.init()
    assert res.code == 2 and "not empty" in res.err
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]


def test_no_change_sync_needs_no_passphrase_but_a_change_does(tmp_path):
    a = make(tmp_path)
    ok(a.init())
    a.add(make_account("1"))
    ok(a.sync())
    res = ok(a.sync(drop=("OTPBRIDGE_PASSPHRASE",)))
    stats = res.json()["stats"]
    assert res.json()["fast_path"] is True
    assert stats["kdf"] == 0 and stats["listings"] == 1 and stats["uploads"] == 0 and stats["downloads"] == 0
    a.add(make_account("2"))
    res = a.run("sync", drop=("OTPBRIDGE_PASSPHRASE",))
    assert res.code == 2
    assert "OTPBRIDGE_PASSPHRASE" in res.err and "hint:" in res.err
    # the failure is remembered for status
    st = a.run("status", "--json").json()
    assert st["last_error"]["exit"] == 2


def test_one_change_sync_costs_one_kdf_one_upload_one_verification(tmp_path):
    a = make(tmp_path)
    ok(a.init())
    a.add(make_account("1"))
    ok(a.sync())
    a.add(make_account("2"))
    stats = ok(a.sync()).json()["stats"]
    assert stats["kdf"] == 1 and stats["uploads"] == 1 and stats["verifications"] == 1
    stats = ok(a.run("backup", "--json")).json()["stats"]
    assert stats["kdf"] == 0 and stats["uploads"] == 0


def test_status_max_age_and_json(tmp_path):
    a = make(tmp_path)
    ok(a.init())
    res = a.run("status", "--max-age", "1d")
    assert res.code == 1 and "missing" in res.err
    a.add(make_account("1"))
    ok(a.run("backup"))
    res = ok(a.run("status", "--json", "--max-age", "2d"))
    data = res.json()
    assert data["ok"] is True and data["accounts"] == 1
    assert abs(data["last_verified_backup"] - time.time()) < 60
    assert a.run("status", "--max-age", "0s").code == 1


def test_dry_run_changes_nothing(tmp_path):
    a = make(tmp_path)
    ok(a.init())
    a.add(make_account("1"))
    before = sorted(p.name for p in (tmp_path / "remote").rglob("*"))
    res = ok(a.run("sync", "--dry-run", "--json"))
    assert res.json()["dry_run"] is True and res.json()["sent"]["added"]
    assert sorted(p.name for p in (tmp_path / "remote").rglob("*")) == before


def test_restore_without_init_and_snapshots_and_verify(tmp_path):
    a = make(tmp_path)
    ok(a.init())
    a.add(make_account("1"))
    ok(a.sync())
    a.add(make_account("2"))
    ok(a.sync())
    snaps = ok(a.run("snapshots", "--json")).json()
    assert len(snaps) == 2 and snaps[0]["latest"]
    older = [s for s in snaps if not s["latest"]][0]["id"]
    fresh = Device(tmp_path / "new", str(tmp_path / "remote"), "new")
    target = tmp_path / "new" / "restored.txt"
    res = ok(fresh.run("restore", str(tmp_path / "remote"), "--into", f"uris:{target}", "--snapshot", older, "--json"))
    assert res.json()["accounts"] == 1
    res = ok(fresh.run("restore", str(tmp_path / "remote"), "--into", f"uris:{target}", "--json"))
    assert res.json()["accounts"] == 2 and len(res.json()["added"]) == 1
    rep = ok(a.run("verify", "--json")).json()
    assert rep["ok"] and rep["views"] == 2 and rep["accounts"] == 2
    ok(a.run("passphrase", "check"))
    assert a.run("passphrase", "check", env={"OTPBRIDGE_PASSPHRASE": "nope"}).code == 3


def test_verify_detects_a_flipped_byte(tmp_path):
    a = make(tmp_path)
    ok(a.init())
    a.add(make_account("1"))
    ok(a.sync())
    view = next((tmp_path / "remote" / "devices").rglob("*.view"))
    data = bytearray(view.read_bytes())
    data[200] ^= 1
    view.write_bytes(bytes(data))
    res = a.run("verify")
    assert res.code == 4 and "FAILED" in res.err
    assert "Traceback" not in res.err


def test_devices_list_and_remove(tmp_path):
    a, b = make(tmp_path), make(tmp_path, "server")
    ok(a.init())
    ok(b.init())
    b.add(make_account("b1"))
    ok(b.sync())
    ok(a.sync())
    rows = ok(a.run("devices", "--json")).json()
    assert {r["name"] for r in rows} == {"laptop", "server"}
    bid = [r["id"] for r in rows if r["name"] == "server"][0]
    ok(a.run("devices", "remove", bid))
    assert all(r["id"] != bid for r in ok(a.run("devices", "--json")).json())
    # b's account survives (a merged it); b itself is told it was removed
    assert make_account("b1").secret_id in a.accounts()
    b.add(make_account("b2"))
    res = b.sync()
    assert res.code == 2 and "removed" in res.err


def test_wrong_remote_down_exit_5_store_untouched(tmp_path):
    a = make(tmp_path, remote=":webdav,url='http://127.0.0.1:9/':otp")
    a.write_accounts([make_account("1")])
    before = a.store_path.read_bytes()
    res = a.init()
    assert res.code == 5, res.err
    assert a.store_path.read_bytes() == before
    assert "Traceback" not in res.err


def test_json_is_one_document(tmp_path):
    a = make(tmp_path)
    ok(a.init())
    a.add(make_account("1"))
    res = ok(a.sync())
    json.loads(res.out)
    assert PASS not in res.out + res.err


def test_local_state_holds_no_secret(tmp_path):
    a = make(tmp_path)
    ok(a.init())
    acc = make_account("secret-holder", issuer="VerySpecialBank")
    a.add(acc)
    ok(a.sync())
    files = [p for p in a.home.rglob("*") if p.is_file() and p.name != "config.toml"]
    assert files
    for p in files:
        data = p.read_bytes()
        assert acc.secret_b32.encode() not in data and acc.secret not in data, p
        assert b"VerySpecialBank" not in data, p
        assert PASS.encode() not in data
        assert p.stat().st_mode & 0o077 == 0, p


def test_webdav_server_killed_mid_test_gives_exit_5_fast_and_store_untouched(tmp_path, server_factory):
    """Issue 4's done-when, through the whole CLI: a real rclone webdav server dies."""
    import time

    server = server_factory("webdav")
    a = make(tmp_path, remote=server.location("otp"))
    a.env.update(server.environ(dict(a.env)))
    a.write_accounts([make_account("1")])
    ok(a.init())
    ok(a.sync())
    a.add(make_account("2"))
    before = a.store_path.read_bytes()
    server.kill()
    t0 = time.monotonic()
    res = a.sync()
    assert res.code == 5, res.err
    assert time.monotonic() - t0 < 15
    assert "127.0.0.1" in res.err and "Traceback" not in res.err
    assert a.store_path.read_bytes() == before
    server.restart()
    ok(a.sync())
