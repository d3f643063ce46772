"""The remote layout (docs/REMOTE-LAYOUT.md): object names, and a listing read as state.

Everything a device writes has a name no other device can produce (its device id is in
it) and no earlier run of the same device produced (its sequence number is), so writes
never overwrite each other and a listing alone says who wrote what, when, in which
epoch — without a key. Names carry no account data.

    epochs/<epoch:010>-<device>-<unix time>.hdr          epoch header (vault.create_epoch)
    devices/<device>/<epoch:010>-<seq:012>-<unix time>.view   one device's sealed view (a checkpoint)
    devices/<device>/<epoch:010>-<seq:012>-<base:012>-<unix time>.delta   a delta on the
        device's previous object, in the chain that starts at its view number <base>
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from otpbridge.core.errors import IntegrityError

VIEW_KIND = "view"  # the vault object kind bound into every view's associated data
DELTA_KIND = "delta"  # ... and into every delta's: neither can be read as the other
EPOCH_DIR = "epochs"
DEVICE_DIR = "devices"

_DEVICE = r"[0-9a-f]{12}"
_HEADER_RE = re.compile(rf"{EPOCH_DIR}/(\d{{10}})-({_DEVICE})-(\d{{1,12}})\.hdr")
_VIEW_RE = re.compile(rf"{DEVICE_DIR}/({_DEVICE})/(\d{{10}})-(\d{{12}})-(\d{{1,12}})\.view")
_DELTA_RE = re.compile(rf"{DEVICE_DIR}/({_DEVICE})/(\d{{10}})-(\d{{12}})-(\d{{12}})-(\d{{1,12}})\.delta")
DEVICE_ID_RE = re.compile(_DEVICE)

# Every name the engine writes is one the listing reads back: the sequence number has
# exactly 12 digits (a 13th would make the view invisible to every device), and so a
# device whose next number would not fit stops instead (docs/REMOTE-LAYOUT.md).
MAX_VIEW_SEQ = 10**12 - 1
# The time in a name is the writer's claim, not authenticated: it is read as at most the
# time the remote says the object was written (a renamed view once showed year 33658),
# and as unknown (0) past this bound when the remote gives no time.
MAX_NAME_TIME = 2**32 - 1


def new_device_id() -> str:
    return secrets.token_hex(6)


def header_name(epoch: int, device: str, when: float) -> str:
    return _checked(f"{EPOCH_DIR}/{epoch:010d}-{device}-{_name_time(when)}.hdr", _HEADER_RE)


def view_name(device: str, epoch: int, seq: int, when: float) -> str:
    check_seq(seq)
    return _checked(f"{DEVICE_DIR}/{device}/{epoch:010d}-{seq:012d}-{_name_time(when)}.view", _VIEW_RE)


def delta_name(device: str, epoch: int, seq: int, base: int, when: float) -> str:
    check_seq(seq)
    if not 1 <= base < seq:
        raise IntegrityError(f"refusing to write a delta #{seq} on checkpoint #{base}")
    return _checked(f"{DEVICE_DIR}/{device}/{epoch:010d}-{seq:012d}-{base:012d}-{_name_time(when)}.delta", _DELTA_RE)


def object_name(device: str, epoch: int, seq: int, when: float, base: int = 0) -> str:
    """A view's name (``base`` 0) or a delta's."""
    return delta_name(device, epoch, seq, base, when) if base else view_name(device, epoch, seq, when)


def check_seq(seq: int) -> None:
    """Refuse, before anything is written, a sequence number the listing could not read."""
    if not 1 <= seq <= MAX_VIEW_SEQ:
        raise IntegrityError(
            f"the next sequence number of this device ({seq}) does not fit in a view name (at most {MAX_VIEW_SEQ})",
            hint="a view with a planted huge sequence number is on the remote; 'otpbridge verify' names it "
            "(docs/SYNC.md 'Quarantine')",
        )


def _name_time(when: float) -> int:
    return min(max(int(when), 0), MAX_NAME_TIME)


def _checked(name: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(name):  # a name the listing would not read is never written
        raise IntegrityError(f"refusing to write {name!r}: the listing would not read it back")
    return name


def _listed_time(claimed: int, mtime: float | None) -> int:
    """A name's time, bounded by what the remote says (the name is not authenticated)."""
    if mtime is not None and mtime >= 0:
        return min(claimed, int(mtime))
    return claimed if claimed <= MAX_NAME_TIME else 0


@dataclass(frozen=True)
class HeaderRef:
    name: str
    size: int
    epoch: int
    device: str
    time: int


@dataclass(frozen=True)
class ViewRef:
    name: str
    size: int
    device: str
    epoch: int
    seq: int
    time: int
    # When the remote says the object was written (None: unknown). Unlike ``time`` (the
    # name's, kept by re-encrypted copies) it tells a rotation in flight from a leftover.
    mtime: float | None = field(default=None, compare=False)
    # A delta: the sequence number of the view (checkpoint) its chain starts from, as its
    # name says (checked against the authenticated payload when opened). 0: a view.
    base: int = field(default=0, compare=False)

    @property
    def snapshot_id(self) -> str:
        return f"{self.device}-{self.seq}"

    @property
    def kind(self) -> str:
        return DELTA_KIND if self.base else VIEW_KIND

    @property
    def is_delta(self) -> bool:
        return bool(self.base)

    @property
    def checkpoint(self) -> int:
        """The sequence number of the view this object's state starts from (its own for a view)."""
        return self.base or self.seq


@dataclass
class Listing:
    """One listing of the remote, parsed. ``signature`` is what the fast path compares."""

    headers: list[HeaderRef] = field(default_factory=list)
    views: list[ViewRef] = field(default_factory=list)  # every device object: views and deltas
    other: list[tuple[str, int]] = field(default_factory=list)

    @classmethod
    def parse(cls, infos: Iterable) -> Listing:
        out = cls()
        for info in infos:
            name, size = info.name, int(info.size)
            mtime = getattr(info, "mtime", None)
            if m := _HEADER_RE.fullmatch(name):
                out.headers.append(HeaderRef(name, size, int(m[1]), m[2], _listed_time(int(m[3]), mtime)))
            elif m := _VIEW_RE.fullmatch(name):
                out.views.append(ViewRef(name, size, m[1], int(m[2]), int(m[3]), _listed_time(int(m[4]), mtime), mtime))
            elif (m := _DELTA_RE.fullmatch(name)) and 1 <= int(m[4]) < int(m[3]):
                out.views.append(ViewRef(name, size, m[1], int(m[2]), int(m[3]), _listed_time(int(m[5]), mtime), mtime,
                                         base=int(m[4])))
            else:
                out.other.append((name, size))
        out.headers.sort(key=lambda h: (h.epoch, h.time, h.device))
        out.views.sort(key=lambda v: (v.epoch, v.device, v.seq))
        return out

    # -- the fast path's view of it ----------------------------------------------------
    def signature(self) -> list[list]:
        names = [(h.name, h.size) for h in self.headers] + [(v.name, v.size) for v in self.views]
        return sorted([n, s] for n, s in names + list(self.other))

    def add(self, name: str, size: int) -> None:
        parsed = Listing.parse([_Info(name, size)])
        self.headers = sorted(self.headers + parsed.headers, key=lambda h: (h.epoch, h.time, h.device))
        self.views = sorted(self.views + parsed.views, key=lambda v: (v.epoch, v.device, v.seq))
        self.other += parsed.other

    def remove(self, name: str) -> None:
        self.headers = [h for h in self.headers if h.name != name]
        self.views = [v for v in self.views if v.name != name]
        self.other = [o for o in self.other if o[0] != name]

    # -- questions -----------------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return not (self.headers or self.views or self.other)

    @property
    def is_vault(self) -> bool:
        return bool(self.headers)

    def epochs(self) -> list[int]:
        return sorted({h.epoch for h in self.headers})

    def listed_epoch(self) -> int:
        """The epoch the commands that open nothing (``devices``, ``snapshots``, ``forget``)
        show: the newest with both a header and objects. A newer header alone is a
        passphrase change still uploading or a file no device wrote, and must not hide
        every snapshot; the commands that open the vault judge it."""
        with_views = {v.epoch for v in self.views} & set(self.epochs())
        return max(with_views, default=max(self.epochs(), default=0))

    def headers_of(self, epoch: int) -> list[HeaderRef]:
        return [h for h in self.headers if h.epoch == epoch]

    def views_of(self, epoch: int, device: str | None = None) -> list[ViewRef]:
        return [v for v in self.views if v.epoch == epoch and (device is None or v.device == device)]

    def newest_views(self, epoch: int) -> dict[str, ViewRef]:
        out: dict[str, ViewRef] = {}
        for v in self.views_of(epoch):
            if v.device not in out or v.seq > out[v.device].seq:
                out[v.device] = v
        return out

    def max_seq(self, device: str) -> int:
        return max((v.seq for v in self.views if v.device == device), default=0)


@dataclass(frozen=True)
class _Info:
    name: str
    size: int


# --- the sealed view payload --------------------------------------------------------------
def encode_view(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


def record_fp(record_json: dict) -> str:
    """A short fingerprint of one record as a view holds it (``Record.to_json()``): what a
    writer compares to find the records that changed since its previous object (deltas)."""
    raw = json.dumps(record_json, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def decode_view(raw: bytes, ref: ViewRef) -> dict:
    """Parse an opened view or delta; authenticated already, so a bad shape is a writer bug (exit 4)."""
    what = "delta" if ref.is_delta else "view"
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("v") not in (1, 2):  # 1: 0.1.0 (merge.VIEW_VERSION)
            raise ValueError("unknown view version")
        if data.get("device") != ref.device or data.get("seq") != ref.seq:
            raise ValueError("view names another device or sequence")
        if not isinstance(data.get("records"), list):
            raise ValueError("no records")
        # Authenticated, yet written by another program that holds the key (a bug, a
        # hostile device): a wrong shape must be exit 4, never an AttributeError.
        if not all(isinstance(r, dict) for r in data["records"]):
            raise ValueError("a record is not an object")
        removed = data.get("removed") or {}
        if not isinstance(removed, dict) or not all(isinstance(v, dict) for v in removed.values()):
            raise ValueError("'removed' is not a map of objects")
        if not isinstance(data.get("devices") or {}, dict):
            raise ValueError("'devices' is not a map")
        if ref.is_delta:
            prev, gone = data.get("prev"), data.get("gone", [])
            if data.get("base") != ref.base:
                raise ValueError("the delta names another checkpoint than its name")
            if not isinstance(prev, int) or isinstance(prev, bool) or not ref.base <= prev < ref.seq:
                raise ValueError("the delta builds on no earlier object of its chain")
            if not isinstance(gone, list) or not all(isinstance(x, str) for x in gone):
                raise ValueError("'gone' is not a list of record ids")
        elif "base" in data:
            raise ValueError("a view names a checkpoint")
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{ref.name}: the {what} is malformed ({exc})") from None
    return data
