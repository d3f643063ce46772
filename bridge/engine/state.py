"""This device's memory of the last sync: plaintext JSON that holds no secret.

It is read on every run, before any passphrase is known, so the no-change fast path can
decide from it alone. What it holds: store fingerprints and the remote listing of the
last run (the fast path), the newest sequence number seen per device and the highest
epoch (rollback detection), and the *base* — per record a content digest, HOTP counter,
identity and kind + secret hash (rename detection), never the secret (local deletion detection, see merge.digest).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otpbridge.core.errors import UsageError
from otpbridge.core.fileio import atomic_write, private_dir
from otpbridge.engine.merge import BaseEntry

STATE_FILE = "sync-state.json"
VERSION = 1


@dataclass
class SyncState:
    vault_id: str = ""
    device: str = ""
    epoch: int = 0
    last_seq: int = 0  # this device's newest view that was verified on the remote
    seen: dict[str, int] = field(default_factory=dict)  # device -> newest seq verified
    clock: int = 0  # highest Lamport clock seen
    base: dict[str, BaseEntry] | None = None  # None: never synced (a fresh join)
    fingerprints: dict[str, str] = field(default_factory=dict)
    listing: list[list] | None = None
    device_names: dict[str, str] = field(default_factory=dict)
    removed: dict[str, dict] = field(default_factory=dict)
    last_verified_backup: float | None = None
    last_sync: float | None = None
    last_error: dict[str, Any] | None = None
    accounts: int = 0
    # Copied homes (docs/SYNC.md "Copied homes"). ``token``: random per home, made when
    # this otpbridge first saves the state (empty: a state of an older version, which
    # recorded no writes). ``writes``: seq -> the random nonce ("w") of each recent view
    # this home wrote. ``pending``: {"seq", "w"} of the view being uploaded, saved BEFORE
    # the upload, so a crash after it is told from another copy of this home.
    token: str = ""
    writes: dict[str, str] = field(default_factory=dict)
    pending: dict[str, Any] | None = None
    # The epoch header this device opened last (its name): tried first, so a planted
    # header costs no key derivation (docs/SYNC.md "Epoch headers").
    header: str = ""
    # The key slot that opened it (a version-2 header, vault/keyring.py): tried first, so
    # a member of a shared vault pays one key derivation, not one per passphrase slot.
    slot: str = ""
    # The vault's authentication secret from the last version-2 header opened (hex; the
    # file is 0600): a newer header must link to it (vault/keyring.py, docs/SYNC.md "Keys").
    vault_auth: str = field(default="", repr=False)
    #: conflicts other devices reported this device lost, already shown here (keys)
    conflicts_seen: list[str] = field(default_factory=list)
    #: accounts in each device's newest view, as seen at the last sync (``devices``)
    device_accounts: dict[str, int] = field(default_factory=dict)
    #: the key slot each device's newest view says it opened with, and the vault's key
    #: slots as "type 'name' (id)", as of the last sync (``devices`` in a shared vault)
    device_keys: dict[str, str] = field(default_factory=dict)
    key_names: dict[str, str] = field(default_factory=dict)

    # -- persistence ---------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path) -> SyncState:
        path = folder / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"the sync state {path} cannot be read ({exc})",
                hint="move it away; the next sync rebuilds it (local deletions since the last sync are then not propagated)",
            ) from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise UsageError(f"the sync state {path} has an unknown version")
        try:
            return cls._from_json(data)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            # No text of the exception: it may quote a value of the file.
            raise UsageError(
                f"the sync state {path} holds a malformed value ({type(exc).__name__})",
                hint="move it away; the next sync rebuilds it (local deletions since the last sync are then not propagated)",
            ) from None

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> SyncState:
        base = data.get("base")
        for key, kind in _SHAPES.items():
            if data.get(key) is not None and not isinstance(data[key], kind):
                raise TypeError(key)
        if not all(isinstance(v, dict) for v in (data.get("removed") or {}).values()):
            raise TypeError("removed")
        if not all(isinstance(e, list) and len(e) == 2 for e in (data.get("listing") or [])):
            raise TypeError("listing")
        return cls(
            vault_id=data.get("vault_id", ""),
            device=data.get("device", ""),
            epoch=int(data.get("epoch", 0)),
            last_seq=int(data.get("last_seq", 0)),
            seen={k: int(v) for k, v in data.get("seen", {}).items()},
            clock=int(data.get("clock", 0)),
            base=None if base is None else {k: _base_entry(v) for k, v in base.items()},
            fingerprints=dict(data.get("fingerprints", {})),
            listing=data.get("listing"),
            device_names=dict(data.get("device_names", {})),
            removed=dict(data.get("removed", {})),
            last_verified_backup=data.get("last_verified_backup"),
            last_sync=data.get("last_sync"),
            last_error=data.get("last_error"),
            accounts=int(data.get("accounts", 0)),
            token=str(data.get("token", "")),
            writes={str(k): str(v) for k, v in (data.get("writes") or {}).items()},
            pending=_pending(data.get("pending")),
            header=str(data.get("header") or ""),
            slot=str(data.get("slot") or ""),
            vault_auth=str(data.get("vault_auth") or ""),
            conflicts_seen=[str(k) for k in (data.get("conflicts_seen") or [])],
            device_accounts={str(k): int(v) for k, v in (data.get("device_accounts") or {}).items()},
            device_keys={str(k): str(v) for k, v in (data.get("device_keys") or {}).items()},
            key_names={str(k): str(v) for k, v in (data.get("key_names") or {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "vault_id": self.vault_id,
            "device": self.device,
            "epoch": self.epoch,
            "last_seq": self.last_seq,
            "seen": self.seen,
            "clock": self.clock,
            "base": None if self.base is None else {k: [v.digest, v.counter, v.applied, v.ident, v.group] for k, v in sorted(self.base.items())},
            "fingerprints": self.fingerprints,
            "listing": self.listing,
            "device_names": self.device_names,
            "removed": self.removed,
            "last_verified_backup": self.last_verified_backup,
            "last_sync": self.last_sync,
            "last_error": self.last_error,
            "accounts": self.accounts,
            "token": self.token,
            "writes": self.writes,
            "pending": self.pending,
            "header": self.header,
            "slot": self.slot,
            "vault_auth": self.vault_auth,
            "conflicts_seen": self.conflicts_seen,
            "device_accounts": self.device_accounts,
            "device_keys": self.device_keys,
            "key_names": self.key_names,
        }

    def save(self, folder: Path) -> None:
        private_dir(folder)
        with _umask():
            atomic_write(folder / STATE_FILE, json.dumps(self.to_json(), indent=1).encode(), mode=0o600, backup=False)


# The type every field must have when present (null: the default).
_SHAPES: dict[str, type | tuple[type, ...]] = {
    "vault_id": str, "device": str, "epoch": int, "last_seq": int, "seen": dict, "clock": int, "base": dict,
    "fingerprints": dict, "listing": list, "device_names": dict, "removed": dict,
    "last_verified_backup": (int, float), "last_sync": (int, float), "last_error": dict, "accounts": int,
    "token": str, "writes": dict, "header": str, "slot": str, "vault_auth": str,
}


def _base_entry(v: list) -> BaseEntry:
    """``[digest, counter, applied, identity, secret_id]``; 0.1.0 wrote the first two or three."""
    return BaseEntry(v[0], int(v[1]), v[2] if len(v) > 2 else "", v[3] if len(v) > 3 else "", v[4] if len(v) > 4 else "")


def _pending(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("seq"), int) or not isinstance(raw.get("w"), str):
        return None
    return {"seq": raw["seq"], "w": raw["w"]}


def new_token() -> str:
    import secrets

    return secrets.token_hex(8)


class _umask:
    def __enter__(self) -> None:
        self.old = os.umask(0o077)

    def __exit__(self, *exc: object) -> None:
        os.umask(self.old)
