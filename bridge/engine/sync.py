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

from otpbridge.core.activity import detail, step
from otpbridge.core.errors import (
    DataLossRefused,
    IntegrityError,
    UnsafeObject,
    UsageError,
)
from otpbridge.engine.cache import DEFAULT_TOMBSTONE_AGE, ViewMeta, live_accounts, purgeable, tidy_headers
from otpbridge.engine.cache import meta_of as cache_meta_of
from otpbridge.engine.cache import save as cache_save
from otpbridge.engine.layout import (
    MAX_VIEW_SEQ,
    Listing,
    ViewRef,
    check_seq,
    encode_view,
    record_fp,
)
from otpbridge.engine.local import LocalRead, load_store_cache, read_stores
from otpbridge.engine.merge import (
    VIEW_VERSION,
    BaseEntry,
    Changes,
    Record,
    alive,
    assign_ids,
    base_entry,
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
    link_ref,
    load_remote,
    open_state,
    open_view,
    quarantine_hint,
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
    resurrect: Sequence[Any] = (),
    announce: bool = False,
) -> SyncReport:
    """A sync or backup run that does the work: no fast path (:func:`otpbridge.engine.fastpath.sync`
    tries that first and passes its ``state`` and ``listing`` on; a passphrase change calls
    this directly).

    ``resurrect``: accounts a ``restore`` put back into a store of this device. They are
    sent as this device's new change (a newer clock) wherever the vault holds a deletion
    or other fields, so the restore wins over the older deletion on every device.
    """
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
    _refuse_junk(s, remote, foreign)
    if foreign and not adopt_device:
        raise _clone_error(s, state, remote, foreign)
    adopted: list[ViewRef] = []
    if foreign:
        adopted = _adopt(s, state, remote, foreign, report)
    if s.device_id in remote.removed:
        info = remote.removed[s.device_id]
        raise UsageError(
            f"this device was removed from the vault by {_name_of(s, state, remote, str(info.get('by', '?')))} "
            f"at {format_time(info.get('at', 0))}",
            hint="run 'otpbridge init REMOTE' in a fresh OTPBRIDGE_HOME to join again",
        )
    cache = load_store_cache(s, remote.key)
    # Taken before the read: an edit made while this run works must not hide inside the
    # fingerprint the fast path compares next time (it would never be sent).
    read_fps = fingerprints(s.stores)
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
    # Record ids are stable across renames (SPEC §3): map what the stores hold to them.
    rid_of = assign_ids(local.union.values(), base, remote.records)
    local_ids = {rid_of[i]: acc for i, acc in local.union.items()}
    changes = local_changes(local_ids, base, remote.records, device=s.device_id, base_clock=state.clock,
                            keep_remote=keep)
    detail("views merged: %s; local changes: %d added, %d edited, %d deleted, %d counters; %d conflicts",
           ", ".join(f"{remote.names.get(d, d)} #{ref.seq}" for d, (ref, _v) in sorted(remote.views.items())) or "none",
           len(changes.added), len(changes.edited), len(changes.deleted), len(changes.counters),
           len(changes.conflicts))
    if local.errors and changes.deleted:
        report.warnings.append(
            f"{len(changes.deleted)} deletion(s) not sent: some entries of the stores could not be read"
        )
        for rid in changes.deleted:
            changes.records.pop(rid, None)
        changes.deleted = []
    if resurrect:
        _resurrect(changes, resurrect, remote.records, s.device_id, state.clock)
    if tombstone_remote_only:
        _tombstone_remote_only(changes, local_ids, remote.records, s.device_id, state.clock)
    # --discard-remote-only deletes on purpose, but no more freely than any other run.
    _guard_deletions(changes, state, remote.records, allow_deletions)
    merged = merge_views([remote.records, changes.records])
    renamed = set(changes.renamed)
    report.added = _labels(changes.added, merged, remote)
    report.edited = _labels([r for r in changes.edited if r not in renamed], merged, remote)
    report.renamed = [_rename_label(rid, merged, remote) for rid in changes.renamed]
    report.deleted = _labels(changes.deleted, merged, remote)
    report.counters = _labels(changes.counters, merged, remote)
    report.conflicts = changes.conflicts
    for c in report.conflicts:
        _describe_conflict(s, state, remote, c)
    lost = _conflicts_lost_here(s, state, remote)
    report.conflicts += lost
    final = alive(merged)
    # two records may come to hold one account (renamed here, added the same elsewhere): count it once
    report.accounts = len({a.identity for a in final.values()})
    own_view = remote.views.get(s.device_id)
    need_upload = bool(changes) or bool(remove_devices) or bool(foreign)  # adopting: our view must be newest
    need_upload = need_upload or announce
    if own_view is None and final and (mode == "backup" or s.device_id not in remote.listing.newest_views(remote.epoch)):
        # A backup run leaves this device's copy on the remote; a sync makes this device
        # visible, so no tombstone it has not merged is purged (docs/SYNC.md "Bounded remote").
        need_upload = True
    listing = remote.listing
    if dry_run:
        if need_upload:
            report.uploaded = "(dry run)"
        for dev in remove_devices:  # what the real run would delete (its objects)
            report.cleaned += sorted(v.name for v in listing.views if v.device == dev)
        if mode == "sync" and s.stores:
            _apply_primary(s, state, local, merged, final, base, report, rid_of, dry_run=True)
        return report
    removed = dict(remote.removed)
    for dev in remove_devices:
        removed[dev] = {"by": s.device_id, "at": int(s.now())}
    seen = {dev: ref.seq for dev, (ref, _d) in remote.views.items()}
    last_seq = state.last_seq
    own_meta: ViewMeta | None = None
    if need_upload:
        seq = max(state.last_seq, listing.max_seq(s.device_id)) + 1
        if seq > MAX_VIEW_SEQ:  # a name the listing could not read would hide this view from all
            top = max((v for v in listing.views if v.device == s.device_id), key=lambda v: v.seq)
            raise IntegrityError(
                f"{top.name} leaves this device no sequence number that fits in a view name",
                hint=quarantine_hint(top.name),
            )
        check_seq(seq)
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
            "v": VIEW_VERSION,
            "device": s.device_id,
            "name": s.device_name,
            "seq": seq,
            "epoch": remote.epoch,
            "time": int(s.now()),
            "clock": max_clock(merged),
            "removed": removed,
            "devices": names,
            "conflicts": _conflicts_to_send(s, remote, report.conflicts, seq),
            # Version vector: the view of each device this one merged (tombstone purge).
            "vv": {dev: ref.seq for dev, (ref, _d) in sorted(remote.views.items()) if dev != s.device_id},
            # The key slot this run opened with ("" for a version-1 vault): `devices` shows
            # whose each device is in a shared vault (docs/SYNC.md "Shared vaults").
            "key": remote.key.slot,
            # Accounts alive in this view: what `devices` shows when a reader has only a delta.
            "live": sum(1 for rid, r in merged.items() if rid not in purged and not r.deleted),
        }
        records_json = {rid: r.to_json() for rid, r in sorted(merged.items()) if rid not in purged}
        fp_new = {rid: record_fp(j) for rid, j in records_json.items()}
        payload = (_as_delta(s, remote, listing, payload, records_json, fp_new, last_seq, bool(foreign))
                   or dict(payload, records=list(records_json.values())))
        started = time.time()
        name = upload_view(s, remote.key, payload, listing)
        window = [started, time.time()]
        report.purged = _mark_purged(remote, purged)
        own_meta = ViewMeta(name, _listed_size(listing, name), seq, cache_meta_of(payload), window=window, fp=fp_new)
        if payload.get("base") and own_view is not None:  # a delta: the previous object's chain, and itself
            prev_ref, prev_data = own_view
            before = prev_data.get("_links") or [prev_ref.base, prev_ref.seq] if prev_ref.is_delta else [prev_ref.seq]
            own_meta.meta["links"] = [*before, seq]
            prev_refs = prev_data.get("_link_refs") if prev_ref.is_delta else [link_ref(prev_ref)]
            if prev_refs:  # (a cache kept before link refs were: the seq check only)
                own_meta.meta["link_refs"] = [*prev_refs, [name, own_meta.size, None]]
        report.uploaded = name
        seen[s.device_id] = seq
        last_seq = seq
        state.writes[str(seq)] = nonce
    report.verified_at = s.now()
    # Housekeeping: only our own objects (and leftovers nobody can read any more).
    if report.uploaded:
        # Merged into the view just verified: superseded; and so are this device's older
        # deltas that built on them (their chains are cut). Newest first (see below).
        doomed = {ref.name: ref for ref in adopted if ref.name != report.uploaded}
        cut = {ref.seq for ref in doomed.values()}
        for ref in sorted(listing.views_of(remote.epoch, s.device_id), key=lambda v: v.seq):
            if ref.is_delta and ref.name != report.uploaded and any(ref.base <= x < ref.seq for x in cut):
                doomed[ref.name] = ref
                cut.add(ref.seq)
        for ref in sorted(doomed.values(), key=lambda v: v.seq, reverse=True):
            delete_object(s, listing, ref.name)
            report.cleaned.append(ref.name)
    for ref in remote.garbage:
        if ref in foreign:
            continue  # another copy's view that does not open (yet): not ours to delete
        delete_object(s, listing, ref.name)
        report.cleaned.append(ref.name)
    own = listing.views_of(remote.epoch, s.device_id)
    # Newest first, here and below: a run that stops half-way leaves every chain whole (a
    # delta is never left without the objects it builds on; docs/SYNC.md "Deltas").
    for ref in prune(own, s.retention if s.retention is not None else Retention()):
        if ref.seq == last_seq:
            continue
        delete_object(s, listing, ref.name)
        report.pruned.append(ref.name)
    for dev in remove_devices:
        for ref in sorted([v for v in listing.views if v.device == dev], key=lambda v: v.seq, reverse=True):
            delete_object(s, listing, ref.name)
            report.cleaned.append(ref.name)
    report.cleaned += cleanup_epochs(s, listing, remote)
    # Only now touch the local primary store.
    if mode == "sync" and s.stores:
        before_write = s.stores[0].fingerprint()
        after = _apply_primary(s, state, local, merged, final, base, report, rid_of, dry_run=False)
    else:
        before_write, after = None, None
    new_base: dict[str, BaseEntry] = {}
    source = after if after is not None else local_ids
    for rid, acc in source.items():
        rec = merged.get(rid)
        if after is not None:
            applied = rank_text(rec)
        else:
            old = (base or {}).get(rid)
            applied = old.applied if old else (rank_text(rec) if rec is not None and rec.device == s.device_id else "")
        new_base[rid] = base_entry(acc, applied)
    state.base = new_base
    state.clock = max(state.clock, max_clock(merged))
    state.epoch = remote.epoch
    state.header = remote.header.name
    from otpbridge.vault.keyring import auth_of, hint_of

    state.slot = hint_of(remote.key, state.slot)
    state.vault_auth = auth_of(remote.key, state.vault_auth)
    state.last_seq = last_seq
    # An accepted rollback is the new truth: remembering the newer numbers would refuse
    # (and make verify fail) again on every later run.
    state.seen = {dev: seq if accept_rollback else max(state.seen.get(dev, 0), seq)
                  for dev, seq in seen.items() if dev != s.device_id}
    state.removed = {d: i for d, i in removed.items()}
    state.device_names.update(remote.names)
    state.device_keys = {dev: str(data["key"]) for dev, (_ref, data) in remote.views.items()
                         if dev != s.device_id and data.get("key")}
    if remote.key.slot:
        state.device_keys[s.device_id] = remote.key.slot
    ring = getattr(remote.key, "keyring", None)
    state.key_names = {x.id: x.describe() for x in ring.slots} if ring is not None else {}
    counts = {dev: live_accounts(data) for dev, (_ref, data) in remote.views.items() if dev != s.device_id}
    state.device_accounts = {dev: n for dev, n in counts.items() if n is not None}
    state.device_accounts[s.device_id] = len(final)
    if s.device_name:
        state.device_names[s.device_id] = s.device_name
    state.fingerprints = _settled_fingerprints(s, read_fps, before_write)
    # A view we could not read must not count as seen: the fast path would skip it for good.
    unread = {ref.name for ref in remote.skipped}
    state.listing = [entry for entry in listing.signature() if entry[0] not in unread]
    state.last_verified_backup = report.verified_at
    state.last_sync = s.now()
    state.last_error = None
    state.accounts = report.accounts
    state.token = state.token or new_token()
    state.pending = None
    state.conflicts_seen = (state.conflicts_seen + [_seen_key(c) for c in lost])[-CONFLICTS_KEPT:]
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


def announce(s: Session) -> None:
    """After joining (``init``): upload this device's first view (the vault as merged,
    nothing of its stores yet), so every device lists it from now on (``devices``), even
    before its first sync. The state keeps no base: the first sync is still a join (local
    accounts kept). A failure only warns: the device has joined all the same."""
    from otpbridge.core.errors import OtpBridgeError

    stores, s.stores = s.stores, ()
    try:
        sync_changes(s, mode="backup", announce=True)
    except OtpBridgeError as exc:
        s.warn(f"joined, but this device is not listed on the remote yet (its first sync does that): {exc}")
        return
    finally:
        s.stores = stores
    state = SyncState.load(s.state_dir)
    state.base = None
    state.fingerprints = {}
    state.save(s.state_dir)


def _mark_purged(remote: Remote, purged: set[str]) -> int:
    """How many of ``purged`` this device left out for the first time (the report's count)."""
    new = 0
    for rid in purged:
        entry = remote.cache.tombs[rid]
        if len(entry) < 5:
            entry.append(True)
            new += 1
    return new


MAX_CHAIN = 16  # deltas after one checkpoint view; the next object is a view again


def _as_delta(
    s: Session, remote: Remote, listing: Listing, payload: dict, records_json: dict[str, dict],
    fp_new: dict[str, str], prev: int, foreign: bool,
) -> dict | None:
    """``payload`` as a delta on this device's newest object, or None for a full view (a
    checkpoint): docs/SYNC.md "Deltas". A delta needs the newest object's records known
    exactly (``remote.own_fp``), that object to be the one this view builds on (``prev``),
    its chain shorter than MAX_CHAIN, and (``[sync] deltas = "auto"``) the chain's deltas
    with this one to stay smaller than the checkpoint view."""
    if s.deltas == "never" or foreign or remote.own_fp is None or remote.own_regressed:
        return None
    own = remote.views.get(s.device_id)
    if own is None or own[0].seq != prev or prev <= 0 or own[0].epoch != remote.epoch:
        return None
    ref = own[0]
    base = ref.checkpoint
    mine = listing.views_of(remote.epoch, s.device_id)
    checkpoint = [v for v in mine if v.seq == base and not v.is_delta]
    chain = [v for v in mine if v.is_delta and v.base == base and v.seq <= ref.seq]
    if len(checkpoint) != 1 or len(chain) >= MAX_CHAIN or (ref.is_delta and ref not in chain):
        return None
    old = remote.own_fp
    changed = [j for rid, j in records_json.items() if old.get(rid) != fp_new[rid]]
    gone = sorted(set(old) - set(fp_new))
    # ``pw``: the nonce of the object this one builds on, so a chain stays unambiguous even
    # when two copies of this home wrote one sequence number (docs/SYNC.md "Copied homes").
    delta = dict(payload, base=base, pw=own[1].get("w"), records=changed, gone=gone)
    if s.deltas == "auto":
        from otpbridge.vault.format import padded_size

        if sum(v.size for v in chain) + padded_size(len(encode_view(delta))) >= checkpoint[0].size:
            return None
    return delta


def _listed_size(listing: Listing, name: str) -> int:
    return next(v.size for v in listing.views if v.name == name)


def _purgeable(s: Session, state: SyncState, remote: Remote, base: dict[str, BaseEntry] | None) -> set[str]:
    if remote.cache is None:
        return set()
    live = {dev for dev in remote.listing.newest_views(remote.epoch) if dev not in remote.removed}
    age = s.tombstone_age if s.tombstone_age is not None else DEFAULT_TOMBSTONE_AGE
    return purgeable(remote.cache, remote.views, live, s.device_id, base, s.now(), age)


WRITES_KEPT = 64  # nonces of own views remembered (only the newest own view is compared)


CONFLICTS_KEPT = 256  # conflict keys remembered as shown
CONFLICT_DAYS = 90  # how long a view keeps telling the losing device about a conflict


def _name_of(s: Session, state: SyncState, remote: Remote, dev: str) -> str:
    return remote.names.get(dev) or state.device_names.get(dev) or dev


def _restore_hint(snapshot: str, rid: str) -> str:
    return f"otpbridge restore --snapshot {snapshot} --account {rid[:16]}"


def _describe_conflict(s: Session, state: SyncState, remote: Remote, c: Any) -> None:
    """Name the other device, date both versions and say how to get the losing one back."""
    c.other_name = _name_of(s, state, remote, c.other_device)
    c.local_time = int(s.now())
    other = remote.views.get(c.other_device)
    if other is not None:
        ref, data = other
        c.remote_time = int(data.get("time") or ref.time)
        if c.winner == "local":
            c.restore = _restore_hint(f"{c.other_device}-{ref.seq}", c.id)
    if c.winner == "remote":
        c.restore = "this device's version is in the primary store's backup (NAME.bak, beside it)"


def _conflicts_to_send(s: Session, remote: Remote, conflicts: Sequence[Any], seq: int) -> list[dict]:
    """This view tells the losing devices about the conflicts this device won (and keeps
    telling them, from view to view, for CONFLICT_DAYS)."""
    now = int(s.now())
    out: list[dict] = []
    own = remote.views.get(s.device_id)
    if own is not None:
        for entry in own[1].get("conflicts") or []:
            if isinstance(entry, dict) and now - int(entry.get("at", 0)) < CONFLICT_DAYS * 86400:
                out.append(entry)
    for c in conflicts:
        if c.winner != "local" or c.other_device == s.device_id:
            continue
        other = remote.views.get(c.other_device)
        out.append({"id": c.id, "label": c.label, "loser": c.other_device,
                    "loser_seq": other[0].seq if other is not None else 0, "loser_did": c.remote,
                    "loser_time": c.remote_time, "winner_did": c.local, "at": now, "seq": seq})
    return out


def _seen_key(c: Any) -> str:
    return f"{c.other_device}:{c.id}:{c.remote_time}"


def _conflicts_lost_here(s: Session, state: SyncState, remote: Remote) -> list[Any]:
    """Conflicts another device won against this one, not shown here before."""
    from otpbridge.engine.merge import Conflict

    out = []
    for dev, (_ref, data) in sorted(remote.views.items()):
        if dev == s.device_id:
            continue
        for entry in data.get("conflicts") or []:
            if not isinstance(entry, dict) or entry.get("loser") != s.device_id:
                continue
            c = Conflict(str(entry.get("id", "")), str(entry.get("label", "")), str(entry.get("loser_did", "edited")),
                         str(entry.get("winner_did", "edited")), dev, "remote",
                         other_name=_name_of(s, state, remote, dev), local_time=entry.get("loser_time"),
                         remote_time=entry.get("at"))
            if _seen_key(c) in state.conflicts_seen:
                continue
            c.restore = _restore_hint(f"{s.device_id}-{entry.get('loser_seq', 0)}", c.id)
            out.append(c)
    return out


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
    # Two views with one sequence number below this home's verified newest view were
    # merged already (adopted: our newest view could not have been written otherwise).
    foreign = [v for v in mine if (counts[v.seq] > 1 and v.seq >= state.last_seq)
               or (v.seq > state.last_seq and v.seq != pending.get("seq"))]
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


def _refuse_junk(s: Session, remote: Remote, foreign: list[ViewRef]) -> None:
    """A copy of this home writes views that open; one under this id that does not is junk
    or tampering (exit 4 with the quarantine way out), not a copied home (exit 6)."""
    own = remote.views.get(s.device_id, (None,))[0]
    for ref in foreign:
        if ref == own:
            continue
        try:
            open_view(s, remote.key, ref)
        except UnsafeObject:
            raise
        except (IntegrityError, ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(
                f"{ref.name} is under this device's id, was not written by this home and does not open: {exc}",
                hint=quarantine_hint(ref.name),
            ) from None


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
            extra.append(open_state(s, remote.key, remote.listing, ref)["_records"])
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


def _rename_label(rid: str, merged: dict[str, Record], remote: Remote) -> str:
    """``Old → New`` for a rename/edit of identity fields sent from here."""
    rec = merged.get(rid)
    new = rec.account.label if rec is not None and rec.account is not None else rid
    before = remote.records.get(rid)
    old = before.account.label if before is not None and before.account is not None else None
    return f"{old} → {new}" if old is not None and old != new else f"{new} (edited)"


def _settled_fingerprints(s: Session, read_fps: dict[str, str | None], before_write: str | None) -> dict[str, str]:
    """The store fingerprints the next run's fast path compares: a store's only if it is
    what this run read (or, for the primary it wrote, what it read plus its own write).
    A store edited while the run worked is left out, so the next run reads it and sends
    the edit (docs/SYNC.md "One sync run", step 10)."""
    out: dict[str, str] = {}
    primary = s.stores[0].label if s.stores and before_write is not None else None
    for label, now in fingerprints(s.stores).items():
        was = read_fps.get(label)
        if now is None or was is None:
            continue
        if label == primary:
            if before_write == was:
                out[label] = now  # changed by this run's own write only
        elif now == was:
            out[label] = now
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


def _resurrect(changes: Changes, accounts: Sequence[Any], remote: dict[str, Record], device: str,
               base_clock: int) -> None:
    """Restored accounts, as ``(record id, account)``, become this device's newest change
    where the vault differs (the record id is the vault's: a renamed account keeps it)."""
    clock = max(base_clock, max_clock(remote), max((r.clock for r in changes.records.values()), default=0)) + 1
    for rid, acc in accounts:
        rem = remote.get(rid)
        mine = changes.records.get(rid)
        if mine is not None and mine.account is not None and mine.device == device:
            continue  # already sent as a local change of this run
        if rem is not None and not rem.deleted and rem.digest == digest(acc):
            # The vault holds it as restored. A deletion here that no sync sent yet (the
            # entry removed from the store since) is what the restore undoes: not sent.
            if mine is not None and mine.account is None:
                changes.records.pop(rid)
                for lst in (changes.deleted, changes.counters, changes.added, changes.edited):
                    if rid in lst:
                        lst.remove(rid)
            continue
        counter = max(acc.counter, rem.counter if rem is not None else 0)
        changes.records[rid] = Record(rid, clock, device, acc, counter)
        for lst in (changes.deleted, changes.counters, changes.added, changes.edited):
            if rid in lst:
                lst.remove(rid)
        (changes.edited if rem is not None and not rem.deleted else changes.added).append(rid)


def _apply_primary(
    s: Session,
    state: SyncState,
    local: LocalRead,
    merged: dict[str, Record],
    final: dict[str, Any],
    base: dict[str, BaseEntry] | None,
    report: SyncReport,
    rid_of: dict[str, str],
    *,
    dry_run: bool,
) -> dict[str, Any] | None:
    primary = s.stores[0]
    prim = {rid_of[a.identity]: a for a in local.per_store[0]}
    upserts = []
    removals = []
    for rid, acc in final.items():
        have = prim.get(rid)
        if have is None:
            upserts.append(acc)
            continue
        entry = (base or {}).get(rid)
        fresh = base is None or entry is None or entry.applied != rank_text(merged.get(rid))
        if fresh and have != acc:
            upserts.append(acc)
            if have.identity != acc.identity:
                # renamed/edited elsewhere: the store pairs the removal with the upsert
                # (same kind + secret) and updates the entry in place
                removals.append(have)
        elif acc.counter > have.counter:
            upserts.append(have.replace(counter=acc.counter))
    removals += [a for rid, a in prim.items() if rid in merged and merged[rid].deleted]
    if not upserts and not removals:
        return None if dry_run else _by_record(local.union, {}, rid_of)
    with step(f"{'check' if dry_run else 'write'} {primary.label} ({len(upserts)} to add or update, "
              f"{len(removals)} to remove)"):
        wr = primary.apply(upserts, removals, dry_run=dry_run)
    report.received_added = [a.label for a in wr.added]
    moved = {n.identity for _o, n in wr.renamed}
    report.received_updated = [a.label for a in wr.updated if a.identity not in moved]
    report.received_renamed = [f"{o.label} → {n.label}" if o.label != n.label else f"{n.label} (edited)"
                               for o, n in wr.renamed]
    report.received_removed = [a.label for a in wr.removed]
    report.store_errors += list(wr.errors)
    if dry_run:
        return None
    after = primary.read()
    return _by_record(union([after.accounts, *local.per_store[1:]]), final, rid_of)


def _by_record(accounts: dict[str, Any], final: dict[str, Any], rid_of: dict[str, str]) -> dict[str, Any]:
    """Identity-keyed accounts -> record-keyed: the record that holds each one now."""
    index: dict[str, str] = {}
    for rid in sorted(final):
        index.setdefault(final[rid].identity, rid)
    out: dict[str, Any] = {}
    for ident, acc in accounts.items():
        rid = index.get(ident) or rid_of.get(ident) or ident
        out.setdefault(rid, acc)
    return out
