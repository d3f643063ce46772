"""``otpbridge key list|add|remove``: the vault's key slots (docs/SYNC.md "Keys").

Adding or removing a key is a re-key (engine/rotation.py): a new epoch, a new vault key
wrapped for every slot left, every view re-sealed, the old epoch deleted - so a removed
key opens nothing on the remote afterwards, and a crash at any step is finished by
running the command again. A version-1 vault (one passphrase, no slots) gets its
passphrase as the first slot at the first ``key add``.
"""

from __future__ import annotations

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
    return state, key


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


@exclusive
def list_keys(s: Session) -> KeyList:
    """The vault's keys: type, name, id, who added it, and the one this run opened with."""
    state, key = _open(s)
    return _describe(key, state.device_names)


@exclusive
def add_key(s: Session, spec: Any, *, dry_run: bool = False) -> KeyChange:
    """Add a slot (vault/keyring.NewSlot): a re-key whose new header holds every slot of
    the old one and ``spec``. A recovery slot's code is drawn here and returned once."""
    from otpbridge.vault.keyring import MAX_RECOVERY_SLOTS, new_recovery_code

    _state, key = _open(s)
    ring = key.keyring
    if spec.type == "recovery":
        if ring is not None and sum(x.type == "recovery" for x in ring.slots) >= MAX_RECOVERY_SLOTS:
            raise UsageError(f"the vault already has {MAX_RECOVERY_SLOTS} recovery codes",
                             hint="remove one first: otpbridge key remove ID")
        spec.secret = new_recovery_code()
    if spec.name and ring is not None and any(x.name == spec.name for x in ring.slots):
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
        header, new_key = new_keyring_epoch(s, old_key, epoch, keep, new, opens_with=current)
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
    _state, key = _open(s)
    ring = key.keyring
    if ring is None:
        raise UsageError("this vault has one key, its passphrase: the last key cannot be removed")
    found = ring.find(ref)
    if not found:
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
