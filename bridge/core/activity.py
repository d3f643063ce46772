"""What a run is doing, for ``-v`` / ``-vv`` and the status line on a terminal (issue 18).

Any layer wraps a slow or remote step in :func:`step`; nothing is shown unless the CLI
(or an API user) listens: ``-v`` attaches a stderr handler to the ``otpbridge.activity``
logger (each step with its time; ``-vv`` adds :func:`detail` lines), and a terminal gets
a transient status line through :func:`add_listener`. No step message holds a secret or
an account name: steps name stores, remote objects and key derivations only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("otpbridge.activity")
log.propagate = False  # never into the run log or the root logger

#: called with (what, True) when a step starts and (what, False) when it ends
_listeners: list[Callable[[str, bool], None]] = []


def add_listener(fn: Callable[[str, bool], None]) -> None:
    _listeners.append(fn)


def remove_listener(fn: Callable[[str, bool], None]) -> None:
    with contextlib.suppress(ValueError):
        _listeners.remove(fn)


def active() -> bool:
    return bool(_listeners) or log.isEnabledFor(logging.INFO)


@contextlib.contextmanager
def step(what: str) -> Iterator[dict]:
    """Time one step; ``info["result"]`` (set by the caller) is appended to the message."""
    info: dict = {}
    if not active():
        yield info
        return
    for fn in list(_listeners):
        fn(what, True)
    started = time.monotonic()
    failed = True
    try:
        yield info
        failed = False
    finally:
        for fn in list(_listeners):
            fn(what, False)
        took = time.monotonic() - started
        tail = f": {info['result']}" if info.get("result") else ""
        log.info("%s%s (%.2fs)%s", what, tail, took, " — failed" if failed else "")


def detail(message: str, *args: object) -> None:
    """More than ``-v`` says: only with ``-vv``."""
    log.debug(message, *args)
