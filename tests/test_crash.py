"""Crash injection at every remote operation of backup, sync and passphrase change.

For each operation kind and each call number k, the k-th call fails (remote error) or the
process "dies" before or after it (SimulatedCrash). Afterwards a restore with the current
passphrase must yield every account, and the next normal run must finish the work.
"""

from __future__ import annotations

import signal
import time

import pytest

from otpbridge.backends.faults import FaultyBackend, SimulatedCrash
from otpbridge.backends.local import LocalBackend
from otpbridge.core.errors import OtpBridgeError
from otpbridge.core.secrets import Secret
from otpbridge.engine.fastpath import sync
from otpbridge.engine.rotation import change_passphrase
from tests.support.engine import NEW_PASS, PASS, Device, engine_session, make_account, ok, remote_ids

OPS = ("list", "read", "write", "delete")
MODES = ("crash_on", "crash_after", "fail_on")


def setup_pair(root):
    remote = root / "remote"
    a = Device(root / "a", str(remote), "a")
    b = Device(root / "b", str(remote), "b")
    ok(a.init())
    ok(b.init())
    keep = [make_account(str(i)) for i in range(4)]
    a.add(*keep)
    ok(a.sync())
    b.add(make_account("b"))
    ok(b.sync())
    ok(a.sync())
    return a, b, remote


def run_faulty(fn, faulty):
    try:
        fn()
    except (SimulatedCrash, OtpBridgeError):
        pass
    return any(e[3] != "ok" for e in faulty.events)


@pytest.mark.parametrize("mode_name", ["sync", "backup"])
def test_crash_at_every_operation_of_sync(tmp_path, mode_name):
    cases = 0
    for op in OPS:
        for mode in MODES:
            for k in range(1, 20):
                root = tmp_path / f"{op}-{mode}-{k}"
                a, b, remote = setup_pair(root)
                old = set(a.accounts())
                a.add(make_account("new"))
                a.remove(make_account("0").secret_id)
                a.edit(make_account("1").secret_id, name="edited")
                new = set(a.accounts())
                faulty = FaultyBackend(LocalBackend(str(remote)), **{mode: {op: [k]}})
                s = engine_session(a, faulty)
                hit = run_faulty(lambda s=s: sync(s, mode=mode_name), faulty)
                if not hit:
                    break
                cases += 1
                got = remote_ids(remote)
                assert got in (old, new), (op, mode, k)
                ok(a.run(mode_name))
                assert remote_ids(remote) == new
                ok(b.sync())
                assert set(b.accounts()) == new
                assert b.accounts()[make_account("1").secret_id].name == "edited"
    assert cases >= 6


def test_crash_at_every_operation_of_passphrase_change(tmp_path):
    new_env = {"OTPBRIDGE_NEW_PASSPHRASE": NEW_PASS}
    cases = 0
    for op in OPS:
        for mode in ("crash_on", "crash_after"):
            for k in range(1, 40):
                root = tmp_path / f"{op}-{mode}-{k}"
                a, b, remote = setup_pair(root)
                everything = set(a.accounts())
                faulty = FaultyBackend(LocalBackend(str(remote)), **{mode: {op: [k]}})
                s = engine_session(a, faulty)
                hit = run_faulty(lambda s=s: change_passphrase(s, lambda: Secret(NEW_PASS)), faulty)
                if not hit:
                    break
                cases += 1
                # the remote restores with the old or the new passphrase, completely
                opened = []
                for pw in (PASS, NEW_PASS):
                    try:
                        ids = remote_ids(remote, pw)
                    except AssertionError:
                        continue
                    assert ids == everything, (op, mode, k, pw)
                    opened.append(pw)
                assert opened, (op, mode, k)
                # the next run finishes the job
                ok(a.run("passphrase", "change", env=new_env))
                assert remote_ids(remote, NEW_PASS) == everything
                with pytest.raises(AssertionError):
                    remote_ids(remote, PASS)
                assert_old_opens_nothing(remote)
                ok(b.sync(env={"OTPBRIDGE_PASSPHRASE": NEW_PASS}))
                assert set(b.accounts()) == everything
    assert cases >= 15


def assert_old_opens_nothing(remote):
    from otpbridge.vault.format import VaultIntegrityError, WrongPassphrase, open_epoch

    headers = list((remote / "epochs").glob("*.hdr"))
    assert headers
    for h in headers:
        with pytest.raises((WrongPassphrase, VaultIntegrityError)):
            open_epoch(h.read_bytes(), Secret(PASS))
    epochs = {h.name[:10] for h in headers}
    for view in (remote / "devices").rglob("*.view"):
        assert view.name[:10] in epochs, f"{view} belongs to an epoch without a header"


def test_killed_processes_during_passphrase_change(tmp_path):
    """Real SIGKILLs at varying points; then the rerun completes and nothing is lost."""
    a, b, remote = setup_pair(tmp_path)
    for i in range(8):
        a.add(make_account(f"more{i}"))
        ok(a.sync())
    everything = set(a.accounts())
    new_env = {"OTPBRIDGE_NEW_PASSPHRASE": NEW_PASS}
    for delay in (0.15, 0.3, 0.45, 0.6):
        proc = a.spawn("passphrase", "change", env=new_env)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if proc.returncode == 0:
            break
        ok_with = [pw for pw in (PASS, NEW_PASS) if _restores(remote, pw) == everything]
        assert ok_with
    ok(a.run("passphrase", "change", env=new_env))
    assert remote_ids(remote, NEW_PASS) == everything
    assert_old_opens_nothing(remote)


def _restores(remote, pw):
    try:
        return remote_ids(remote, pw)
    except AssertionError:
        return None
