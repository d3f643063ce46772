"""Adversarial review of the backup/sync core: each test proves one way to lose or leak data.

Every test here failed before the fix it names (see the review report); the rest pin
edge cases that held up, so they stay held up. Real local-folder remotes, real crypto,
the real CLI; FaultyBackend only to interleave two devices or inject a fault.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from otpbridge.backends.faults import FaultyBackend, SimulatedCrash
from otpbridge.backends.local import LocalBackend
from otpbridge.engine import change_passphrase, sync
from otpbridge.errors import OtpBridgeError
from otpbridge.secrets import Secret
from tests.support.engine import NEW_PASS, PASS, Device, engine_session, make_account, ok, remote_ids

NEW = {"OTPBRIDGE_NEW_PASSPHRASE": NEW_PASS}
HOURS_AGO = 3 * 3600


def pair(tmp_path: Path) -> tuple[Device, Device, Path]:
    remote = tmp_path / "remote"
    a = Device(tmp_path / "a", str(remote), "a")
    b = Device(tmp_path / "b", str(remote), "b")
    ok(a.init())
    ok(b.init())
    return a, b, remote


def past_sync(dev: Device, *, ago: float = HOURS_AGO) -> None:
    """A sync whose view is named as written ``ago`` seconds back (an old snapshot)."""
    s = engine_session(dev)
    s.now = lambda: time.time() - ago
    sync(s)


# --- passphrase change racing another device's sync -------------------------------------
def test_sync_during_rotation_does_not_delete_the_new_epoch(tmp_path):
    """B lists before A's commit point and cleans "orphans" after A finished: nothing lost.

    Re-encrypted views keep their original (old) time in their name, so B's cleanup took
    the new epoch's views for leftovers of a crashed change and deleted them while A was
    deleting the old epoch: the vault was left with a header and no views.
    """
    a, b, remote = pair(tmp_path)
    a.add(make_account("a1"), make_account("a2"))
    past_sync(a)
    b.add(make_account("b1"))
    past_sync(b)
    past_sync(a)
    everything = set(a.accounts())
    assert len(everything) == 3

    b_ready, a_done = threading.Event(), threading.Event()
    b_errors: list[BaseException] = []

    def b_blocks_before_delete(k, name):
        b_ready.set()
        a_done.wait(30)
        return False

    def run_b():
        try:
            sync(engine_session(b, FaultyBackend(LocalBackend(str(remote)), fail_on={"delete": b_blocks_before_delete})))
        except BaseException as exc:  # noqa: BLE001 - reported below
            b_errors.append(exc)
        finally:
            b_ready.set()

    thread = threading.Thread(target=run_b)

    def a_commits(k, name):
        if name.startswith("epochs/") and not thread.is_alive() and not b_ready.is_set():
            thread.start()
            b_ready.wait(30)  # B has listed and opened the old epoch (or finished)
        return False

    change_passphrase(engine_session(a, FaultyBackend(LocalBackend(str(remote)), fail_on={"write": a_commits})),
                      lambda: Secret(NEW_PASS))
    a_done.set()
    thread.join(30)
    assert not b_errors or all(isinstance(e, OtpBridgeError) for e in b_errors), b_errors
    assert remote_ids(remote, NEW_PASS) == everything


def test_finishing_a_change_with_a_wrong_old_passphrase_deletes_nothing(tmp_path):
    """After the commit point, a rerun whose OLD passphrase is mistyped must not delete
    old-epoch objects that are still readable (with the real old passphrase) and hold
    changes not yet folded into the new epoch."""
    a, b, remote = pair(tmp_path)
    a.add(make_account("a1"))
    ok(a.sync())
    ok(b.sync())
    late = make_account("late")

    def straggle_then_crash(k, name):
        if name.startswith("epochs/"):
            b.add(late)
            ok(b.sync())  # B writes under the old epoch right before the commit point
        return False

    faulty = FaultyBackend(LocalBackend(str(remote)), fail_on={"write": straggle_then_crash},
                           crash_after={"write": lambda k, name: name.startswith("epochs/")})
    with pytest.raises(SimulatedCrash):
        change_passphrase(engine_session(a, faulty), lambda: Secret(NEW_PASS))
    res = a.run("passphrase", "change", env={**NEW, "OTPBRIDGE_PASSPHRASE": "not the old passphrase"})
    assert res.code == 3, res.err
    assert "Traceback" not in res.err
    ok(a.run("passphrase", "change", env=NEW))  # the right old passphrase finishes the job
    assert late.identity in remote_ids(remote, NEW_PASS)
