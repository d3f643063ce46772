"""One writing run per device home at a time.

A timer, the pass git hook and a person at the shell can all start ``otpbridge sync``
for the same home at once. Devices never need a lock between them (each writes only
its own objects), but two runs of the *same* device would race on its sequence number
and its state file. An advisory ``flock`` on a file in the state folder serialises them;
the kernel drops it when a process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from otpbridge.core.errors import OtpBridgeError


class BusyError(OtpBridgeError):
    """Another otpbridge run of this device did not finish in time (exit 1)."""


@contextlib.contextmanager
def home_lock(state_dir: Path, *, wait: float = 120.0, poll: float = 0.1) -> Iterator[None]:
    import fcntl

    from otpbridge.core.fileio import private_dir

    private_dir(state_dir)
    fd = os.open(state_dir / "run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise BusyError(
                        f"another otpbridge run of this device ({state_dir}) is still working",
                        hint="wait for it to finish, or check for a hung sync (otpbridge status)",
                    ) from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
