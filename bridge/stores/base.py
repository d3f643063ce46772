"""The store plugin interface: what every format and password store implements.

A store is read as sniff → read → decrypt → convert (Aegis's importers), collecting
per-entry errors instead of failing the whole file. Writing comes in two shapes:
export files are serialised whole (``write_all``); live databases (KeePass, pass)
override ``apply`` to change only the OTP fields of matching entries and keep
everything else byte for byte.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl

from otpbridge.core.childenv import note_secret_env
from otpbridge.core.errors import EntryError, UsageError
from otpbridge.core.model import Account, Kind, dedupe, pair_renames
from otpbridge.core.secrets import Secret, store_password

_SNIFF_BYTES = 256 * 1024
#: What ``otpbridge formats`` and the table in docs/stores/README.md say, per kind, about
#: each of these: "kept", "partly" (the kind's ``loses`` text says how) or "lost".
FEATURES = ("folders", "notes", "icons", "HOTP", "Steam")
CARRIES = ("kept", "partly", "lost")
#: no authenticator export or URI list comes near this; a bigger file is a mistake
MAX_FILE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class StoreSpec:
    """``KIND:LOCATION[?option=value&…]`` (SPEC §4). ``kind`` is None when it must be detected."""

    kind: str | None
    location: str
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, known_kinds: Iterable[str]) -> StoreSpec:
        text = text.strip()
        if not text:
            raise UsageError("an empty store was given", hint="use KIND:PATH, e.g. aegis:backup.json")
        kind: str | None = None
        rest = text
        head, sep, tail = text.partition(":")
        if sep and head.lower() in set(known_kinds):
            kind, rest = head.lower(), tail
        location, options = rest, {}
        if "?" in rest:
            location, _, query = rest.rpartition("?")
            try:
                options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True))
            except ValueError:
                raise UsageError(f"cannot read the options {query!r} of {text!r}", hint="use ?name=value&name=value") from None
        if kind is None and not location:
            raise UsageError(f"{text!r} names no file or folder")
        if options.get("password-env"):
            note_secret_env(options["password-env"])  # no child process gets it (SPEC §7)
        return cls(kind, location, options)

    @property
    def path(self) -> Path:
        return Path(os.path.expanduser(self.location)) if self.location else Path()

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}" if self.kind else self.location


@dataclass
class ReadResult:
    accounts: list[Account] = field(default_factory=list)
    errors: list[EntryError] = field(default_factory=list)
    #: exact duplicates (equal in all seven identity fields) ``deduplicated`` kept once
    duplicates: list[Account] = field(default_factory=list)

    def deduplicated(self) -> ReadResult:
        kept = dedupe(self.accounts)
        seen = {id(a) for a in kept}
        return ReadResult(kept, list(self.errors), [a for a in self.accounts if id(a) not in seen])


@dataclass
class WriteReport:
    added: list[Account] = field(default_factory=list)
    updated: list[Account] = field(default_factory=list)
    removed: list[Account] = field(default_factory=list)
    unchanged: int = 0
    backup: Path | None = None
    errors: list[EntryError] = field(default_factory=list)
    dry_run: bool = False
    #: renames/edits: (old, new) — a removal and an upsert with one kind + secret, applied
    #: as one change of the existing entry (the new account is also in ``updated``)
    renamed: list[tuple[Account, Account]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass
class Context:
    """What a store may use from the outside world; passed explicitly, never global."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    stats: Counter = field(default_factory=Counter)
    progress: bool = False  # draw progress bars (the CLI sets it on a TTY)
    warn: Callable[[str], None] = field(default=lambda msg: print(f"warning: {msg}", file=sys.stderr))
    info: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))
    cache_dir: Path | None = None  # where a store may keep a cache holding no secret
    #: a cache that MAY hold secrets; whoever supplies it persists it encrypted (the sync
    #: engine seals it under the vault key). None: stores must not cache secrets.
    store_cache: MutableMapping[str, bytes] | None = None

    def password(self, spec: StoreSpec, *, label: str, required: bool = True) -> Secret | None:
        return store_password(spec.options, store_label=label, kind=spec.kind or "", environ=self.environ, required=required)


class Store(ABC):
    """Base class of every store plugin; see docs/ARCHITECTURE.md for how to add one."""

    kind: ClassVar[str]
    title: ClassVar[str] = ""
    reads: ClassVar[str] = ""
    writes: ClassVar[str] = ""  # empty: read-only
    loses: ClassVar[str] = ""  # what a write cannot keep (icons, unsupported kinds…)
    #: a live database edited in place (KeePass, pass): it may exist and is merged into.
    is_database: ClassVar[bool] = False
    #: options this kind understands besides the password ones
    options: ClassVar[tuple[str, ...]] = ()
    #: account fields this kind cannot hold ("folder", "note"): sync keeps what other
    #: devices know for them instead of erasing it when this store's copy is edited
    drops: ClassVar[frozenset[str]] = frozenset()
    #: detection order: higher is tried first (specific formats before generic ones)
    sniff_priority: ClassVar[int] = 50
    #: ``write_all`` writes back, untouched, every entry its last ``read`` reported as an
    #: error (other kinds, damaged entries). When False, the default ``apply`` refuses to
    #: rewrite a file holding such entries rather than silently dropping them (SPEC §3).
    keeps_unreadable: ClassVar[bool] = False
    #: How a trip through this kind treats each of FEATURES: "lost" when the app has no
    #: such thing, otpbridge does not read it, or a write drops or skips it (listed,
    #: exit 7); "partly" when ``loses`` explains the limit. Folders and notes default
    #: from ``drops``, icons to "lost" (the account model has none), HOTP and Steam to "kept".
    carries: ClassVar[Mapping[str, str]] = {}
    #: where a user gets such a file or store: which menu of which app
    source: ClassVar[str] = ""

    def __init__(self, spec: StoreSpec, ctx: Context) -> None:
        self.spec = spec
        self.ctx = ctx

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        read = cls.__dict__.get("read")
        if read is not None and not getattr(read, "_reports_secret_notes", False):
            cls.read = _reporting_read(read)  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"

    @property
    def path(self) -> Path:
        return self.spec.path

    @property
    def label(self) -> str:
        return str(self.spec)

    @classmethod
    def can_write(cls) -> bool:
        return bool(cls.writes)

    @classmethod
    def feature_support(cls) -> dict[str, str]:
        """FEATURES -> "kept" | "partly" | "lost", from ``drops`` and ``carries``."""
        out = {
            "folders": "lost" if "folder" in cls.drops else "kept",
            "notes": "lost" if "note" in cls.drops else "kept",
            "icons": "lost",
            "HOTP": "kept",
            "Steam": "kept",
        }
        out.update(cls.carries)
        return out

    @classmethod
    def capabilities(cls) -> dict[str, object]:
        """What ``otpbridge formats`` shows for this kind (also its --json)."""
        return {
            "kind": cls.kind,
            "title": cls.title,
            "reads": cls.reads,
            "writes": cls.writes,
            "loses": cls.loses,
            "features": cls.feature_support(),
            "source": cls.source,
        }

    # -- detection ---------------------------------------------------------------
    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        """True when ``head`` (the first 256 KiB, or b"" for a folder) looks like this kind.

        Must be cheap and import no optional dependency.
        """
        return False

    def exists(self) -> bool:
        return self.path.exists()

    def read_bytes(self, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        """The store's file, or a FormatError naming it."""
        return read_file(self.path, self.label, max_bytes=max_bytes)

    def fingerprint(self) -> str | None:
        """A cheap token that changes when the store changes (the sync fast path)."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"

    # -- reading and writing -------------------------------------------------------
    @abstractmethod
    def read(self) -> ReadResult:
        """All accounts, plus per-entry errors for what could not be read."""

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        """Serialise ``accounts`` as the whole file (export formats); return a backup path."""
        raise UsageError(f"{self.kind} stores cannot be written", hint="run 'otpbridge formats' to see which can")

    def apply(
        self,
        upserts: Sequence[Account] = (),
        removals: Sequence[Account] = (),
        *,
        dry_run: bool = False,
    ) -> WriteReport:
        """Add or update ``upserts`` and remove ``removals`` (matched by identity; a removal
        plus an upsert with the same kind + secret is a rename of that entry, see merge_accounts).

        The default reads the existing file, merges, and rewrites it whole.
        """
        from otpbridge.core.errors import DataLossRefused, OtpBridgeError

        if not self.can_write():
            self.write_all(())  # raises the uniform "cannot be written" error
        current = self.read() if self.exists() else ReadResult()
        existing = current.accounts
        report = merge_accounts(existing, upserts, removals, drops=self.drops)
        report.dry_run = dry_run
        if current.errors and not self.keeps_unreadable and report.changed:
            # Rewriting the file would drop what we could not read (SPEC §3: other kinds
            # are preserved untouched); the user must fix or remove those entries first.
            raise DataLossRefused(
                f"{self.label} holds {len(current.errors)} entr{'y' if len(current.errors) == 1 else 'ies'} "
                f"otpbridge cannot read (first: {current.errors[0]}); rewriting it would lose "
                f"{'it' if len(current.errors) == 1 else 'them'}",
                hint="write to a new file instead, or remove those entries from it first",
            )
        if not dry_run and (report.changed or not self.exists()):
            try:
                report.backup = self.write_all(report_result(existing, report))
            except OSError as exc:  # a folder in the way, a full disk: one clear line, not a traceback
                raise OtpBridgeError(
                    f"{self.label}: cannot write: {exc.strerror or exc.__class__.__name__}",
                    hint="check the path and free space; the previous file, if any, is unchanged",
                ) from None
        return report


def _reporting_read(read: Callable[[Store], ReadResult]) -> Callable[[Store], ReadResult]:
    """Wrap a plugin's ``read`` so every account read from a non-standard secret is reported.

    One warning per account and store object (a store read twice in one run warns once),
    through ``ctx.warn``; the text holds lengths, never the secret (model.b32decode).
    """
    import functools

    @functools.wraps(read)
    def reporting(self: Store) -> ReadResult:
        result = read(self)
        warned: set[tuple[str, str]] = self.__dict__.setdefault("_secret_notes_warned", set())
        for acc in getattr(result, "accounts", ()):
            note = getattr(acc, "secret_note", "")
            if note and (acc.identity, acc.label) not in warned:
                warned.add((acc.identity, acc.label))
                self.ctx.warn(f"{self.label}: {acc.label}: {note}")
        return result

    reporting._reports_secret_notes = True  # type: ignore[attr-defined]
    return reporting


def keep_counter(held: Account | None, acc: Account) -> Account:
    """``acc`` as written over ``held`` (the same account in the store): an HOTP counter
    never goes back (SPEC §6). Codes below the store's counter were used; merging an old
    export must not make them valid again, nor put the account behind its server."""
    if held is not None and acc.kind is Kind.HOTP and held.kind is Kind.HOTP and held.counter > acc.counter:
        return acc.replace(counter=held.counter)
    return acc


def merge_accounts(existing: Sequence[Account], upserts: Sequence[Account], removals: Sequence[Account],
                   *, drops: frozenset[str] = frozenset()) -> WriteReport:
    """What applying ``upserts``/``removals`` to ``existing`` changes, by identity (SPEC §3).

    A removal whose entry is present, together with an upsert of a new account with the
    same kind + secret, is one rename/edit of that entry (``report.renamed``), applied in
    place; every other existing entry is left as it is. An upsert that differs only in
    fields the format ``drops`` (a folder a URI list cannot hold) is unchanged: writing it
    would change nothing but the report, and rewrite the file and its backup every time.
    """
    report = WriteReport()
    index = {a.identity: a for a in existing}
    gone = {a.identity for a in removals if a.identity in index}
    fresh = []
    for acc in dedupe(list(upserts)):
        old = index.get(acc.identity)
        acc = keep_counter(old, acc)
        if old is None:
            fresh.append(acc)
        elif old != (acc.replace(**{f: getattr(old, f) for f in drops}) if drops else acc):
            report.updated.append(acc)
        else:
            report.unchanged += 1
    gone -= {a.identity for a in upserts}  # upserted and removed at once: keep it
    doomed = [index[i] for i in index if i in gone]
    report.renamed = pair_renames(doomed, fresh)
    paired_old = {o.identity for o, _n in report.renamed}
    paired_new = {n.identity for _o, n in report.renamed}
    report.added = [a for a in fresh if a.identity not in paired_new]
    report.updated += [n for _o, n in report.renamed]
    report.removed = [a for a in existing if a.identity in gone and a.identity not in paired_old]
    return report


def report_result(existing: Sequence[Account], report: WriteReport) -> list[Account]:
    """The account list after ``report`` is applied to ``existing`` (order kept, new ones last)."""
    updates = {a.identity: a for a in report.updated}
    updates.update({o.identity: n for o, n in report.renamed})
    gone = {a.identity for a in report.removed}
    out = [updates.get(a.identity, a) for a in existing if a.identity not in gone]
    return out + list(report.added)


def carried_keys(read: Sequence[Account], accounts: Sequence[Account]) -> list[str | None]:
    """Per account to write, the identity it had when the file was read (to find what a
    format keeps per entry: uuid, icon…), or None for a new one.

    By identity; an account renamed or edited since (SPEC §3: a removal plus an upsert
    with the same kind + secret) takes the one read entry of its kind + secret that is
    no longer written, so its uuid and icon survive the rename.
    """
    written = {a.identity for a in accounts}
    spare: dict[str, list[str]] = {}
    for acc in read:
        if acc.identity not in written:
            spare.setdefault(acc.secret_id, []).append(acc.identity)
    read_ids = {a.identity for a in read}
    out: list[str | None] = []
    for acc in accounts:
        if acc.identity in read_ids:
            out.append(acc.identity)
        elif spare.get(acc.secret_id):
            out.append(spare[acc.secret_id].pop(0))
        else:
            out.append(None)
    return out


def read_file(path: Path, label: str, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The whole file, or a FormatError that names it (missing, a folder, unreadable, huge)."""
    from otpbridge.core.errors import FormatError

    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FormatError(f"{label}: the file is {size} bytes, too large for this format")
        return path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{label}: is a folder, not a file") from None
    except OSError as exc:
        raise FormatError(f"{label}: cannot read: {exc.strerror}") from None


def read_head(path: Path) -> bytes:
    if path.is_dir():
        return b""
    try:
        with open(path, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except OSError:
        return b""


# What a file no text kind reads may be, by its first bytes.
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
)
# First byte of an encrypted OpenPGP message: its first packet is a public-key (tag 1) or
# symmetric-key (tag 3) session key packet, in the old or the new packet format.
_OPENPGP_FIRST = {0x84, 0x85, 0x86, 0x87, 0x8C, 0x8D, 0xC1, 0xC3}


def looks_like(head: bytes) -> tuple[str, str] | None:
    """``(what the file looks like, how to read it)`` for files no text kind reads, or None.

    By magic bytes only (no parsing): images (QR screenshots), ZIP archives (1Password
    .1pux, Proton Pass), SQLite (Google Authenticator's own database), OpenPGP (andOTP's
    .json.gpg backups); the advice names the built-in kind that reads each.
    """
    what = advice = None
    if any(head.startswith(magic) for magic, _ in _IMAGE_MAGIC) or (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    ) or head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        what = next((name for magic, name in _IMAGE_MAGIC if head.startswith(magic)), "an image")
        if what == "an image" and head[:4] == b"RIFF":
            what = "a WebP image"
        advice = "QR code images are read with: otpbridge list qr:FILE"
    elif head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        what = "a ZIP archive"
        advice = ("a 1Password .1pux is read with: otpbridge list 1password:FILE; "
                  "a Proton Pass export with: otpbridge list proton-pass:FILE")
    elif head.startswith(b"SQLite format 3\x00"):
        what = "an SQLite database (Google Authenticator keeps its accounts in one)"
        advice = "Google Authenticator's database is read with: otpbridge list gauth-db:FILE"
    elif (head[:1] and head[0] in _OPENPGP_FIRST) or head.lstrip().startswith(b"-----BEGIN PGP MESSAGE"):
        what = "an OpenPGP-encrypted file (andOTP's .json.gpg backups are)"
        advice = ("an andOTP OpenPGP backup is read with: otpbridge list andotp-gpg:FILE "
                  "(a pass entry is read through its store: pass:DIR)")
    if what is None:
        return None
    return what, advice or ""


def not_text_error(label: str, data: bytes, what: str = "a UTF-8 text file"):
    """The FormatError for a text format given bytes that are not UTF-8, saying what they look like."""
    from otpbridge.core.errors import FormatError

    seen = looks_like(data[:_SNIFF_BYTES])
    if seen is None:
        return FormatError(f"{label}: not {what}")
    return FormatError(f"{label}: not {what}: this looks like {seen[0]}", hint=seen[1] or None)
