"""``gauth-db:`` — Google Authenticator's on-device SQLite database (rooted phones), read-only.

Format (google-authenticator-android ``AccountDb.java``; Aegis ``GoogleAuthImporter``;
shared notes app-formats-2 §8): the file ``databases`` of
``/data/data/com.google.android.apps.authenticator2/databases/``, table ``accounts(email,
secret, counter, type, provider, issuer, original_name[, isencrypted])``. Always SHA1,
6 digits, 30 s. ``type`` 0 TOTP, 1 HOTP. ``email`` is the account name, often with an
``Issuer:`` prefix that GA strips when ``issuer`` is set.

HOTP: GA increments the counter *before* computing a code, so the stored value is the
counter of the last code shown and the next code uses ``counter + 1`` — the model's
"next counter". Rows with ``isencrypted`` > 0 (GA after v5.10 encrypts secrets with a
key kept in the phone's keystore) cannot be read: they are listed, with a hint to use
GA's "Transfer accounts" export (kind ``gauth``) instead.

The user's file is opened read-only and immutable (``file:…?mode=ro&immutable=1``), so
SQLite never writes beside it. A ``-wal`` or ``-journal`` sibling means the file alone is
not the whole database: then the files are copied to a private temporary folder and the
copy is opened, so committed rows in the WAL are not silently missed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from otpbridge.core.errors import FormatError
from otpbridge.core.model import Account, Kind, b32decode
from otpbridge.plugins import appcrypto as ac
from otpbridge.stores.base import ReadResult, Store

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_ROWS = 100_000
#: SQLite virtual-machine steps a read may take before it is stopped (a crafted file
#: could make a query loop for ever); a few thousand rows need far fewer.
MAX_VM_STEPS = 50_000_000
_SQLITE_MAGIC = b"SQLite format 3\x00"
_TYPES = {0: Kind.TOTP, 1: Kind.HOTP}


class GAuthDbStore(Store):
    kind = "gauth-db"
    title = "Google Authenticator database (rooted phone, GA 5.10 and older)"
    reads = "the app's SQLite database 'databases' (read-only, opened immutable): TOTP and HOTP"
    writes = ""
    loses = (
        "read-only (write a 'gauth' migration export for Google Authenticator instead); GA keeps no "
        "algorithm, digits or period (always SHA1, 6, 30 s); rows with encrypted secrets are listed"
    )
    drops = frozenset({"folder", "note"})
    carries = {"Steam": "lost"}
    source = (
        "rooted Android phone: copy /data/data/com.google.android.apps.authenticator2/databases/databases "
        "(with any databases-wal / databases-journal beside it)"
    )
    sniff_priority = 70

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if not head.startswith(_SQLITE_MAGIC):
            return False
        return b"CREATE TABLE accounts" in head and b"secret" in head and b"email" in head

    def read(self) -> ReadResult:
        import sqlite3

        self._check_file()
        siblings = [p for p in (Path(f"{self.path}-wal"), Path(f"{self.path}-journal")) if p.is_file() and p.stat().st_size]
        try:
            if siblings:
                with tempfile.TemporaryDirectory(prefix="otpbridge-gadb-") as tmp:
                    copy = Path(tmp) / "databases"
                    shutil.copyfile(self.path, copy)
                    for sib in siblings:
                        shutil.copyfile(sib, Path(f"{copy}{sib.name[len(self.path.name):]}"))
                    return self._read_db(sqlite3.connect(f"{copy.as_uri()}?mode=rw", uri=True))
            uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
            return self._read_db(sqlite3.connect(uri, uri=True))
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            # UnicodeDecodeError: SQLite's message quoting a damaged schema is not UTF-8
            name = type(exc).__name__
            raise FormatError(f"{self.label}: not a readable Google Authenticator database ({name})") from None
        except OSError as exc:
            raise FormatError(f"{self.label}: cannot read: {exc.strerror or type(exc).__name__}") from None

    def _check_file(self) -> None:
        """A FormatError naming the file unless it is a SQLite file of a plausible size."""
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                magic = fh.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            raise FormatError(f"{self.label}: no such file") from None
        except IsADirectoryError:
            raise FormatError(f"{self.label}: is a folder, not a file") from None
        except OSError as exc:
            raise FormatError(f"{self.label}: cannot read: {exc.strerror}") from None
        if size > MAX_FILE_BYTES:
            raise FormatError(f"{self.label}: the file is {size} bytes, too large for a Google Authenticator database")
        if magic != _SQLITE_MAGIC:
            raise FormatError(f"{self.label}: not a SQLite database")

    def _read_db(self, conn: Any) -> ReadResult:
        steps = [0]

        def budget() -> int:
            steps[0] += 1
            return 1 if steps[0] * 1000 > MAX_VM_STEPS else 0

        try:
            conn.text_factory = bytes  # decoded per row: bad UTF-8 in one row is that row's error
            conn.set_progress_handler(budget, 1000)
            conn.execute("PRAGMA query_only = 1")
            conn.execute("PRAGMA trusted_schema = 0")
            kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'accounts'").fetchone()
            if kind is None or kind[0] != b"table":
                raise FormatError(f"{self.label}: not a Google Authenticator database (no 'accounts' table)")
            columns = {row[1].decode("utf-8", "replace") for row in conn.execute("PRAGMA table_info(accounts)")}
            if not {"email", "secret", "type"} <= columns:
                raise FormatError(f"{self.label}: not a Google Authenticator database (unexpected 'accounts' columns)")
            wanted = [c for c in ("email", "secret", "counter", "type", "issuer", "isencrypted") if c in columns]
            order = " ORDER BY _id" if "_id" in columns else ""
            query = f"SELECT {', '.join(wanted)} FROM accounts{order}"  # noqa: S608 - fixed column names only
            rows = conn.execute(query).fetchmany(MAX_ROWS + 1)
        finally:
            conn.close()
        if len(rows) > MAX_ROWS:
            raise FormatError(f"{self.label}: more than {MAX_ROWS} accounts; not a Google Authenticator database")
        result = ReadResult()
        for i, values in enumerate(rows):
            row = dict(zip(wanted, values, strict=True))
            names = [v.decode("utf-8", "replace") for v in (row.get("issuer"), row.get("email")) if isinstance(v, bytes)]
            ac.collect(result, ac.entry_where(i, *names), lambda row=row: _account(row))
        return result


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, bytes):
        raise ac.EntryProblem(f"{what} is not text")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ac.EntryProblem(f"{what} is not UTF-8 text") from None


def _account(row: dict[str, Any]) -> Account:
    encrypted = row.get("isencrypted")
    if isinstance(encrypted, int) and encrypted > 0:
        raise ac.EntryProblem(
            "its secret is encrypted with a key only the phone holds; export it with "
            "Google Authenticator's 'Transfer accounts' instead (kind gauth)"
        )
    otp_type = row.get("type")
    if otp_type is None:
        otp_type = 0
    if isinstance(otp_type, bool) or otp_type not in _TYPES:
        raise ac.EntryProblem("unknown account type")
    kind = _TYPES[otp_type]
    email = _text(row.get("email"), "email")
    issuer = _text(row.get("issuer"), "issuer")
    name = email
    if issuer and email.startswith(issuer + ":"):
        name = email[len(issuer) + 1 :].strip()  # GA's getStrippedName
    elif not issuer and email.count(":") == 1:
        issuer, name = (part.strip() for part in email.split(":"))  # old rows, as Aegis reads them
    counter = ac.entry_int(row.get("counter"), "counter", default=0) if kind is Kind.HOTP else 0
    return Account(
        kind=kind,
        secret=b32decode(_text(row.get("secret"), "secret")),
        issuer=issuer,
        name=name,
        counter=counter + 1 if kind is Kind.HOTP else 0,
    )
