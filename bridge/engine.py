"""The sync engine: init, backup, sync, restore, passphrase change, verify (docs/SYNC.md).

A Python API over explicit objects (a backend, stores, a state folder, a passphrase
getter); no module state, so two devices can run side by side in one process. The CLI
(``cli/vault_cmds.py``) is a thin layer over it.

This module is deliberately small: it holds the :class:`Session`, :class:`SyncReport`
and ``sync`` up to the no-change fast path (SPEC §9: one listing, no key, and a wall
time close to a bare ``rclone lsjson``, where Python's start-up is most of the bill).
Everything past the fast path lives in :mod:`otpbridge.engine_core` (merge, remote,
vault, snapshots and ten more dataclasses: ~25 ms of imports) and is loaded on first
use; every name defined there can still be imported from here (``from
otpbridge.engine import change_passphrase`` works through the module ``__getattr__``).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OtpBridgeError, UsageError
from .syncstate import SyncState

if TYPE_CHECKING:
    from .merge import Conflict
    from .remote import Listing
    from .secrets import Secret
    from .snapshots import Retention


def __getattr__(name: str) -> Any:
    """Everything past the fast path (load_remote, restore, change_passphrase, the report
    classes…) is defined in engine_core and imported from it on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    from . import engine_core

    try:
        value = getattr(engine_core, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    from . import engine_core

    return sorted(set(globals()) | {n for n in vars(engine_core) if not n.startswith("__")})


def _exclusive(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` holding this device's home lock: a timer, the git hook and a person may
    start runs of the same device at once, and they must not race on its sequence
    numbers or state file (other devices need no lock: they never share objects)."""

    @functools.wraps(fn)
    def wrapper(s: Session, *args: Any, **kwargs: Any) -> Any:
        from .lock import home_lock

        if s.holds_lock:
            return fn(s, *args, **kwargs)
        with home_lock(s.state_dir, wait=s.lock_wait):
            s.holds_lock = True
            try:
                return fn(s, *args, **kwargs)
            finally:
                s.holds_lock = False

    return wrapper


@dataclass
class Session:
    """Everything one device's run needs, passed in explicitly."""

    backend: Any  # backends.base.Backend
    state_dir: Path
    device_id: str
    device_name: str = ""
    stores: Sequence[Any] = ()  # bridge.store.Store; the first is the primary
    passphrase: Callable[[], Secret] | None = None
    stats: Counter = field(default_factory=Counter)
    params: Any = None  # vault.KdfParams for new epochs
    note: Callable[[str], None] = lambda msg: None
    warn: Callable[[str], None] = lambda msg: None
    progress: Callable[[str, int, int], None] | None = None
    now: Callable[[], float] = time.time
    retention: Retention | None = None  # None: snapshots.Retention()'s defaults (not imported here)
    cache: Any = None  # vault.KeyCache; made by key_cache() on first use
    lock_wait: float = 120.0  # seconds to wait for another run of this device (bridge/lock.py)
    holds_lock: bool = field(default=False, repr=False)  # re-entry: change_passphrase runs sync

    def key_cache(self) -> Any:
        """This session's vault.KeyCache (one KDF per passphrase and header per session).

        Made on first use, not in ``__init__``: the no-change fast path must not import
        the vault module."""
        if self.cache is None:
            from .vault import KeyCache

            self.cache = KeyCache()
        return self.cache

    def get_passphrase(self) -> Secret:
        if self.passphrase is None:
            raise UsageError("the backup passphrase is needed")
        return self.passphrase()

    def load_state(self) -> SyncState:
        return SyncState.load(self.state_dir)

    def tick(self, what: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(what, done, total)


@dataclass
class SyncReport:
    mode: str
    dry_run: bool = False
    fast_path: bool = False
    uploaded: str | None = None
    added: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)
    received_added: list[str] = field(default_factory=list)
    received_updated: list[str] = field(default_factory=list)
    received_removed: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    store_errors: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    accounts: int = 0
    epoch: int = 0
    verified_at: float | None = None

    @property
    def changed(self) -> bool:
        return bool(self.uploaded or self.received_added or self.received_updated or self.received_removed)

    def to_json(self, stats: Counter) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dry_run": self.dry_run,
            "fast_path": self.fast_path,
            "changed": self.changed,
            "uploaded": self.uploaded,
            "sent": {"added": self.added, "edited": self.edited, "deleted": self.deleted, "counters": self.counters},
            "received": {
                "added": self.received_added,
                "updated": self.received_updated,
                "removed": self.received_removed,
            },
            "conflicts": [c.to_json() for c in self.conflicts],
            "pruned": self.pruned,
            "cleaned": self.cleaned,
            "warnings": self.warnings,
            "accounts": self.accounts,
            "epoch": self.epoch,
            "verified_at": self.verified_at,
            "stats": {k: int(stats.get(k, 0)) for k in STAT_KEYS},
        }


STAT_KEYS = ("kdf", "gpg", "listings", "uploads", "downloads", "verifications", "deletes")


def _check_device(s: Session, state: SyncState) -> None:
    if not state.vault_id:
        raise UsageError("this device has not joined a vault", hint="run 'otpbridge init REMOTE' first")
    if state.device and state.device != s.device_id:
        raise UsageError("the sync state belongs to another device id than the config")


def _fingerprints(stores: Sequence[Any]) -> dict[str, str | None]:
    return {store.label: store.fingerprint() for store in stores}


# --- sync and backup ---------------------------------------------------------------------
def fast_path(s: Session, state: SyncState) -> Listing | None | bool:
    """True when nothing changed (one listing, no key); else the listing if one was made."""
    if state.listing is None or state.base is None or not state.vault_id:
        return None
    fps = _fingerprints(s.stores)
    if any(v is None for v in fps.values()) or fps != state.fingerprints:
        return None
    infos = s.backend.list()
    if listing_signature(infos) == state.listing:
        return True
    from .remote import Listing

    return Listing.parse(infos)


def listing_signature(infos: Sequence[Any]) -> list[list]:
    """``remote.Listing.parse(infos).signature()`` without importing remote (its regexes and
    dataclasses cost ~4 ms of the no-change run): every listed object, as sorted
    ``[name, size]`` pairs. Should the two ever differ, the fast path is merely not taken:
    the state holds what ``Listing.signature()`` gave, so only an exact match skips work."""
    return sorted([info.name, int(info.size)] for info in infos)


@_exclusive
def sync(
    s: Session,
    *,
    mode: str = "sync",
    dry_run: bool = False,
    allow_deletions: bool = False,
    accept_rollback: bool = False,
    force: bool = False,
    tombstone_remote_only: bool = False,
    remove_devices: Sequence[str] = (),
    adopt_device: bool = False,
) -> SyncReport:
    """One run of ``sync`` (two-way) or ``backup`` (local → remote only).

    ``adopt_device``: another copy of this home wrote views under this device id (a
    copied or restored home, docs/SYNC.md "Copied homes"); merge them all and take the
    id over instead of refusing."""
    if mode not in ("sync", "backup"):
        raise ValueError(mode)
    state = s.load_state()
    _check_device(s, state)
    primary = s.stores[0] if s.stores else None
    if mode == "sync" and primary is not None and not getattr(primary, "can_write", lambda: True)():
        # Found out only after the upload, this failed every later run half-way through.
        raise UsageError(
            f"the primary store {primary.label} cannot be written, so it cannot receive other devices' changes",
            hint="use 'otpbridge backup' (one way), or make a writable store the first --store",
        )
    report = SyncReport(mode=mode, dry_run=dry_run)
    listing = None
    if not (force or tombstone_remote_only or remove_devices):
        quick = fast_path(s, state)
        if quick is True:
            report.fast_path = True
            report.accounts = state.accounts
            report.epoch = state.epoch
            return report
        listing = quick or None
    from .engine_core import _sync_slow

    return _sync_slow(
        s,
        state,
        report,
        listing,
        mode=mode,
        dry_run=dry_run,
        allow_deletions=allow_deletions,
        accept_rollback=accept_rollback,
        tombstone_remote_only=tombstone_remote_only,
        remove_devices=remove_devices,
        adopt_device=adopt_device,
    )


# --- after a failure (no passphrase, no remote) --------------------------------------------
def record_error(state_dir: Path, err: OtpBridgeError, when: float) -> None:
    """Remember the last failure of a run (status shows it; cron runs are otherwise silent)."""
    try:
        state = SyncState.load(state_dir)
        if not state.vault_id:
            return
        state.last_error = {"time": when, "exit": err.exit_code, "message": str(err)}
        state.save(state_dir)
    except (OtpBridgeError, OSError):
        pass
