"""The work of ``sync``/``backup`` past the no-change fast path (docs/SYNC.md).

:mod:`otpbridge.engine.fastpath` calls :func:`sync_changes` only when a run has more to do
than one listing; this module never imports the fast path back.

Order of every writing run, chosen so a failure anywhere loses nothing:
list → (decrypt) → read stores → merge → upload this device's view → read it back and
decrypt it → only then change the local primary store → save the local state. A remote
failure therefore leaves the store untouched, and a crash after the upload is repaired
by the next run (its changes compare equal to the remote and are not repeated).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from otpbridge.core.errors import (
    DataLossRefused,
    IntegrityError,
    UsageError,
)
from otpbridge.engine.cache import DEFAULT_TOMBSTONE_AGE, ViewMeta, purgeable, tidy_headers
from otpbridge.engine.cache import meta_of as cache_meta_of
from otpbridge.engine.cache import save as cache_save
from otpbridge.engine.layout import (
    Listing,
    ViewRef,
)
from otpbridge.engine.local import LocalRead, load_store_cache, read_stores
from otpbridge.engine.merge import (
    BaseEntry,
    Changes,
    Record,
    alive,
    digest,
    local_changes,
    max_clock,
    merge_views,
    rank_text,
    union,
)
from otpbridge.engine.remote import (
    Remote,
    cleanup_epochs,
    delete_object,
    format_time,
    load_remote,
    open_view,
    upload_view,
)
from otpbridge.engine.session import Session, SyncReport, exclusive, fingerprints, start_run
from otpbridge.engine.snapshots import Retention, prune
from otpbridge.engine.state import SyncState, new_token

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
MAX_DELETIONS = 3
MAX_DELETION_SHARE = 0.30


@exclusive
def sync_changes(
    s: Session,
    *,
    state: SyncState | None = None,
    listing: Listing | None = None,
    mode: str = "sync",
    dry_run: bool = False,
    allow_deletions: bool = False,
    accept_rollback: bool = False,
    tombstone_remote_only: bool = False,
    remove_devices: Sequence[str] = (),
    adopt_device: bool = False,
) -> SyncReport:
    """A sync or backup run that does the work: no fast path (:func:`otpbridge.engine.fastpath.sync`
    tries that first and passes its ``state`` and ``listing`` on; a passphrase change calls
    this directly)."""
    if state is None:
        state = start_run(s, mode)
    report = SyncReport(mode=mode, dry_run=dry_run)
    passphrase = s.get_passphrase()
    remote = load_remote(s, state, passphrase, listing=listing, accept_rollback=accept_rollback, use_cache=True)
    report.warnings += remote.warnings
    report.epoch = remote.epoch
    _check_removals(remote, remove_devices)
    # Before anything is written anywhere: views under this id that this home did not write.
    foreign = _foreign_own_views(s, state, remote)
    if foreign and not adopt_device:
        raise _clone_error(s, state, remote, foreign)
    adopted: list[ViewRef] = []
    if foreign:
        adopted = _adopt(s, state, remote, foreign, report)
    if s.device_id in remote.removed:
        info = remote.removed[s.device_id]
        raise UsageError(
            f"this device was removed from the vault by {info.get('by', '?')} at {format_time(info.get('at', 0))}",
            hint="run 'otpbridge init REMOTE' in a fresh OTPBRIDGE_HOME to join again",
        )
    cache = load_store_cache(s, remote.key)
    local = read_stores(s, state, cache, remote.key)
    report.store_errors = list(local.errors)
    base = None if (state.base is None or remote.own_regressed) else state.base
    if base is not None:
        # Records are never dropped from views, so an account of the base that no view
        # holds at all was lost on the way (our view overwritten or shadowed by another
        # copy of this home): send it again as an addition.
        base = {rid: entry for rid, entry in base.items() if rid in remote.records}
    if remote.own_regressed and state.base is not None:
        report.warnings.append("this device's last changes are not on the remote; remote copies win where they differ")
    keep = frozenset(getattr(s.stores[0], "drops", frozenset())) if s.stores else frozenset()
    changes = local_changes(local.union, base, remote.records, device=s.device_id, base_clock=state.clock,
                            keep_remote=keep)
    if local.errors and changes.deleted:
        report.warnings.append(
            f"{len(changes.deleted)} deletion(s) not sent: some entries of the stores could not be read"
        )
        for rid in changes.deleted:
            changes.records.pop(rid, None)
        changes.deleted = []
    if tombstone_remote_only:
        _tombstone_remote_only(changes, local.union, remote.records, s.device_id, state.clock)
    _guard_deletions(changes, state, remote.records, allow_deletions or tombstone_remote_only)
    merged = merge_views([remote.records, changes.records])
    report.added, report.edited = _labels(changes.added, merged, remote), _labels(changes.edited, merged, remote)
    report.deleted = _labels(changes.deleted, merged, remote)
    report.counters = _labels(changes.counters, merged, remote)
    report.conflicts = changes.conflicts
    final = alive(merged)
    report.accounts = len(final)
    own_view = remote.views.get(s.device_id)
    need_upload = bool(changes) or bool(remove_devices) or bool(foreign)  # adopting: our view must be newest
    if own_view is None and final and (mode == "backup" or s.device_id not in remote.listing.newest_views(remote.epoch)):
        # A backup run leaves this device's copy on the remote; a sync makes this device
        # visible, so no tombstone it has not merged is purged (docs/SYNC.md "Bounded remote").
        need_upload = True
    listing = remote.listing
    if dry_run:
        if need_upload:
            report.uploaded = "(dry run)"
        if mode == "sync" and s.stores:
            _apply_primary(s, state, local, merged, final, base, report, dry_run=True)
        return report
    removed = dict(remote.removed)
    for dev in remove_devices:
        removed[dev] = {"by": s.device_id, "at": int(s.now())}
    seen = {dev: ref.seq for dev, (ref, _d) in remote.views.items()}
    last_seq = state.last_seq
    own_meta: ViewMeta | None = None
    if need_upload:
        seq = max(state.last_seq, listing.max_seq(s.device_id)) + 1
        names = dict(remote.names)
        if s.device_name:
            names[s.device_id] = s.device_name
        nonce = new_token()
        purged = _purgeable(s, state, remote, base)
        # Saved before the upload: a crash after it is then recognised as our own write.
        state.token = state.token or new_token()
        state.pending = {"seq": seq, "w": nonce}
        state.save(s.state_dir)
        payload = {
            "w": nonce,  # this write's random nonce; the state keeps it (copied homes)
            "home": state.token,
            "prev": last_seq,  # the own view this one was built on
            "v": 1,
            "device": s.device_id,
            "name": s.device_name,
            "seq": seq,
            "epoch": remote.epoch,
            "time": int(s.now()),
            "clock": max_clock(merged),
            "removed": removed,
            "devices": names,
            # Version vector: the view of each device this one merged (tombstone purge).
            "vv": {dev: ref.seq for dev, (ref, _d) in sorted(remote.views.items()) if dev != s.device_id},
            "records": [r.to_json() for rid, r in sorted(merged.items()) if rid not in purged],
        }
        started = time.time()
        name = upload_view(s, remote.key, payload, listing)
        window = [started, time.time()]
        report.purged = _mark_purged(remote, purged)
        own_meta = ViewMeta(name, _listed_size(listing, name), seq, cache_meta_of(payload), window=window)
        report.uploaded = name
        seen[s.device_id] = seq
        last_seq = seq
        state.writes[str(seq)] = nonce
    report.verified_at = s.now()
    # Housekeeping: only our own objects (and leftovers nobody can read any more).
    if report.uploaded:
        for ref in adopted:  # merged into the view just verified: superseded
            if ref.name != report.uploaded:
                delete_object(s, listing, ref.name)
                report.cleaned.append(ref.name)
    for ref in remote.garbage:
        if ref in foreign:
            continue  # another copy's view that does not open (yet): not ours to delete
        delete_object(s, listing, ref.name)
        report.cleaned.append(ref.name)
    own = listing.views_of(remote.epoch, s.device_id)
    for ref in prune(own, s.retention if s.retention is not None else Retention()):
        if ref.seq == last_seq:
            continue
        delete_object(s, listing, ref.name)
        report.pruned.append(ref.name)
    for dev in remove_devices:
        for ref in [v for v in listing.views if v.device == dev]:
            delete_object(s, listing, ref.name)
            report.cleaned.append(ref.name)
    report.cleaned += cleanup_epochs(s, listing, remote)
    # Only now touch the local primary store.
    if mode == "sync" and s.stores:
        after = _apply_primary(s, state, local, merged, final, base, report, dry_run=False)
    else:
        after = None
    new_base: dict[str, BaseEntry] = {}
    source = after if after is not None else local.union
    for rid, acc in source.items():
        rec = merged.get(rid)
        if after is not None:
            applied = rank_text(rec)
        else:
            old = (base or {}).get(rid)
            applied = old.applied if old else (rank_text(rec) if rec is not None and rec.device == s.device_id else "")
        new_base[rid] = BaseEntry(digest(acc), acc.counter, applied)
    state.base = new_base
    state.clock = max(state.clock, max_clock(merged))
    state.epoch = remote.epoch
    state.last_seq = last_seq
    state.seen = {dev: max(state.seen.get(dev, 0), seq) for dev, seq in seen.items() if dev != s.device_id}
    state.removed = {d: i for d, i in removed.items()}
    state.device_names.update(remote.names)
    if s.device_name:
        state.device_names[s.device_id] = s.device_name
    state.fingerprints = {k: v for k, v in fingerprints(s.stores).items() if v is not None}
    # A view we could not read must not count as seen: the fast path would skip it for good.
    unread = {ref.name for ref in remote.skipped}
    state.listing = [entry for entry in listing.signature() if entry[0] not in unread]
    state.last_verified_backup = report.verified_at
    state.last_sync = s.now()
    state.last_error = None
    state.accounts = len(final)
    state.token = state.token or new_token()
    state.pending = None
    keep = sorted((int(k) for k in state.writes), reverse=True)[:WRITES_KEPT]
    state.writes = {str(k): state.writes[str(k)] for k in sorted(keep)}
    state.save(s.state_dir)
    if remote.cache is not None:
        # After the state: a crash in between leaves an older cache (more downloads, no harm).
        remote.cache.records = merged
        if own_meta is not None:
            remote.cache.views[s.device_id] = own_meta
            remote.cache.merged_from.add(s.device_id)
            for rid, rec in merged.items():  # deletions made here: first held by this view
                if rec.deleted and rec.device == s.device_id and remote.cache.tombs.get(rid, [])[:2] != [rec.device, rec.clock]:
                    remote.cache.tombs[rid] = [rec.device, rec.clock, last_seq, s.now()]
        cache_save(s, remote.key, remote.cache)
        tidy_headers(s, {h.name for h in listing.headers})
    return report


def _mark_purged(remote: Remote, purged: set[str]) -> int:
    """How many of ``purged`` this device left out for the first time (the report's count)."""
    new = 0
    for rid in purged:
        entry = remote.cache.tombs[rid]
        if len(entry) < 5:
            entry.append(True)
            new += 1
    return new


def _listed_size(listing: Listing, name: str) -> int:
    return next(v.size for v in listing.views if v.name == name)


def _purgeable(s: Session, state: SyncState, remote: Remote, base: dict[str, BaseEntry] | None) -> set[str]:
    if remote.cache is None:
        return set()
    live = {dev for dev in remote.listing.newest_views(remote.epoch) if dev not in remote.removed}
    age = s.tombstone_age if s.tombstone_age is not None else DEFAULT_TOMBSTONE_AGE
    return purgeable(remote.cache, remote.views, live, s.device_id, base, s.now(), age)


WRITES_KEPT = 64  # nonces of own views remembered (only the newest own view is compared)


def _check_removals(remote: Remote, remove_devices: Sequence[str]) -> None:
    known = {v.device for v in remote.listing.views} | set(remote.names) | set(remote.removed)
    for dev in remove_devices:
        if dev not in known:
            raise UsageError(f"no such device {dev} in the vault", hint="'otpbridge devices' lists them")


def _foreign_own_views(s: Session, state: SyncState, remote: Remote) -> list[ViewRef]:
    """Views under this device id that this home did not write (docs/SYNC.md "Copied homes").

    This home wrote exactly: the views up to ``state.last_seq`` (the newest of them with
    the nonce ``state.writes`` recorded) and at most one more, the ``pending`` upload of
    a run that stopped before saving the state. Anything else — a view beyond those, two
    views with one sequence number, a nonce that is not ours — came from another home
    with the same device id: a copy of this home, or this home's own future when it was
    restored from an old backup. No data tells those two apart, so both are refused.
    """
    if not state.token:
        return []  # a state saved by an older otpbridge recorded no writes: nothing to compare
    me = s.device_id
    mine = remote.listing.views_of(remote.epoch, me)
    pending = state.pending or {}
    counts = Counter(v.seq for v in mine)
    foreign = [v for v in mine if counts[v.seq] > 1 or (v.seq > state.last_seq and v.seq != pending.get("seq"))]
    if me in remote.views:
        ref, data = remote.views[me]
        if ref.seq > state.last_seq and ref.seq == pending.get("seq"):
            expected: str | None = pending.get("w")
        else:
            expected = state.writes.get(str(ref.seq))
        if expected is not None and data.get("w") != expected and ref not in foreign:
            foreign.append(ref)
        elif expected is not None and ref.seq > state.last_seq and ref not in foreign:
            # Our own upload of a run that stopped before saving the state: confirmed.
            state.writes[str(ref.seq)] = expected
            state.last_seq = ref.seq
    return sorted(foreign, key=lambda v: (v.seq, v.name))


def _clone_error(s: Session, state: SyncState, remote: Remote, foreign: list[ViewRef]) -> DataLossRefused:
    """Exit 6, like the mass-deletion guard: going on could lose data; a flag overrides."""
    first, last = foreign[0], foreign[-1]
    seqs = f"#{first.seq}" if first.seq == last.seq else f"#{first.seq}..#{last.seq}"
    return DataLossRefused(
        f"this home's device id {s.device_id} is also used by another copy of this home: "
        f"{len(foreign)} view(s) under it ({seqs}, the last written {format_time(last.time)}) were not written here; "
        "nothing was changed",
        hint="if two machines (or folders) share this home, run 'otpbridge init REMOTE --store …' in a fresh, "
        "empty OTPBRIDGE_HOME on one of them (it gets a new device id; its first sync keeps every account); "
        "if this home was restored from an old backup and no other copy runs any more, run "
        "'otpbridge sync --adopt-device' (it merges every view first, then takes the id over)",
    )


def _adopt(
    s: Session, state: SyncState, remote: Remote, foreign: list[ViewRef], report: SyncReport
) -> list[ViewRef]:
    """Merge every view of this id we did not write (not only the newest: two copies may
    have written the same sequence number), so taking the id over loses nothing. Returns
    the views merged: once the new view (which holds them) is verified they are deleted,
    or their duplicate sequence numbers would refuse every later run of this home."""
    extra = [remote.records]
    merged: list[ViewRef] = []
    for ref in foreign:
        if remote.views.get(s.device_id, (None,))[0] == ref:
            merged.append(ref)
            continue  # merged already
        try:
            extra.append(open_view(s, remote.key, ref)["_records"])
            merged.append(ref)
        except (IntegrityError, ValueError, KeyError, TypeError) as exc:
            report.warnings.append(f"{ref.name} (another copy of this home) does not open and is left alone: {exc}")
    remote.records = merge_views(extra)
    report.warnings.append(
        f"{'would take' if report.dry_run else 'took'} over device id {s.device_id}: merged {len(foreign)} "
        "view(s) another copy of this home wrote; that copy is refused from now on"
    )
    return merged

def _labels(ids: Sequence[str], merged: dict[str, Record], remote: Remote) -> list[str]:
    out = []
    for rid in ids:
        rec = merged.get(rid)
        acc = rec.account if rec is not None and rec.account is not None else None
        if acc is None and rid in remote.records and remote.records[rid].account is not None:
            acc = remote.records[rid].account
        out.append(acc.label if acc is not None else rid)
    return out


def _guard_deletions(changes: Changes, state: SyncState, remote: dict[str, Record], allow: bool) -> None:
    n = len(changes.deleted)
    if allow or n == 0:
        return
    total = max(len(state.base or {}), 1)
    if n > MAX_DELETIONS or (n >= 2 and n / total > MAX_DELETION_SHARE):
        labels = []
        for rid in changes.deleted[:10]:
            rec = remote.get(rid)
            labels.append(rec.account.label if rec is not None and rec.account is not None else rid)
        more = f" and {n - 10} more" if n > 10 else ""
        raise DataLossRefused(
            f"this run would delete {n} of {total} accounts from the vault ({', '.join(labels)}{more})",
            hint="if the stores really lost them on purpose, run again with --allow-deletions; "
            "if a store could not be read properly, fix it first",
        )


def _tombstone_remote_only(
    changes: Changes, local: dict[str, Any], remote: dict[str, Record], device: str, base_clock: int
) -> None:
    clock = max(base_clock, max_clock(remote), max((r.clock for r in changes.records.values()), default=0)) + 1
    for rid, rec in sorted(remote.items()):
        if rec.account is not None and rid not in local and rid not in changes.records:
            changes.records[rid] = Record(rid, clock, device, None, rec.counter)
            changes.deleted.append(rid)


def _apply_primary(
    s: Session,
    state: SyncState,
    local: LocalRead,
    merged: dict[str, Record],
    final: dict[str, Any],
    base: dict[str, BaseEntry] | None,
    report: SyncReport,
    *,
    dry_run: bool,
) -> dict[str, Any] | None:
    primary = s.stores[0]
    prim = {a.identity: a for a in local.per_store[0]}
    upserts = []
    for rid, acc in final.items():
        have = prim.get(rid)
        if have is None:
            upserts.append(acc)
            continue
        entry = (base or {}).get(rid)
        fresh = base is None or entry is None or entry.applied != rank_text(merged.get(rid))
        if fresh and have != acc:
            upserts.append(acc)
        elif acc.counter > have.counter:
            upserts.append(have.replace(counter=acc.counter))
    removals = [a for rid, a in prim.items() if rid in merged and merged[rid].deleted]
    if not upserts and not removals:
        return None if dry_run else _union_after(local, prim)
    wr = primary.apply(upserts, removals, dry_run=dry_run)
    report.received_added = [a.label for a in wr.added]
    report.received_updated = [a.label for a in wr.updated]
    report.received_removed = [a.label for a in wr.removed]
    report.store_errors += list(wr.errors)
    if dry_run:
        return None
    after = primary.read()
    return union([after.accounts, *local.per_store[1:]])


def _union_after(local: LocalRead, prim: dict[str, Any]) -> dict[str, Any]:
    return local.union
