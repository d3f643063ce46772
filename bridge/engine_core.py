"""The sync engine past the no-change fast path: init, the work of sync/backup, restore,
passphrase change, verify (docs/SYNC.md).

Import it through :mod:`otpbridge.engine` (which forwards every name defined here): that
module holds the Session, the fast path and ``sync`` itself, and loads this one (with
merge, remote, vault and snapshots) only when a run has more to do than one listing.

Order of every writing run, chosen so a failure anywhere loses nothing:
list → (decrypt) → read stores → merge → upload this device's view → read it back and
decrypt it → only then change the local primary store → save the local state. A remote
failure therefore leaves the store untouched, and a crash after the upload is repaired
by the next run (its changes compare equal to the remote and are not repeated).
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .engine import STAT_KEYS, Session, SyncReport, _check_device, _exclusive, _fingerprints, sync
from .errors import (
    AuthenticationError,
    DataLossRefused,
    IntegrityError,
    OtpBridgeError,
    UnreachableError,
    UsageError,
)
from .fileio import atomic_write
from .merge import (
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
from .remote import VIEW_KIND, HeaderRef, Listing, ViewRef, decode_view, encode_view, header_name, view_name
from .secrets import Secret
from .snapshots import Retention, prune
from .syncstate import SyncState, new_token

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
MAX_DELETIONS = 3
MAX_DELETION_SHARE = 0.30
ORPHAN_GRACE = 3600  # a header-less newer epoch younger than this may be a rotation in flight


@dataclass
class Remote:
    """The remote as one run saw it: listing, key, every device's newest view, merged."""

    listing: Listing
    key: Any  # vault.VaultKey
    header: HeaderRef
    views: dict[str, tuple[ViewRef, dict]] = field(default_factory=dict, repr=False)  # plaintext secrets
    records: dict[str, Record] = field(default_factory=dict)
    removed: dict[str, dict] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    garbage: list[ViewRef] = field(default_factory=list)
    skipped: list[ViewRef] = field(default_factory=list)  # listed, but could not be read this run
    own_regressed: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        return self.key.epoch


# --- opening the remote ----------------------------------------------------------------
def _who(state: SyncState, remote_names: dict[str, str], device: str) -> str:
    name = remote_names.get(device) or state.device_names.get(device)
    return f"{name!r} ({device})" if name else device


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _check_size(name: str, size: int, limit: int) -> None:
    """Refuse from the listing what no valid object can be (a hostile remote's 10 GB file)."""
    if size > limit:
        raise IntegrityError(f"{name} is {size} bytes, more than any valid object ({limit})")


def _read_header(s: Session, ref: HeaderRef, vault_id: str) -> bytes:
    from .vault import max_header_size, peek_epoch

    _check_size(ref.name, ref.size, max_header_size())
    raw = s.backend.read(ref.name)
    info = peek_epoch(raw)
    if info.epoch != ref.epoch:
        raise IntegrityError(f"{ref.name} holds epoch {info.epoch}, not {ref.epoch} (renamed or replayed)")
    if vault_id and info.vault_id.hex() != vault_id:
        raise IntegrityError(
            f"{ref.name} belongs to another vault ({info.vault_id.hex()}, expected {vault_id})",
            hint="is this the right remote?",
        )
    return raw


def open_key(
    s: Session, listing: Listing, state: SyncState, passphrase: Secret, *, fallback: bool = False
) -> tuple[Any, HeaderRef]:
    """Unwrap the newest epoch; say who changed the passphrase when it no longer opens.

    ``fallback`` (restore): a newer epoch that does not open may be a rotation that
    crashed before its end; an older one that does is then used, with a warning.
    """
    from .vault import WrongPassphrase, open_epoch

    epochs = listing.epochs()
    if not epochs:
        if state.vault_id:
            raise IntegrityError(
                f"{s.backend.describe()} holds no vault any more (emptied, or the wrong remote)",
                hint="check the remote; 'otpbridge restore' elsewhere still works from another copy",
            )
        raise UsageError(f"{s.backend.describe()} holds no otpbridge vault", hint="run 'otpbridge init REMOTE' first")
    newest = epochs[-1]
    first_error: WrongPassphrase | None = None
    for epoch in reversed(epochs):
        for ref in sorted(listing.headers_of(epoch), key=lambda h: h.device):
            raw = _read_header(s, ref, state.vault_id)
            try:
                key = open_epoch(raw, passphrase, stats=s.stats, cache=s.key_cache())
            except WrongPassphrase as exc:
                first_error = first_error or exc
                continue
            if epoch != newest:
                s.warn(f"using epoch {epoch}: the newer epoch {newest} does not open with this passphrase")
            return key, ref
        if not fallback:
            break
    ref = listing.headers_of(newest)[-1]
    if 0 < state.epoch < newest:
        raise AuthenticationError(
            f"the passphrase was changed on device {_who(state, {}, ref.device)} at {_when(ref.time)}",
            hint="use the new passphrase (e.g. OTPBRIDGE_PASSPHRASE or --passphrase-file)",
        )
    assert first_error is not None
    raise first_error


def _open_view(s: Session, key: Any, ref: ViewRef) -> dict:
    from .vault import max_object_size

    _check_size(ref.name, ref.size, max_object_size())
    raw = s.backend.read(ref.name)
    plain = key.open(raw, kind=VIEW_KIND, device=ref.device, seq=ref.seq)
    data = decode_view(plain, ref)
    try:
        data["_records"] = {r.id: r for r in (Record.from_json(x) for x in data["records"])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # no text: it may quote a field
        raise IntegrityError(f"{ref.name}: a record of the view is malformed ({type(exc).__name__})") from None
    return data


def load_remote(
    s: Session,
    state: SyncState,
    passphrase: Secret,
    *,
    listing: Listing | None = None,
    accept_rollback: bool = False,
    fallback: bool = False,
) -> Remote:
    if listing is None:
        listing = Listing.parse(s.backend.list())
    key, header = open_key(s, listing, state, passphrase, fallback=fallback)
    if state.vault_id and key.vault_id.hex() != state.vault_id:
        raise IntegrityError("the remote holds another vault than the one this device joined")
    if state.epoch > key.epoch and not fallback:
        _rollback(f"the remote's epoch {key.epoch} is older than epoch {state.epoch} seen before", accept_rollback)
    epoch_moved = 0 < state.epoch < key.epoch
    remote = Remote(listing=listing, key=key, header=header)
    newest = {dev: ref for dev, ref in listing.newest_views(key.epoch).items()}
    for dev in sorted(newest):
        candidates = sorted(listing.views_of(key.epoch, dev), key=lambda v: v.seq, reverse=True)
        for ref in candidates:
            try:
                data = _open_view(s, key, ref)
            except (IntegrityError, ValueError, KeyError, TypeError) as exc:
                known = state.seen.get(dev, 0) if dev != s.device_id else state.last_seq
                if ref.seq <= known and not epoch_moved:
                    raise IntegrityError(f"{ref.name} was verified before and now fails: {exc}") from None
                if dev == s.device_id:
                    remote.garbage.append(ref)  # our own interrupted upload
                else:
                    remote.skipped.append(ref)
                    remote.warnings.append(f"skipped {ref.name} (unreadable, maybe still being written): {exc}")
                continue
            remote.views[dev] = (ref, data)
            break
    views = [v[1] for v in remote.views.values()]
    for data in views:
        for dev, info in (data.get("removed") or {}).items():
            remote.removed.setdefault(dev, info)
        for dev, name in (data.get("devices") or {}).items():
            remote.names.setdefault(dev, str(name))
    for dev, (_ref, data) in remote.views.items():
        if data.get("name"):
            remote.names[dev] = str(data["name"])
    for dev, info in state.removed.items():
        remote.removed.setdefault(dev, info)
    remote.records = merge_views(d["_records"] for dev, (_r, d) in remote.views.items() if dev not in remote.removed)
    # Rollback: no device may be older than what we verified before.
    for dev, seen in sorted(state.seen.items()):
        if dev in remote.removed:
            continue
        got = remote.views[dev][0].seq if dev in remote.views else 0
        if got >= seen:
            continue
        if epoch_moved:
            remote.warnings.append(
                f"device {_who(state, remote.names, dev)} lost changes across the passphrase change "
                f"(had #{seen}, now #{got})"
            )
            continue
        _rollback(
            f"the remote serves device {_who(state, remote.names, dev)} at #{got}, older than #{seen} seen before",
            accept_rollback,
        )
    own = remote.views[s.device_id][0].seq if s.device_id in remote.views else 0
    if own < state.last_seq and s.device_id not in remote.removed:
        if epoch_moved:
            remote.own_regressed = True  # our last view was lost in a passphrase change
        else:
            _rollback(
                f"the remote serves this device's own view at #{own}, older than #{state.last_seq} written before",
                accept_rollback,
            )
            remote.own_regressed = True
    return remote


def _rollback(message: str, accept: bool) -> None:
    if not accept:
        raise IntegrityError(
            "rollback detected: " + message,
            hint="someone restored an old copy of the remote or tampered with it; "
            "if you restored it on purpose, run again with --accept-rollback",
        )


# --- init ------------------------------------------------------------------------------
@dataclass
class InitResult:
    created: bool
    vault_id: str
    epoch: int
    # Set when this home joined under a NEW device id (the configured one already has
    # views on the remote that this home's fresh state knows nothing of): the caller
    # writes it into config.toml.
    device_id: str = ""


@_exclusive
def init_vault(s: Session, state: SyncState, new_passphrase: Callable[[], Secret] | None = None) -> InitResult:
    """Create a vault on an empty remote, or join the one there (passphrase checked).

    ``new_passphrase`` is asked instead of the usual getter when a vault is created (the
    CLI asks twice on a terminal and rates its strength).
    """
    from .vault import create_epoch, open_epoch

    listing = Listing.parse(s.backend.list())
    if listing.is_vault:
        passphrase = s.get_passphrase()
        key, _ref = open_key(s, listing, SyncState(), passphrase)
        result = InitResult(False, key.vault_id.hex(), key.epoch)
        if not state.vault_id and any(v.device == s.device_id for v in listing.views):
            # A fresh state (lost, or a config.toml copied without it) would share the id
            # with whoever wrote those views - maybe a live copy of this home. A new id
            # keeps both apart; the first sync then keeps every local account.
            from .remote import new_device_id

            old = s.device_id
            s.device_id = result.device_id = new_device_id()
            s.note(f"device id {old} already has views on the remote (another copy of this home, or its "
                   f"earlier state): joining as the new device {s.device_id}; 'otpbridge devices remove {old}' "
                   "drops the old id once no copy uses it")
    elif not listing.empty:
        raise UsageError(
            f"{s.backend.describe()} is not empty and holds no otpbridge vault",
            hint="choose an empty folder (otpbridge never writes into a folder it does not own)",
        )
    else:
        if s.params is None:
            raise UsageError("no KDF parameters were chosen for the new vault")
        passphrase = new_passphrase() if new_passphrase is not None else s.get_passphrase()
        header, key = create_epoch(passphrase, params=s.params, epoch=1, stats=s.stats, cache=s.key_cache())
        name = header_name(1, s.device_id, s.now())
        s.backend.write(name, header)
        back = s.backend.read(name)
        if back != header or open_epoch(back, passphrase, cache=s.key_cache()) != key:
            raise IntegrityError(f"{name} did not read back as written")
        result = InitResult(True, key.vault_id.hex(), 1)
    state.vault_id = result.vault_id
    state.device = s.device_id
    state.token = state.token or new_token()
    state.epoch = max(state.epoch, result.epoch)
    if s.device_name:
        state.device_names[s.device_id] = s.device_name
    state.listing = None
    state.save(s.state_dir)
    return result


# --- reading local stores -----------------------------------------------------------------
@dataclass
class LocalRead:
    per_store: list[list[Any]]
    union: dict[str, Any]
    errors: list[Any]


STORE_CACHE_FILE = "store-cache.sealed"
STORE_CACHE_KIND = "store-cache"


def _load_store_cache(s: Session, key: Any) -> dict[str, bytes]:
    """The stores' secret-bearing cache (pass: decrypted OTP lines), sealed under the vault key.

    It lets a sync after one changed pass entry make one gpg call instead of one per
    entry. Unreadable (another epoch, damage) just means a cold cache.
    """
    try:
        blob = (s.state_dir / STORE_CACHE_FILE).read_bytes()
        raw = key.open(blob, kind=STORE_CACHE_KIND, device=s.device_id, seq=0)
        return {k: base64.b64decode(v) for k, v in json.loads(raw).items()}
    except (OSError, OtpBridgeError, ValueError, TypeError, AttributeError):
        return {}


def _save_store_cache(s: Session, key: Any, cache: dict[str, bytes]) -> None:
    raw = json.dumps({k: base64.b64encode(v).decode() for k, v in sorted(cache.items())}).encode()
    s.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(s.state_dir / STORE_CACHE_FILE, key.seal(STORE_CACHE_KIND, s.device_id, 0, raw), backup=False)


def read_stores(s: Session, state: SyncState, cache: dict[str, bytes] | None = None, key: Any = None) -> LocalRead:
    per_store, errors = [], []
    before = dict(cache) if cache is not None else None
    for store in s.stores:
        if cache is not None and hasattr(store, "ctx"):
            store.ctx.store_cache = cache
        if not store.exists():
            if state.base:
                raise UnreachableError(
                    f"{store.label} does not exist (it held accounts at the last sync)",
                    hint="restore the file, or remove it from the config",
                )
            per_store.append([])
            continue
        result = store.read()  # raising here aborts the run: an unreadable store deletes nothing
        per_store.append(list(result.accounts))
        errors.extend(result.errors)
    if cache is not None and key is not None and cache != before:
        _save_store_cache(s, key, cache)
    return LocalRead(per_store, union(per_store), errors)


def _sync_slow(
    s: Session,
    state: SyncState,
    report: SyncReport,
    listing: Listing | None,
    *,
    mode: str,
    dry_run: bool,
    allow_deletions: bool,
    accept_rollback: bool,
    tombstone_remote_only: bool,
    remove_devices: Sequence[str],
    adopt_device: bool = False,
) -> SyncReport:
    """Everything of ``engine.sync`` past the fast path (it holds the home lock already)."""
    passphrase = s.get_passphrase()
    remote = load_remote(s, state, passphrase, listing=listing, accept_rollback=accept_rollback)
    report.warnings += remote.warnings
    report.epoch = remote.epoch
    _check_removals(remote, remove_devices)
    # Before anything is written anywhere: views under this id that this home did not write.
    foreign = _foreign_own_views(s, state, remote)
    if foreign and not adopt_device:
        raise _clone_error(s, state, remote, foreign)
    if foreign:
        _adopt(s, state, remote, foreign, report)
    if s.device_id in remote.removed:
        info = remote.removed[s.device_id]
        raise UsageError(
            f"this device was removed from the vault by {info.get('by', '?')} at {_when(info.get('at', 0))}",
            hint="run 'otpbridge init REMOTE' in a fresh OTPBRIDGE_HOME to join again",
        )
    cache = _load_store_cache(s, remote.key)
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
    if own_view is None and final and mode == "backup":
        need_upload = True  # a backup run leaves this device's copy on the remote
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
    if need_upload:
        seq = max(state.last_seq, listing.max_seq(s.device_id)) + 1
        names = dict(remote.names)
        if s.device_name:
            names[s.device_id] = s.device_name
        nonce = new_token()
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
            "records": [r.to_json() for _id, r in sorted(merged.items())],
        }
        name = upload_view(s, remote.key, payload, listing)
        report.uploaded = name
        seen[s.device_id] = seq
        last_seq = seq
        state.writes[str(seq)] = nonce
    report.verified_at = s.now()
    # Housekeeping: only our own objects (and leftovers nobody can read any more).
    for ref in remote.garbage:
        if ref in foreign:
            continue  # another copy's view that does not open (yet): not ours to delete
        _delete(s, listing, ref.name)
        report.cleaned.append(ref.name)
    own = listing.views_of(remote.epoch, s.device_id)
    for ref in prune(own, s.retention if s.retention is not None else Retention()):
        if ref.seq == last_seq:
            continue
        _delete(s, listing, ref.name)
        report.pruned.append(ref.name)
    for dev in remove_devices:
        for ref in [v for v in listing.views if v.device == dev]:
            _delete(s, listing, ref.name)
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
    state.fingerprints = {k: v for k, v in _fingerprints(s.stores).items() if v is not None}
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
    return report


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
        f"{len(foreign)} view(s) under it ({seqs}, the last written {_when(last.time)}) were not written here; "
        "nothing was changed",
        hint="if two machines (or folders) share this home, run 'otpbridge init REMOTE --store …' in a fresh, "
        "empty OTPBRIDGE_HOME on one of them (it gets a new device id; its first sync keeps every account); "
        "if this home was restored from an old backup and no other copy runs any more, run "
        "'otpbridge sync --adopt-device' (it merges every view first, then takes the id over)",
    )


def _adopt(s: Session, state: SyncState, remote: Remote, foreign: list[ViewRef], report: SyncReport) -> None:
    """Merge every view of this id we did not write (not only the newest: two copies may
    have written the same sequence number), so taking the id over loses nothing."""
    extra = [remote.records]
    for ref in foreign:
        if remote.views.get(s.device_id, (None,))[0] == ref:
            continue  # merged already
        try:
            extra.append(_open_view(s, remote.key, ref)["_records"])
        except (IntegrityError, ValueError, KeyError, TypeError) as exc:
            report.warnings.append(f"{ref.name} (another copy of this home) does not open and is left alone: {exc}")
    remote.records = merge_views(extra)
    report.warnings.append(
        f"{'would take' if report.dry_run else 'took'} over device id {s.device_id}: merged {len(foreign)} "
        "view(s) another copy of this home wrote; that copy is refused from now on"
    )


def upload_view(s: Session, key: Any, payload: dict, listing: Listing, when: float | None = None) -> str:
    """Seal, write, and decrypt what the remote holds; then list it.

    ``Backend.write`` reads the object back and compares it byte for byte before it
    returns, so ``blob`` *is* what the remote now holds: opening it proves the uploaded
    object decrypts, without downloading it a second time."""
    seq, dev = payload["seq"], payload["device"]
    blob = key.seal(VIEW_KIND, dev, seq, encode_view(payload))
    name = view_name(dev, key.epoch, seq, s.now() if when is None else when)
    s.backend.write(name, blob)
    back = blob
    ref = ViewRef(name, len(back), dev, key.epoch, seq, 0)
    data = decode_view(key.open(back, kind=VIEW_KIND, device=dev, seq=seq), ref)
    if len(data["records"]) != len(payload["records"]) or data.get("w") != payload.get("w"):
        # Another writer of this name (only a copy of this home can produce it) came between.
        raise IntegrityError(
            f"{name} did not read back as written",
            hint="if another copy of this home syncs too, the next run says so; nothing local was changed",
        )
    listing.add(name, len(blob))
    return name


def _delete(s: Session, listing: Listing, name: str) -> None:
    s.backend.delete(name)
    listing.remove(name)


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


# --- old epochs ---------------------------------------------------------------------------
def cleanup_epochs(s: Session, listing: Listing, remote: Remote) -> list[str]:
    """Finish what an interrupted passphrase change left (docs/SYNC.md "Rotation").

    Older epochs whose every view has a re-encrypted twin in the current epoch go, header
    first (so the old passphrase opens nothing even if we stop half-way). Newer views
    without a header are a rotation that crashed before its commit: deleted once old.
    """
    current = remote.epoch
    done: list[str] = []
    twins = {(v.device, v.seq) for v in listing.views_of(current)}
    for epoch in [e for e in {v.epoch for v in listing.views} | set(listing.epochs()) if e != current]:
        views = [v for v in listing.views if v.epoch == epoch]
        headers = listing.headers_of(epoch)
        if epoch < current:
            loose = [v for v in views if (v.device, v.seq) not in twins]
            if headers and loose:
                remote.warnings.append(
                    f"{len(loose)} object(s) of epoch {epoch} were written after the passphrase change; "
                    "run 'otpbridge passphrase change' again with the old and new passphrases to fold them in"
                )
                continue
            for ref in headers:
                _delete(s, listing, ref.name)
                done.append(ref.name)
            for ref in views:
                _delete(s, listing, ref.name)
                done.append(ref.name)
        elif not headers:
            # A re-encrypted view keeps its original time in its name, so only the time the
            # remote saw it written tells a crashed change from one in flight on another
            # device (which commits, then deletes the old epoch: deleting these lost all).
            for ref in views:
                written = ref.mtime
                if written is not None and s.now() - written > ORPHAN_GRACE and s.now() - ref.time > ORPHAN_GRACE:
                    _delete(s, listing, ref.name)
                    done.append(ref.name)
    return done


# --- restore ------------------------------------------------------------------------------
@dataclass
class RestoreReport:
    target: str
    snapshot: str | None
    accounts: int
    added: list[str]
    updated: list[str]
    unchanged: int
    dry_run: bool
    epoch: int
    warnings: list[str] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)

    def to_json(self, stats: Counter) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "errors"}
        out["stats"] = {k: int(stats.get(k, 0)) for k in STAT_KEYS}
        return out


def remote_accounts(
    s: Session, state: SyncState, *, snapshot: str | None = None, accept_rollback: bool = False
) -> tuple[dict[str, Any], Remote]:
    """Every live account on the remote (or in one snapshot), with the HOTP counters merged."""
    passphrase = s.get_passphrase()
    remote = load_remote(s, state, passphrase, accept_rollback=accept_rollback, fallback=True)
    if snapshot is None:
        return alive(remote.records), remote
    for ref in remote.listing.views_of(remote.epoch):
        if snapshot in (ref.snapshot_id, ref.name):
            data = _open_view(s, remote.key, ref)
            return alive(data["_records"]), remote
    raise UsageError(f"no snapshot {snapshot!r} on the remote", hint="'otpbridge snapshots' lists them")


@_exclusive
def restore(
    s: Session,
    state: SyncState,
    target: Any,
    *,
    snapshot: str | None = None,
    dry_run: bool = False,
    accept_rollback: bool = False,
) -> RestoreReport:
    """Add every account of the vault to ``target``; never removes anything from it.

    An account the target already holds keeps its HOTP counter when that is higher: the
    codes below it were used (SPEC §6, counters never go backwards), maybe after the
    vault's copy (an old snapshot, a device that did not sync since).
    """
    from .model import Kind

    accounts, remote = remote_accounts(s, state, snapshot=snapshot, accept_rollback=accept_rollback)
    if target.exists():
        for have in target.read().accounts:
            acc = accounts.get(have.identity)
            if acc is not None and acc.kind is Kind.HOTP and have.counter > acc.counter:
                accounts[have.identity] = acc.replace(counter=have.counter)
    ordered = sorted(accounts.values(), key=lambda a: (a.folder, a.issuer.lower(), a.name.lower()))
    wr = target.apply(ordered, (), dry_run=dry_run)
    return RestoreReport(
        target=target.label,
        snapshot=snapshot,
        accounts=len(accounts),
        added=[a.label for a in wr.added],
        updated=[a.label for a in wr.updated],
        unchanged=wr.unchanged,
        dry_run=dry_run,
        epoch=remote.epoch,
        warnings=remote.warnings,
        errors=list(wr.errors),
    )


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
    from .vault import max_header_size, peek_epoch

    passphrase = s.get_passphrase()
    listing = Listing.parse(s.backend.list())
    key, _ref = open_key(s, listing, state, passphrase)
    rep = VerifyReport(epoch=key.epoch)
    for h in listing.headers:
        try:
            _check_size(h.name, h.size, max_header_size())
            info = peek_epoch(s.backend.read(h.name))
            if info.vault_id != key.vault_id or info.epoch != h.epoch:
                raise IntegrityError("belongs to another vault or epoch")
            rep.headers += 1
        except IntegrityError as exc:
            rep.failures.append(f"{h.name}: {exc}")
        if h.epoch != key.epoch:
            rep.other_epochs.append(h.name)
    views = listing.views_of(key.epoch)
    merged: list[dict[str, Record]] = []
    for i, ref in enumerate(views):
        s.tick("verifying", i, len(views))
        try:
            data = _open_view(s, key, ref)
        except (IntegrityError, ValueError, KeyError, TypeError) as exc:
            rep.failures.append(f"{ref.name}: {exc}")
            continue
        rep.views += 1
        if ref.seq == listing.newest_views(key.epoch)[ref.device].seq:
            merged.append(data["_records"])
    s.tick("verifying", len(views), len(views))
    rep.accounts = len(alive(merge_views(merged)))
    rep.other_epochs += [v.name for v in listing.views if v.epoch != key.epoch]
    rep.unknown = [n for n, _s in listing.other]
    return rep


# --- passphrase change --------------------------------------------------------------------
@dataclass
class RotationReport:
    old_epoch: int
    new_epoch: int
    resumed: bool = False
    reencrypted: int = 0
    deleted: int = 0
    lost: list[str] = field(default_factory=list)
    dry_run: bool = False
    already_done: bool = False

    def to_json(self, stats: Counter) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["stats"] = {k: int(stats.get(k, 0)) for k in STAT_KEYS}
        return out


@_exclusive
def change_passphrase(
    s: Session,
    new_passphrase: Callable[[], Secret],
    *,
    discard_remote_only: bool = False,
    dry_run: bool = False,
    accept_rollback: bool = False,
) -> RotationReport:
    """Re-key the vault under a new passphrase (SPEC §6); resumable at every step.

    1. sync with the old passphrase (nothing on the remote is lost; or, with
       ``discard_remote_only``, accounts only other devices hold are tombstoned);
    2. a new epoch key; every retained view of every device re-sealed under it, each
       read back and decrypted; 3. the new header — the commit point; 4. views written
       meanwhile under the old epoch folded in; 5. the old header deleted first, then
       the old views. A crash before 3 leaves the old epoch whole, after 3 the new one.
    """
    from .vault import WrongPassphrase, create_epoch, open_epoch

    state = s.load_state()
    _check_device(s, state)
    old = s.get_passphrase()
    listing = Listing.parse(s.backend.list())
    epochs = listing.epochs()
    if not epochs:
        raise UsageError("the remote holds no vault")
    newest = epochs[-1]
    new = new_passphrase()
    if not new:
        raise UsageError("the new passphrase is empty")
    if new == old:
        raise UsageError("the new passphrase is the same as the current one")
    # Resume? The newest epoch opens with the NEW passphrase and an older one with the old.
    resume_key = None
    for ref in listing.headers_of(newest):
        try:
            resume_key = open_epoch(_read_header(s, ref, state.vault_id), new, stats=s.stats, cache=s.key_cache())
            break
        except WrongPassphrase:
            continue
    if resume_key is not None:
        older = [e for e in epochs if e < newest]
        old_key = None
        for epoch in reversed(older):
            for ref in listing.headers_of(epoch):
                try:
                    old_key = open_epoch(_read_header(s, ref, state.vault_id), old, stats=s.stats, cache=s.key_cache())
                    break
                except WrongPassphrase:
                    continue
            if old_key is not None:
                break
        if old_key is None and any(h.epoch < newest for h in listing.headers):
            # An older epoch still opens with the right old passphrase and may hold views
            # not folded in yet: never call the job done (and delete them) on a typo.
            raise AuthenticationError(
                f"the current passphrase does not open epoch {older[-1]}, which the interrupted "
                f"passphrase change to epoch {newest} still has to fold in",
                hint="give the OLD passphrase as the current one and the new one as the new passphrase",
            )
        rep = RotationReport(old_epoch=old_key.epoch if old_key else newest, new_epoch=newest, resumed=True)
        if old_key is None:
            rep.already_done = True
            if not dry_run:  # header-less leftovers of the old epoch: nobody can open them
                for ref in [v for v in listing.views if v.epoch < newest]:
                    s.backend.delete(ref.name)
                    rep.deleted += 1
            return rep
        if dry_run:
            rep.dry_run = True
            return rep
        _finish_rotation(s, state, listing, old_key, resume_key, rep)
        return rep
    # A fresh change: first bring everything together under the old key.
    mode = "sync" if not s.stores or getattr(s.stores[0], "can_write", lambda: True)() else "backup"
    if dry_run:
        pre = sync(s, mode=mode, dry_run=True, accept_rollback=accept_rollback, force=True,
                   tombstone_remote_only=discard_remote_only)
        rep = RotationReport(old_epoch=state.epoch, new_epoch=newest + 1, dry_run=True)
        rep.lost = pre.deleted if discard_remote_only else []
        return rep
    pre = sync(s, mode=mode, accept_rollback=accept_rollback, force=True, tombstone_remote_only=discard_remote_only)
    state = s.load_state()
    listing = Listing.parse(s.backend.list())
    old_key, _ref = open_key(s, listing, state, old)  # cached: no second derivation
    if s.params is None:
        raise UsageError("no KDF parameters were chosen for the new epoch")
    new_epoch = max(listing.epochs() + [v.epoch for v in listing.views]) + 1
    header, new_key = create_epoch(new, params=s.params, vault_id=old_key.vault_id, epoch=new_epoch,
                                   stats=s.stats, cache=s.key_cache())
    rep = RotationReport(old_epoch=old_key.epoch, new_epoch=new_epoch, lost=pre.deleted if discard_remote_only else [])
    _reencrypt(s, listing, old_key, new_key, rep)
    hname = header_name(new_epoch, s.device_id, s.now())
    s.backend.write(hname, header)  # the commit point
    back = s.backend.read(hname)
    if back != header or open_epoch(back, new, cache=s.key_cache()) != new_key:
        raise IntegrityError(f"{hname} did not read back as written")
    listing.add(hname, len(header))
    _finish_rotation(s, state, listing, old_key, new_key, rep)
    return rep


def _reencrypt(s: Session, listing: Listing, old_key: Any, new_key: Any, rep: RotationReport) -> None:
    """Re-seal every view of the old epoch that has no twin in the new one yet."""
    twins = {(v.device, v.seq) for v in listing.views_of(new_key.epoch)}
    todo = [v for v in listing.views_of(old_key.epoch) if (v.device, v.seq) not in twins]
    from .vault import max_object_size

    for i, ref in enumerate(todo):
        s.tick("re-encrypting", i, len(todo))
        try:
            _check_size(ref.name, ref.size, max_object_size())
            raw = s.backend.read(ref.name)
            plain = old_key.open(raw, kind=VIEW_KIND, device=ref.device, seq=ref.seq)
        except IntegrityError as exc:
            s.warn(f"{ref.name} is unreadable and is left out of the new epoch: {exc}")
            continue
        payload = decode_view(plain, ref)
        payload["epoch"] = new_key.epoch
        upload_view(s, new_key, payload, listing, when=ref.time)
        rep.reencrypted += 1
    s.tick("re-encrypting", len(todo), len(todo))


def _finish_rotation(
    s: Session, state: SyncState, listing: Listing, old_key: Any, new_key: Any, rep: RotationReport
) -> None:
    # Views written under the old epoch since our merge (a device that had not noticed):
    # fold them in while we still hold the old key, then drop the old epoch, header first.
    fresh = Listing.parse(s.backend.list())
    _reencrypt(s, fresh, old_key, new_key, rep)
    for ref in [h for h in fresh.headers if h.epoch < new_key.epoch]:
        s.backend.delete(ref.name)
        rep.deleted += 1
    for ref in [v for v in fresh.views if v.epoch < new_key.epoch]:
        s.backend.delete(ref.name)
        rep.deleted += 1
    final = Listing.parse(s.backend.list())
    state = s.load_state()
    state.epoch = new_key.epoch
    own = final.newest_views(new_key.epoch)
    state.seen = {dev: max(state.seen.get(dev, 0), ref.seq) for dev, ref in own.items() if dev != s.device_id}
    if s.device_id in own:
        state.last_seq = max(state.last_seq, own[s.device_id].seq)
    state.listing = final.signature()
    state.save(s.state_dir)


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
