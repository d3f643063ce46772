"""What a pass store read remembers, so a second read decrypts only the entries that changed.

Two layers, keyed by the entry's relative path and its stamp (size, mtime_ns,
ctime_ns, inode — ctime moves on every write and cannot be set back by ``touch``):

* ``secret_map`` — a ``MutableMapping[str, bytes]`` the caller supplies as
  ``ctx.store_cache`` and persists *encrypted* (the sync engine keeps it in its state,
  sealed under the vault key). It may hold the OTP line, secret included, so it is
  the layer that makes "one change → one gpg call" possible. Keys are namespaced per
  store (``pass:<store id>:<path>``) so one mapping can serve several stores.
* ``ctx.cache_dir`` — a plain JSON file that holds no secret: only which entries have
  no OTP line (a store's passwords far outnumber its 2FA accounts), so those are not
  decrypted again even without the engine.

Decryption failures are never cached: a key imported later must take effect.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, MutableMapping
from pathlib import Path

from otpbridge.core.fileio import atomic_write, private_dir

Stamp = tuple[int, int, int, int]
#: what :meth:`EntryCache.get` returns when it knows nothing about the entry
MISSING = object()


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def store_id(root: Path) -> str:
    return hashlib.sha256(str(root.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]


class EntryCache:
    """Maps (path, stamp) to the entry's OTP line (``None``: the entry has none)."""

    VERSION = 1

    def __init__(self, root: Path, cache_dir: Path | None, secret_map: MutableMapping[str, bytes] | None) -> None:
        self.sid = store_id(root)
        self.secret_map = secret_map
        self.prefix = f"pass:{self.sid}:"
        self.file = (Path(cache_dir) / f"pass-{self.sid}.json") if cache_dir else None
        self._plain: dict[str, list[int]] = {}
        self._plain_dirty = False
        if self.file is not None:
            self._plain = self._load_plain()

    # -- the no-secret layer ---------------------------------------------------------
    def _load_plain(self) -> dict[str, list[int]]:
        assert self.file is not None
        try:
            data = json.loads(self.file.read_text("utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged: start over, it is only a cache
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            return {}
        none = data.get("no_otp")
        if not isinstance(none, dict):
            return {}
        return {k: v for k, v in none.items() if isinstance(k, str) and isinstance(v, list) and len(v) == 4}

    # -- lookups ---------------------------------------------------------------------
    def get(self, rel: str, stamp: Stamp) -> object:
        """The cached line (str), ``None`` for "no OTP line", or :data:`MISSING`."""
        if self.secret_map is not None:
            raw = self.secret_map.get(self.prefix + rel)
            if raw is not None:
                try:
                    rec = json.loads(raw)
                    if tuple(rec["stamp"]) == stamp and (rec["line"] is None or isinstance(rec["line"], str)):
                        return rec["line"]
                except (ValueError, KeyError, TypeError):
                    pass
        plain = self._plain.get(rel)
        if plain is not None and tuple(plain) == stamp:
            return None
        return MISSING

    def put(self, rel: str, stamp: Stamp, line: str | None) -> None:
        if self.secret_map is not None:
            self.secret_map[self.prefix + rel] = json.dumps({"stamp": list(stamp), "line": line}).encode("utf-8")
        if self.file is not None:
            if line is None:
                if self._plain.get(rel) != list(stamp):
                    self._plain[rel] = list(stamp)
                    self._plain_dirty = True
            elif rel in self._plain:
                del self._plain[rel]
                self._plain_dirty = True

    def forget(self, rel: str) -> None:
        if self.secret_map is not None:
            self.secret_map.pop(self.prefix + rel, None)
        if self._plain.pop(rel, None) is not None:
            self._plain_dirty = True

    def finish(self, present: Iterable[str]) -> None:
        """Drop records of entries that no longer exist and save the no-secret layer."""
        keep = set(present)
        if self.secret_map is not None:
            for key in [k for k in self.secret_map if k.startswith(self.prefix)]:
                if key[len(self.prefix) :] not in keep:
                    del self.secret_map[key]
        for rel in [r for r in self._plain if r not in keep]:
            del self._plain[rel]
            self._plain_dirty = True
        if self.file is not None and self._plain_dirty:
            body = json.dumps({"version": self.VERSION, "no_otp": self._plain}, sort_keys=True).encode("utf-8")
            with contextlib.suppress(OSError):  # a cache that cannot be saved costs time, not data
                private_dir(self.file.parent)
                atomic_write(self.file, body, mode=0o600, backup=False)
            self._plain_dirty = False

