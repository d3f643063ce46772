"""``lastpass:`` — LastPass Authenticator JSON exports (Android ``version`` 3, iOS ``version`` 1).

Format (shared notes app-formats-2 §3; proton-pass-common and Stratum converters): an
unencrypted object ``{"accounts": [{issuerName, userName, secret, timeStep, digits,
algorithm, folderData: {folderId, position}}], "folders": [{id, name}], …}``. Every
account is TOTP (the format has no type field). ``folderId`` 0 is "Other accounts" (no
folder); any other id is looked up in ``folders`` ("Favorites" is id 1).

Hand-typed secrets with a Base32 length no encoder produces occur in real exports; they
are decoded as the apps do (incomplete last bits dropped) with a warning.
Read-only: whether LastPass Authenticator imports such a file is not known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otpbridge.core.errors import FormatError
from otpbridge.core.model import Account, Algorithm, Kind, b32decode
from otpbridge.plugins import appcrypto as ac
from otpbridge.stores.base import ReadResult, Store

_MARK = {"issuerName", "userName", "secret", "timeStep"}


class LastPassStore(Store):
    kind = "lastpass"
    title = "LastPass Authenticator export (JSON)"
    reads = "LastPass Authenticator JSON exports from Android (version 3) and iOS (version 1): TOTP, folders"
    writes = ""
    loses = "read-only; LastPass Authenticator has no HOTP or Steam accounts, and no notes or icons in its export"
    drops = frozenset({"note"})
    carries = {"HOTP": "lost", "Steam": "lost"}
    source = "LastPass Authenticator: Settings → Transfer accounts → Export accounts to file"
    sniff_priority = 55

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        top = ac.json_head(head)
        if not isinstance(top, dict) or not isinstance(top.get("accounts"), list):
            return False
        first = top["accounts"][0] if top["accounts"] else None
        if isinstance(first, dict):
            return _MARK <= first.keys()
        return "folders" in top and "deviceName" in top

    def read(self) -> ReadResult:
        doc = ac.parse_json(ac.read_file(self.path, self.label), self.label)
        if not isinstance(doc, dict) or not isinstance(doc.get("accounts"), list):
            raise FormatError(f"{self.label}: not a LastPass Authenticator export (no 'accounts' list)")
        folders: dict[int, str] = {}
        for folder in doc.get("folders") if isinstance(doc.get("folders"), list) else []:
            if isinstance(folder, dict) and isinstance(folder.get("id"), int) and isinstance(folder.get("name"), str):
                folders[folder["id"]] = folder["name"]
        result = ReadResult()
        for i, raw in enumerate(doc["accounts"]):
            names = (raw.get("issuerName"), raw.get("userName")) if isinstance(raw, dict) else ()
            where = ac.entry_where(i, *names)
            ac.collect(result, where, lambda raw=raw, where=where: self._entry(raw, folders, where))
        return result

    def _entry(self, raw: Any, folders: dict[int, str], where: str) -> Account:
        if not isinstance(raw, dict):
            raise ac.EntryProblem("not an object")
        # A hand-typed secret of a length no encoder writes is read as the apps read it and
        # reported once (model.b32decode; the Store's read reports secret notes).
        secret = b32decode(ac.entry_text(raw.get("secret"), "secret"))
        folder_data = raw.get("folderData")
        folder_id = folder_data.get("folderId") if isinstance(folder_data, dict) else 0
        folder = folders.get(folder_id, "") if isinstance(folder_id, int) and folder_id != 0 else ""
        return Account(
            kind=Kind.TOTP,
            secret=secret,
            issuer=ac.entry_text(raw.get("issuerName"), "issuerName"),
            name=ac.entry_text(raw.get("userName"), "userName"),
            algorithm=Algorithm.parse(ac.entry_text(raw.get("algorithm"), "algorithm") or "SHA1"),
            digits=ac.entry_int(raw.get("digits"), "digits", default=6),
            period=ac.entry_int(raw.get("timeStep"), "timeStep", default=30),
            folder=folder,
        )
