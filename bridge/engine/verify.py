"""``otpbridge verify``: download and decrypt every object of the current epoch, check
every delta's chain (docs/SYNC.md "Deltas"); report, never repair."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from otpbridge.core.errors import (
    IntegrityError,
)
from otpbridge.engine.layout import (
    Listing,
)
from otpbridge.engine.merge import (
    Record,
    alive,
    merge_views,
)

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
from otpbridge.engine.remote import (
    BrokenChain,
    chain_link,
    check_size,
    extra_headers,
    open_key,
    open_state,
    open_view,
)
from otpbridge.engine.session import STAT_KEYS, Session
from otpbridge.engine.state import SyncState


# --- verify -------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    epoch: int
    headers: int = 0
    views: int = 0
    accounts: int = 0
    failures: list[str] = field(default_factory=list)
    other_epochs: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def to_json(self, stats: Counter) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["ok"] = not self.failures
        out["stats"] = {k: int(stats.get(k, 0)) for k in STAT_KEYS}
        return out


def verify(s: Session, state: SyncState) -> VerifyReport:
    """Download and decrypt every object of the current epoch; report, never repair."""
    from otpbridge.vault.format import max_header_size, peek_epoch

    passphrase = s.get_passphrase()
    listing = Listing.parse(s.backend.list())
    key, _ref = open_key(s, listing, state, passphrase)
    rep = VerifyReport(epoch=key.epoch)
    for h in listing.headers:
        try:
            check_size(h.name, h.size, max_header_size())
            info = peek_epoch(s.backend.read(h.name))
            if info.vault_id != key.vault_id or info.epoch != h.epoch:
                raise IntegrityError("belongs to another vault or epoch")
            rep.headers += 1
        except IntegrityError as exc:
            rep.failures.append(f"{h.name}: {exc}")
        if h.epoch != key.epoch:
            rep.other_epochs.append(h.name)
    for epoch in listing.epochs():
        if extra := extra_headers(listing, epoch):
            rep.failures.append(extra)
    views = listing.views_of(key.epoch)
    merged: list[dict[str, Record]] = []
    opened: dict[str, dict] = {}  # name -> the object, opened
    removed: dict[str, Any] = dict(state.removed)
    for i, ref in enumerate(views):
        s.tick("verifying", i, len(views))
        try:
            data = open_view(s, key, ref)
        except (IntegrityError, ValueError, KeyError, TypeError) as exc:
            rep.failures.append(f"{ref.name}: {exc}")
            continue
        rep.views += 1
        opened[ref.name] = data
        for dev, info in (data.get("removed") or {}).items():
            removed.setdefault(dev, info)
    # Every delta's chain: each link on the remote, of the right kind, and opening.
    failed = {f.partition(":")[0] for f in rep.failures}
    for ref in views:
        if ref.is_delta and ref.name in opened:
            try:
                chain_link(listing, ref, opened[ref.name], opener=lambda v: opened.get(v.name) or {})
            except BrokenChain as exc:
                rep.failures.append(str(exc))
    newest = listing.newest_views(key.epoch)
    for _dev, ref in sorted(newest.items()):
        if ref.name in failed:
            continue  # reported above
        try:
            data = open_state(s, key, listing, ref, opened=opened)
        except IntegrityError as exc:
            if not isinstance(exc, BrokenChain) or str(exc) not in rep.failures:
                rep.failures.append(f"{ref.name}: {exc}")
            continue
        merged.append(data["_records"])
    # Rollback: what opened of each device, newest first (a newest that failed is reported).
    opened_seq: dict[str, int] = {}
    for ref in views:
        if ref.name in opened:
            opened_seq[ref.device] = max(opened_seq.get(ref.device, 0), ref.seq)
    s.tick("verifying", len(views), len(views))
    rep.failures += _rollbacks(s, state, key.epoch, opened_seq, removed)
    rep.accounts = len(alive(merge_views(merged)))
    rep.other_epochs += [v.name for v in listing.views if v.epoch != key.epoch]
    rep.unknown = [n for n, _s in listing.other]
    return rep


def _rollbacks(s: Session, state: SyncState, epoch: int, opened: dict[str, int], removed: dict[str, Any]) -> list[str]:
    """What ``sync`` would refuse as a rollback, from this device's remembered state
    (remote.load_remote): an older epoch, or a device served older than seen before."""
    if state.epoch > epoch:
        return [f"rollback: the remote's epoch {epoch} is older than epoch {state.epoch} seen before"]
    if state.epoch < epoch:
        return []  # a passphrase change since: sync only warns about lost views
    out = []
    expected = dict(state.seen)
    if state.last_seq:
        expected[s.device_id] = state.last_seq
    for dev, seen in sorted(expected.items()):
        got = opened.get(dev, 0)
        if dev not in removed and got < seen:
            who = "this device" if dev == s.device_id else f"device {dev}"
            out.append(f"rollback: the remote serves {who} at #{got}, older than #{seen} seen before")
    return out
