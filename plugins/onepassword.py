"""``1password:`` — 1Password exports: ``.1pux`` (zip) and the 1Password 8 CSV, read-only.

1PUX (1Password's "1PUX format" page; KeePassXC ``OPUXReader.cpp``; Bitwarden's 1pux
importer; shared notes app-formats-2 §7): a zip with ``export.attributes`` and
``export.data`` = ``{"accounts": [{"vaults": [{"attrs": {"name"}, "items": [ITEM]}]}]}``.
A TOTP is a section field whose value object has the key ``totp``: a full otpauth URI or
a bare secret. An item may have several. Issuer and account name come from the URI, else
from the item title and the login field designated ``username``. The vault name becomes
the folder. The zip is bounded before anything is unpacked and only ``export.data`` is
decompressed (:mod:`appkit`).

CSV (1Password 8; pass-import's ``1password8.csv``): ``Title,Url,Username,Password,
OTPAuth,Favorite,Archived,Tags,Notes``; ``OTPAuth`` holds the item's one-time password
(at most one per row: further TOTP fields of an item are not in a CSV export).

Item notes belong to the password entry and are not copied (as for Bitwarden).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from otpbridge.core.errors import EntryError, FormatError
from otpbridge.core.model import Account, Kind, b32decode
from otpbridge.core.otpauth import parse_uri
from otpbridge.plugins import appcrypto as ac
from otpbridge.plugins.appkit import open_zip, read_member
from otpbridge.stores.base import ReadResult, Store

CSV_HEADER = ["Title", "Url", "Username", "Password", "OTPAuth", "Favorite", "Archived", "Tags", "Notes"]
MAX_CSV_FIELD = 1024 * 1024


class OnePasswordStore(Store):
    kind = "1password"
    title = "1Password export (.1pux, or CSV with an OTPAuth column)"
    reads = "1Password .1pux exports (every TOTP field of every item, vaults as folders) and 1Password 8 CSV exports"
    writes = ""
    loses = (
        "read-only; item notes are not copied; 1Password has no HOTP or Steam; a CSV export holds one "
        "TOTP per item and no vaults"
    )
    drops = frozenset({"note"})
    carries = {"HOTP": "lost", "Steam": "lost", "folders": "partly"}
    source = (
        "1Password 8 desktop: File → Export → choose the account → format 1PUX (or CSV); "
        "enter the account password to confirm"
    )
    sniff_priority = 60

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if head.startswith(b"PK\x03\x04"):
            return b"export.data" in head or b"export.attributes" in head
        first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip().replace(b'"', b"")
        return first.split(b",")[:5] == [c.encode() for c in CSV_HEADER[:5]]

    def read(self) -> ReadResult:
        data = ac.read_file(self.path, self.label)
        if data.startswith(b"PK"):
            return self._read_1pux(data)
        return self._read_csv(data)

    # -- 1PUX ------------------------------------------------------------------------------
    def _read_1pux(self, data: bytes) -> ReadResult:
        archive = open_zip(data, self.label, what="1Password export")
        if "export.data" not in archive.namelist():
            raise FormatError(f"{self.label}: not a 1Password export (no 'export.data' in the zip)")
        doc = ac.parse_json(read_member(archive, "export.data", self.label), self.label, what="export.data")
        if not isinstance(doc, dict) or not isinstance(doc.get("accounts"), list):
            raise FormatError(f"{self.label}: not a 1Password export (no 'accounts' list)")
        result = ReadResult()
        index = 0
        for account in doc["accounts"]:
            vaults = account.get("vaults") if isinstance(account, dict) else None
            for vault in vaults if isinstance(vaults, list) else []:
                attrs = vault.get("attrs") if isinstance(vault, dict) else None
                folder = attrs.get("name") if isinstance(attrs, dict) and isinstance(attrs.get("name"), str) else ""
                items = vault.get("items") if isinstance(vault, dict) else None
                for item in items if isinstance(items, list) else []:
                    index += 1
                    _item(result, index, item, folder)
        return result

    # -- CSV -------------------------------------------------------------------------------
    def _read_csv(self, data: bytes) -> ReadResult:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FormatError(f"{self.label}: not a UTF-8 1Password CSV export") from None
        old_limit = csv.field_size_limit(MAX_CSV_FIELD)
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error:
            raise FormatError(f"{self.label}: not a readable CSV file") from None
        finally:
            csv.field_size_limit(old_limit)
        if not rows or [c.strip() for c in rows[0][:5]] != CSV_HEADER[:5]:
            raise FormatError(f"{self.label}: not a 1Password CSV export (no Title,Url,Username,Password,OTPAuth header)")
        header = [c.strip() for c in rows[0]]
        result = ReadResult()
        for number, row in enumerate(rows[1:], start=2):
            record = dict(zip(header, row, strict=False))
            otp = record.get("OTPAuth", "").strip()
            if not otp:
                continue  # a login without a one-time password
            title = record.get("Title", "")
            where = f"line {number}" + (f" ({title[:80]})" if title.strip() else "")
            ac.collect(result, where, lambda o=otp, t=title, r=record: _account(o, t, r.get("Username", ""), ""))
        return result


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _username(details: dict) -> str:
    for f in _list(details.get("loginFields")):
        if isinstance(f, dict) and f.get("designation") == "username" and isinstance(f.get("value"), str):
            return f["value"]
    return ""


def _item(result: ReadResult, index: int, item: Any, folder: str) -> None:
    overview = item.get("overview") if isinstance(item, dict) else None
    title = overview.get("title") if isinstance(overview, dict) and isinstance(overview.get("title"), str) else ""
    where = f"item {index}" + (f" ({title[:80]})" if title.strip() else "")
    details = item.get("details") if isinstance(item, dict) else None
    if not isinstance(details, dict):
        result.errors.append(EntryError(where, "the item has no details"))
        return
    totps = []
    for section in _list(details.get("sections")):
        for field in _list(section.get("fields")) if isinstance(section, dict) else []:
            value = field.get("value") if isinstance(field, dict) else None
            if isinstance(value, dict) and "totp" in value:
                totps.append(value["totp"])
    username = _username(details)
    for n, totp in enumerate(totps, start=1):
        place = where + (f", one-time password {n}" if len(totps) > 1 else "")
        if totp in ("", None):
            continue
        ac.collect(result, place, lambda t=totp: _account(t, title, username, folder))


def _account(value: Any, title: str, username: str, folder: str) -> Account:
    text = ac.entry_text(value, "one-time password").strip()
    if not text.lower().startswith("otpauth://"):
        if "://" in text:
            raise ac.EntryProblem("unsupported one-time password (not an otpauth:// URI)")
        return Account(kind=Kind.TOTP, secret=b32decode(text), issuer=title, name=username, folder=folder)
    account = parse_uri(text, folder=folder)
    changes = {}
    if not account.issuer and title and title != account.name:
        changes["issuer"] = title
    if not account.name and username:
        changes["name"] = username
    return account.replace(**changes) if changes else account
