"""``pass:`` — the standard unix password manager's store, with pass-otp's OTP lines.

Reading decrypts every ``.gpg`` entry (in parallel, one gpg process each) and takes
the first ``otpauth://`` line; an incremental cache (plugins/pass_cache.py) means a
second read decrypts only changed files. Writing changes only that one line of an
entry, re-encrypts exactly as ``pass`` would (nearest ``.gpg-id``), never puts
plaintext on disk, and commits to the store's git repository like ``pass`` does.
Design notes and measurements: docs/stores/pass.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from otpbridge.core.errors import (
    AuthenticationError,
    EntryError,
    OtpBridgeError,
    UnreachableError,
    UsageError,
)
from otpbridge.core.fileio import atomic_write, fsync_dir
from otpbridge.core.model import Account, dedupe, pair_renames
from otpbridge.core.otpauth import UriError
from otpbridge.plugins import pass_entry as pe
from otpbridge.plugins.pass_cache import MISSING, EntryCache, Stamp, stamp_of
from otpbridge.plugins.pass_git import commit_changes
from otpbridge.plugins.pass_gpg import Gpg, GpgError
from otpbridge.stores.base import ReadResult, Store, WriteReport, keep_counter

_SKIP_DIRS = {".git", ".extensions"}
# First byte of a public-key-encrypted message: a PKESK packet (tag 1), old or new format.
_PKESK_FIRST = {0x84, 0x85, 0x86, 0x87, 0xC1}
_ARMOR = b"-----BEGIN PGP MESSAGE"
_MAX_ENTRY_BYTES = 4 << 20


@dataclass
class _Entry:
    """One ``.gpg`` file as the last read saw it."""

    rel: str  # pass-name: path inside the store without ".gpg"
    file: Path
    stamp: Stamp
    line: str | None = None  # the raw OTP line; None: no OTP line
    account: Account | None = None
    repaired: bool = False
    failed: bool = False  # could not be decrypted or its OTP line parsed


@dataclass
class _Op:
    action: str  # add | append | update | remove
    entry_rel: str
    account: Account


class PassStore(Store):
    kind = "pass"
    title = "pass (password-store) with pass-otp"
    reads = (
        "the first otpauth:// line of every .gpg entry (totp, hotp, steam); pass-otp's "
        "<issuer>/<account> layout; HOTP counters as pass-otp keeps them (last used)"
    )
    writes = (
        "entries as 'pass otp insert' makes them, encrypted to the nearest .gpg-id "
        "(or PASSWORD_STORE_KEY); an update replaces only the otpauth line; git commit "
        "when the store is a git repository"
    )
    drops = frozenset({"note"})
    loses = (
        "notes; entries are never moved when a folder changes elsewhere; pass-otp shows "
        "Steam as 5 digits and computes HOTP with SHA1 only; an HOTP account not used yet "
        "is stored as counter=0 (pass-otp cannot express 'none used'), so its next code uses counter 1"
    )
    is_database = True
    carries = {"HOTP": "partly", "Steam": "partly"}
    source = "the password store itself (~/.password-store or $PASSWORD_STORE_DIR), entries made with 'pass otp insert'"
    sniff_priority = 80

    # -- location ----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        if self.spec.location:
            return Path(os.path.expanduser(self.spec.location))
        env = self.ctx.environ.get("PASSWORD_STORE_DIR")
        return Path(os.path.expanduser(env)) if env else Path.home() / ".password-store"

    @property
    def label(self) -> str:
        return f"pass:{self.path}"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return path.is_dir() and (path / ".gpg-id").is_file()

    def exists(self) -> bool:
        return self.path.is_dir()

    def _gpg(self) -> Gpg:
        gpg = getattr(self, "_gpg_runner", None)
        if gpg is None:
            gpg = self._gpg_runner = Gpg(self.ctx.environ, self.ctx.stats)
        return gpg

    # -- walking -----------------------------------------------------------------------
    def _walk(self, *, with_ids: bool = False) -> Iterator[tuple[str, Path, os.stat_result]]:
        """Every ``*.gpg`` entry (and ``.gpg-id`` file) below the root, as ``pass ls`` lists them.

        Dot-named files and folders are skipped (``pass ls`` hides them, pass-import ignores
        them); the ``.gpg-id`` files are still reported for the fingerprint.
        """
        root = self.path
        stack = [(root, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                items = list(os.scandir(folder))
            except OSError:
                continue
            for item in items:
                try:
                    if with_ids and item.name in (".gpg-id", ".gpg-id.sig") and not item.is_dir():
                        yield f"{prefix}{item.name}", Path(item.path), item.stat()
                        continue
                    if item.name.startswith("."):
                        # Hidden files and folders (.git, .extensions, .ignore/x.gpg,
                        # dir/.x.gpg) are not entries: 'pass ls' (tree) does not show
                        # them and pass-import skips them.
                        continue
                    if item.is_dir():
                        # pass's find does not follow symlinked folders either (loops, escapes)
                        if item.name in _SKIP_DIRS or item.is_symlink():
                            continue
                        stack.append((Path(item.path), f"{prefix}{item.name}/"))
                        continue
                    if item.name.endswith(".gpg") and len(item.name) > 4:
                        yield f"{prefix}{item.name[:-4]}", Path(item.path), item.stat()
                except OSError:
                    continue

    def fingerprint(self) -> str | None:
        """Changes whenever any entry or recipient list changes; costs one stat per file."""
        import hashlib

        if not self.path.is_dir():
            return None
        digest = hashlib.sha256(b"otpbridge/pass-fingerprint/v1\0")
        for rel, _, st in sorted(self._walk(with_ids=True), key=lambda t: t[0]):
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    # -- reading -----------------------------------------------------------------------
    def _check_root(self) -> Path:
        root = self.path
        if not root.is_dir():
            raise UnreachableError(
                f"{self.label}: no such password store",
                hint="check PASSWORD_STORE_DIR or the path; create one with 'pass init GPG-ID'",
            )
        return root

    def _cache(self) -> EntryCache:
        return EntryCache(self.path, self.ctx.cache_dir, getattr(self.ctx, "store_cache", None))

    def read(self) -> ReadResult:
        self._check_root()
        entries, errors = self._scan()
        result = ReadResult(errors=errors)
        for entry in sorted(entries, key=lambda e: e.rel):
            if entry.account is not None:
                result.accounts.append(entry.account)
        return result

    def _scan(self, *, warn: bool = True) -> tuple[list[_Entry], list[EntryError]]:
        cache = self._cache()
        entries: list[_Entry] = []
        todo: list[_Entry] = []
        errors: list[EntryError] = []
        for rel, file, st in self._walk():
            entry = _Entry(rel, file, stamp_of(st))
            entries.append(entry)
            cached = cache.get(rel, entry.stamp)
            if cached is MISSING:
                todo.append(entry)
            else:
                entry.line = cached  # type: ignore[assignment]
        # Anything that is not a public-key-encrypted message is refused before gpg sees
        # it: garbage costs no process, and a symmetric packet cannot raise a pinentry.
        to_decrypt = []
        for entry in todo:
            if entry.stamp[0] > _MAX_ENTRY_BYTES:
                # binary files kept with pass extensions (pass-file, …) are not OTP entries
                entry.failed = True
                if warn:
                    self.ctx.warn(f"{self.label}: {entry.rel}: larger than {_MAX_ENTRY_BYTES >> 20} MiB, not read")
                continue
            if _looks_encrypted(entry.file):
                to_decrypt.append(entry)
            else:
                entry.failed = True
                errors.append(EntryError(entry.rel, "not a gpg-encrypted pass entry"))
        failures = 0
        results = self._decrypt_all([e.file for e in to_decrypt])
        for entry, outcome in zip(to_decrypt, results, strict=True):
            if isinstance(outcome, GpgError):
                entry.failed = True
                failures += 1
                errors.append(EntryError(entry.rel, outcome.message))
                continue
            where = pe.find_otp_line(outcome)
            entry.line = where.text if where else None
            cache.put(entry.rel, entry.stamp, entry.line)
        if to_decrypt and failures == len(to_decrypt) and len(to_decrypt) == len(entries):
            self._raise_if_locked_out(errors)
        for entry in entries:
            if entry.line is None or entry.failed:
                continue
            try:
                acc, notes = pe.account_from_entry(entry.line, entry.rel)
            except UriError as exc:
                entry.failed = True
                errors.append(EntryError(entry.rel, f"bad otpauth line: {exc}"))
                continue
            entry.account = acc.replace(mtime=entry.stamp[1] / 1e9)
            for note in notes:
                entry.repaired = entry.repaired or note.startswith("HOTP counter damaged")
                if warn:
                    self.ctx.warn(f"{self.label}: {entry.rel}: {note}")
        cache.finish(e.rel for e in entries)
        return entries, errors

    def _raise_if_locked_out(self, errors: list[EntryError]) -> None:
        """No entry at all could be decrypted for want of a key: say so instead of an empty store."""
        keyless = [e for e in errors if e.reason.startswith(("no secret key", "no secret key usable"))]
        if keyless and len(keyless) == len(errors):
            raise AuthenticationError(
                f"{self.label}: none of the {len(errors)} entries can be decrypted: {keyless[0].reason}",
                hint="check GNUPGHOME, that your secret key is imported (gpg -K) and, if it has a passphrase, that gpg-agent can ask for it",
            )

    def _decrypt_all(self, files: Sequence[Path]) -> list[bytes | GpgError]:
        if not files:
            return []
        gpg = self._gpg()
        with progress_bar(self.ctx.progress and len(files) > 1, f"decrypting {len(files)} pass entries", len(files)) as tick:
            return gpg.decrypt_many(files, on_done=tick)

    # -- writing -----------------------------------------------------------------------
    def apply(
        self,
        upserts: Sequence[Account] = (),
        removals: Sequence[Account] = (),
        *,
        dry_run: bool = False,
    ) -> WriteReport:
        root = self.path
        if root.is_dir():
            entries, _errors = self._scan(warn=False)
        elif self.ctx.environ.get("PASSWORD_STORE_KEY", "").strip() or dry_run:
            entries = []
        else:
            raise UsageError(
                f"{self.label}: no such password store",
                hint=f"create it first: PASSWORD_STORE_DIR={root} pass init GPG-ID",
            )
        ops, report = self._plan(entries, upserts, removals)
        report.dry_run = dry_run
        if dry_run or not ops:
            return report
        self._execute(ops, {e.rel: e for e in entries})
        return report

    def _plan(
        self, entries: list[_Entry], upserts: Sequence[Account], removals: Sequence[Account]
    ) -> tuple[list[_Op], WriteReport]:
        by_id: dict[str, _Entry] = {}
        by_rel = {e.rel: e for e in entries}
        for e in sorted(entries, key=lambda e: e.rel):
            if e.account is not None:
                by_id.setdefault(e.account.identity, e)
        report = WriteReport()
        ops: list[_Op] = []
        taken: set[str] = set()
        wanted = {a.identity for a in upserts}
        gone = {a.identity for a in removals} - wanted
        # A removal plus an upsert with the same kind + secret is one rename/edit of that
        # entry (SPEC §3): updated in place, the rest of the entry (password…) kept.
        doomed = [by_id[i].account for i in sorted(gone) if i in by_id]
        fresh = [a for a in dedupe(list(upserts)) if a.identity not in by_id]
        renamed = set()
        for old, new in pair_renames(doomed, fresh):  # type: ignore[arg-type]
            entry = by_id[old.identity]
            ops.append(_Op("update", entry.rel, new))
            taken.add(entry.rel)
            report.updated.append(new)
            report.renamed.append((old, new))
            renamed.add(new.identity)
        for acc in dedupe(list(upserts)):
            if acc.identity in renamed:
                continue
            entry = by_id.get(acc.identity)
            if entry is not None:
                acc = keep_counter(entry.account, acc)
                if _same_in_store(entry.account, acc) and not entry.repaired:
                    report.unchanged += 1
                    continue
                if entry.rel in taken:
                    continue
                ops.append(_Op("update", entry.rel, acc))
                taken.add(entry.rel)
                report.updated.append(acc)
                continue
            rel = pe.entry_name(acc)
            n = 1
            while True:
                target = by_rel.get(rel)
                if rel not in taken and (target is None or (not target.failed and target.account is None)):
                    ops.append(_Op("add" if target is None else "append", rel, acc))
                    report.added.append(acc)
                    break
                if rel not in taken and target is not None and target.account is not None and target.account.identity in gone:
                    # same path, another account that is being removed: the account was
                    # re-keyed, so match by path; never over an account nobody named
                    ops.append(_Op("update", rel, acc))
                    report.updated.append(acc)
                    break
                n += 1
                rel = f"{pe.entry_name(acc)}-{n}"
            taken.add(rel)
        for e in entries:
            if e.account is not None and e.account.identity in gone and e.rel not in taken:
                ops.append(_Op("remove", e.rel, e.account))
                taken.add(e.rel)
                report.removed.append(e.account)
        return ops, report

    def _execute(self, ops: list[_Op], entries: dict[str, _Entry]) -> None:
        root = self.path
        gpg = self._gpg()
        # 1. current contents of every entry we change (nothing is written yet)
        need = [op for op in ops if op.action != "add"]
        plain: dict[str, bytes] = {}
        outcomes = self._decrypt_all([entries[op.entry_rel].file for op in need])
        for op, outcome in zip(need, outcomes, strict=True):
            if isinstance(outcome, GpgError):
                raise GpgError(f"{self.label}: cannot read {op.entry_rel} to update it: {outcome.message}")
            plain[op.entry_rel] = outcome
        # 2. new contents
        new: dict[str, bytes | None] = {}
        for op in ops:
            uri = pe.uri_for(op.account, op.entry_rel)
            if op.action == "add":
                new[op.entry_rel] = (uri + "\n").encode("utf-8")
                continue
            old = plain[op.entry_rel]
            where = pe.find_otp_line(old)
            expected = entries[op.entry_rel].line
            if (where.text if where else None) != expected:
                raise OtpBridgeError(
                    f"{self.label}: {op.entry_rel} changed while otpbridge was updating it",
                    hint="run the command again; nothing was written",
                )
            if op.action == "append":
                new[op.entry_rel] = pe.append_otp_line(old, uri)
            elif op.action == "update":
                new[op.entry_rel] = pe.replace_otp_line(old, where, uri)
            else:
                new[op.entry_rel] = pe.remove_otp_line(old, where)
        # 3. encrypt everything before touching any file: a refused key writes nothing
        recipients = {rel: self._recipients(rel) for rel, data in new.items() if data is not None}
        cipher: dict[str, bytes] = {}
        jobs = [(rel, data) for rel, data in new.items() if data is not None]

        def enc(job: tuple[str, bytes]) -> tuple[str, bytes]:
            rel, data = job
            return rel, gpg.encrypt(data, recipients[rel], what=f"{self.label}: {rel}")

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(jobs)))) as pool:
            for rel, data in pool.map(enc, jobs):
                cipher[rel] = data
        # 4. write (atomic per file) and remember the new state for the next read
        if not root.is_dir():
            root.mkdir(mode=0o700, parents=True)
        cache = self._cache()
        changed: list[Path] = []
        done = 0
        try:
            written: set[Path] = set()
            for op in ops:
                file = _target(root, op.entry_rel)
                if file.resolve() in written:
                    # a symlinked entry and its target: same file, same plaintext, done once
                    continue
                written.add(file.resolve())
                if new[op.entry_rel] is None:
                    file.unlink()
                    _prune_empty_dirs(file.parent, root)
                    cache.forget(op.entry_rel)
                else:
                    _make_dirs(file.parent, root)
                    atomic_write(file, cipher[op.entry_rel], mode=0o600, backup=False)
                    where = pe.find_otp_line(new[op.entry_rel] or b"")
                    cache.put(op.entry_rel, stamp_of(file.stat()), where.text if where else None)
                changed.append(file)
                done += 1
        except OSError as exc:
            raise OtpBridgeError(
                f"{self.label}: writing {op.entry_rel} failed: {exc.strerror or exc}",
                hint=f"{done} of {len(ops)} entries were written; the others are unchanged",
            ) from None
        cache.finish(rel for rel, _, _ in self._walk())
        commit_changes(root, changed, _commit_message(ops), self._gpg().environ, self.ctx)

    def _recipients(self, rel: str) -> list[str]:
        """pass's set_gpg_recipients: PASSWORD_STORE_KEY, else the nearest .gpg-id upwards."""
        override = self.ctx.environ.get("PASSWORD_STORE_KEY", "")
        if override.strip():
            return override.split()
        root = self.path
        folder = (root / rel).parent
        while True:
            ids = folder / ".gpg-id"
            if ids.is_file():
                break
            if folder == root or root not in folder.parents:
                raise UsageError(
                    f"{self.label}: no .gpg-id file for {rel}",
                    hint=f"initialise the store first: PASSWORD_STORE_DIR={root} pass init GPG-ID",
                )
            folder = folder.parent
        self._verify_ids(ids)
        out = []
        try:
            text = ids.read_text("utf-8", "replace")
        except OSError as exc:
            raise OtpBridgeError(f"cannot read {ids}: {exc.strerror}") from None
        for raw in text.splitlines():
            key = raw.split("#", 1)[0].strip()
            if key:
                out.append(key)
        return out

    def _verify_ids(self, ids: Path) -> None:
        """PASSWORD_STORE_SIGNING_KEY: pass refuses an unsigned or wrongly signed .gpg-id; so do we."""
        wanted = {k.upper() for k in self.ctx.environ.get("PASSWORD_STORE_SIGNING_KEY", "").split()}
        wanted = {k for k in wanted if len(k) == 40 and all(c in "0123456789ABCDEF" for c in k)}
        if not self.ctx.environ.get("PASSWORD_STORE_SIGNING_KEY", "").strip():
            return
        sig = ids.with_name(".gpg-id.sig")
        if not sig.is_file():
            raise OtpBridgeError(f"signature for {ids} does not exist (PASSWORD_STORE_SIGNING_KEY is set)")
        if not wanted & self._gpg().signers(sig, ids):
            raise OtpBridgeError(f"signature for {ids} is invalid (PASSWORD_STORE_SIGNING_KEY is set)")


def _same_in_store(stored: Account | None, wanted: Account) -> bool:
    """Equal in everything an update could change.

    Folders are not moved, notes are not kept, and an unused HOTP counter (0) reads
    back as 1: differences that a rewrite cannot remove must not rewrite (and commit)
    the entry on every sync.
    """
    if stored is None:
        return False
    return stored == wanted.replace(folder=stored.folder, note=stored.note) or pe.uri_for(stored) == pe.uri_for(wanted)


def _target(root: Path, rel: str) -> Path:
    """The file to write; a symlinked entry is written through, but only inside the store."""
    file = root / f"{rel}.gpg"
    if file.is_symlink():
        real = file.resolve()
        if root.resolve() not in real.parents:
            raise OtpBridgeError(f"{rel} is a symbolic link out of the store; otpbridge does not write through it")
        return real
    return file


def _looks_encrypted(file: Path) -> bool:
    """A public-key-encrypted message whose session-key packets are all public-key ones.

    A symmetric session-key packet (tag 3) anywhere before the data would make gpg ask
    for a passphrase (a pinentry) once no secret key fits: a hostile file must not do that.
    """
    try:
        with open(file, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return True  # let gpg report why it cannot be read
    if head.startswith(_ARMOR):
        return True  # dearmoring is gpg's job; pass itself never writes armor
    if not head or head[0] not in _PKESK_FIRST:
        return False
    pos = 0
    while pos < len(head):
        tag, length, pos = _packet_header(head, pos)
        if tag != 1:
            return tag not in (None, 3)  # the data follows (or the header is unreadable)
        pos += length
    return True


def _packet_header(buf: bytes, pos: int) -> tuple[int | None, int, int]:
    """(tag, body length, body start) of the OpenPGP packet at ``pos`` (RFC 4880 §4.2)."""
    try:
        ctb = buf[pos]
        if not ctb & 0x80:
            return None, 0, pos
        if ctb & 0x40:  # new format
            tag, first = ctb & 0x3F, buf[pos + 1]
            if first < 192:
                return tag, first, pos + 2
            if first < 224:
                return tag, ((first - 192) << 8) + buf[pos + 2] + 192, pos + 3
            if first == 255:
                return tag, int.from_bytes(buf[pos + 2 : pos + 6], "big"), pos + 6
            return tag, 0, pos + 2  # partial length: only data packets use it
        tag, kind = (ctb >> 2) & 0x0F, ctb & 0x03
        if kind == 3:
            return tag, 0, pos + 1
        size = (1, 2, 4)[kind]
        return tag, int.from_bytes(buf[pos + 1 : pos + 1 + size], "big"), pos + 1 + size
    except IndexError:
        return None, 0, pos


def _make_dirs(folder: Path, root: Path) -> None:
    """Create missing folders with mode 0700, as pass's umask 077 does."""
    missing = []
    cur = folder
    while cur != root and not cur.exists():
        missing.append(cur)
        cur = cur.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700)
        fsync_dir(d.parent)


def _prune_empty_dirs(folder: Path, root: Path) -> None:
    """``rmdir -p`` as ``pass rm`` does, never past the store root."""
    cur = folder
    while cur != root and root in cur.parents:
        try:
            cur.rmdir()
        except OSError:
            return
        cur = cur.parent


def _commit_message(ops: list[_Op]) -> str:
    verbs = {"add": "add OTP for", "append": "add OTP to", "update": "update OTP for", "remove": "remove OTP from"}
    if len(ops) == 1:
        return f"otpbridge: {verbs[ops[0].action]} {ops[0].entry_rel}"
    counts: dict[str, int] = {}
    for op in ops:
        key = "add" if op.action == "append" else op.action
        counts[key] = counts.get(key, 0) + 1
    head = ", ".join(f"{k} {v}" for k, v in counts.items())
    body = "\n".join(f"- {verbs[op.action]} {op.entry_rel}" for op in ops)
    return f"otpbridge: {head} OTP entries\n\n{body}"


@contextlib.contextmanager
def progress_bar(enabled: bool, description: str, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
