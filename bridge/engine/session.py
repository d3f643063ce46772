"""The run's explicit objects: :class:`Session` (backend, stores, state folder, passphrase
getter, clock, counters) and :class:`SyncReport`, plus the checks every run starts with.

Deliberately light (no merge, remote, vault or snapshots: ~25 ms of imports), because
the no-change fast path (:mod:`otpbridge.engine.fastpath`) needs only this module; every
operation module builds on it. No module state, so two devices can run side by side in
one process.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otpbridge.core.errors import OtpBridgeError, UsageError
from otpbridge.engine.state import SyncState

if TYPE_CHECKING:
    from otpbridge.core.secrets import Secret
    from otpbridge.engine.merge import Conflict
    from otpbridge.engine.snapshots import Retention


def exclusive(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` holding this device's home lock: a timer, the git hook and a person may
    start runs of the same device at once, and they must not race on its sequence
    numbers or state file (other devices need no lock: they never share objects)."""

    @functools.wraps(fn)
    def wrapper(s: Session, *args: Any, **kwargs: Any) -> Any:
        from otpbridge.core.lock import home_lock

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
    tombstone_age: float | None = None  # seconds; None: engine.cache.DEFAULT_TOMBSTONE_AGE (30 days)
    deltas: str = "auto"  # [sync] deltas: "auto", "always" (whenever the chain allows), "never"
    cache: Any = None  # vault.KeyCache; made by key_cache() on first use
    lock_wait: float = 120.0  # seconds to wait for another run of this device (bridge/core/lock.py)
    holds_lock: bool = field(default=False, repr=False)  # re-entry: change_passphrase runs sync
    # The credential, asked once per session: a prompt must not ask twice, and a file
    # descriptor can be read only once (a passphrase change asks, then its sync does).
    credential: Any = field(default=None, repr=False)
    # Trust a version-2 header not linked to the vault authentication secret this device
    # knows (sync --accept-new-keys, after more key changes than headers keep links for).
    accept_new_keys: bool = False

    def key_cache(self) -> Any:
        """This session's vault.KeyCache (one KDF per passphrase and header per session).

        Made on first use, not in ``__init__``: the no-change fast path must not import
        the vault module."""
        if self.cache is None:
            from otpbridge.vault.format import KeyCache

            self.cache = KeyCache()
        return self.cache

    def get_passphrase(self) -> Secret:
        """The passphrase, recovery code or key file that opens the vault (core/secrets)."""
        if self.credential is None:
            if self.passphrase is None:
                raise UsageError("the backup passphrase is needed")
            self.credential = self.passphrase()
        return self.credential

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
    renamed: list[str] = field(default_factory=list)  # "Old → New": one account renamed/edited here
    deleted: list[str] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)
    received_added: list[str] = field(default_factory=list)
    received_updated: list[str] = field(default_factory=list)
    received_renamed: list[str] = field(default_factory=list)  # "Old → New", updated in place
    received_removed: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    store_errors: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    accounts: int = 0
    epoch: int = 0
    verified_at: float | None = None
    purged: int = 0  # tombstones left out of the uploaded view (causally stable, old enough)

    @property
    def changed(self) -> bool:
        return bool(self.uploaded or self.received_added or self.received_updated or self.received_renamed
                    or self.received_removed)

    def to_json(self, stats: Counter) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dry_run": self.dry_run,
            "fast_path": self.fast_path,
            "changed": self.changed,
            "uploaded": self.uploaded,
            "sent": {
                "added": self.added,
                "edited": self.edited,
                "renamed": self.renamed,
                "deleted": self.deleted,
                "counters": self.counters,
            },
            "received": {
                "added": self.received_added,
                "updated": self.received_updated,
                "renamed": self.received_renamed,
                "removed": self.received_removed,
            },
            "conflicts": [c.to_json() for c in self.conflicts],
            "pruned": self.pruned,
            "cleaned": self.cleaned,
            "warnings": self.warnings,
            "accounts": self.accounts,
            "epoch": self.epoch,
            "verified_at": self.verified_at,
            "purged_tombstones": self.purged,
            "stats": {k: int(stats.get(k, 0)) for k in STAT_KEYS},
        }


STAT_KEYS = ("kdf", "gpg", "listings", "uploads", "downloads", "verifications", "deletes")


def check_device(s: Session, state: SyncState) -> None:
    if not state.vault_id:
        raise UsageError("this device has not joined a vault", hint="run 'otpbridge init REMOTE' first")
    if state.device and state.device != s.device_id:
        raise UsageError("the sync state belongs to another device id than the config")


def check_stores_exist(stores: Sequence[Any]) -> None:
    """A configured store that is not there is exit 5 naming it: read as empty, a run
    from another folder (cron, systemd) would silently do nothing. ``?create=1`` (init
    ``--create``) allows a store that is still to be made."""
    from otpbridge.core.errors import UnreachableError

    for store in stores:
        spec = getattr(store, "spec", None)
        if spec is None or store.exists() or str(spec.options.get("create", "")).lower() in ("1", "yes", "true"):
            continue
        bak = store.path.with_name(store.path.name + ".bak") if store.path.parts else None
        keep = (f"otpbridge kept its previous version as {bak}: copy it back, or "
                if bak is not None and bak.is_file() else "restore the file, ")
        raise UnreachableError(
            f"the configured store {store.label} does not exist",
            hint=keep + "fix the path in config.toml, or bring the accounts back with 'otpbridge restore'",
        )


def fingerprints(stores: Sequence[Any]) -> dict[str, str | None]:
    return {store.label: store.fingerprint() for store in stores}


def start_run(s: Session, mode: str) -> SyncState:
    """The checks of a sync or backup run before anything is read: the device has joined,
    and a two-way sync can write its primary store."""
    if mode not in ("sync", "backup"):
        raise ValueError(mode)
    state = s.load_state()
    check_device(s, state)
    check_stores_exist(s.stores)
    primary = s.stores[0] if s.stores else None
    if mode == "sync" and primary is not None and not getattr(primary, "can_write", lambda: True)():
        # Found out only after the upload, this failed every later run half-way through.
        raise UsageError(
            f"the primary store {primary.label} cannot be written, so it cannot receive other devices' changes",
            hint="use 'otpbridge backup' (one way), or make a writable store the first --store",
        )
    return state


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
