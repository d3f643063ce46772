"""Reading this device's local stores for a run, with their sealed cache (one gpg call
for one changed pass entry instead of one per entry)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from otpbridge.core.activity import step
from otpbridge.core.errors import (
    OtpBridgeError,
    UnreachableError,
)
from otpbridge.core.fileio import atomic_write, private_dir
from otpbridge.engine.merge import (
    union,
)

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
from otpbridge.engine.session import Session
from otpbridge.engine.state import SyncState


# --- reading local stores -----------------------------------------------------------------
@dataclass
class LocalRead:
    per_store: list[list[Any]]
    union: dict[str, Any]
    errors: list[Any]


STORE_CACHE_FILE = "store-cache.sealed"
STORE_CACHE_KIND = "store-cache"


def load_store_cache(s: Session, key: Any) -> dict[str, bytes]:
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


def save_store_cache(s: Session, key: Any, cache: dict[str, bytes]) -> None:
    raw = json.dumps({k: base64.b64encode(v).decode() for k, v in sorted(cache.items())}).encode()
    private_dir(s.state_dir)
    atomic_write(s.state_dir / STORE_CACHE_FILE, key.seal(STORE_CACHE_KIND, s.device_id, 0, raw), backup=False)


def reseal_store_cache(s: Session, old_key: Any, new_key: Any) -> None:
    """A passphrase change: re-seal the cache under the new epoch's key, or drop it, so
    nothing local stays sealed under a key the old passphrase still opens."""
    cache = load_store_cache(s, old_key)
    path = s.state_dir / STORE_CACHE_FILE
    if cache:
        save_store_cache(s, new_key, cache)
    elif path.exists():
        path.unlink()


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
        with step(f"read {store.label}") as info:
            result = store.read()  # raising here aborts the run: an unreadable store deletes nothing
            info["result"] = f"{len(result.accounts)} accounts" + (f", {len(result.errors)} unreadable"
                                                                   if result.errors else "")
        per_store.append(list(result.accounts))
        errors.extend(result.errors)
    if cache is not None and key is not None and cache != before:
        save_store_cache(s, key, cache)
    return LocalRead(per_store, union(per_store), errors)
