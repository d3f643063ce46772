"""``otpbridge key list|add|remove``: the vault's key slots (docs/SYNC.md "Keys").

Adding or removing a key is a re-key (engine/rotation.py): a new epoch, a new vault key
wrapped for every slot left, every view re-sealed, the old epoch deleted - so a removed
key opens nothing on the remote afterwards, and a crash at any step is finished by
running the command again. A version-1 vault (one passphrase, no slots) gets its
passphrase as the first slot at the first ``key add``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from otpbridge.core.errors import UsageError
from otpbridge.engine.layout import Listing
from otpbridge.engine.remote import open_key
from otpbridge.engine.rotation import RotationReport, new_keyring_epoch, rekey
from otpbridge.engine.session import Session, check_device, exclusive

# A version-1 vault's one passphrase, as `key list` shows it (it has no slot id yet).
IMPLICIT_ID = "-"


@dataclass
class KeyInfo:
    id: str
    type: str
    name: str
    created: int
    device: str
    public: str  # the recipient of an age/ssh slot; "" otherwise (a passphrase's is no one's business)
    in_use: bool  # the key this run opened with

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class KeyList:
    epoch: int
    keys: list[KeyInfo] = field(default_factory=list)
    slots: bool = True  # False: a version-1 vault (one passphrase, no slots)

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "slots": self.slots, "keys": [k.to_json() for k in self.keys]}


@dataclass
class KeyChange(RotationReport):
    key: str = ""  # the slot added or removed
    recovery_key: str = field(default="", repr=False)  # shown once, never stored


def _open(s: Session):
    state = s.load_state()
    check_device(s, state)
    listing = Listing.parse(s.backend.list())
    key, _ref = open_key(s, listing, state, s.get_passphrase())
    return state, key, listing


def _interrupted(s: Session, state: Any, listing: Listing, key: Any) -> Any:
    """The key of the older epoch a re-key interrupted after its commit point left on the
    remote (this run opened the newest epoch, and an older one still opens with the same
    credential), or None. Bounded like every opening (KDF_BUDGET); the key goes to the
    cache the re-key's resume uses too, so finishing the change costs no second derivation."""
    from otpbridge.core.errors import IntegrityError
    from otpbridge.engine.remote import KDF_BUDGET, header_order, read_header
    from otpbridge.vault.format import WrongPassphrase, open_epoch

    epochs = listing.epochs()
    if len(epochs) < 2 or key.epoch != epochs[-1]:
        return None
    for epoch in list(reversed(epochs[:-1]))[:KDF_BUDGET]:
        for ref in header_order(s, listing.headers_of(epoch), state)[:KDF_BUDGET]:
            try:
                return open_epoch(read_header(s, ref, state.vault_id), s.get_passphrase(), stats=s.stats,
                                  cache=s.key_cache(), hint=state.slot)
            except (WrongPassphrase, IntegrityError):
                continue
    return None


def _pending(listing: Listing, key: Any) -> bool:
    """Whether an interrupted re-key left older objects: an older epoch's header, or (cut
    short between deleting the old header and its views) header-less older views."""
    return any(h.epoch < key.epoch for h in listing.headers) or any(v.epoch < key.epoch for v in listing.views)


def _finish(s: Session, listing: Listing, key: Any, *, dry_run: bool) -> RotationReport:
    """The change asked for is already in the newest epoch (an interrupted run of the same
    command made it, or another device did): finish what an interrupted re-key left, so
    nothing older - which a removed key may still open - stays on the remote."""
    if any(h.epoch < key.epoch for h in listing.headers):
        def keep_all(old_key: Any, epoch: int):  # only if the interrupted change cannot resume
            return new_keyring_epoch(s, old_key, epoch, list(old_key.keyring.slots), [],
                                     opens_with=s.get_passphrase(), rotate_auth=False)

        rep = rekey(s, keep_all, opens_new=s.get_passphrase(), dry_run=dry_run)
    else:  # header-less leftovers of an older epoch: nobody opens them with a key of the vault
        rep = RotationReport(old_epoch=key.epoch, new_epoch=key.epoch, dry_run=dry_run)
        for ref in [v for v in listing.views if v.epoch < key.epoch]:
            if not dry_run:
                s.backend.delete(ref.name)
            rep.deleted += 1
    rep.resumed, rep.already_done = False, True
    return rep


def _removed_already(s: Session, state: Any, listing: Listing, key: Any, ref: str) -> str:
    """The id of the key ``ref`` names that is no longer in the vault but was: in the older
    epoch an interrupted re-key left, or among the keys this device saw at its last sync
    (``key_names``). "" when ``ref`` names no key this device knew (a typo)."""
    ring = key.keyring
    now = {x.id for x in ring.slots} if ring is not None else set()
    if _pending(listing, key):
        older = _interrupted(s, state, listing, key)
        was = older.keyring.find(ref) if older is not None and older.keyring is not None else []
        if len(was) == 1 and was[0].id not in now:
            return was[0].id
    ref = ref.strip()
    known = [i for i, text in state.key_names.items()
             if i not in now and ref and (text.endswith(f" {ref!r} ({i})") or i.startswith(ref.lower()))]
    return known[0] if len(known) == 1 else ""


def _describe(key: Any, names: dict[str, str]) -> KeyList:
    ring = key.keyring
    if ring is None:
        return KeyList(key.epoch, [KeyInfo(IMPLICIT_ID, "passphrase", "", 0, "", "", True)], slots=False)
    out = KeyList(key.epoch)
    for slot in ring.slots:
        public = slot.public if slot.type in ("age", "ssh") else ""
        device = names.get(slot.device, slot.device)
        out.keys.append(KeyInfo(slot.id, slot.type, slot.name, slot.created, device, public, slot.id == key.slot))
    return out


def _already_added(s: Session, key: Any, spec: Any) -> str | None:
    """The id of a slot of the newest epoch that is the key ``spec`` would add (same type
    and name, same recipient or passphrase): an interrupted run of this very ``key add``
    made it (also when the interruption came after the last remote step, so nothing tells
    it apart), or it was there before - adding it again would only duplicate it. A
    passphrase costs one derivation per slot of that name (at most four). None for a
    recovery code: a new one is drawn each time (a lost one was never shown)."""
    from otpbridge.vault.keyring import slot_holds

    ring = key.keyring
    if ring is None or spec.type == "recovery":
        return None
    name = spec.name.strip()
    candidates = [x for x in ring.slots if x.type == spec.type and x.name == name]
    if not candidates:
        return None
    for slot in candidates:
        if slot_holds(slot, spec, stats=s.stats):
            return slot.id
    return None


def _same_key(s: Session, key: Any, spec: Any, *, skip: set[str]) -> Any:
    """A slot under another name that holds the key ``spec`` would add (the same age or
    ssh recipient, or the same passphrase), or None. The passphrase this run opened with
    is compared without a derivation; other passphrase slots cost one each (at most
    four, and ``key add`` is rare)."""
    from otpbridge.vault.keyring import slot_holds

    ring = key.keyring
    if ring is None or spec.type == "recovery":
        return None
    if spec.type == "passphrase" and spec.secret is not None:
        current = s.get_passphrase()
        if getattr(current, "kind", "passphrase") == "passphrase" and hmac.compare_digest(
                current.reveal().encode(), spec.secret.reveal().encode()):
            opened = next((x for x in ring.slots if x.id == key.slot and x.type == "passphrase"), None)
            if opened is not None and opened.id not in skip:
                return opened
    for slot in ring.slots:
        if slot.id in skip or slot.type != spec.type or (spec.type == "passphrase" and slot.id == key.slot):
            continue  # (the slot this run opened holds the passphrase compared above)
        if slot_holds(slot, spec, stats=s.stats):
            return slot
    return None


@exclusive
def list_keys(s: Session) -> KeyList:
    """The vault's keys: type, name, id, who added it, and the one this run opened with."""
    state, key, _listing = _open(s)
    return _describe(key, state.device_names)


@exclusive
def add_key(s: Session, spec: Any, *, dry_run: bool = False) -> KeyChange:
    """Add a slot (vault/keyring.NewSlot): a re-key whose new header holds every slot of
    the old one and ``spec``. A recovery slot's code is drawn here and returned once."""
    from otpbridge.vault.keyring import MAX_RECOVERY_SLOTS, new_recovery_code

    _state, key, listing = _open(s)
    ring = key.keyring
    spec.name = spec.name.strip()  # 'srv ' is 'srv': names are typed, and compared, without edges
    done = _already_added(s, key, spec)
    if done is not None:  # e.g. this very key add, interrupted after its commit point
        change = KeyChange(**_finish(s, listing, key, dry_run=dry_run).__dict__)
        change.key = done
        return change
    same_name = [x for x in ring.slots if spec.name and x.name == spec.name] if ring is not None else []
    if (twin := _same_key(s, key, spec, skip={x.id for x in same_name})) is not None:
        raise UsageError(
            f"the vault already has this key: {twin.describe()}",
            hint="one slot per key: with two, 'key remove' of either would leave the other opening the vault",
        )
    if spec.type == "recovery" and same_name and same_name[0].type == "recovery":
        # A recovery code is never stored, so a rerun cannot tell "this very command,
        # interrupted before it printed the code" from an older code of that name: finish
        # the interrupted re-key, if any, and say what to do with the unseen code.
        finished = ""
        if _pending(listing, key) and not dry_run:
            _finish(s, listing, key, dry_run=False)
            finished = " (an interrupted key change was finished)"
        slot = same_name[0]
        raise UsageError(
            f"the vault already has a recovery code named {spec.name!r} ({slot.id}){finished}; if a 'key add "
            "--recovery' was interrupted before it printed its code, that code was never shown and nobody can "
            "use it",
            hint=f"remove it, then add another: otpbridge key remove {slot.id}; "
            f"otpbridge key add --recovery --name {spec.name}",
        )
    if spec.type == "recovery":
        if ring is not None and sum(x.type == "recovery" for x in ring.slots) >= MAX_RECOVERY_SLOTS:
            raise UsageError(f"the vault already has {MAX_RECOVERY_SLOTS} recovery codes",
                             hint="remove one first: otpbridge key remove ID")
        spec.secret = new_recovery_code()
    if same_name:
        raise UsageError(f"the vault already has a key named {spec.name!r}")
    spec.params = spec.params or s.params
    spec.device = s.device_id
    made: dict[str, str] = {}
    current = s.get_passphrase()

    def build(old_key: Any, epoch: int):
        from otpbridge.vault.keyring import NewSlot

        old_ring = old_key.keyring
        new = [spec]
        keep = list(old_ring.slots) if old_ring is not None else []
        if old_ring is None:  # version 1: its passphrase becomes the first slot
            new = [NewSlot("passphrase", "", current, params=s.params, device=s.device_id), spec]
        header, new_key = new_keyring_epoch(s, old_key, epoch, keep, new, opens_with=current, rotate_auth=False)
        ids = [x.id for x in new_key.keyring.slots]
        made["id"] = ids[-1]
        if old_ring is None:
            new_key.slot = ids[0]
        return header, new_key

    rep = rekey(s, build, opens_new=current, dry_run=dry_run)
    change = KeyChange(**rep.__dict__)
    change.key = made.get("id", "")
    if spec.type == "recovery" and not dry_run and not rep.resumed:
        change.recovery_key = spec.secret.reveal()
    return change


@exclusive
def remove_key(s: Session, ref: str, *, dry_run: bool = False) -> KeyChange:
    """Remove a slot by id (or its start) or name: a re-key without it. The last key and
    the key this run opened with are refused (the vault would lock this device out)."""
    state, key, listing = _open(s)
    ring = key.keyring
    if ring is None:
        raise UsageError("this vault has one key, its passphrase: the last key cannot be removed")
    found = ring.find(ref)
    if not found:
        gone = _removed_already(s, state, listing, key, ref)
        if gone:  # e.g. this very removal, interrupted after its commit point
            change = KeyChange(**_finish(s, listing, key, dry_run=dry_run).__dict__)
            change.key = gone
            return change
        raise UsageError(f"no key {ref!r} in the vault", hint="'otpbridge key list' shows ids and names")
    if len(found) > 1:
        raise UsageError(f"{ref!r} names {len(found)} keys: {', '.join(x.id for x in found)}",
                         hint="give more of the id")
    target = found[0]
    if len(ring.slots) == 1:
        raise UsageError("that is the vault's last key: it cannot be removed")
    if target.id == key.slot:
        raise UsageError(f"{target.describe()} is the key this run opened the vault with",
                         hint="open with another key of the vault (e.g. --identity FILE, "
                         "--recovery-key-file FILE or another passphrase) to remove this one")
    current = s.get_passphrase()

    def build(old_key: Any, epoch: int):
        keep = [x for x in old_key.keyring.slots if x.id != target.id]
        return new_keyring_epoch(s, old_key, epoch, keep, [], opens_with=current)

    rep = rekey(s, build, opens_new=current, dry_run=dry_run)
    change = KeyChange(**rep.__dict__)
    change.key = target.id
    return change


__all__ = ["IMPLICIT_ID", "KeyChange", "KeyInfo", "KeyList", "add_key", "list_keys", "remove_key"]
