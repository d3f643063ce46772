"""``keepass:PATH[?keyfile=PATH]`` — KeePassXC / KeePass 2 databases (KDBX 3.1 and 4).

Reads every OTP convention KeePass-family apps use (see ``keepass_fields``); writes
KeePassXC's (a protected ``otp`` URI) for time-based accounts and KeePass's native
``HmacOtp-*`` fields for HOTP, because KeePassXC shows TOTP codes for an ``otp`` HOTP URI.
HOTP that ``HmacOtp-*`` cannot express (KeePass computes 6-digit SHA-1 only) goes,
whole, into our protected ``otpbridge-hotp`` URI: no app shows codes for it, but a sync
must never drop an account.
A database is the user's: an update changes only the OTP fields of the matching entry,
a removal deletes only OTP fields (never the entry, its password or other fields), and
entries we cannot read are left exactly as they are.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from otpbridge.core.errors import DataLossRefused, EntryError, FormatError, UsageError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Kind, dedupe, pair_renames
from otpbridge.core.secrets import Secret
from otpbridge.plugins import keepass_fields as kf
from otpbridge.plugins import keepass_kdbx as kdbx
from otpbridge.stores.base import ReadResult, Store, WriteReport, keep_counter

_ZERO_UUID = bytes(16)

#: Argon2d cost of databases we create: KeePassXC's 64 MiB, about a second of work.
NEW_DATABASE_ARGON2 = {"memory": 64 << 20, "iterations": 14, "parallelism": 2}

#: SHA-256 of pykeepass's blank template -> its transformed key (for the public password "password").
_BLANK_KEYS = {
    "9a6e2380fa0a79534025c0891ebb1b6e06ef2c73c79f661a1d9ab49e436ec7af": bytes.fromhex(
        "0962cbeeed2e51b1417f31f21ef90cca3b205fe9bd987232ae23136a83be0cf7"
    ),
}


@dataclass
class _Entry:
    element: object  # lxml Entry element
    folder: str
    title: str
    username: str
    slots: list[kf.Slot]
    group: object  # lxml Group element
    touched: bool = False

    @property
    def where(self) -> str:
        title = self.title or "(untitled)"
        return f"{self.folder}/{title}" if self.folder else title


class KeePassStore(Store):
    kind = "keepass"
    title = "KeePass database (KeePassXC, KeePass 2, KDBX 3.1/4)"
    reads = "KeePassXC 'otp' (URI or KeeOtp), 'TOTP Seed'/'TOTP Settings', KeePass 2 TimeOtp-*/HmacOtp-*; groups as folders"
    writes = (
        "in place: TOTP/Steam as KeePassXC's protected 'otp', HOTP as KeePass HmacOtp-* (6-digit SHA-1) or else as a "
        "protected 'otpbridge-hotp' URI (kept whole; KeePass/KeePassXC show no code for it, 'otpbridge code' does); "
        "nothing else is touched"
    )
    drops = frozenset({"note"})
    loses = (
        "notes (only new entries get them); issuer/name of TimeOtp/HmacOtp entries (title/user name); "
        "HOTP codes in KeePassXC 2.7 and older, which shows none for HOTP accounts "
        "(KeePass 2 shows HmacOtp codes; 'otpbridge code' shows them all)"
    )
    is_database = True
    options = ("keyfile",)
    carries = {"notes": "partly"}
    source = "the KeePassXC / KeePass 2 database (.kdbx) itself; in KeePassXC an entry's TOTP is set with Entry → TOTP → Set up TOTP"
    sniff_priority = 95
    _loaded: bytes | None = None  # the bytes this open decrypted
    _seen: bytes | None = None  # the bytes of this object's last read() or save

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return kdbx.is_kdbx(head)

    # -- credentials and opening ------------------------------------------------------
    @property
    def keyfile(self) -> Path | None:
        raw = self.spec.options.get("keyfile")
        return Path(os.path.expanduser(raw)) if raw else None

    def _load(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise FormatError(
                f"{self.label}: no such file", hint="check the path; otpbridge creates a database only when writing"
            ) from None
        except IsADirectoryError:
            raise FormatError(f"{self.label}: is a folder, not a KeePass database") from None
        except OSError as exc:
            raise FormatError(f"{self.label}: cannot read: {exc.strerror}") from None

    def _open(self, *, read_only: bool = False):
        """The decrypted database: pykeepass's (to edit and save) or, ``read_only``, our own
        reader's tree (:func:`keepass_kdbx.open_for_reading`, the fast path of every read)."""
        data = self._load()
        if self._seen is not None and data != self._seen:
            # What this store object read() before (what the caller's upserts and removals
            # were computed from) is gone: applying them now would undo the other save.
            self._refuse_concurrent()
        self._loaded = data
        try:
            kdbx.read_header(data)  # a damaged or foreign file fails before asking for a password
            keyfile = self.keyfile
            password = self.ctx.password(self.spec, label=self.label, required=keyfile is None)
            self.ctx.stats["keepass_kdf"] += 1
            if read_only:
                return kdbx.open_for_reading(data, password, keyfile, self.label)
            return kdbx.open_database(data, password, keyfile, self.label)
        except FormatError as exc:
            raise self._with_backup_hint(exc) from None

    def _with_backup_hint(self, exc: FormatError) -> FormatError:
        """A damaged database: point to the copy otpbridge kept before its last write."""
        from otpbridge.core.fileio import backup_path

        bak = backup_path(self.path)
        if bak.is_file() and not exc.hint:
            exc.hint = (f"otpbridge kept the previous version as {bak}: check it with "
                        f"'otpbridge list keepass:{bak}', then copy it back over {self.path.name} "
                        "(keep the damaged file aside)")
        elif not exc.hint:
            exc.hint = "open it in KeePassXC to see whether it can repair it; restore it from your backups or " \
                       "'otpbridge restore --into keepass:NEW.kdbx'"
        return exc

    def _create(self) -> kdbx.OpenDatabase:
        """A new, empty KDBX 4 database from pykeepass's blank template (AES-256, Argon2d)."""
        kdbx.require_pykeepass()
        import hashlib

        from pykeepass import pykeepass as pk

        keyfile = self.keyfile
        if keyfile is not None and not keyfile.is_file():
            raise UsageError(f"the key file {str(keyfile)!r} does not exist", hint="otpbridge does not create key files")
        password = self.ctx.password(self.spec, label=f"new database {self.label}")
        if not password and keyfile is None:
            raise UsageError(f"refusing to create {self.label} with an empty password and no key file")
        with open(pk.BLANK_DATABASE_LOCATION, "rb") as fh:
            blank = fh.read()
        # The template and its password are public, so is its key: skip one Argon2 run.
        known = _BLANK_KEYS.get(hashlib.sha256(blank).hexdigest())
        db = kdbx.open_database(
            blank, Secret(pk.BLANK_DATABASE_PASSWORD), None, "the blank database template", transformed=known
        )
        kdbx.set_argon2(db, **NEW_DATABASE_ARGON2)
        db.password, db.keyfile = password, keyfile
        db.kp.password = None if password is None else password.reveal()
        db.kp.keyfile = None if keyfile is None else str(keyfile)
        return db

    # -- reading ------------------------------------------------------------------------
    def read(self) -> ReadResult:
        kp = self._open(read_only=True)
        self._seen = self._loaded
        result = ReadResult()
        for entry in _entries(kp):
            for slot in entry.slots:
                if slot.error is not None:
                    result.errors.append(EntryError(entry.where, slot.error))
            result.accounts.extend(kf.entry_accounts(entry.slots))
        return result

    # -- writing ------------------------------------------------------------------------
    def apply(
        self,
        upserts: Sequence[Account] = (),
        removals: Sequence[Account] = (),
        *,
        dry_run: bool = False,
    ) -> WriteReport:
        exists = self.path.exists()
        db = self._open() if exists else self._create()
        entries = list(_entries(db.kp))
        writer = _Writer(db.kp, entries, warn=lambda msg: self.ctx.warn(f"{self.label}: {msg}"))
        report = writer.run(dedupe(list(upserts)), dedupe(list(removals)))
        report.dry_run = dry_run
        if not dry_run and (report.changed or not exists):
            data = kdbx.serialize(db)
            self.ctx.stats["keepass_kdf"] += 1
            self._check_unchanged_on_disk(exists)
            report.backup = atomic_write(self.path, data, mode=0o600)
            self._seen = data
        return report

    def _check_unchanged_on_disk(self, existed: bool) -> None:
        """Refuse to overwrite a save KeePassXC (or anyone) made while we were working."""
        try:
            now = self.path.read_bytes()
        except FileNotFoundError:
            now = None
        if now != (self._loaded if existed else None):
            self._refuse_concurrent()

    def _refuse_concurrent(self) -> None:
        # exit 6: writing now would overwrite the other program's save
        raise DataLossRefused(
            f"{self.label} changed on disk while otpbridge was editing it; nothing was written",
            hint="save and close it in KeePassXC, then run the command again",
        )


# -- walking the tree ------------------------------------------------------------------------


def _decode_uuid(text: str | None) -> bytes:
    try:
        return base64.b64decode(text or "")
    except ValueError:
        return b""


def _add_string(out: dict[str, str], string) -> None:
    """One String element's Key and Value into ``out`` (the first of a key wins; hot
    loop, so no XPath)."""
    key = value = None
    for part in string:
        if part.tag == "Key":
            key = part.text
        elif part.tag == "Value":
            value = part.text
    if key is not None and key not in out:
        out[key] = value or ""


def _fields(entry) -> dict[str, str]:
    """``{key: value}`` of an entry's String elements."""
    out: dict[str, str] = {}
    for s in entry.iterchildren("String"):
        _add_string(out, s)
    return out


_EPOCH_FROM_YEAR_1 = 62135596800  # seconds from 0001-01-01 to 1970-01-01 (KDBX 4 times)


def _mtime_of(text: str | None, kdbx4: bool) -> float | None:
    """LastModificationTime: base64 seconds since year 1 (KDBX 4) or ISO 8601 text (KDBX 3.1)."""
    if not text:
        return None
    try:
        if kdbx4 and len(text) == 12:
            raw = binascii.a2b_base64(text, strict_mode=True)
            if len(raw) == 8:
                return float(int.from_bytes(raw, "little") - _EPOCH_FROM_YEAR_1)
        when = datetime.fromisoformat(text.strip())
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):  # a bad date (binascii.Error is one) must not hide an account
        return None


def _read_entry(entry) -> tuple[dict[str, str], str | None]:
    """:func:`_fields` and the LastModificationTime text, in one pass over the entry's children."""
    out: dict[str, str] = {}
    when = None
    for child in entry:
        tag = child.tag
        if tag == "String":
            _add_string(out, child)
        elif tag == "Times" and when is None:
            when = child.findtext("LastModificationTime") or ""
    return out, when


def _entries(kp) -> Iterator[_Entry]:
    """Every live entry (not history, not in the recycle bin) with its parsed OTP slots.

    ``kp``: pykeepass's object or the read-only reader's (both have ``tree`` and ``version``).
    """
    root = kp.tree.getroot()
    bin_uuid = _decode_uuid(root.findtext("Meta/RecycleBinUUID"))
    top = root.find("Root/Group")
    kdbx4 = kp.version >= (4, 0)
    if top is None:
        raise FormatError("the database has no root group")
    read_slots = kf.read_slots
    stack = [(top, ())]
    while stack:
        group, path = stack.pop()
        folder = "/".join(path)
        subgroups = []
        for child in group:
            tag = child.tag
            if tag == "Entry":
                fields, when = _read_entry(child)
                title, username = fields.get("Title", ""), fields.get("UserName", "")
                slots = read_slots(fields, title=title, username=username, folder=folder, mtime=_mtime_of(when, kdbx4))
                yield _Entry(child, folder, title, username, slots, group)
            elif tag == "Group":
                subgroups.append(child)
        for sub in reversed(subgroups):
            uuid = _decode_uuid(sub.findtext("UUID"))
            if bin_uuid and bin_uuid != _ZERO_UUID and uuid == bin_uuid:
                continue
            stack.append((sub, (*path, sub.findtext("Name") or "")))


# -- editing -----------------------------------------------------------------------------------


def _set_field(entry, key: str, value: str, protected: bool) -> None:
    from lxml import etree

    for s in entry.iterfind("String"):
        if s.findtext("Key") == key:
            v = s.find("Value")
            if v is None:
                v = etree.SubElement(s, "Value")
            v.text = value
            if protected:
                v.set("Protected", "True")
            return
    s = etree.Element("String")
    etree.SubElement(s, "Key").text = key
    v = etree.SubElement(s, "Value")
    v.text = value
    if protected:
        v.set("Protected", "True")
    # Keep the String elements together, before AutoType/History, as KeePass writes them.
    strings = list(entry.iterfind("String"))
    if strings:
        strings[-1].addnext(s)
    else:
        entry.append(s)


def _del_field(entry, key: str) -> None:
    for s in list(entry.iterfind("String")):
        if s.findtext("Key") == key:
            entry.remove(s)


#: KeePassXC up to 2.7.4 caps the period of an ``otp`` field at 60 s (Totp.cpp
#: ``qBound(1u, step, 60u)``; 24 h from 2.7.5, commit ee44a7fd7 / #9149), so it shows
#: codes that change too often, which the service rejects.
KEEPASSXC_MAX_OLD_PERIOD = 60


class _Writer:
    """Applies removals then upserts to the parsed tree; says what changed."""

    def __init__(self, kp, entries: list[_Entry], warn: Callable[[str], None] | None = None) -> None:
        self.kp = kp
        self.entries = entries
        self.warn = warn or (lambda _msg: None)
        self.report = WriteReport()
        #: (folder, title casefolded) -> how many accounts this run adds under that title
        self.new_titles: dict[tuple[str, str], int] = {}
        self.by_identity: dict[str, list[tuple[_Entry, kf.Slot]]] = {}
        self.by_name: dict[tuple[str, str, str], list[_Entry]] = {}
        for entry in entries:
            self.by_name.setdefault((entry.folder, entry.title, entry.username), []).append(entry)
            for slot in entry.slots:
                if slot.account is not None:
                    self.by_identity.setdefault(slot.account.identity, []).append((entry, slot))

    # -- bookkeeping ---------------------------------------------------------------------
    def _touch(self, entry: _Entry) -> None:
        """Before the first change of an entry: keep its old state in history (as KeePass does)."""
        if entry.touched:
            return
        from pykeepass.entry import Entry

        wrapped = Entry(element=entry.element, kp=self.kp)
        wrapped.save_history()
        _trim_history(self.kp, entry.element)
        wrapped.touch(modify=True)
        entry.touched = True

    def _drop_slot(self, entry: _Entry, slot: kf.Slot) -> None:
        self._touch(entry)
        for name in slot.fields:
            _del_field(entry.element, name)
        entry.slots = [s for s in entry.slots if s is not slot]

    def _write(self, entry: _Entry, values: dict[str, tuple[str, bool]], replaces: tuple[str, ...] = ()) -> None:
        self._touch(entry)
        for name in replaces:
            if name not in values:
                _del_field(entry.element, name)
        for name, (value, protected) in values.items():
            _set_field(entry.element, name, value, protected)

    # -- the run ------------------------------------------------------------------------------
    def run(self, upserts: list[Account], removals: list[Account]) -> WriteReport:
        # A removal plus an upsert with the same kind + secret is one rename/edit (SPEC §3):
        # the entry is updated in place (its password and other fields stay), never
        # emptied and re-created; every other entry is left alone.
        keep = {a.identity for a in upserts}
        doomed = [a for a in removals if a.identity in self.by_identity and a.identity not in keep]
        fresh = [a for a in upserts if a.identity not in self.by_identity]
        renames = pair_renames(doomed, fresh)
        for old, new in renames:
            hits = self.by_identity.pop(old.identity, [])
            done: set[int] = set()
            ok = True
            for entry, _slot in hits:
                if id(entry) in done:
                    continue
                done.add(id(entry))
                same = [s for s in entry.slots if s.account is not None and s.account.secret_id == old.secret_id]
                ok = self._store_in(entry, new, same) and ok
            if ok:
                self.report.updated.append(new)
                self.report.renamed.append((old, new))
        paired_old = {o.identity for o, _n in renames}
        paired_new = {n.identity for _o, n in renames}
        removals = [a for a in removals if a.identity not in paired_old and a.identity not in keep]
        upserts = [a for a in upserts if a.identity not in paired_new]
        for acc in upserts:
            if acc.identity not in self.by_identity:
                key = (acc.folder, _natural_title(acc).casefold())
                self.new_titles[key] = self.new_titles.get(key, 0) + 1
        for acc in removals:
            hits = self.by_identity.pop(acc.identity, [])
            if not hits:
                continue
            for entry, slot in hits:
                self._drop_slot(entry, slot)
            self.report.removed.append(hits[0][1].account)  # type: ignore[arg-type]
        for acc in upserts:
            hits = self.by_identity.get(acc.identity)
            if hits:
                self._update(keep_counter(hits[0][1].account, acc), hits)
            else:
                self._add(acc)
        return self.report

    def _update(self, acc: Account, hits: list[tuple[_Entry, kf.Slot]]) -> None:
        if all(kf.slot_matches(slot, acc) for _, slot in hits):
            self.report.unchanged += 1
            return
        done: set[int] = set()
        for entry, _slot in list(hits):  # _store_in re-indexes ``hits`` as it goes
            if id(entry) in done:
                continue
            done.add(id(entry))
            # the entry's other conventions of this seed are copies of one OTP: replaced too
            same = [s for s in entry.slots if s.account is not None and s.account.secret_id == acc.secret_id]
            if not self._store_in(entry, acc, same):
                return
        self.report.updated.append(acc)

    def _store_in(self, entry: _Entry, acc: Account, same: list[kf.Slot]) -> bool:
        """Write ``acc`` into ``entry``, replacing the slots in ``same`` (which hold it now).

        Decides first, then edits, so a refusal leaves the entry untouched. A slot of
        another account (or one we could not read) is never overwritten.
        """
        by_conv = {s.convention: s for s in same}
        taken = {s.convention for s in entry.slots if s not in same}
        uri, native, legacy = by_conv.get(kf.URI), by_conv.get(kf.KP2_TOTP), by_conv.get(kf.LEGACY)
        if acc.kind is Kind.HOTP:
            return self._store_hotp(entry, acc, by_conv, taken)

        keep_native = native is not None and kf.can_kp2_totp(acc)
        write_uri = uri is not None or (kf.URI not in taken and not keep_native)
        keep_legacy = legacy is not None and not write_uri and not keep_native and kf.can_legacy(acc)
        if not (write_uri or keep_native or keep_legacy):
            return self._refuse(entry, acc, "the entry's 'otp' field holds another account; left unchanged")
        if write_uri:
            self._write(entry, kf.otp_field(acc))
            self._check_period(acc)
        if native is not None:
            if keep_native:
                # KeePass 2 reads these natively (KeePassXC too, from 2.7.10): keep the convention.
                self._write(entry, kf.kp2_totp_fields(acc), native.fields)
            else:
                self._drop_slot(entry, native)
        if legacy is not None:
            if keep_legacy:
                self._write(entry, kf.legacy_fields(acc), legacy.fields)
            else:
                self._drop_slot(entry, legacy)
        self._reslot(entry)
        return True

    def _store_hotp(self, entry: _Entry, acc: Account, by_conv: dict[str, kf.Slot], taken: set[str]) -> bool:
        """KeePass's ``HmacOtp-*`` when they can hold ``acc``, else our ``otpbridge-hotp`` URI.

        Never ``otp``: KeePassXC shows TOTP codes for an HOTP URI there. The account's
        other slots in this entry go (``otp`` or the other shape), so there is one
        source of truth.
        """
        shapes = [(kf.KP2_HOTP, kf.kp2_hotp_fields)] if kf.can_kp2_hotp(acc) else []
        shapes.append((kf.OB_HOTP, kf.ob_hotp_field))
        free = [(conv, fields) for conv, fields in shapes if conv not in taken]
        if not free:
            return self._refuse(entry, acc, "the entry's HOTP fields hold another account; left unchanged")
        convention, fields = free[0]
        old = by_conv.get(convention)
        self._write(entry, fields(acc), old.fields if old else ())
        for conv, slot in by_conv.items():
            if conv != convention:
                self._drop_slot(entry, slot)
        self._reslot(entry)
        return True

    def _refuse(self, entry: _Entry, acc: Account, reason: str) -> bool:
        self.report.errors.append(EntryError(f"{entry.where} ({acc.label})", reason))
        return False

    def _reslot(self, entry: _Entry) -> None:
        fields = _fields(entry.element)
        entry.slots = kf.read_slots(fields, title=entry.title, username=entry.username, folder=entry.folder)
        for slot in entry.slots:
            if slot.account is not None:
                hits = self.by_identity.setdefault(slot.account.identity, [])
                hits[:] = [(e, s) for e, s in hits if e is not entry] + [(entry, slot)]

    def _check_period(self, acc: Account) -> None:
        if acc.kind is not Kind.HOTP and acc.period > KEEPASSXC_MAX_OLD_PERIOD:
            self.warn(
                f"{acc.label}: its {acc.period}-second period is written to 'otp'; KeePassXC 2.7.4 "
                f"and older cap it at {KEEPASSXC_MAX_OLD_PERIOD} s and show wrong codes (2.7.5 and newer are right)"
            )

    def _title(self, acc: Account, values: dict[str, tuple[str, bool]]) -> str:
        """A title unique in its group, so ``keepassxc-cli show DB /folder/title`` finds one entry.

        The issuer; ``issuer (name)`` when another entry there has (or this run gives
        another) that title; a number after it if even that is taken. Only when the fields
        written carry the issuer and name themselves (an otpauth URI): KeePass's
        ``HmacOtp-*`` fields and a URI without issuer take the issuer from the title, so
        there the title must stay the issuer (or the name).
        """
        natural = _natural_title(acc)
        taken = {e.title.casefold() for e in self.entries if e.folder == acc.folder}
        if natural.casefold() not in taken and self.new_titles.get((acc.folder, natural.casefold()), 0) < 2:
            return natural
        if not acc.issuer or not (kf.OTP in values or kf.OB_HOTP_FIELD in values):
            return natural
        longer = f"{acc.issuer} ({acc.name})" if acc.issuer and acc.name else natural
        title, n = longer, 2
        while title.casefold() in taken:
            title, n = f"{longer} {n}", n + 1
        return title

    def _add(self, acc: Account) -> None:
        title = acc.issuer or acc.name
        family = "hotp" if acc.kind is Kind.HOTP else "totp"
        if acc.kind is not Kind.HOTP:
            values = kf.otp_field(acc)
        elif kf.can_kp2_hotp(acc):
            values = kf.kp2_hotp_fields(acc)
        else:
            values = kf.ob_hotp_field(acc)
        entry = None
        for candidate in self.by_name.get((acc.folder, title, acc.name), ()):
            if not any(s.family in (family, "?") for s in candidate.slots) and not _occupied(candidate, values):
                entry = candidate  # same title + user name, no OTP of this family, target fields free
                break
        if entry is None:
            entry = self._new_entry(acc, self._title(acc, values))
        self._write(entry, values)
        if kf.OTP in values:
            self._check_period(acc)
        self._reslot(entry)
        self.report.added.append(acc)

    def _new_entry(self, acc: Account, title: str) -> _Entry:
        from pykeepass.entry import Entry

        group = self._group(acc.folder)
        wrapped = Entry(title=title, username=acc.name, password="", notes=acc.note or None, kp=self.kp)
        _random_uuid(wrapped._element)
        group.append(wrapped._element)
        entry = _Entry(wrapped._element, acc.folder, title, acc.name, [], group, touched=True)
        self.entries.append(entry)
        self.by_name.setdefault((entry.folder, entry.title, entry.username), []).append(entry)
        return entry

    def _group(self, folder: str):
        from pykeepass.group import Group

        root = self.kp.tree.getroot()
        bin_uuid = root.findtext("Meta/RecycleBinUUID")
        group = root.find("Root/Group")
        for name in [p for p in folder.split("/") if p]:
            found = None
            for sub in group.iterfind("Group"):
                if (sub.findtext("Name") or "") == name and not (bin_uuid and sub.findtext("UUID") == bin_uuid):
                    found = sub
                    break
            if found is None:
                new = Group(name=name, kp=self.kp)
                _random_uuid(new._element)
                group.append(new._element)
                found = new._element
            group = found
        return group


def _natural_title(acc: Account) -> str:
    return acc.issuer or acc.name


def _occupied(entry: _Entry, values: dict[str, tuple[str, bool]]) -> bool:
    """Would writing ``values`` overwrite a field the entry already has?

    An ``otp`` holding an HOTP account (KeeOtp, KeePassOTP) is of the other family, and a
    lone ``HmacOtp-Counter`` is no slot at all: both are still the user's data.
    """
    names = set(_fields(entry.element))
    prefixes = tuple(p for p in (kf.TOTP_PREFIX, kf.HOTP_PREFIX) if any(k.startswith(p) for k in values))
    return any(k in names for k in values) or any(n.startswith(prefixes) for n in names if prefixes)


def _random_uuid(element) -> None:
    """pykeepass uses uuid1 (this host's MAC address and the time); KeePass uses random UUIDs."""
    import uuid

    element.find("UUID").text = base64.b64encode(uuid.uuid4().bytes).decode("ascii")


def _trim_history(kp, element) -> None:
    """Honour the database's HistoryMaxItems (pykeepass's save_history does not)."""
    text = kp.tree.getroot().findtext("Meta/HistoryMaxItems")
    try:
        limit = int(text) if text is not None else 10
    except ValueError:
        limit = 10
    history = element.find("History")
    if history is None or limit < 0:
        return
    items = list(history.iterfind("Entry"))
    for old in items[: max(0, len(items) - limit)]:
        history.remove(old)
