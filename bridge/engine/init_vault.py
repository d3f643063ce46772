"""``otpbridge init``: create a vault on an empty remote, or join the one there."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from otpbridge.core.errors import (
    IntegrityError,
    UsageError,
)
from otpbridge.core.secrets import Secret
from otpbridge.engine.layout import (
    Listing,
    header_name,
)

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
from otpbridge.engine.remote import (
    open_key,
)
from otpbridge.engine.session import Session, exclusive
from otpbridge.engine.state import SyncState, new_token


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
    # Set when the default device name was taken in the vault: the name given instead.
    device_name: str = ""
    # A new vault made with a recovery code (init --recovery-key): shown once, never stored.
    recovery_key: str = field(default="", repr=False)


def _names_in_use(s: Session, listing: Listing, passphrase: Secret) -> set[str]:
    """The names of the vault's other devices (from their newest views)."""
    from otpbridge.engine.remote import load_remote

    try:
        remote = load_remote(s, SyncState(), passphrase, listing=listing, fallback=True)
    except (IntegrityError, UsageError):
        return set()
    return {name for dev, name in remote.names.items() if dev != s.device_id and dev not in remote.removed}


@exclusive
def init_vault(s: Session, state: SyncState, new_passphrase: Callable[[], Secret] | None = None, *,
               unique_name: bool = False, recovery: bool = False) -> InitResult:
    """Create a vault on an empty remote, or join the one there (passphrase checked).

    ``unique_name``: the device name is a default (the host name); when another device
    of the vault already has it, a short suffix from the device id is added.

    ``new_passphrase`` is asked instead of the usual getter when a vault is created (the
    CLI asks twice on a terminal and rates its strength).

    ``recovery``: the new vault gets key slots (docs/FORMAT.md §12): the passphrase and a
    recovery code, returned once in the result.
    """
    from otpbridge.vault.format import create_epoch, open_epoch
    from otpbridge.vault.keyring import auth_of, hint_of

    listing = Listing.parse(s.backend.list())
    if listing.is_vault:
        if recovery:
            raise UsageError("the remote already holds a vault: a recovery code is added to it with "
                             "'otpbridge key add --recovery' (after joining)")
        passphrase = s.get_passphrase()
        key, ref = open_key(s, listing, SyncState(), passphrase)
        state.header = ref.name
        state.slot = hint_of(key, state.slot)
        state.vault_auth = auth_of(key, state.vault_auth)
        result = InitResult(False, key.vault_id.hex(), key.epoch)
        if not state.vault_id and any(v.device == s.device_id for v in listing.views):
            # A fresh state (lost, or a config.toml copied without it) would share the id
            # with whoever wrote those views - maybe a live copy of this home. A new id
            # keeps both apart; the first sync then keeps every local account.
            from otpbridge.engine.layout import new_device_id

            old = s.device_id
            s.device_id = result.device_id = new_device_id()
            s.note(f"device id {old} already has views on the remote (another copy of this home, or its "
                   f"earlier state): joining as the new device {s.device_id}; 'otpbridge devices remove {old}' "
                   "drops the old id once no copy uses it")
        taken = _names_in_use(s, listing, passphrase)
        if s.device_name and s.device_name in taken:
            if unique_name:
                taken_name = s.device_name
                s.device_name = result.device_name = f"{taken_name}-{s.device_id[:4]}"
                s.note(f"another device of the vault is already named {taken_name!r}: "
                       f"this one is {s.device_name!r} (choose another with --device NAME)")
            else:
                s.warn(f"another device of the vault is already named {s.device_name!r}; messages will show both "
                       "by that name (choose another with --device NAME)")
    elif not listing.empty:
        raise UsageError(
            f"{s.backend.describe()} is not empty and holds no otpbridge vault",
            hint="choose an empty folder (otpbridge never writes into a folder it does not own)",
        )
    else:
        if s.params is None:
            raise UsageError("no KDF parameters were chosen for the new vault")
        passphrase = new_passphrase() if new_passphrase is not None else s.get_passphrase()
        code = None
        if recovery:
            from otpbridge.vault.format import VAULT_ID_LEN, VaultKey, peek_epoch
            from otpbridge.vault.keyring import NewSlot, create_header, new_recovery_code

            code = new_recovery_code()
            raw, vid = os.urandom(32), os.urandom(VAULT_ID_LEN)
            header, ring, made = create_header(
                raw, vault_id=vid, epoch=1, created=int(s.now()), keep=[], now=int(s.now()), stats=s.stats,
                new=[NewSlot("passphrase", "", passphrase, params=s.params, device=s.device_id),
                     NewSlot("recovery", "recovery", code, device=s.device_id)])
            key = VaultKey(vid, 1, raw, peek_epoch(header).digest)
            key.keyring, key.slot = ring, made["0"]
            with s.key_cache().lock:
                s.key_cache().put(key.header_digest, passphrase, key)
        else:
            header, key = create_epoch(passphrase, params=s.params, epoch=1, stats=s.stats, cache=s.key_cache())
        name = header_name(1, s.device_id, s.now())
        s.backend.write(name, header)
        state.header = name
        state.slot = hint_of(key, state.slot)
        state.vault_auth = auth_of(key, state.vault_auth)
        back = s.backend.read(name)
        if back != header or open_epoch(back, passphrase, cache=s.key_cache()) != key:
            raise IntegrityError(f"{name} did not read back as written")
        result = InitResult(True, key.vault_id.hex(), 1)
        result.recovery_key = code.reveal() if code is not None else ""
    state.vault_id = result.vault_id
    state.device = s.device_id
    state.token = state.token or new_token()
    state.epoch = max(state.epoch, result.epoch)
    if s.device_name:
        state.device_names[s.device_id] = s.device_name
    state.listing = None
    state.save(s.state_dir)
    return result

