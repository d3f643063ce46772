"""``otpbridge passphrase change``: re-key the vault under a new passphrase, crash-safe and
resumable at every step (docs/SYNC.md "Rotation")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otpbridge.core.errors import (
    AuthenticationError,
    IntegrityError,
    UsageError,
)
from otpbridge.core.secrets import Secret
from otpbridge.engine.layout import (
    Listing,
    decode_view,
    header_name,
)

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
from otpbridge.engine.local import reseal_store_cache
from otpbridge.engine.remote import (
    KDF_BUDGET,
    check_size,
    header_may_be_unfinished,
    header_order,
    open_key,
    read_header,
    upload_view,
)
from otpbridge.engine.session import STAT_KEYS, Session, check_device, exclusive
from otpbridge.engine.state import SyncState
from otpbridge.engine.sync import sync_changes


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


@exclusive
def change_passphrase(
    s: Session,
    new_passphrase: Callable[[], Secret],
    *,
    discard_remote_only: bool = False,
    dry_run: bool = False,
    accept_rollback: bool = False,
    allow_deletions: bool = False,
    slot: str = "",
) -> RotationReport:
    """Re-key the vault under a new passphrase (SPEC §6); resumable at every step.

    1. sync with the old passphrase (nothing on the remote is lost; or, with
       ``discard_remote_only``, accounts only other devices hold are tombstoned);
    2. a new epoch key; every retained view of every device re-sealed under it, each
       read back and decrypted; 3. the new header — the commit point; 4. views written
       meanwhile under the old epoch folded in; 5. the old header deleted first, then
       the old views. A crash before 3 leaves the old epoch whole, after 3 the new one.

    A vault with key slots (docs/FORMAT.md §12) keeps every other slot: only the slot
    that opened (or, opened with a recovery code or key file, the vault's one passphrase
    slot) gets the new passphrase; ``slot`` (an id, its start, or a name) chooses another.
    """
    remembered = s.load_state().slot  # this device's slot, before this run opens with another
    old = s.get_passphrase()
    new = new_passphrase()
    if not new:
        raise UsageError("the new passphrase is empty")
    if new == old:
        raise UsageError("the new passphrase is the same as the current one")

    def build(old_key: Any, epoch: int) -> tuple[bytes, Any]:
        from otpbridge.vault.format import create_epoch
        from otpbridge.vault.keyring import NewSlot

        ring = old_key.keyring
        if ring is None:  # a version-1 vault: still one passphrase, still a version-1 header
            return create_epoch(new, params=s.params, vault_id=old_key.vault_id, epoch=epoch,
                                stats=s.stats, cache=s.key_cache())
        target = _passphrase_slot_to_change(ring, slot, (old_key.slot, remembered))
        keep = [x for x in ring.slots if x.id != target.id]
        spec = NewSlot("passphrase", target.name, new, params=s.params, device=s.device_id, id=target.id)
        return new_keyring_epoch(s, old_key, epoch, keep, [spec], opens_with=new)

    return rekey(s, build, opens_new=new, kind="change", discard_remote_only=discard_remote_only,
                 dry_run=dry_run, accept_rollback=accept_rollback, allow_deletions=allow_deletions)


def _passphrase_slot_to_change(ring: Any, chosen: str, used: tuple[str, ...]) -> Any:
    """The slot given by ``chosen``, else the one that opened (or this device opened last)."""
    slots = [x for x in ring.slots if x.type == "passphrase"]
    if chosen:
        found = [x for x in ring.find(chosen) if x.type == "passphrase"]
        if len(found) != 1:
            raise UsageError(f"{chosen!r} names {len(found)} passphrase slots of the vault",
                             hint="'otpbridge key list' shows their ids and names")
        return found[0]
    for want in used:
        mine = [x for x in slots if want and x.id == want]
        if mine:
            return mine[0]
    if len(slots) == 1:
        return slots[0]
    if not slots:
        raise UsageError("the vault has no passphrase slot to change", hint="add one: otpbridge key add")
    names = ", ".join(x.describe() for x in slots)
    raise UsageError(f"which passphrase? the vault has {len(slots)} passphrase slots ({names})",
                     hint="name it: otpbridge passphrase change --key ID|NAME")


def new_keyring_epoch(s: Session, old_key: Any, epoch: int, keep: list, new: list,
                      opens_with: Secret, *, rotate_auth: bool = True) -> tuple[bytes, Any]:
    """A version-2 header for a fresh vault key of ``epoch``: ``keep`` slots re-wrapped from
    their public keys, ``new`` ones made; the key is cached for ``opens_with``.
    ``rotate_auth``: a fresh vault authentication secret (a key removed or changed; a key
    only added keeps it), linked back to the old one (vault/keyring.create_header)."""
    import os

    from otpbridge.vault.format import VaultKey, peek_epoch
    from otpbridge.vault.keyring import create_header

    raw = os.urandom(32)
    header, ring, made = create_header(raw, vault_id=old_key.vault_id, epoch=epoch, created=int(s.now()),
                                       keep=keep, new=new, stats=s.stats, now=int(s.now()),
                                       auth_from=old_key.keyring, rotate_auth=rotate_auth)
    key = VaultKey(old_key.vault_id, epoch, raw, peek_epoch(header).digest)
    key.keyring = ring
    kind = getattr(opens_with, "kind", "passphrase")
    key.slot = next((x.id for x in ring.slots if x.id == old_key.slot), "")
    if not key.slot and kind == "passphrase" and made:
        key.slot = next(iter(made.values()))
    cache = s.key_cache()
    with cache.lock:
        cache.put(key.header_digest, opens_with, key)
    return header, key


@exclusive
def rekey(
    s: Session,
    build: Callable[[Any, int], tuple[bytes, Any]],
    *,
    opens_new: Secret,
    kind: str = "keys",
    discard_remote_only: bool = False,
    dry_run: bool = False,
    accept_rollback: bool = False,
    allow_deletions: bool = False,
) -> RotationReport:
    """A new epoch whose header ``build(old_key, epoch)`` writes, everything re-sealed under
    its key, the old epoch deleted: a passphrase change (``kind="change"``; the old
    credential opens the old epoch, ``opens_new`` the new) or a change of the key slots
    (``kind="keys"``; the credential in use opens both). Resumable at every step."""
    from otpbridge.vault.format import open_epoch

    state = s.load_state()
    check_device(s, state)
    old = s.get_passphrase()
    listing = Listing.parse(s.backend.list())
    epochs = listing.epochs()
    if not epochs:
        raise UsageError("the remote holds no vault")
    newest = epochs[-1]
    # Resume? The newest epoch opens with the new credential and an older one with the old
    # (a slot change: the same credential opens both, so only when two epochs are left).
    # Each lookup tries at most KDF_BUDGET headers: planted ones must not cost minutes.
    resume_key = None
    if kind == "change" or len(epochs) > 1:
        resume_key = _open_epoch_with(s, state, listing, newest, opens_new, unfinished_ok=True)
    if resume_key is not None:
        older = [e for e in epochs if e < newest]
        old_key = None
        for epoch in list(reversed(older))[:KDF_BUDGET]:
            old_key = _open_epoch_with(s, state, listing, epoch, old)
            if old_key is not None:
                break
        if old_key is None and any(h.epoch < newest for h in listing.headers):
            # An older epoch still opens with the right old passphrase and may hold views
            # not folded in yet: never call the job done (and delete them) on a typo.
            raise AuthenticationError(
                f"the current passphrase does not open epoch {older[-1]}, which the interrupted "
                f"change of keys to epoch {newest} still has to fold in",
                hint="give the OLD passphrase as the current one and the new one as the new passphrase",
            )
        rep = RotationReport(old_epoch=old_key.epoch if old_key else newest, new_epoch=newest, resumed=True)
        if old_key is None:
            rep.already_done = True
            if not dry_run:  # header-less leftovers of the old epoch: nobody can open them
                for ref in [v for v in listing.views if v.epoch < newest]:
                    s.backend.delete(ref.name)
                    rep.deleted += 1
                reseal_store_cache(s, resume_key, resume_key)  # kept if it opens, else dropped
            return rep
        if dry_run:
            rep.dry_run = True
            return rep
        _finish_rotation(s, state, listing, old_key, resume_key, rep)
        return rep
    # A fresh change: first bring everything together under the old key.
    mode = "sync" if not s.stores or getattr(s.stores[0], "can_write", lambda: True)() else "backup"
    if dry_run:
        # A dry run lists every account it would drop (the real run applies the guard).
        pre = sync_changes(s, mode=mode, dry_run=True, accept_rollback=accept_rollback,
                           tombstone_remote_only=discard_remote_only, allow_deletions=True)
        rep = RotationReport(old_epoch=state.epoch, new_epoch=newest + 1, dry_run=True)
        rep.lost = pre.deleted if discard_remote_only else []
        return rep
    # The mass-deletion guard applies here too: an emptied store must not drop every account.
    pre = sync_changes(s, mode=mode, accept_rollback=accept_rollback, tombstone_remote_only=discard_remote_only,
                       allow_deletions=allow_deletions)
    state = s.load_state()
    listing = Listing.parse(s.backend.list())
    old_key, _ref = open_key(s, listing, state, old)  # cached: no second derivation
    if s.params is None:
        raise UsageError("no KDF parameters were chosen for the new epoch")
    new_epoch = max(listing.epochs() + [v.epoch for v in listing.views]) + 1
    header, new_key = build(old_key, new_epoch)
    rep = RotationReport(old_epoch=old_key.epoch, new_epoch=new_epoch, lost=pre.deleted if discard_remote_only else [])
    _reencrypt(s, listing, old_key, new_key, rep)
    hname = header_name(new_epoch, s.device_id, s.now())
    s.backend.write(hname, header)  # the commit point
    back = s.backend.read(hname)
    if back != header or open_epoch(back, opens_new, cache=s.key_cache(), hint=new_key.slot) != new_key:
        raise IntegrityError(f"{hname} did not read back as written")
    listing.add(hname, len(header))
    _finish_rotation(s, state, listing, old_key, new_key, rep)
    return rep


def _open_epoch_with(s: Session, state: SyncState, listing: Listing, epoch: int, credential: Secret, *,
                     unfinished_ok: bool = False) -> Any:
    """The key of ``epoch`` if ``credential`` opens one of its headers (at most KDF_BUDGET
    tried), else None. ``unfinished_ok``: a header cut short before a re-key's commit point
    is skipped (that run starts afresh) instead of being an integrity failure."""
    from otpbridge.vault.format import WrongPassphrase, open_epoch

    for ref in header_order(s, listing.headers_of(epoch), state)[:KDF_BUDGET]:
        try:
            return open_epoch(read_header(s, ref, state.vault_id), credential, stats=s.stats,
                              cache=s.key_cache(), hint=state.slot)
        except WrongPassphrase:
            continue
        except IntegrityError as exc:
            if not (unfinished_ok and header_may_be_unfinished(ref, state, exc)):
                raise
    return None


def _reencrypt(s: Session, listing: Listing, old_key: Any, new_key: Any, rep: RotationReport) -> None:
    """Re-seal every view and delta of the old epoch that has no twin in the new one yet
    (a delta stays a delta: same device, sequence number, checkpoint and time)."""
    twins = {(v.device, v.seq) for v in listing.views_of(new_key.epoch)}
    todo = [v for v in listing.views_of(old_key.epoch) if (v.device, v.seq) not in twins]
    from otpbridge.vault.format import max_object_size

    for i, ref in enumerate(todo):
        s.tick("re-encrypting", i, len(todo))
        try:
            check_size(ref.name, ref.size, max_object_size())
            raw = s.backend.read(ref.name)
            plain = old_key.open(raw, kind=ref.kind, device=ref.device, seq=ref.seq)
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
    reseal_store_cache(s, old_key, new_key)
    final = Listing.parse(s.backend.list())
    state = s.load_state()
    state.epoch = new_key.epoch
    state.header = next((h.name for h in final.headers_of(new_key.epoch) if h.name == state.header), "")
    if not state.header and len(final.headers_of(new_key.epoch)) == 1:
        state.header = final.headers_of(new_key.epoch)[0].name
    own = final.newest_views(new_key.epoch)
    state.seen = {dev: max(state.seen.get(dev, 0), ref.seq) for dev, ref in own.items() if dev != s.device_id}
    if s.device_id in own:
        state.last_seq = max(state.last_seq, own[s.device_id].seq)
    state.listing = final.signature()
    from otpbridge.vault.keyring import auth_of, hint_of

    state.slot = hint_of(new_key, state.slot)
    state.vault_auth = auth_of(new_key, state.vault_auth)
    state.save(s.state_dir)
