"""The download cache: what this device already read from the remote, kept locally so a
sync downloads only objects it has not seen (docs/SYNC.md "Download cache").

Objects on the remote are create-only and never change under one name, so what was read
once need not be read again. Two things are kept in the state folder:

* ``remote-cache.sealed`` — the merged records of every device's newest view, and per
  device the name, size, sequence number and metadata (nonce, names, removals, version
  vector) of the view they came from, plus when each tombstone was first seen. Sealed
  under the vault key (``kind="remote-cache"``, this device, seq 0) like the store cache:
  it holds secrets. Another epoch's key does not open it, so a passphrase change drops
  it (it is deleted and rebuilt from the remote).
* ``remote-headers/`` — the epoch headers, byte for byte as downloaded. A header is not
  secret (it is what the remote holds, a passphrase-wrapped key), and it is needed
  before any key exists, so it cannot be sealed. Checked like a download on every use.

A cached view is used only when the listing shows that device's newest view under the
same name and size; anything else is downloaded and checked as before. The cache never
replaces a check: rollback detection works on the listing's sequence numbers, and a
damaged or foreign cache is simply ignored (a cold cache costs downloads, not data).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from otpbridge.core.errors import OtpBridgeError
from otpbridge.core.fileio import atomic_write
from otpbridge.engine.merge import Record
from otpbridge.engine.session import Session

CACHE_FILE = "remote-cache.sealed"
CACHE_KIND = "remote-cache"
HEADER_DIR = "remote-headers"
VERSION = 1
META_KEYS = ("w", "name", "devices", "removed", "vv", "time", "clock", "key", "live")


@dataclass
class ViewMeta:
    """What a run needs of one device's newest view besides its records."""

    name: str  # the object name on the remote
    size: int
    seq: int
    meta: dict[str, Any] = field(default_factory=dict)  # the view's META_KEYS
    mtime: float | None = None  # when the remote says it was written (None: not known yet)
    # This device's own upload: [before, after] the write on this machine's clock. The
    # first listing that shows it must give a time in between, else it is read again
    # (another copy of this home may have written the same name: docs/SYNC.md).
    window: list[float] | None = None
    # This device's own newest object only: its records' fingerprints (id -> record_fp),
    # what the next delta is computed against (docs/SYNC.md "Deltas"); None: not known.
    fp: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "size": self.size, "seq": self.seq, "meta": self.meta,
               "mtime": self.mtime, "window": self.window}
        if self.fp is not None:
            out["fp"] = self.fp
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ViewMeta:
        fp = data.get("fp")
        return cls(str(data["name"]), int(data["size"]), int(data["seq"]), dict(data.get("meta") or {}),
                   data.get("mtime"), data.get("window"),
                   {str(k): str(v) for k, v in fp.items()} if isinstance(fp, dict) else None)

    def matches(self, ref: Any) -> bool:
        """Whether ``ref`` (from this run's listing) is the object this was read from."""
        if ref.name != self.name or ref.size != self.size:
            return False
        if ref.mtime is None:
            return True  # a remote that gives no times: names are create-only
        if self.mtime is not None:
            return abs(ref.mtime - self.mtime) < 1e-3
        if self.window is not None and int(self.window[0]) - 1 <= ref.mtime <= self.window[1]:
            self.mtime = ref.mtime
            return True
        return False


@dataclass
class RemoteCache:
    """The merged state of the views named in ``views`` (one per device)."""

    vault_id: str
    epoch: int
    views: dict[str, ViewMeta] = field(default_factory=dict)
    merged_from: set[str] = field(default_factory=set)  # devices whose records are in ``records``
    records: dict[str, Record] = field(default_factory=dict, repr=False)
    # Tombstone id -> [device, seq of that device's view first seen holding it (0: unknown),
    # time first seen here]: the purge rule's inputs (docs/SYNC.md "Bounded remote").
    tombs: dict[str, list] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        data = {
            "v": VERSION,
            "vault_id": self.vault_id,
            "epoch": self.epoch,
            "views": {dev: m.to_json() for dev, m in sorted(self.views.items())},
            "merged_from": sorted(self.merged_from),
            "records": [r.to_json() for _id, r in sorted(self.records.items())],
            "tombs": self.tombs,
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> RemoteCache:
        data = json.loads(raw)
        if data.get("v") != VERSION:
            raise ValueError("unknown cache version")
        return cls(
            vault_id=str(data["vault_id"]),
            epoch=int(data["epoch"]),
            views={dev: ViewMeta.from_json(m) for dev, m in data["views"].items()},
            merged_from=set(data.get("merged_from") or ()),
            records={r.id: r for r in (Record.from_json(x) for x in data["records"])},
            tombs={str(k): list(v) for k, v in (data.get("tombs") or {}).items()},
        )


def load(s: Session, key: Any) -> RemoteCache | None:
    """This device's cache for ``key``'s vault and epoch, or None (cold: none, another
    epoch — then it is deleted —, or damaged)."""
    path = s.state_dir / CACHE_FILE
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        cache = RemoteCache.from_bytes(key.open(blob, kind=CACHE_KIND, device=s.device_id, seq=0))
    except (OtpBridgeError, ValueError, KeyError, TypeError, AttributeError):
        cache = None
    if cache is None or cache.epoch != key.epoch or cache.vault_id != key.vault_id.hex():
        drop(s)  # another epoch (a passphrase change) or damage: rebuilt from the remote
        return None
    s.stats["cache_loads"] += 1
    return cache


def save(s: Session, key: Any, cache: RemoteCache) -> None:
    s.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    blob = key.seal(CACHE_KIND, s.device_id, 0, cache.to_bytes())
    atomic_write(s.state_dir / CACHE_FILE, blob, mode=0o600, backup=False)


def drop(s: Session) -> None:
    with contextlib.suppress(OSError):
        (s.state_dir / CACHE_FILE).unlink()


# --- counted remote reads and the header cache ---------------------------------------------
def download(s: Session, name: str) -> bytes:
    """``backend.read`` with the bytes counted (``download_bytes`` in ``--stats``)."""
    raw = s.backend.read(name)
    s.stats["download_bytes"] += len(raw)
    return raw


def read_header_bytes(s: Session, name: str, size: int) -> bytes:
    """An epoch header: from the local copy when it has the listed size, else downloaded
    (and kept). The caller checks it exactly as it checks a download."""
    folder = s.state_dir / HEADER_DIR
    local = folder / name.replace("/", "_")
    with contextlib.suppress(OSError):
        raw = local.read_bytes()
        if len(raw) == size:
            s.stats["cache_hits"] += 1
            return raw
    raw = download(s, name)
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(local, raw, mode=0o600, backup=False)
    return raw


def forget_header(s: Session, name: str) -> None:
    with contextlib.suppress(OSError):
        (s.state_dir / HEADER_DIR / name.replace("/", "_")).unlink()


def tidy_headers(s: Session, listed: set[str]) -> None:
    """Drop local header copies the remote no longer lists (old epochs)."""
    folder = s.state_dir / HEADER_DIR
    with contextlib.suppress(OSError):
        keep = {n.replace("/", "_") for n in listed}
        for entry in os.listdir(folder):
            if entry not in keep:
                with contextlib.suppress(OSError):
                    (folder / entry).unlink()


# --- using the cache in a run --------------------------------------------------------------
def fits(warm: RemoteCache, newest: dict[str, Any]) -> bool:
    """Whether the cached merge can be extended by what the listing shows: every device it
    merged still has a view at least as new. Otherwise (a device's views deleted, a
    rolled-back remote) it is not used, and the run reads everything as before."""
    for dev in warm.merged_from:
        ref = newest.get(dev)
        if ref is None or ref.seq < warm.views[dev].seq:
            return False
    return True


def meta_of(data: dict[str, Any]) -> dict[str, Any]:
    meta = {k: data[k] for k in META_KEYS if k in data}
    if data.get("_links"):
        meta["links"] = list(data["_links"])  # a delta's chain (remote.check_links)
    if data.get("_link_refs"):
        meta["link_refs"] = [list(x) for x in data["_link_refs"]]  # its links as listed
    if "_records" in data:
        # `devices` shows each device's account count; a cache hit has no records to count.
        meta["live"] = live_accounts(data)
    return meta


def live_accounts(data: dict[str, Any]) -> int | None:
    """The accounts alive in one view: counted from its records, or from the count the
    view or the cache holds (a cache hit, a chain read only from the cached object on; None
    for a cache written before the count)."""
    if "_records" in data and not data.get("_partial"):
        return sum(1 for r in data["_records"].values() if not r.deleted)
    live = data.get("live")
    return int(live) if isinstance(live, int) else None


def update(
    warm: RemoteCache | None,
    key: Any,
    views: dict[str, tuple[Any, dict]],
    fresh: dict[str, dict],
    removed: dict[str, Any],
    records: dict[str, Record],
    now: float,
) -> RemoteCache:
    """The cache after a run read ``fresh`` views on top of ``warm``."""
    out = RemoteCache(vault_id=key.vault_id.hex(), epoch=key.epoch)
    for dev, (ref, data) in views.items():
        old_meta = warm.views.get(dev) if warm is not None else None
        mtime = ref.mtime if ref.mtime is not None else (old_meta.mtime if old_meta is not None else None)
        out.views[dev] = ViewMeta(ref.name, ref.size, ref.seq, meta_of(data), mtime)
    out.merged_from = {dev for dev in views if dev not in removed}
    if warm is not None:
        out.merged_from |= warm.merged_from - set(removed)
        for dev in warm.merged_from - set(views):
            out.views[dev] = warm.views[dev]  # its newest did not open this run: keep what was merged
    out.records = records
    old = warm.tombs if warm is not None else {}
    for rid, rec in records.items():
        if not rec.deleted:
            continue
        entry = old.get(rid)
        if entry is None or entry[:2] != [rec.device, rec.clock]:
            entry = [rec.device, rec.clock, 0, now]
        if entry[2] <= 0 and rec.device in fresh:
            # The writer's own view holds it: from this sequence number on, a device that
            # merged that view has it (or something newer).
            mine = fresh[rec.device].get("_records", {}).get(rid)
            if mine is not None and mine.rank >= rec.rank:
                entry = [entry[0], entry[1], int(fresh[rec.device]["seq"]), *entry[3:]]
        out.tombs[rid] = entry
    return out


DEFAULT_TOMBSTONE_AGE = 30 * 86400


def purgeable(
    cache: RemoteCache,
    views: dict[str, tuple[Any, dict]],
    live: set[str],
    me: str,
    base: dict[str, Any] | None,
    now: float,
    age: float,
) -> set[str]:
    """Tombstones this device may leave out of its next view (docs/SYNC.md "Bounded remote").

    Causal stability: every live device (one with a view in this epoch, not removed) has
    published a view whose version vector covers the writer's view that first held the
    tombstone — so it merged the deletion, and keeps it in its own view until it has
    applied it locally. And it is older than ``age`` (first seen here), and this device
    applied it (its account is not in this device's base). A device that has not synced
    since, an old view without a version vector, or a view that did not open keeps it.
    """
    if base is None:
        return set()
    out = set()
    for rid, (dev, _clock, origin, first, *_purged) in cache.tombs.items():
        rec = cache.records.get(rid)
        if rec is None or not rec.deleted or origin <= 0 or now - first < age or rid in base:
            continue
        ok = True
        for d in live:
            if d == me:
                continue  # this run merged the writer's view (origin comes from it)
            if d not in views:
                ok = False
                break
            ref, data = views[d]
            vv = data.get("vv") if isinstance(data.get("vv"), dict) else {}
            seen = ref.seq if d == dev else vv.get(dev, 0)
            if not isinstance(seen, int) or seen < origin:
                ok = False
                break
        if ok:
            out.add(rid)
    return out
