"""The remote as one run sees it: open the epoch key, read and check every device's
newest view, merge them, detect rollback; write a view and read it back; tidy old epochs.

Every operation (sync, restore, rotation, verify) goes through here to reach the vault's
objects; nothing here reads or writes a local store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from otpbridge.core.errors import (
    AuthenticationError,
    IntegrityError,
    OtpBridgeError,
    UnsafeObject,
    UsageError,
)
from otpbridge.core.secrets import Secret
from otpbridge.engine import cache
from otpbridge.engine.layout import (
    DELTA_KIND,
    VIEW_KIND,
    HeaderRef,
    Listing,
    ViewRef,
    decode_view,
    encode_view,
    object_name,
    record_fp,
)
from otpbridge.engine.merge import (
    Record,
    merge_views,
)
from otpbridge.engine.session import Session
from otpbridge.engine.state import SyncState

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.

# Key derivations one opening may spend over every header it tries: KDF_BUDGET headers
# of a version-1 vault, or the (at most four) passphrase slots of a version-2 header plus
# one kept for a second header (a restore falling back past a planted one).
RUN_KDF_LIMIT = 5
ORPHAN_GRACE = 3600  # a header-less newer epoch younger than this may be a rotation in flight
UPLOAD_GRACE = 900  # another device's view that does not open yet may be an upload in flight


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
    cache: Any = None  # engine.cache.RemoteCache after this run's reads (use_cache only)
    # This device's newest object as a record fingerprint map (id -> layout.record_fp), or
    # None when not known: what the next delta is computed against (docs/SYNC.md "Deltas").
    own_fp: dict[str, str] | None = None

    @property
    def epoch(self) -> int:
        return self.key.epoch


# --- opening the remote ----------------------------------------------------------------
def describe_device(state: SyncState, remote_names: dict[str, str], device: str) -> str:
    name = remote_names.get(device) or state.device_names.get(device)
    return f"{name!r} ({device})" if name else device


def format_time(ts: float) -> str:
    if ts <= 0:
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def check_size(name: str, size: int, limit: int) -> None:
    """Refuse from the listing what no valid object can be (a hostile remote's 10 GB file)."""
    if size > limit:
        raise IntegrityError(f"{name} is {size} bytes, more than any valid object ({limit})")


def read_header(s: Session, ref: HeaderRef, vault_id: str, *, cached: bool = False) -> bytes:
    from otpbridge.vault.format import max_header_size, peek_epoch

    check_size(ref.name, ref.size, max_header_size())
    if cached:  # the local copy of this immutable object (engine/cache.py), checked as a download
        raw = cache.read_header_bytes(s, ref.name, ref.size)
        try:
            peek_epoch(raw)
        except IntegrityError:
            cache.forget_header(s, ref.name)
            raw = cache.download(s, ref.name)
    else:
        raw = cache.download(s, ref.name)
    try:
        info = peek_epoch(raw)
    except IntegrityError as exc:
        raise DamagedHeader(f"{ref.name}: {exc}", hint=quarantine_hint(ref.name)) from None
    if info.epoch != ref.epoch:
        raise IntegrityError(f"{ref.name} holds epoch {info.epoch}, not {ref.epoch} (renamed or replayed)")
    if vault_id and info.vault_id.hex() != vault_id:
        raise IntegrityError(
            f"{ref.name} belongs to another vault ({info.vault_id.hex()}, expected {vault_id})",
            hint="is this the right remote?",
        )
    return raw


KDF_BUDGET = 2  # vault key derivations one opening may spend, whatever the remote holds


def header_order(s: Session, refs: list[HeaderRef], state: SyncState) -> list[HeaderRef]:
    """The order to try an epoch's headers in: the one this device opened last first, then
    the cheapest to derive (a header planted with the costliest parameters comes last)."""
    if len(refs) < 2:
        return list(refs)
    from otpbridge.vault.format import max_header_size, peek_epoch

    def cost(ref: HeaderRef) -> tuple:
        if ref.name == state.header:
            return (0, 0, ref.name)
        try:
            check_size(ref.name, ref.size, max_header_size())
            p = peek_epoch(s.backend.read(ref.name)).params
            return (1, p.memory_kib * p.iterations * p.lanes, ref.name)
        except UnsafeObject:
            raise  # a symlink or FIFO among the headers: exit 4 naming it
        except IntegrityError:
            return (2, 0, ref.name)  # read_header names the failure when it is tried

    return sorted(refs, key=cost)


def extra_headers(listing: Listing, epoch: int) -> str:
    """A warning (empty if none) about an epoch with more than the one header otpbridge writes."""
    refs = listing.headers_of(epoch)
    if len(refs) < 2:
        return ""
    return (
        f"epoch {epoch} has {len(refs)} headers ({', '.join(r.name for r in refs)}); otpbridge writes one per "
        "epoch, so all but one were put there by someone else (run 'otpbridge verify'; docs/SYNC.md 'Epoch headers')"
    )


class DamagedHeader(IntegrityError):
    """An epoch header whose bytes do not even parse (truncated, extended, garbled)."""


def header_may_be_unfinished(ref: HeaderRef, state: SyncState, exc: Exception) -> bool:
    """A header whose bytes do not parse may be an upload cut short (a server without
    atomic uploads) by a passphrase change that crashed before its commit point - but
    only when its epoch is newer than any this device verified: a damaged header of a
    known epoch, a well-formed header of another vault or epoch, or one too big for any
    header stay integrity failures. Skipping it cannot roll anything back: the rollback
    checks still apply to the epoch that opens, and whoever can damage it could delete it."""
    return isinstance(exc, DamagedHeader) and ref.epoch > state.epoch


def open_key(
    s: Session, listing: Listing, state: SyncState, passphrase: Secret, *, fallback: bool = False,
    cached: bool = False,
) -> tuple[Any, HeaderRef]:
    """Unwrap the newest epoch; say who changed the passphrase when it no longer opens.

    At most :data:`KDF_BUDGET` key derivations, whatever the remote holds: the header
    this device opened last is tried first (docs/SYNC.md "Epoch headers").
    ``fallback`` (restore): a newer epoch that does not open may be a rotation that
    crashed before its end; an older one that does is then used, with a warning.
    """
    from otpbridge.vault.format import WrongPassphrase, open_epoch

    epochs = listing.epochs()
    if not epochs:
        s.backend.check_present()  # an unmounted drive is exit 5, not "no vault any more"
        if state.vault_id:
            raise IntegrityError(
                f"{s.backend.describe()} holds no vault any more (emptied, or the wrong remote)",
                hint="check the remote; 'otpbridge restore' elsewhere still works from another copy",
            )
        raise UsageError(f"{s.backend.describe()} holds no otpbridge vault", hint="run 'otpbridge init REMOTE' first")
    newest = epochs[-1]
    first_error: WrongPassphrase | None = None
    refused: IntegrityError | None = None
    damaged: list[str] = []
    spent_before = s.stats["kdf"]
    tried = 0  # headers a key derivation was spent on (KDF_BUDGET of them at most)
    for epoch in reversed(epochs):
        refs = header_order(s, listing.headers_of(epoch), state)
        wrong = damaged_here = False
        for i, ref in enumerate(refs):
            if tried >= KDF_BUDGET:
                if len(refs) < 2:
                    break
                # More headers than a run may derive for: only a planted one makes that.
                raise IntegrityError(
                    f"{extra_headers(listing, epoch) or f'epoch {epoch} has more headers than one run may try'}; "
                    f"{i} tried did not open with this passphrase, {len(refs) - i} left untried",
                    hint="delete the epoch headers this vault's devices did not write (see 'otpbridge verify' "
                    "and docs/SYNC.md 'Epoch headers'), then run again",
                )
            try:
                raw = read_header(s, ref, state.vault_id, cached=cached)
            except UnsafeObject:
                raise
            except IntegrityError as exc:
                if header_may_be_unfinished(ref, state, exc):
                    damaged.append(str(exc))  # a rotation's upload cut short (it names the header)
                    damaged_here = True
                    continue
                if len(refs) < 2:
                    raise
                refused = refused or exc  # one of several (a planted one): the others may open
                continue
            try:
                # A version-2 header tries up to one derivation per passphrase slot: all
                # headers of a run share RUN_KDF_LIMIT (docs/SYNC.md "Epoch headers").
                # Each header still allowed keeps one derivation in reserve, so a planted
                # many-slot header cannot stop a restore from falling back to the real one.
                # An epoch older than the one this device opened is checked as a rollback
                # (load_remote: exit 4 unless --accept-rollback), not by links, which only
                # run forward: an older header carries none under the newer secret.
                spent = s.stats["kdf"] - spent_before
                key = open_epoch(raw, passphrase, stats=s.stats, cache=s.key_cache(), hint=state.slot,
                                 max_derivations=RUN_KDF_LIMIT - spent - (KDF_BUDGET - tried - 1),
                                 known_auth="" if s.accept_new_keys or epoch < state.epoch else state.vault_auth)
            except WrongPassphrase as exc:
                if s.stats["kdf"] - spent_before > spent:
                    tried += 1
                first_error = first_error or exc
                wrong = True
                continue
            except IntegrityError as exc:  # bounds, keyring, links: say which object
                if ref.name in str(exc):
                    raise
                raise type(exc)(f"{ref.name}: {exc}", hint=exc.hint) from None
            if damaged:
                s.warn(f"skipped the damaged epoch header ({damaged[0]}): an interrupted passphrase change "
                       "(the next 'otpbridge passphrase change' on that device finishes it)")
            elif epoch != newest:
                s.warn(f"using epoch {epoch}: the newer epoch {newest} does not open with this passphrase")
            return key, ref
        if tried >= KDF_BUDGET:
            break
        if not fallback and (wrong or not damaged_here):
            break  # an older epoch is tried only past an unfinished header, or for restore
    if first_error is None and refused is None:
        raise IntegrityError(f"no epoch header of the vault can be read: {damaged[0] if damaged else 'none listed'}")
    ref = listing.headers_of(newest)[-1]
    if 0 < state.epoch < newest and _slot_removed(s, ref, state):
        # Worded as what the header's clear text shows, not as fact: without a key that
        # opens it this device cannot tell a real removal from a forged header (a device
        # that opens the vault can: 'verify', exit 4 for a forgery).
        raise AuthenticationError(
            f"the key this device opened the vault with, {state.key_names.get(state.slot, state.slot)}, is not in "
            f"the vault's newest key-slot header (epoch {newest}, named as written by device "
            f"{describe_device(state, {}, ref.device)} at {format_time(ref.time)}): it was removed "
            "('otpbridge key remove'), or that header is not genuine",
            hint="if your key was removed, ask someone who still holds a key to add one for you ('otpbridge key "
            "add' on their device); if not, 'otpbridge verify' on a device whose key opens the vault checks the "
            "header. The accounts this device already has stay in its stores",
        )
    if 0 < state.epoch < newest:
        raise AuthenticationError(
            f"the passphrase was changed on device {describe_device(state, {}, ref.device)} at {format_time(ref.time)}",
            hint="use the new passphrase (e.g. OTPBRIDGE_PASSPHRASE or --passphrase-file)",
        )
    if first_error is None:
        assert refused is not None
        raise refused
    raise first_error


def _slot_removed(s: Session, ref: HeaderRef, state: SyncState) -> bool:
    """True when the newest header no longer has the passphrase slot this device opened
    last (``key remove``; a passphrase change keeps the slot's id): the two failures
    need different advice. The slot ids are in the header's clear text."""
    if not state.slot:
        return False
    from otpbridge.vault.keyring import is_v2, parse_header

    try:
        raw = read_header(s, ref, state.vault_id, cached=True)
        return is_v2(raw) and state.slot not in {x.id.hex() for x in parse_header(raw).slots}
    except OtpBridgeError:
        return False


def open_view(s: Session, key: Any, ref: ViewRef) -> dict:
    """One object (a view, or a delta: its own records only), opened and parsed."""
    from otpbridge.vault.format import max_object_size

    check_size(ref.name, ref.size, max_object_size())
    raw = cache.download(s, ref.name)
    plain = key.open(raw, kind=ref.kind, device=ref.device, seq=ref.seq)
    data = decode_view(plain, ref)
    try:
        version = int(data.get("v", 1))
        data["_records"] = {r.id: r for r in (Record.from_json(x, version=version) for x in data["records"])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # no text: it may quote a field
        raise IntegrityError(f"{ref.name}: a record of the {ref.kind} is malformed ({type(exc).__name__})") from None
    return data


class BrokenChain(IntegrityError):
    """A delta whose chain back to its checkpoint has a missing or unreadable link: never
    an upload in flight (every link was written before the delta), always exit 4."""


def chain_link(listing: Listing, ref: ViewRef, data: dict, who: str = "",
               opener: Any = None) -> ViewRef:
    """The object the delta ``ref`` builds on (its ``prev``), from the listing. Two objects
    with that sequence number (two copies of one home, docs/SYNC.md "Copied homes") are
    told apart by the nonce ``pw`` the delta recorded of it (``opener(ref)`` opens one)."""
    prev = int(data["prev"])
    found = [v for v in listing.views_of(ref.epoch, ref.device) if v.seq == prev]
    fits = [v for v in found if (not v.is_delta if prev == ref.base else v.base == ref.base)]
    if len(fits) > 1 and opener is not None and data.get("pw"):
        fits = [v for v in fits if _opens_with_nonce(opener, v, data["pw"])]
    if len(fits) != 1:
        what = "its checkpoint view" if prev == ref.base else f"a delta on checkpoint #{ref.base}"
        state = "not on the remote" if not fits else f"on the remote {len(fits)} times"
        raise BrokenChain(
            f"{ref.name} builds on #{prev} of device {who or ref.device} ({what}), which is {state}: "
            "a link of the device's chain is missing",
            hint="someone deleted or moved an object of this vault; if a copy of it exists put it back, else "
            + quarantine_hint(ref.name).replace("move the object aside", "move this delta aside"),
        )
    return fits[0]


def _opens_with_nonce(opener: Any, ref: ViewRef, nonce: str) -> bool:
    try:
        return opener(ref).get("w") == nonce
    except UnsafeObject:
        raise
    except (IntegrityError, ValueError, KeyError, TypeError):
        return False


def open_state(
    s: Session, key: Any, listing: Listing, ref: ViewRef, *, have: Any = None,
    opened: dict[str, dict] | None = None, who: str = "", have_links: list[int] | None = None,
    have_link_refs: list | None = None,
) -> dict:
    """A device's state as of ``ref``: a view, or its checkpoint with every delta up to
    ``ref`` applied (docs/SYNC.md "Deltas"). Returns the newest object's metadata with
    ``_records`` (the whole state) and, for a delta, ``_chain`` (the objects read, oldest
    first); a view is returned as :func:`open_view` reads it.

    ``have(link) -> bool``: an object of the chain whose state the caller holds already (the
    download cache); the walk stops there and ``_records`` is only what changed after it
    (``_partial``: merging it into the held state gives the whole state). ``opened``:
    objects already opened, by name (verify). A missing or unreadable link is
    :class:`BrokenChain` naming it; the object ``ref`` itself fails as :func:`open_view`."""
    chain: list[dict] = []
    refs: list[ViewRef] = []  # the objects of ``chain``, as listed
    cur = ref
    partial = False
    while True:
        if cur is not ref and have is not None and have(cur):
            partial = True
            if not cur.is_delta:  # the held object is a checkpoint: its chain is itself
                have_links, have_link_refs = [cur.seq], [link_ref(cur)]
            break
        if opened is not None and cur.name in opened:
            data = opened[cur.name]
        elif cur is ref:
            data = open_view(s, key, cur)
        else:
            try:
                data = open_view(s, key, cur)
            except UnsafeObject:
                raise
            except (IntegrityError, ValueError, KeyError, TypeError) as exc:
                raise BrokenChain(f"{cur.name}, a link of the chain of {ref.name}, does not open: {exc}",
                                  hint=quarantine_hint(cur.name)) from None
        chain.append(data)
        refs.append(cur)
        if not cur.is_delta:
            break
        nxt = chain_link(listing, cur, data, who, opener=lambda v: opened[v.name] if opened and v.name in opened
                         else open_view(s, key, v))
        cur = nxt
    chain.reverse()
    refs.reverse()
    if len(chain) == 1 and not partial:
        return chain[0]  # a view: exactly what open_view read
    out = {k: v for k, v in chain[-1].items() if k not in ("records", "_records")}
    records: dict[str, Record] = {} if partial else dict(chain[0]["_records"])
    for data in chain if partial else chain[1:]:
        if not partial:
            for rid in data.get("gone") or ():
                records.pop(rid, None)
        records.update(data["_records"])
    out["_records"] = records
    out["_chain"] = chain
    out["_partial"] = partial
    # The sequence numbers of the whole chain, checkpoint first (check_links).
    # (A partial read on a cache kept before links were: only the checkpoint and the newest.)
    # With each link's listed name, size and time (``_link_refs``), so that a link changed
    # in place after it was read is found from the listing too.
    read = [link_ref(r) for r in refs]
    if not partial:
        out["_links"] = [int(d["seq"]) for d in chain]
        out["_link_refs"] = read
    elif have_links:
        out["_links"] = list(have_links) + [int(d["seq"]) for d in chain]
        if have_link_refs:
            out["_link_refs"] = list(have_link_refs) + read
    return out


def link_ref(ref: ViewRef) -> list:
    """What the download cache keeps of one link of a chain: ``[name, size, mtime]``."""
    return [ref.name, ref.size, ref.mtime]


def check_links(listing: Listing, ref: ViewRef, data: dict, who: str = "") -> None:
    """Every link of the chain a run holds for ``ref`` (``_links``, read now or kept in the
    download cache) is still on the remote: a link deleted after it was read is found
    from the listing alone, without downloading anything."""
    links = data.get("_links") or ([ref.base, ref.seq] if ref.is_delta else [ref.seq])
    mine = listing.views_of(ref.epoch, ref.device)
    for i, seq in enumerate(links):
        ok = any(v.seq == seq and (not v.is_delta if i == 0 else v.base == links[0]) for v in mine)
        if not ok:
            what = "its checkpoint view" if i == 0 else f"a delta on checkpoint #{links[0]}"
            raise BrokenChain(
                f"{ref.name} builds on #{seq} of device {who or ref.device} ({what}), which is not on the remote: "
                "a link of the device's chain is missing",
                hint="someone deleted or moved an object of this vault; if a copy of it exists put it back, else "
                + quarantine_hint(ref.name).replace("move the object aside", "move this delta aside"),
            )
    listed = {v.name: v for v in mine}
    for entry in data.get("_link_refs") or ():
        name, size, mtime = entry
        now = listed.get(name)
        if now is None:
            continue  # a link under another name (a newer epoch's copy): the check above judged it
        if mtime is None and now.mtime is not None and now.size == size:
            entry[2] = now.mtime  # this device's own upload: its time is learnt at the next listing
            continue
        if now.size != size or (mtime is not None and now.mtime is not None and abs(now.mtime - mtime) >= 1e-3):
            change = f"{size} bytes then, {now.size} now" if now.size != size else "rewritten since"
            raise BrokenChain(
                f"{name}, a link of the chain of {ref.name} (device {who or ref.device}), changed on the remote "
                f"after this device read it ({change}): objects are never rewritten",
                hint=quarantine_hint(name),
            )


def state_fp(data: dict, held: dict[str, str] | None) -> dict[str, str] | None:
    """The record fingerprints of a state :func:`open_state` read (``held``: those of the
    state it stopped at, for a partial read; None when not known)."""
    if not data.get("_partial"):
        return {rid: record_fp(r.to_json()) for rid, r in data["_records"].items()}
    if held is None:
        return None
    fp = dict(held)
    for link in data["_chain"]:
        for rid in link.get("gone") or ():
            fp.pop(rid, None)
        for rid, r in link["_records"].items():
            fp[rid] = record_fp(r.to_json())
    return fp


def load_remote(
    s: Session,
    state: SyncState,
    passphrase: Secret,
    *,
    listing: Listing | None = None,
    accept_rollback: bool = False,
    fallback: bool = False,
    use_cache: bool = False,
) -> Remote:
    """Open the vault: the newest epoch's key, every device's newest view, merged; rollback
    checks. ``use_cache`` (sync, backup): views this device read before (engine/cache.py)
    are taken from its sealed cache instead of being downloaded again."""
    if listing is None:
        listing = Listing.parse(s.backend.list())
    key, header = open_key(s, listing, state, passphrase, fallback=fallback, cached=use_cache)
    if state.vault_id and key.vault_id.hex() != state.vault_id:
        raise IntegrityError("the remote holds another vault than the one this device joined")
    if state.epoch > key.epoch and not fallback:
        rollback(f"the remote's epoch {key.epoch} is older than epoch {state.epoch} seen before", accept_rollback)
    epoch_moved = 0 < state.epoch < key.epoch
    remote = Remote(listing=listing, key=key, header=header)
    if extra := extra_headers(listing, key.epoch):
        remote.warnings.append(extra)
    newest = {dev: ref for dev, ref in listing.newest_views(key.epoch).items()}
    warm = cache.load(s, key) if use_cache and not epoch_moved else None
    if warm is not None and not cache.fits(warm, newest):
        warm = None
    fresh: dict[str, dict] = {}  # views downloaded by this run
    for dev in sorted(newest):
        candidates = sorted(listing.views_of(key.epoch, dev), key=lambda v: v.seq, reverse=True)
        for ref in candidates:
            hit = warm.views.get(dev) if warm is not None else None
            who = describe_device(state, remote.names, dev)
            if hit is not None and hit.matches(ref):
                s.stats["cache_hits"] += 1
                data = dict(hit.meta, device=dev, seq=ref.seq)
                if ref.is_delta:
                    data["_links"] = hit.meta.get("links")
                    data["_link_refs"] = hit.meta.get("link_refs")
                    check_links(listing, ref, data, who)
                remote.views[dev] = (ref, data)
                if dev == s.device_id:
                    remote.own_fp = hit.fp
                break
            try:
                data = open_state(s, key, listing, ref, have=hit.matches if hit is not None else None,
                                  who=who, have_links=hit.meta.get("links") if hit is not None else None,
                                  have_link_refs=hit.meta.get("link_refs") if hit is not None else None)
                if ref.is_delta:
                    check_links(listing, ref, data, who)
            except (UnsafeObject, BrokenChain):
                raise  # a symlink, FIFO or oversized file is never "still being written", nor a lost link
            except (IntegrityError, ValueError, KeyError, TypeError) as exc:
                known = state.seen.get(dev, 0) if dev != s.device_id else state.last_seq
                if ref.seq <= known and not epoch_moved:
                    raise IntegrityError(f"{ref.name} was verified before and now fails: {exc}",
                                         hint=quarantine_hint(ref.name)) from None
                if dev == s.device_id:
                    pending = (state.pending or {}).get("seq")
                    if state.token and ref.seq != pending:
                        # This home wrote every view under its id up to last_seq, and the
                        # pending one after it: anything else that does not open is junk.
                        raise IntegrityError(
                            f"{ref.name} is under this device's id, was not written by this home and does not "
                            f"open: {exc}",
                            hint=quarantine_hint(ref.name),
                        ) from None
                    remote.garbage.append(ref)  # our own interrupted upload
                elif ref is candidates[0] and in_flight(s, ref):
                    remote.skipped.append(ref)
                    remote.warnings.append(f"skipped {ref.name} (unreadable, maybe still being written): {exc}")
                else:
                    # Older than any upload takes, or a newer view of the device exists.
                    raise IntegrityError(
                        f"{ref.name} of device {describe_device(state, remote.names, dev)} does not open "
                        f"(written {format_time(ref.time)}, not an upload in progress): {exc}",
                        hint=quarantine_hint(ref.name),
                    ) from None
                continue
            remote.views[dev] = (ref, data)
            fresh[dev] = data
            if dev == s.device_id:
                remote.own_fp = state_fp(data, hit.fp if hit is not None else None)
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
    if warm is not None and warm.merged_from & set(remote.removed):
        # A device whose records the cache merged was removed since: rebuild from the remote.
        cache.drop(s)
        return load_remote(
            s, state, passphrase, listing=listing, accept_rollback=accept_rollback, fallback=fallback, use_cache=True
        )
    parts = [d["_records"] for dev, d in fresh.items() if dev not in remote.removed]
    remote.records = merge_views(([warm.records] if warm is not None else []) + parts)
    if use_cache:
        remote.cache = cache.update(warm, key, remote.views, fresh, remote.removed, remote.records, s.now())
        if s.device_id in remote.views and s.device_id in remote.cache.views:
            remote.cache.views[s.device_id].fp = remote.own_fp
    # Rollback: no device may be older than what we verified before.
    for dev, seen in sorted(state.seen.items()):
        if dev in remote.removed:
            continue
        got = remote.views[dev][0].seq if dev in remote.views else 0
        if got >= seen:
            continue
        if epoch_moved:
            remote.warnings.append(
                f"device {describe_device(state, remote.names, dev)} lost changes across the passphrase change "
                f"(had #{seen}, now #{got})"
            )
            continue
        rollback(
            f"the remote serves device {describe_device(state, remote.names, dev)} at #{got}, older than #{seen} seen before",
            accept_rollback,
        )
    own = remote.views[s.device_id][0].seq if s.device_id in remote.views else 0
    if own < state.last_seq and s.device_id not in remote.removed:
        if epoch_moved:
            remote.own_regressed = True  # our last view was lost in a passphrase change
        else:
            rollback(
                f"the remote serves this device's own view at #{own}, older than #{state.last_seq} written before",
                accept_rollback,
            )
            remote.own_regressed = True
    return remote


def in_flight(s: Session, ref: ViewRef) -> bool:
    """Whether an unreadable view may still be being uploaded (younger than UPLOAD_GRACE
    by the remote's clock, or by the name's when the remote gives no time). A time further
    in the future than that is no upload either (a planted mtime must not buy forever)."""
    written = ref.mtime if ref.mtime is not None else ref.time
    return abs(s.now() - written) < UPLOAD_GRACE


def quarantine_hint(name: str) -> str:
    base = name.rpartition("/")[2]
    return (
        "if no device of yours wrote it, the remote was tampered with: move the object aside, e.g. "
        f"'rclone moveto REMOTE:{name} REMOTE:quarantine/{base}' (or 'mv' in a local folder), "
        "then run again (docs/SYNC.md 'Quarantine')"
    )


def rollback(message: str, accept: bool) -> None:
    if not accept:
        raise IntegrityError(
            "rollback detected: " + message,
            hint="someone restored an old copy of the remote or tampered with it; "
            "if you restored it on purpose, run again with --accept-rollback",
        )

def upload_view(s: Session, key: Any, payload: dict, listing: Listing, when: float | None = None) -> str:
    """Seal, write, and decrypt what the remote holds; then list it. A payload with a
    ``base`` is a delta (kind ``delta``, named after its checkpoint), else a view.

    ``Backend.write`` reads the object back and compares it byte for byte before it
    returns, so ``blob`` *is* what the remote now holds: opening it proves the uploaded
    object decrypts, without downloading it a second time."""
    seq, dev = payload["seq"], payload["device"]
    base = int(payload.get("base") or 0)
    kind = DELTA_KIND if base else VIEW_KIND
    blob = key.seal(kind, dev, seq, encode_view(payload))
    name = object_name(dev, key.epoch, seq, s.now() if when is None else when, base)
    s.backend.write(name, blob)
    s.stats["upload_bytes"] += len(blob)
    back = blob
    ref = ViewRef(name, len(back), dev, key.epoch, seq, 0, base=base)
    data = decode_view(key.open(back, kind=kind, device=dev, seq=seq), ref)
    if len(data["records"]) != len(payload["records"]) or data.get("w") != payload.get("w"):
        # Another writer of this name (only a copy of this home can produce it) came between.
        raise IntegrityError(
            f"{name} did not read back as written",
            hint="if another copy of this home syncs too, the next run says so; nothing local was changed",
        )
    listing.add(name, len(blob))
    return name


def delete_object(s: Session, listing: Listing, name: str) -> None:
    s.backend.delete(name)
    listing.remove(name)

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
                delete_object(s, listing, ref.name)
                done.append(ref.name)
            for ref in views:
                delete_object(s, listing, ref.name)
                done.append(ref.name)
        elif not headers:
            # A re-encrypted view keeps its original time in its name, so only the time the
            # remote saw it written tells a crashed change from one in flight on another
            # device (which commits, then deletes the old epoch: deleting these lost all).
            for ref in views:
                written = ref.mtime
                if written is not None and s.now() - written > ORPHAN_GRACE and s.now() - ref.time > ORPHAN_GRACE:
                    delete_object(s, listing, ref.name)
                    done.append(ref.name)
    return done
