"""Crash injection at every remote operation of backup, sync, passphrase change, restore
and device removal (issue 17, item 10).

For each remote call kind and each call number k, the k-th call fails (remote error, lost
reply, truncated upload) or the process "dies" before or after it (SimulatedCrash).
Afterwards a restore with the current passphrase must yield every account, and the next
normal run must finish the work.
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from otpbridge.core.otpauth import parse_uri
from otpbridge.core.secrets import Secret
from otpbridge.engine.fastpath import sync
from otpbridge.engine.rotation import change_passphrase
from tests.support.engine import (
    NEW_PASS,
    PASS,
    Device,
    device_id,
    engine_session,
    joined_pair,
    make_account,
    ok,
    remote_ids,
)
from tests.support.faults import fault_matrix, matrix_summary, run_faulty


def setup_pair(root, *, deltas: bool = False):
    """Two devices; with ``deltas``, every later upload is a delta where the chain allows
    (docs/SYNC.md "Deltas"), so each device's newest object is a delta on its view."""
    a, b, remote = joined_pair(root, accounts=(), deltas=deltas)
    keep = [make_account(str(i)) for i in range(4)]
    a.add(*keep)
    ok(a.sync())
    b.add(make_account("b"))
    ok(b.sync())
    if deltas:
        a.add(make_account("a-delta"))
    ok(a.sync())
    if deltas:
        assert all(list(folder.glob("*.delta")) for folder in (remote / "devices").iterdir())
    return a, b, remote


OPERATIONS = ("backup", "sync", "rotation", "restore", "device-removal")


class _Case:
    """One operation of the matrix: ``prepare`` the local side, ``run`` it over a faulty
    backend, ``check`` that no account is lost and that the next normal run recovers."""

    def __init__(self, name: str, a: Device, b: Device, remote, tmp) -> None:
        self.name, self.a, self.b, self.remote, self.tmp = name, a, b, remote, tmp
        self.everything = set(a.accounts())

    def prepare(self) -> None:
        if self.name in ("backup", "sync"):
            self.old = set(self.a.accounts())
            self.a.add(make_account("new"))
            self.a.remove(make_account("0").secret_id)
            self.a.edit(make_account("1").secret_id, name="edited")
            self.new = set(self.a.accounts())

    def run(self, faulty) -> None:
        if self.name in ("backup", "sync"):
            sync(engine_session(self.a, faulty), mode=self.name)
        elif self.name == "rotation":
            change_passphrase(engine_session(self.a, faulty), lambda: Secret(NEW_PASS))
        elif self.name == "device-removal":
            sync(engine_session(self.a, faulty), mode="sync", remove_devices=[device_id(self.b)])
        else:  # restore onto a new laptop
            from otpbridge.engine.restore import restore
            from otpbridge.engine.state import SyncState
            from otpbridge.stores.base import Context
            from otpbridge.stores.registry import open_store

            s = engine_session(self.a, faulty)
            target = open_store(f"uris:{self.tmp / 'restored.txt'}", Context(environ=self.a.env, warn=lambda m: None, info=lambda m: None))
            restore(s, SyncState(), target)

    def check(self, where) -> None:
        a, b, remote = self.a, self.b, self.remote
        if self.name in ("backup", "sync"):
            assert set(a.accounts()) == self.new, where  # the local edits are never undone
            assert remote_ids(remote) in (self.old, self.new), where
            ok(a.run(self.name))
            assert remote_ids(remote) == self.new, where
            ok(b.sync())
            assert set(b.accounts()) == self.new, where
            assert b.accounts()[make_account("1").secret_id].name == "edited", where
        elif self.name == "rotation":
            opened = []
            for pw in (PASS, NEW_PASS):  # the remote restores with the old or the new passphrase, completely
                ids = _restores(remote, pw)
                if ids is not None:
                    assert ids == self.everything, (where, pw)
                    opened.append(pw)
            assert opened, where
            ok(a.run("passphrase", "change", env={"OTPBRIDGE_NEW_PASSPHRASE": NEW_PASS}))  # the next run finishes the job
            assert remote_ids(remote, NEW_PASS) == self.everything, where
            assert _restores(remote, PASS) is None, where
            assert_old_opens_nothing(remote)
            ok(b.sync(env={"OTPBRIDGE_PASSPHRASE": NEW_PASS}))
            assert set(b.accounts()) == self.everything, where
        elif self.name == "device-removal":
            assert remote_ids(remote) == self.everything, where
            assert set(a.accounts()) == self.everything, where
            bid = device_id(b)
            ok(a.run("devices", "remove", bid))
            assert remote_ids(remote) == self.everything, where
            rows = {r["id"]: r for r in ok(a.run("devices", "list", "--json")).json()}
            assert bid not in rows or rows[bid]["removed"], where
        else:
            target = self.tmp / "restored.txt"
            partial = {parse_uri(x).secret_id for x in target.read_text().splitlines() if x.strip()} if target.exists() else set()
            assert partial in (set(), self.everything), where  # all or nothing in the target
            assert remote_ids(remote) == self.everything, where  # a restore changes nothing remote
            probe = Device(self.tmp / "probe", str(remote), "probe")
            ok(probe.run("restore", str(remote), "--into", f"uris:{target}"))
            got = {parse_uri(x).secret_id for x in target.read_text().splitlines() if x.strip()}
            assert got == self.everything, where


@pytest.mark.parametrize("objects", ["views", "deltas"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_crash_matrix(tmp_path, operation, objects, record_property):
    """A fault at every remote operation of backup, sync, rotation, restore and device
    removal: for each remote call kind (list, read, write, exists, delete) and each call
    number k, the k-th call fails before or after doing its work (a remote error, a lost
    reply, a truncated upload) or the process dies there. Afterwards no account is lost
    and the next normal run finishes the work. The figures are printed at the end of the
    test run ("otpbridge figures") and are in docs/SECURITY.md."""
    root = tmp_path / "case"
    a, b, remote = setup_pair(root, deltas=objects == "deltas")
    template = tmp_path / "template"
    shutil.copytree(root, template, symlinks=True)

    def attempt(faulty, where) -> bool:
        case = _Case(operation, a, b, remote, root)
        case.prepare()
        if not run_faulty(lambda: case.run(faulty), faulty):
            return False
        case.check((operation, *where))
        return True

    total, by_op = matrix_summary(fault_matrix(root, template, remote, attempt))
    record_property("figure", f"crash matrix: {operation} ({objects}): {total} injected faults ({by_op}), 0 accounts lost, every next run recovered")
    assert total >= 5


def assert_old_opens_nothing(remote):
    from otpbridge.vault.format import VaultIntegrityError, WrongPassphrase, open_epoch

    headers = list((remote / "epochs").glob("*.hdr"))
    assert headers
    for h in headers:
        with pytest.raises((WrongPassphrase, VaultIntegrityError)):
            open_epoch(h.read_bytes(), Secret(PASS))
    epochs = {h.name[:10] for h in headers}
    for view in [*(remote / "devices").rglob("*.view"), *(remote / "devices").rglob("*.delta")]:
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


def test_a_damaged_header_of_a_known_epoch_is_still_an_integrity_failure(tmp_path):
    """Only a header newer than any this device verified may be an unfinished upload."""
    a, _b, remote = setup_pair(tmp_path)
    header = next((remote / "epochs").glob("*.hdr"))
    header.write_bytes(header.read_bytes()[:50])
    a.add(make_account("x"))
    res = a.sync()
    assert res.code == 4 and "integrity" in res.err
