"""``sync`` and ``backup`` up to the no-change fast path (SPEC §9: one listing, no key, no
decryption, and a wall time close to a bare ``rclone lsjson``, where Python's start-up is
most of the bill).

Only this module and :mod:`otpbridge.engine.session` are imported on that path; when a
run has more to do, :func:`sync` loads :mod:`otpbridge.engine.sync` (merge, remote,
vault, snapshots). Nothing imports this module back: the other operations call
:func:`otpbridge.engine.sync.sync_changes` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from otpbridge.engine.session import Session, SyncReport, exclusive, fingerprints, start_run
from otpbridge.engine.state import SyncState

if TYPE_CHECKING:
    from otpbridge.engine.layout import Listing


def fast_path(s: Session, state: SyncState) -> Listing | None | bool:
    """True when nothing changed (one listing, no key); else the listing if one was made."""
    if state.listing is None or state.base is None or not state.vault_id:
        return None
    fps = fingerprints(s.stores)
    if any(v is None for v in fps.values()) or fps != state.fingerprints:
        return None
    infos = s.backend.list()
    if listing_signature(infos) == state.listing:
        return True
    from otpbridge.engine.layout import Listing

    return Listing.parse(infos)


def listing_signature(infos: Sequence[Any]) -> list[list]:
    """``remote.Listing.parse(infos).signature()`` without importing remote (its regexes and
    dataclasses cost ~4 ms of the no-change run): every listed object, as sorted
    ``[name, size]`` pairs. Should the two ever differ, the fast path is merely not taken:
    the state holds what ``Listing.signature()`` gave, so only an exact match skips work."""
    return sorted([info.name, int(info.size)] for info in infos)


@exclusive
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

    ``force`` skips the fast path. ``adopt_device``: another copy of this home wrote views
    under this device id (a copied or restored home, docs/SYNC.md "Copied homes"); merge
    them all and take the id over instead of refusing."""
    state = start_run(s, mode)
    listing = None
    if not (force or tombstone_remote_only or remove_devices):
        quick = fast_path(s, state)
        if quick is True:
            report = SyncReport(mode=mode, dry_run=dry_run)
            report.fast_path = True
            report.accounts = state.accounts
            report.epoch = state.epoch
            return report
        listing = quick or None
    from otpbridge.engine.sync import sync_changes

    return sync_changes(
        s,
        state=state,
        listing=listing,
        mode=mode,
        dry_run=dry_run,
        allow_deletions=allow_deletions,
        accept_rollback=accept_rollback,
        tombstone_remote_only=tombstone_remote_only,
        remove_devices=remove_devices,
        adopt_device=adopt_device,
    )
