"""``otpbridge devices`` and ``snapshots``: what the listing alone tells (no passphrase)."""

from __future__ import annotations

from typing import Any

from otpbridge.engine.layout import (
    Listing,
)

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
from otpbridge.engine.session import Session, exclusive
from otpbridge.engine.state import SyncState


# --- status, devices, snapshots (no passphrase) -----------------------------------------------
def _listing(s: Session, state: SyncState) -> Listing:
    """The remote's listing; a vault this device knows that lists empty is first checked
    for an absent remote (an unmounted drive: exit 5, not an empty table)."""
    listing = Listing.parse(s.backend.list())
    if state.vault_id and not listing.headers and not listing.views:
        s.backend.check_present()
    return listing


def devices(s: Session, state: SyncState) -> list[dict[str, Any]]:
    listing = _listing(s, state)
    epoch = listing.listed_epoch()
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
                "last_seen": ref.time,
                "accounts": state.device_accounts.get(dev),
                "key": _key_label(state, dev),
            }
        )
    listed = {d["id"] for d in out}
    # Devices known by name (from views seen at the last sync) that have no view in this
    # epoch, and this device before its first upload: joined all the same.
    for dev in sorted(set(state.device_names) | {s.device_id}):
        if dev in listed or dev in state.removed:
            continue
        mine = dev == s.device_id
        out.append({"id": dev, "name": s.device_name if mine else state.device_names.get(dev, ""),
                    "this_device": mine, "seq": 0, "last_write": None, "views": 0,
                    "removed": dev in state.removed, "last_seen": None, "accounts": state.device_accounts.get(dev),
                    "key": _key_label(state, dev)})
    return out


def _key_label(state: SyncState, dev: str) -> str | None:
    """The key a device opened the vault with at its last upload (a shared vault: whose)."""
    slot = state.device_keys.get(dev)
    return state.key_names.get(slot, slot) if slot else None


def resolve_device(state: SyncState, listing_ids: set[str], text: str) -> str:
    """A device id from an id or a name (``devices remove NAME``); exit 2 when unknown or
    ambiguous."""
    from otpbridge.core.errors import UsageError

    known = listing_ids | set(state.device_names) | set(state.removed)
    if text in known:
        return text
    by_name = sorted(dev for dev, name in state.device_names.items() if name == text)
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise UsageError(f"{len(by_name)} devices are named {text!r}: {', '.join(by_name)}",
                         hint="give the id instead ('otpbridge devices' lists them)")
    raise UsageError(f"no such device {text} in the vault", hint="'otpbridge devices' lists names and ids")


def snapshots(s: Session, state: SyncState) -> list[dict[str, Any]]:
    listing = _listing(s, state)
    epoch = listing.listed_epoch()
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


@exclusive
def forget(s: Session, policy: Any, *, dry_run: bool = False) -> dict[str, Any]:
    """Delete this device's own snapshots that ``policy`` does not keep (never its newest,
    never another device's). No passphrase: names and times come from the listing."""
    from otpbridge.engine.snapshots import prune

    state = s.load_state()
    listing = _listing(s, state)
    epoch = listing.listed_epoch()
    own = listing.views_of(epoch, s.device_id)
    newest = max((v.seq for v in own), default=0)
    doomed = [v for v in prune(own, policy) if v.seq != newest and v.device == s.device_id]
    gone = {v.name for v in doomed}
    if not dry_run and doomed:
        for ref in doomed:
            s.backend.delete(ref.name)
            listing.remove(ref.name)
        if state.listing is not None:  # keep the no-change fast path: these were ours to delete
            state.listing = [e for e in state.listing if e[0] not in gone]
            state.save(s.state_dir)
    return {
        "device": s.device_id,
        "dry_run": dry_run,
        "policy": policy.to_config(),
        "kept": [v.snapshot_id for v in sorted(own, key=lambda v: v.seq) if v.name not in gone],
        "forgotten": [v.snapshot_id for v in sorted(doomed, key=lambda v: v.seq)],
    }
