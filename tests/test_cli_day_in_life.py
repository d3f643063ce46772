"""Issue 18, "a day in the life": what a KeePassXC, pass and restic user trips over,
through the real CLI with real stores."""

from __future__ import annotations

import json

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
    assert x.secret_id in h2.accounts()
    h2.remove(x.secret_id)
    ok(h2.sync())
    res = ok(h1.run("sync"))
    assert "remove here: SvcX" in res.out
    snaps = ok(h1.run("snapshots", "--json")).json()
    first = min((sn for sn in snaps if sn["device_name"] == "h1"), key=lambda sn: sn["seq"])
    res = ok(h1.run("restore", "--snapshot", first["id"]))
    assert "add: SvcX (user-X)" in res.out and "sent to the vault" in res.out
    assert x.secret_id in h1.accounts()
    res = ok(h1.run("sync"))
    assert "remove" not in res.out, res.out
    assert x.secret_id in h1.accounts()
    res = ok(h2.run("sync"))
    assert "add here: SvcX (user-X)" in res.out
    assert x.secret_id in h2.accounts()
    assert "remove" not in ok(h1.run("sync")).out
    assert x.secret_id in h1.accounts()


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
    assert set(h1.accounts()) == {y.secret_id}
    assert "remove" not in ok(h1.run("sync")).out
    assert set(h1.accounts()) == {y.secret_id}
    res = h1.run("restore", "--snapshot", first["id"], "--account", "nothing-like-it")
    assert res.code == 2 and "matches" in res.err


def test_restore_of_an_account_deleted_here_but_not_yet_synced_keeps_it_everywhere(tmp_path):
    """The store lost an account the vault still holds (no sync since): the restore puts
    it back, and the deletion is never sent - not by the restore's own sync run, not by
    the next sync on this device or any other."""
    accs = [make_account(t) for t in "ABC"]
    h1 = make(tmp_path, "h1")
    h1.write_accounts(accs)
    ok(h1.init())
    ok(h1.sync())
    h2 = make(tmp_path, "h2")
    ok(h2.init())
    ok(h2.sync())
    h1.remove(accs[1].secret_id)
    res = ok(h1.run("restore", "--account", "SvcB", "--json"))
    assert res.json()["added"] == ["SvcB (user-B)"], res.out
    assert accs[1].secret_id in h1.accounts()
    for dev in (h2, h1, h2):
        assert "remove" not in ok(dev.run("sync")).out
    assert set(h1.accounts()) == set(h2.accounts()) == {a.secret_id for a in accs}


def test_restore_into_a_store_that_lost_most_accounts_brings_them_back(tmp_path):
    """The mass-deletion guard is for deletions a run would send; a restore of every
    account sends none. A restore of one account while others are lost is refused like
    the sync it runs, with a hint that does not delete what the user wants back, and its
    dry run says so too."""
    accs = [make_account(t) for t in "ABCDE"]
    h1 = make(tmp_path, "h1")
    h1.write_accounts(accs)
    ok(h1.init())
    ok(h1.sync())
    h1.write_accounts(accs[:1])
    for args in (("--account", "SvcB", "--dry-run"), ("--account", "SvcB")):
        res = h1.run("restore", *args)
        assert res.code == 6, res.err
        assert "does not bring them back" in res.err and "without --account" in res.err, res.err
    assert set(h1.accounts()) == {accs[0].secret_id}
    res = ok(h1.run("restore", "--dry-run", "--json"))
    assert len(res.json()["added"]) == 4
    res = ok(h1.run("restore"))
    assert set(h1.accounts()) == {a.secret_id for a in accs}
    assert "remove" not in ok(h1.run("sync")).out
    assert set(h1.accounts()) == {a.secret_id for a in accs}


def test_init_saves_absolute_store_paths_and_a_missing_store_is_exit_5(tmp_path, monkeypatch):
    import tomllib

    from tests.support.engine import Device

    work = tmp_path / "work"
    work.mkdir()
    (work / "p1.txt").write_text("", encoding="utf-8")
    d = Device(tmp_path / "dev", str(tmp_path / "remote"), "dev")
    monkeypatch.chdir(work)
    ok(d.run("init", "./remote", "--store", "uris:p1.txt", "--kdf", "insecure-test"))
    cfg = tomllib.loads((d.home / "config.toml").read_text())
    assert cfg["stores"] == [f"uris:{work / 'p1.txt'}"]
    assert cfg["remote"] == str(work / "remote")
    d.store_path = work / "p1.txt"
    d.add(make_account("1"))
    monkeypatch.chdir("/")
    res = ok(d.run("sync"))
    assert "send new: Svc1" in res.out
    (work / "p1.txt").rename(work / "moved.txt")
    res = d.run("sync")
    assert res.code == 5, res.out + res.err
    assert str(work / "p1.txt") in res.err and "accounts in step" not in res.out


def test_init_refuses_a_missing_keepass_database_unless_create(tmp_path, monkeypatch):
    from tests.support.engine import Device

    monkeypatch.chdir(tmp_path)
    d = Device(tmp_path / "dev", str(tmp_path / "remote"), "dev")
    env = {"KPW": "kdbx pw 1"}
    res = d.run("init", str(tmp_path / "remote"), "--store", "keepass:typo.kdbx?password-env=KPW",
                "--kdf", "insecure-test", env=env)
    assert res.code == 2 and "typo.kdbx does not exist" in res.err and "--create" in res.err
    assert not (d.home / "config.toml").exists()
    ok(d.run("init", str(tmp_path / "remote"), "--store", "keepass:new.kdbx?password-env=KPW", "--create",
             "--kdf", "insecure-test", env=env))
    cfg = (d.home / "config.toml").read_text()
    assert f"keepass:{tmp_path / 'new.kdbx'}?password-env=KPW&create=1" in cfg
    ok(d.run("sync", env=env))


def test_schedule_refuses_a_store_secret_that_lives_only_in_the_shell_and_check_runs_the_unit(tmp_path):
    import pytest

    pytest.importorskip("pykeepass")
    from tests.support.engine import PASS, Device

    d = Device(tmp_path / "dev", str(tmp_path / "remote"), "dev")
    kdbx = tmp_path / "otp.kdbx"
    d.env["KPW"] = "kdbx pw 18"
    d.add(make_account("1"))
    ok(d.run("convert", d.store, f"keepass:{kdbx}?password-env=KPW"))
    ok(d.run("init", d.remote, "--store", f"keepass:{kdbx}?password-env=KPW", "--kdf", "insecure-test"))
    ok(d.run("sync"))
    pwfile = tmp_path / "passphrase"
    pwfile.write_text(PASS + "\n")
    pwfile.chmod(0o600)
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    table = fakes / "table"
    table.write_text("")
    crontab = fakes / "crontab"
    crontab.write_text(f"#!/bin/sh\nif [ \"$1\" = -l ]; then cat {table}; else cat > {table}; fi\n")
    crontab.chmod(0o755)
    env = {"OTPBRIDGE_CRONTAB": str(crontab)}
    args = ("--passphrase-file", str(pwfile), "schedule", "--method", "cron", "--every", "1h")
    res = d.run(*args, "--install", env=env)
    assert res.code == 2, res.err
    assert "$KPW" in res.err and "password-file" in res.err and "hint:" in res.err
    assert table.read_text() == ""
    res = d.run(*args, env=env)  # printing only: the same problem is a warning
    assert res.code == 0 and "KPW" in res.err
    # the store's password moves into a file: reachable from the unit
    kpwfile = tmp_path / "kpw"
    kpwfile.write_text("kdbx pw 18\n")
    kpwfile.chmod(0o600)
    cfg = d.home / "config.toml"
    cfg.write_text(cfg.read_text().replace("password-env=KPW", f"password-file={kpwfile}"))
    del d.env["KPW"]
    res = ok(d.run(*args, "--check", env=env))
    assert "the scheduled run works (exit 0)" in res.out
    ok(d.run(*args, "--install", env=env))
    line = [ln for ln in table.read_text().splitlines() if "--quiet sync" in ln][0]
    assert "--passphrase-file" in line and "kdbx pw" not in line and PASS not in line
    # a broken secret source: --check says so with the run's own exit code
    kpwfile.write_text("wrong\n")
    assert ok(d.run("sync")).out.strip() == "nothing changed"  # the fast path reads no password...
    res = d.run(*args, "--check", env=env)  # ... --check runs 'sync --full', which does
    assert res.code == 3 and "FAILS with exit 3" in res.out, res.out + res.err
    assert "--full" in res.err
    kpwfile.write_text("kdbx pw 18\n")
    ok(d.run(*args, "--check", env=env))
    # a passphrase file that no longer opens the vault: the same
    pwfile.write_text("not the passphrase any more\n")
    res = d.run(*args, "--check", env=env)
    assert res.code == 3 and "FAILS with exit 3" in res.out, res.out + res.err


def test_weak_new_passphrases_are_refused_unless_accepted(tmp_path):
    d = make(tmp_path, "dev")
    for weak in ("Summer2024!", "qwertyuiopasdfghjkl"):
        res = d.init(env={"OTPBRIDGE_PASSPHRASE": weak})
        assert res.code == 2, res.err
        assert "too weak" in res.err and "zxcvbn score" in res.err and "--accept-weak-passphrase" in res.err
        assert "strength: strong" not in res.err and "very strong" not in res.err
    assert not (d.home / "config.toml").exists()
    assert not (tmp_path / "remote").exists() or not any((tmp_path / "remote").iterdir())
    res = ok(d.init("--accept-weak-passphrase", env={"OTPBRIDGE_PASSPHRASE": "Summer2024!"}))
    assert "accepted because of --accept-weak-passphrase" in res.err
    e = make(tmp_path, "other", remote=tmp_path / "remote2")
    res = ok(e.init())
    assert "passphrase strength: very strong (zxcvbn score 4/4" in res.err
    res = e.run("passphrase", "change", env={"OTPBRIDGE_NEW_PASSPHRASE": "Summer2024!"})
    assert res.code == 2 and "too weak" in res.err
    assert ok(e.run("passphrase", "check")).code == 0


def test_both_sides_report_a_conflict_by_name_and_the_losing_version_stays_restorable(tmp_path):
    x = make_account("X")
    a, b = make(tmp_path, "alpha"), make(tmp_path, "beta")
    a.add(x)
    ok(a.init())
    ok(a.sync())
    ok(b.init())
    ok(b.sync())
    a.edit(x.secret_id, name="alpha-edit")
    b.edit(x.secret_id, name="beta-edit")
    ok(a.sync())
    res = ok(b.run("sync"))  # the winner (newer in Lamport order)
    assert "conflict: SvcX (beta-edit) was edited here (" in res.err and "on alpha (" in res.err
    assert "kept this device's version; alpha's version stays restorable" in res.err
    res = ok(a.run("sync"))  # the loser used to see only "update here"
    assert "rename here: SvcX (alpha-edit) → SvcX (beta-edit)" in res.out
    line = [ln for ln in res.err.splitlines() if ln.startswith("otpbridge: conflict") or "conflict:" in ln][0]
    assert "edited here (" in line and "on beta (" in line and "kept beta's version" in line
    assert "this device's version stays restorable: to get it back: otpbridge restore --snapshot" in line
    command = line.split("to get it back: ")[1].split()
    assert command[:3] == ["otpbridge", "restore", "--snapshot"]
    snapshot, pattern = command[3], command[5]
    assert "conflict" not in ok(a.run("sync")).err  # reported once
    res = ok(a.run("restore", "--snapshot", snapshot, "--account", pattern))
    # The restored version is the same record (renames keep their record id): it becomes
    # the record's newest edit on every device; the winner's version stays in b's snapshot.
    assert "add: SvcX (alpha-edit)" in res.out
    names = lambda dev: sorted(ln.split("?")[0] for ln in dev.store_path.read_text().splitlines())  # noqa: E731
    assert names(a) == ["otpauth://totp/SvcX:alpha-edit"]
    ok(b.run("sync"))
    assert names(b) == names(a)
    data = ok(b.sync()).json()
    assert data["conflicts"] == []


def test_default_device_name_is_unique_in_the_vault(tmp_path):
    import socket

    host = socket.gethostname().split(".")[0]
    first = make(tmp_path, "one")
    first.write_accounts([make_account("1")])
    ok(first.run("init", first.remote, "--store", first.store, "--kdf", "insecure-test"))
    second = make(tmp_path, "two")
    second.write_accounts([])
    ok(first.sync())
    data = ok(second.run("init", second.remote, "--store", second.store, "--kdf", "insecure-test", "--json")).json()
    assert data["device"]["name"] == f"{host}-{data['device']['id'][:4]}"
    ok(second.sync())
    assert ok(first.run("sync")).code == 0


def test_devices_lists_every_joined_device_and_removes_by_name(tmp_path):
    a, b, c = make(tmp_path, "alpha"), make(tmp_path, "beta"), make(tmp_path, "gamma")
    a.add(make_account("1"), make_account("2"))
    ok(a.init())
    ok(a.sync())
    ok(b.init())
    ok(c.init())  # joined, never synced
    ok(a.run("sync"))
    rows = {r["name"]: r for r in ok(a.run("devices", "--json")).json()}
    assert set(rows) == {"alpha", "beta", "gamma"}
    assert rows["gamma"]["last_seen"] is not None and rows["gamma"]["accounts"] == 2
    assert rows["alpha"]["this_device"] and rows["alpha"]["accounts"] == 2
    text = ok(a.run("devices")).out
    assert "gamma" in text and rows["gamma"]["id"] in text and "last seen" in text and "accounts" in text
    res = ok(a.run("devices", "remove", "gamma", "--dry-run"))
    assert "would remove device gamma" in res.out
    gammas = sorted(p.name for p in (tmp_path / "remote" / "devices" / rows["gamma"]["id"]).iterdir())
    assert f"({len(gammas)} object(s) to delete)" in res.out and gammas, res.out
    dry = ok(a.run("devices", "remove", "gamma", "--dry-run", "--json")).json()
    assert dry["removed_device"] == {"id": rows["gamma"]["id"], "name": "gamma"}
    assert sorted(n.rpartition("/")[2] for n in dry["cleaned"]) == gammas
    res = ok(a.run("devices", "remove", "gamma"))
    assert f"removed device gamma ({rows['gamma']['id']}) ({len(gammas)} object(s) deleted)" in res.out
    assert {r["name"] for r in ok(a.run("devices", "--json")).json()} == {"alpha", "beta"}
    assert c.run("sync").code == 2  # the removed device is refused
    res = a.run("devices", "remove", "nobody")
    assert res.code == 2 and "no such device nobody" in res.err
    ok(a.run("devices", "remove", rows["beta"]["id"]))  # by id still works


def test_verbose_and_quiet_anywhere_and_verbose_says_what_is_done(tmp_path):
    a = make(tmp_path, "alpha")
    a.add(make_account("1"))
    ok(a.init())
    res = ok(a.run("sync", "-v"))
    for what in ("remote: list", "key derivation (Argon2id", f"read {a.store}: 1 accounts", "remote: upload devices/"):
        assert what in res.err, res.err
    assert "s)" in res.err and "views merged" not in res.err
    a.add(make_account("2"))
    res = ok(a.run("sync", "-vv"))
    assert "views merged: alpha #1" in res.err and "1 added" in res.err
    a.add(make_account("3"))
    res = ok(a.run("sync", "--quiet"))
    assert res.out == "" and "remote:" not in res.err
    res = ok(a.run("status", "-q"))
    assert res.out == ""
    # without -v (and on a pipe) nothing of this is shown
    a.add(make_account("4"))
    res = ok(a.run("sync"))
    assert "remote:" not in res.err and "key derivation" not in res.err


def test_remote_refusing_credentials_is_exit_3(tmp_path, webdav_server):
    from tests.support.engine import Device, base_env
    from tests.support.servers import obscure

    env = webdav_server.environ(base_env())
    env["RCLONE_WEBDAV_PASS"] = obscure("not the password")
    d = Device(tmp_path / "dev", webdav_server.location("i18-401"), "dev", env=env)
    res = d.init()
    assert res.code == 3, res.err
    assert "refused the credentials" in res.err and "401" in res.err and "network" not in res.err.split("hint:")[0]
    assert not d.home.exists()  # a failed init leaves no half-made home


def test_keepass_missing_and_damaged_point_to_the_bak_and_hotp_is_flagged(tmp_path):
    import pytest

    pytest.importorskip("pykeepass")
    from tests.support.engine import Device

    d = Device(tmp_path / "dev", str(tmp_path / "remote"), "dev")
    d.env["KPW"] = "kdbx pw 18"
    d.add(make_account("t"), make_account("h", kind="hotp", counter=4))
    kdbx = tmp_path / "otp.kdbx"
    spec = f"keepass:{kdbx}?password-env=KPW"
    res = ok(d.run("convert", d.store, spec))
    assert "1 HOTP account(s) went into" in res.err and "KeePassXC 2.7 and older cannot show HOTP codes" in res.err
    assert "KeePassXC 2.7 and older" in ok(d.run("formats")).out
    d.add(make_account("t2"))
    ok(d.run("convert", d.store, spec, "--merge"))
    assert (tmp_path / "otp.kdbx.bak").is_file()
    good = kdbx.read_bytes()
    kdbx.write_bytes(good[:700])
    res = d.run("list", spec)
    assert res.code == 4 and "damaged" in res.err and "otp.kdbx.bak" in res.err.split("hint:")[1]
    kdbx.unlink()
    res = d.run("list", spec)
    assert res.code == 2 and "no such file" in res.err and "otp.kdbx.bak" in res.err
    # configured in a vault: a missing database is exit 5, naming it and the .bak
    kdbx.write_bytes(good)
    ok(d.run("init", d.remote, "--store", spec, "--kdf", "insecure-test"))
    ok(d.run("sync"))
    kdbx.unlink()
    res = d.run("sync")
    assert res.code == 5 and str(kdbx) in res.err and "otp.kdbx.bak" in res.err


def test_failed_restore_leaves_no_home_and_status_shows_the_last_sync(tmp_path):
    from tests.support.engine import Device

    a = make(tmp_path, "alpha")
    a.add(make_account("1"))
    ok(a.init())
    res = ok(a.run("status"))
    assert "last sync: never" in res.out
    ok(a.run("sync"))
    assert "last sync: 20" in ok(a.run("status")).out
    fresh = Device(tmp_path / "fresh", a.remote, "fresh")
    res = fresh.run("restore", a.remote, "--into", f"keepass:{tmp_path / 'new.kdbx'}?password-env=NOPE")
    assert res.code == 2 and not fresh.home.exists()
    res = fresh.run("restore", a.remote, "--into", f"uris:{tmp_path / 'out.txt'}",
                    env={"OTPBRIDGE_PASSPHRASE": "not it, not at all 99"})
    assert res.code == 3 and not fresh.home.exists()
    # a one-off restore that works leaves the restored store, and no half-made home either
    ok(fresh.run("restore", a.remote, "--into", f"uris:{tmp_path / 'out.txt'}"))
    assert (tmp_path / "out.txt").read_text().count("otpauth://") == 1 and not fresh.home.exists()
    ok(fresh.init())  # init is not a one-off: it makes the home
    assert (fresh.home / "config.toml").exists()


def test_a_terminal_shows_what_is_happening_and_a_pipe_shows_nothing(tmp_path):
    import os
    import pty
    import subprocess
    import sys

    a = make(tmp_path, "alpha")
    a.add(make_account("1"))
    ok(a.init())
    ok(a.sync())
    out = tmp_path / "restored.txt"
    argv = [sys.executable, "-m", "otpbridge.cli", "restore", a.remote, "--into", f"uris:{out}"]
    env = {**a.env, "OTPBRIDGE_HOME": str(tmp_path / "h2"), "TERM": "xterm", "COLUMNS": "100"}
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "key derivation" in text and "remote: download" in text, text
    piped = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "key derivation" not in piped.stderr and "remote:" not in piped.stderr


def test_store_add_list_remove_without_init(tmp_path, monkeypatch):
    a = make(tmp_path, "alpha")
    x, y = make_account("X"), make_account("Y")
    a.add(x)
    ok(a.init())
    ok(a.sync())
    extra = tmp_path / "extra.txt"
    from otpbridge.core.otpauth import format_uri

    extra.write_text(format_uri(y) + "\n")
    monkeypatch.chdir(tmp_path)
    res = a.run("store", "add", "keepass:typo.kdbx")
    assert res.code == 2 and "--create" in res.err
    ok(a.run("store", "add", "uris:extra.txt", "--dry-run"))
    assert len(ok(a.run("store", "list", "--json")).json()["stores"]) == 1
    ok(a.run("store", "add", "uris:extra.txt"))
    rows = ok(a.run("store", "list", "--json")).json()["stores"]
    assert [r["store"] for r in rows] == [a.store, f"uris:{extra}"] and rows[0]["primary"]
    assert a.run("store", "add", f"uris:{extra}").code == 2  # already there
    res = ok(a.run("sync"))
    assert "send new: SvcY (user-Y)" in res.out
    assert y.secret_id in a.accounts()  # the primary received it
    ok(a.run("store", "remove", f"uris:{extra}"))
    assert [r["store"] for r in ok(a.run("store", "list", "--json")).json()["stores"]] == [a.store]
    res = ok(a.sync()).json()
    assert res["sent"]["deleted"] == [] and extra.exists()
    assert a.run("store", "remove", "uris:nothing.txt").code == 2


def test_forget_prune_keep_policies_saved_retention_and_snapshots_diff(tmp_path):
    a, b = make(tmp_path, "alpha"), make(tmp_path, "beta")
    ok(a.init())
    for i in range(5):
        a.add(make_account(f"n{i}"))
        ok(a.sync())
    ok(b.init())
    ok(b.sync())
    ok(a.sync())
    mine = [sn for sn in ok(a.run("snapshots", "--json")).json() if sn["device_name"] == "alpha"]
    assert len(mine) == 5
    theirs = [sn["id"] for sn in ok(a.run("snapshots", "--json")).json() if sn["device_name"] != "alpha"]
    assert theirs  # beta's first view (uploaded when it joined)
    res = ok(a.run("forget", "--keep-last", "2", "--dry-run", "--json")).json()
    assert len(res["forgotten"]) == 3 and res["dry_run"] is True
    assert len(ok(a.run("snapshots", "--json")).json()) == 5 + len(theirs)
    first, second = sorted(mine, key=lambda sn: sn["seq"])[:2]
    res = ok(a.run("snapshots", "diff", first["id"], "latest"))
    assert "+ Svcn1 (user-n1)" in res.out and "+ Svcn4 (user-n4)" in res.out and "Svcn0" not in res.out
    data = ok(a.run("snapshots", "diff", "alpha-" + str(first["seq"]), second["id"], "--json")).json()
    assert data["added"] == ["Svcn1 (user-n1)"] and data["removed"] == []
    res = ok(a.run("prune", "--keep-last", "2", "--save"))
    assert "forgot 3 of this device's snapshots, kept 2" in res.out
    left = ok(a.run("snapshots", "--json")).json()
    assert sorted(sn["id"] for sn in left if sn["device_name"] != "alpha") == sorted(theirs)
    assert len([sn for sn in left if sn["device_name"] == "alpha"]) == 2
    assert "[retention]" in (a.home / "config.toml").read_text()
    assert ok(a.sync()).json()["fast_path"] is True  # forgetting kept the no-change path
    for i in range(3):
        a.add(make_account(f"m{i}"))
        ok(a.sync())
    assert len([sn for sn in ok(a.run("snapshots", "--json")).json() if sn["device_name"] == "alpha"]) == 2


def test_code_clip_copies_one_code_and_clears_it(tmp_path):
    import sys
    import time

    from otpbridge.core.codes import code_at

    a = make(tmp_path, "alpha")
    acc = make_account("clip")
    a.add(acc, make_account("other"))
    board = tmp_path / "board"
    board.write_text("")
    tool = tmp_path / "clipboard.py"
    tool.write_text("import sys, pathlib\nb = pathlib.Path(sys.argv[2])\n"
                    "b.write_text(sys.stdin.read()) if sys.argv[1] == 'copy' else sys.stdout.write(b.read_text())\n")
    env = {"OTPBRIDGE_CLIPBOARD": f"{sys.executable} {tool} copy {board}|{sys.executable} {tool} paste {board}",
           "OTPBRIDGE_CLIP_SECONDS": "2"}
    res = a.run("code", a.store, "Svc", "--clip", env=env)
    assert res.code == 2 and "2 accounts match" in res.err
    res = ok(a.run("code", a.store, "Svcclip", "--clip", env=env))
    assert res.out == "" and "copied the code of Svcclip (user-clip)" in res.err and "cleared in 2 s" in res.err
    assert board.read_text() in {code_at(acc, time.time()), code_at(acc, time.time() - 30)}
    deadline = time.time() + 20
    while board.read_text() and time.time() < deadline:
        time.sleep(0.2)
    assert board.read_text() == ""
    res = a.run("code", a.store, "Svcclip", "--clip", env={"OTPBRIDGE_CLIPBOARD": "", "DISPLAY": "",
                                                            "WAYLAND_DISPLAY": "", "PATH": "/nonexistent"})
    assert res.code == 1 and "no clipboard here" in res.err and "hint:" in res.err


def test_man_pages_are_generated_from_the_cli_and_current():
    from pathlib import Path

    from otpbridge.cli.manpages import render_all

    folder = Path(__file__).resolve().parents[1] / "bridge" / "data" / "man"
    pages = render_all()
    assert {"otpbridge.1", "otpbridge-sync.1", "otpbridge-devices-remove.1", "otpbridge-forget.1"} <= set(pages)
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.1")}
    stale = sorted(name for name in set(pages) | set(on_disk) if pages.get(name) != on_disk.get(name))
    if stale:
        import difflib

        first = stale[0]
        diff = "".join(difflib.unified_diff((on_disk.get(first) or "").splitlines(True),
                                           (pages.get(first) or "").splitlines(True)))
        raise AssertionError(f"regenerate with: python -m otpbridge.cli.manpages bridge/data/man ({stale})\n{diff}")
    assert "--keep-monthly" in pages["otpbridge-forget.1"] and ".SH OPTIONS" in pages["otpbridge-sync.1"]


def test_completion_of_kind_prefixes_device_names_and_snapshot_ids(tmp_path):
    import subprocess
    import sys

    a, b = make(tmp_path, "alpha"), make(tmp_path, "beta")
    a.add(make_account("1"))
    ok(a.init())
    ok(a.sync())
    ok(b.init())
    ok(a.sync())
    (tmp_path / "mydb.kdbx").write_bytes(b"")

    def complete(*words: str) -> list[str]:
        env = {**a.env, "_OTPBRIDGE_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(["otpbridge", *words]),
               "COMP_CWORD": str(len(words))}
        proc = subprocess.run([sys.executable, "-m", "otpbridge.cli"], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if "," in line]

    assert "keepass:" in complete("list", "kee")
    assert "keepass:mydb.kdbx" in complete("list", "keepass:my")
    assert {"beta"} <= set(complete("devices", "remove", ""))
    ids = complete("restore", "--snapshot", "")
    assert ids and all("-" in i for i in ids)
    assert "latest" in complete("snapshots", "diff", ids[0], "")


def test_sync_full_opens_everything_when_nothing_changed_and_writes_nothing(tmp_path):
    d = make(tmp_path, "dev")
    d.add(make_account("1"))
    ok(d.init())
    ok(d.run("sync"))
    remote = tmp_path / "remote"
    before = sorted(p.relative_to(remote) for p in remote.rglob("*") if p.is_file())
    assert ok(d.run("sync")).out.strip() == "nothing changed"
    res = ok(d.run("sync", "--full", "--json", "--verbose"))
    out = json.loads(res.out)
    assert out["fast_path"] is False and out["accounts"] == 1
    assert out["stats"]["kdf"] >= 1  # the passphrase was really used
    assert sorted(p.relative_to(remote) for p in remote.rglob("*") if p.is_file()) == before
    # a wrong passphrase: the fast path says nothing, --full says exit 3
    assert ok(d.run("sync", env={"OTPBRIDGE_PASSPHRASE": "wrong wrong wrong"})).out.strip() == "nothing changed"
    res = d.run("sync", "--full", env={"OTPBRIDGE_PASSPHRASE": "wrong wrong wrong"})
    assert res.code == 3, res.err
    res = d.run("backup", "--full", env={"OTPBRIDGE_PASSPHRASE": "wrong wrong wrong"})
    assert res.code == 3, res.err
