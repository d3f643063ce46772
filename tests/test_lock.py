"""One run per device home: a second run waits, and gives up clearly."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from otpbridge.core.lock import BusyError, home_lock


def _hold(state_dir: str, seconds: float, ready) -> None:
    from pathlib import Path

    with home_lock(Path(state_dir)):
        ready.set()
        time.sleep(seconds)


def test_second_run_waits_then_gives_up(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), 3.0, ready))
    holder.start()
    try:
        assert ready.wait(30)
        start = time.monotonic()
        with pytest.raises(BusyError) as info, home_lock(tmp_path, wait=0.5):
            pass
        assert 0.4 < time.monotonic() - start < 3.0
        assert info.value.exit_code == 1 and "another otpbridge run" in str(info.value)
        with home_lock(tmp_path, wait=30):  # released when the holder exits
            pass
    finally:
        holder.join(30)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), 60.0, ready))
    holder.start()
    assert ready.wait(30)
    holder.kill()
    holder.join(30)
    with home_lock(tmp_path, wait=5):
        pass


def test_engine_runs_are_reentrant_and_serialised(tmp_path):
    from tests.support.engine import Device, make_account

    dev = Device(tmp_path / "dev", str(tmp_path / "remote"), "dev")
    dev.write_accounts([make_account("a")])
    assert dev.init().code == 0
    assert dev.sync().code == 0
    # passphrase change runs sync inside itself: the lock must not deadlock
    res = dev.run("passphrase", "change", env={"OTPBRIDGE_NEW_PASSPHRASE": "another long passphrase 99"})
    assert res.code == 0, res.err
