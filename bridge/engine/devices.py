"""``otpbridge devices`` and ``snapshots``: what the listing alone tells (no passphrase)."""

from __future__ import annotations

from typing import Any

from otpbridge.engine.layout import (
    Listing,
)

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
from otpbridge.engine.session import Session
from otpbridge.engine.state import SyncState


# --- status, devices, snapshots (no passphrase) -----------------------------------------------
def devices(s: Session, state: SyncState) -> list[dict[str, Any]]:
    listing = Listing.parse(s.backend.list())
    epoch = max(listing.epochs(), default=0)
    out = []
    for dev, ref in sorted(listing.newest_views(epoch).items()):
        out.append(
            {
                "id": dev,
                "name": state.device_names.get(dev, ""),
                "this_device": dev == s.device_id,
                "seq": ref.seq,
                "last_write": ref.time,
                "views": len(listing.views_of(epoch, dev)),
                "removed": dev in state.removed,
            }
        )
    if s.device_id not in {d["id"] for d in out}:
        out.append({"id": s.device_id, "name": s.device_name, "this_device": True, "seq": 0,
                    "last_write": None, "views": 0, "removed": False})
    return out


def snapshots(s: Session, state: SyncState) -> list[dict[str, Any]]:
    listing = Listing.parse(s.backend.list())
    epoch = max(listing.epochs(), default=0)
    newest = listing.newest_views(epoch)
    out = []
    for ref in sorted(listing.views_of(epoch), key=lambda v: (v.time, v.device, v.seq), reverse=True):
        out.append(
            {
                "id": ref.snapshot_id,
                "device": ref.device,
                "device_name": state.device_names.get(ref.device, ""),
                "seq": ref.seq,
                "time": ref.time,
                "latest": newest.get(ref.device) == ref,
                "size": ref.size,
            }
        )
    return out
