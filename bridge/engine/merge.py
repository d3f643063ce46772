"""Pure merge logic of sync (docs/SYNC.md): records, Lamport clocks, tombstones.

Every device publishes its whole view of the vault as a set of :class:`Record`; merging
views is a join (commutative, associative, idempotent), so devices converge whatever
order they sync in and nobody needs a lock:

* per record the one with the highest ``(clock, device)`` wins — a Lamport clock with
  the device id as tie-break. A record id is stable: it is given when the account is
  first seen (its identity then) and kept across renames and parameter edits, so a
  rename is an edit of one record (SPEC §3), and a rename racing an edit is a conflict;
* a deletion is a record without an account (a tombstone), so it travels like an edit;
* the HOTP counter is the maximum over every record of the account, so a code once
  used is never offered again, whoever wins the other fields.

Local changes are found by comparing the stores with the *base* — digests of what the
stores held after the last sync — so a missing account means "deleted here" only when it
was there before. The base holds hashes, never secrets (see :func:`digest`).
:func:`assign_ids` maps the accounts the stores hold to record ids: exact identity
first, then the base, then — for an account the base does not know — a base record that
disappeared and shares its kind + secret (a rename or parameter edit made here).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from otpbridge.core.model import Account, Kind, b32decode, b32encode, pair_renames


# --- accounts <-> JSON ----------------------------------------------------------------
def account_to_json(acc: Account) -> dict:
    return {
        "kind": acc.kind.value,
        "secret": acc.secret_b32,
        "issuer": acc.issuer,
        "name": acc.name,
        "algorithm": acc.algorithm.value,
        "digits": acc.digits,
        "period": acc.period,
        "counter": acc.counter,
        "folder": acc.folder,
        "note": acc.note,
    }


def account_from_json(data: Mapping) -> Account:
    return Account(
        kind=Kind(data["kind"]),
        secret=b32decode(data["secret"]),
        issuer=str(data.get("issuer", "")),
        name=str(data.get("name", "")),
        algorithm=data.get("algorithm", "SHA1"),
        digits=int(data.get("digits", 6)),
        period=int(data.get("period", 30)),
        counter=int(data.get("counter", 0)),
        folder=str(data.get("folder", "")),
        note=str(data.get("note", "")),
    )


def digest(acc: Account) -> str:
    """A hash of everything but the HOTP counter: what "the user edited it" compares.

    Unkeyed like :attr:`Account.identity`; the secret it covers is a random key of 80+
    bits, so the hash reveals nothing a brute force could recover.
    """
    data = account_to_json(acc)
    data.pop("counter")
    data["secret"] = b32encode(acc.secret)
    raw = json.dumps(data, sort_keys=True, ensure_ascii=True).encode()
    return hashlib.sha256(b"otpbridge/content/v1\0" + raw).hexdigest()[:32]


# --- records -------------------------------------------------------------------------
#: the view payload version this otpbridge writes (1: 0.1.0, record id = kind + secret;
#: 2: record ids stable across renames, several records may share a secret)
VIEW_VERSION = 2
_RID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Record:
    """The state of one account as one device last decided it."""

    id: str
    clock: int
    device: str
    account: Account | None = field(default=None, repr=False)  # None: deleted (tombstone)
    counter: int = 0

    @property
    def deleted(self) -> bool:
        return self.account is None

    @property
    def rank(self) -> tuple[int, str]:
        return (self.clock, self.device)

    @property
    def digest(self) -> str | None:
        return None if self.account is None else digest(self.account)

    def current(self) -> Account | None:
        """The account with the merged counter applied."""
        if self.account is None:
            return None
        if self.account.kind is Kind.HOTP and self.account.counter != self.counter:
            return self.account.replace(counter=self.counter)
        return self.account

    def to_json(self) -> dict:
        out: dict = {"id": self.id, "c": self.clock, "d": self.device, "n": self.counter}
        out["a"] = None if self.account is None else account_to_json(self.account)
        return out

    @classmethod
    def from_json(cls, data: Mapping, *, version: int = VIEW_VERSION) -> Record:
        acc = None if data.get("a") is None else account_from_json(data["a"])
        rec = cls(str(data["id"]), int(data["c"]), str(data["d"]), acc, int(data.get("n", 0)))
        if not _RID.fullmatch(rec.id):
            raise ValueError("record id is not 32 hex digits")
        # Views of 0.1.0 (v1) named each record by its account's kind + secret; from v2 an
        # id is kept across renames, so it need not match the account's current identity.
        if version == 1 and acc is not None and acc.secret_id != rec.id:
            raise ValueError("record id does not match its account")
        return rec


def join(a: Record, b: Record) -> Record:
    """The merge of two records of one account: highest (clock, device) wins, counter max."""
    win = a if a.rank >= b.rank else b
    counter = max(a.counter, b.counter)
    if win.counter == counter:
        return win
    return Record(win.id, win.clock, win.device, win.account, counter)


def merge_views(views: Iterable[Mapping[str, Record]]) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for view in views:
        for rid, rec in view.items():
            old = out.get(rid)
            out[rid] = rec if old is None else join(old, rec)
    return out


def max_clock(view: Mapping[str, Record]) -> int:
    return max((r.clock for r in view.values()), default=0)


def alive(view: Mapping[str, Record]) -> dict[str, Account]:
    out = {}
    for rid, rec in view.items():
        acc = rec.current()
        if acc is not None:
            out[rid] = acc
    return out


# --- local changes -------------------------------------------------------------------
@dataclass(frozen=True)
class BaseEntry:
    """What the local stores held for one account after the last sync (no secret)."""

    digest: str
    counter: int
    applied: str = ""  # "clock:device" of the record last written into the primary store
    ident: str = ""  # Account.identity then ("" in a state of 0.1.0)
    group: str = ""  # Account.secret_id (kind + secret); "" in 0.1.0, where the record id is it


def base_entry(acc: Account, applied: str = "") -> BaseEntry:
    return BaseEntry(digest(acc), acc.counter, applied, acc.identity, acc.secret_id)


@dataclass
class Conflict:
    """Concurrent changes of one account on two devices; ``winner`` names whose stayed."""

    id: str
    label: str
    local: str  # "edited" / "deleted" / "added"
    remote: str  # what the other device did
    other_device: str
    winner: str  # "local" or "remote"
    # Filled in by the sync run (issue 18): the other device's name, when each version
    # was sent (Unix seconds), and the command that brings the losing version back.
    other_name: str = ""
    local_time: int | None = None
    remote_time: int | None = None
    restore: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Changes:
    records: dict[str, Record] = field(default_factory=dict)  # this device's new records
    added: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)  # HOTP counter advanced only
    renamed: list[str] = field(default_factory=list)  # edits that changed an identity field
    conflicts: list[Conflict] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records)


def _base_of(rec: Record | None) -> BaseEntry | None:
    if rec is None or rec.account is None:
        return None
    return BaseEntry(digest(rec.account), rec.counter)


def local_changes(
    local: Mapping[str, Account],
    base: Mapping[str, BaseEntry] | None,
    remote: Mapping[str, Record],
    *,
    device: str,
    base_clock: int,
    keep_remote: frozenset[str] = frozenset(),
) -> Changes:
    """This device's new records: what differs from the base AND from the remote.

    ``keep_remote`` names account fields (``folder``, ``note``) the local primary store
    cannot hold: an edit sent from here keeps the remote's values for them.

    ``base`` None means this device never synced (a fresh join): nothing counts as a
    deletion, accounts the remote also holds keep the remote's fields (a differing copy
    is reported as a conflict), and local-only accounts are added — even over a remote
    tombstone, because losing data is worse than resurrecting it.
    """
    out = Changes()
    clock = max(base_clock, max_clock(remote)) + 1
    ids = set(local) | (set(base) if base else set())
    for rid in sorted(ids):
        acc = local.get(rid)
        old = base.get(rid) if base is not None else None
        rem = remote.get(rid)
        rem_base = _base_of(rem)
        if base is None:
            if acc is None:
                continue
            if rem is not None and not rem.deleted:
                if digest(acc) != rem.digest:
                    out.conflicts.append(
                        Conflict(rid, acc.label, "added", "edited", rem.device, "remote")
                    )
                if acc.kind is Kind.HOTP and acc.counter > rem.counter:
                    out.records[rid] = Record(rid, rem.clock, rem.device, rem.account, acc.counter)
                    out.counters.append(rid)
                continue
            out.records[rid] = Record(rid, clock, device, acc, acc.counter)
            out.added.append(rid)
            continue
        if acc is not None and old is not None:
            same = digest(acc) == old.digest
            if same and acc.counter <= old.counter:
                continue
            if same:  # only the HOTP counter moved: keep the winner's fields, raise its counter
                if rem is not None and acc.counter > rem.counter:
                    out.records[rid] = Record(rid, rem.clock, rem.device, rem.account, acc.counter)
                    out.counters.append(rid)
                elif rem is None:
                    out.records[rid] = Record(rid, clock, device, acc, acc.counter)
                    out.counters.append(rid)
                continue
            what = "edited"
        elif acc is not None:
            what = "added"
        else:
            if old is None:
                continue
            what = "deleted"
        # A real change. Fields this device's store cannot hold (a URI list has no
        # folders, KeePass keeps no account note) carry the remote's values, so an edit
        # here does not erase what other devices know about the account.
        if acc is not None and keep_remote and rem is not None and rem.account is not None:
            kept = {f: getattr(rem.account, f) for f in keep_remote if not getattr(acc, f) and getattr(rem.account, f)}
            if kept:
                acc = acc.replace(**kept)
        # Skip it when the remote already says the same thing.
        if acc is None and (rem is None or rem.deleted):
            continue
        if acc is not None and rem is not None and not rem.deleted and rem.digest == digest(acc):
            if acc.counter > rem.counter:
                out.records[rid] = Record(rid, rem.clock, rem.device, rem.account, acc.counter)
                out.counters.append(rid)
            continue
        # Did someone else change it since our base? Then both changed it: a conflict.
        if rem is not None and rem.device != device and _differs(rem_base, old):
            label = (acc or (rem.account if rem.account else None) or _Unnamed).label
            out.conflicts.append(
                Conflict(rid, label, what, "deleted" if rem.deleted else "edited", rem.device, "local")
            )
        counter = acc.counter if acc is not None else (old.counter if old else 0)
        if rem is not None:
            counter = max(counter, rem.counter)
        out.records[rid] = Record(rid, clock, device, acc, counter)
        {"added": out.added, "edited": out.edited, "deleted": out.deleted}[what].append(rid)
        if what == "edited" and acc is not None and old is not None and old.ident and old.ident != acc.identity:
            out.renamed.append(rid)
        elif what == "edited" and acc is not None and old is not None and not old.ident \
                and rem is not None and rem.account is not None and rem.account.identity != acc.identity:
            out.renamed.append(rid)
    return out


class _Unnamed:
    label = "(unnamed)"


def _differs(a: BaseEntry | None, b: BaseEntry | None) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    return a.digest != b.digest


def rank_text(rec: Record | None) -> str:
    return "" if rec is None else f"{rec.clock}:{rec.device}"


def assign_ids(
    accounts: Iterable[Account],
    base: Mapping[str, BaseEntry] | None,
    remote: Mapping[str, Record],
) -> dict[str, str]:
    """Account.identity -> record id for every account the local stores hold.

    In order: a live remote record holding exactly this account; a base entry that held
    exactly it; a base entry gone from the stores with the same kind + secret (a rename
    or parameter edit made here since the last sync — one change of that record, never a
    deletion plus an addition); else a new id (the identity, unless some record has it).
    A fresh join (no base) pairs nothing: without a base nothing is known to be gone.
    """
    accs = sorted({a.identity: a for a in accounts}.values(), key=lambda a: a.identity)
    base = base or {}
    live: dict[str, str] = {}
    for rid in sorted(remote):
        acc = remote[rid].current()
        if acc is not None:
            live.setdefault(acc.identity, rid)
    known: dict[str, str] = {}
    by_digest: dict[str, str] = {}
    for rid in sorted(base):
        entry = base[rid]
        ident = entry.ident
        if not ident:  # 0.1.0 base: the remote record tells what it held, if unchanged since
            rec = remote.get(rid)
            if rec is not None and rec.account is not None and rec.digest == entry.digest:
                ident = rec.account.identity
        if ident:
            known.setdefault(ident, rid)
        by_digest.setdefault(entry.digest, rid)
    out: dict[str, str] = {}
    taken: set[str] = set()
    rest = []
    for acc in accs:
        rid = live.get(acc.identity)
        if rid is None or rid in taken:
            rid = known.get(acc.identity)
        if rid is None or rid in taken:
            rid = by_digest.get(digest(acc))
        if rid is None or rid in taken:
            rest.append(acc)
            continue
        out[acc.identity] = rid
        taken.add(rid)
    # Renames/edits made here: a base record no account claimed + an unclaimed account
    # with the same kind + secret.
    gone_ids = [rid for rid in sorted(base) if rid not in taken]
    gone = []
    for rid in gone_ids:
        entry = base[rid]
        group = entry.group or rid  # 0.1.0: the record id is the kind + secret hash
        rec = remote.get(rid)
        proxy = rec.account if rec is not None and rec.account is not None else None
        gone.append((rid, group, proxy))
    pairs: list[tuple[Account, Account]] = []
    if gone and rest:
        # pair_renames compares accounts; a base entry is stood for by the remote's copy
        # of its record when there is one (same record, same kind + secret).
        stand_ins = []
        for rid, group, proxy in gone:
            cands = [a for a in rest if a.secret_id == group]
            if not cands:
                continue
            if proxy is None or proxy.secret_id != group:
                proxy = cands[0].replace()  # a distinct object with the right kind + secret
            stand_ins.append((rid, proxy))
        by_obj = {id(p): rid for rid, p in stand_ins}
        pairs = pair_renames([p for _r, p in stand_ins], rest)
        for old, new in pairs:
            rid = by_obj[id(old)]
            out[new.identity] = rid
            taken.add(rid)
    paired = {n.identity for _o, n in pairs}
    used = set(remote) | set(base) | taken
    for acc in rest:
        if acc.identity in paired:
            continue
        rid = acc.identity
        n = 1
        while rid in used:
            n += 1
            rid = hashlib.sha256(f"{acc.identity}:{n}".encode()).hexdigest()[:32]
        out[acc.identity] = rid
        used.add(rid)
    return out


def union(stores: Iterable[Iterable[Account]]) -> dict[str, Account]:
    """One account per identity; the first store (the primary) wins, counters max."""
    out: dict[str, Account] = {}
    for accounts in stores:
        for acc in accounts:
            old = out.get(acc.identity)
            if old is None:
                out[acc.identity] = acc
            elif acc.kind is Kind.HOTP and acc.counter > old.counter:
                out[acc.identity] = old.replace(counter=acc.counter)
    return out
