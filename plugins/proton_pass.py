"""``proton-pass:`` — Proton Pass export zips: the TOTP URIs of the items, read-only.

Format (ProtonMail/WebClients ``packages/pass/lib/export``; proton-pass-common
``parser/pass``; shared notes app-formats-2 §5): a zip holding ``Proton Pass/data.json``
= ``{"version", "userId", "vaults": {shareId: {"name", "items": [ITEM]}}}``. An item's
TOTPs are ``data.content.totpUri`` (logins) and every ``data.extraFields[]`` of type
``totp`` (``data.totpUri``): a full otpauth URI, or only a secret. When the user gave only
a secret, Pass labels the URI with the literal ``Proton Pass``; that placeholder is
replaced by the item's username (and the field's name for extra fields).

The zip is bounded before anything is unpacked (:func:`appkit.open_zip`: member count,
declared sizes, compression ratio, no absolute or ``..`` names) and only ``data.json``
is ever decompressed. Trashed items are listed as skipped. Item notes belong to the
password entry and are not copied (as for Bitwarden); the vault name becomes the folder.

Encrypted exports (a PGP-encrypted zip, or ``Proton Pass/data.pgp``) are refused with a
hint to export without encryption: they are not read yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otpbridge.errors import EntryError, FormatError
from otpbridge.model import Account, Kind, b32decode
from otpbridge.otpauth import parse_uri
from otpbridge.plugins import appcrypto as ac
from otpbridge.plugins.appkit import open_zip, read_member
from otpbridge.store import ReadResult, Store

DATA = "Proton Pass/data.json"
ENCRYPTED_DATA = "Proton Pass/data.pgp"
PLACEHOLDER = "Proton Pass"
TRASHED = 2


class ProtonPassStore(Store):
    kind = "proton-pass"
    title = "Proton Pass export (zip with data.json)"
    reads = "Proton Pass unencrypted export zips: every login's TOTP and every TOTP extra field (any item type)"
    writes = ""
    loses = (
        "read-only; item notes are not copied; Proton Pass has no HOTP or Steam; trashed items are "
        "skipped (listed); encrypted (PGP) exports are not read"
    )
    drops = frozenset({"note"})
    carries = {"HOTP": "lost", "Steam": "lost"}
    source = "Proton Pass (web or desktop): Settings → Export → format 'Proton Pass' (.zip), without encryption"
    sniff_priority = 60

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return head.startswith(b"PK\x03\x04") and (b"Proton Pass/data.json" in head or b"Proton Pass/data.pgp" in head)

    def read(self) -> ReadResult:
        data = ac.read_file(self.path, self.label)
        if data.lstrip().startswith(b"-----BEGIN PGP MESSAGE-----"):
            raise FormatError(
                f"{self.label}: an encrypted Proton Pass export, which otpbridge cannot read yet",
                hint="export again from Proton Pass without encryption (Settings → Export)",
            )
        archive = open_zip(data, self.label, what="Proton Pass export")
        names = set(archive.namelist())
        if DATA not in names:
            if ENCRYPTED_DATA in names:
                raise FormatError(
                    f"{self.label}: an encrypted Proton Pass export, which otpbridge cannot read yet",
                    hint="export again from Proton Pass without encryption (Settings → Export)",
                )
            raise FormatError(f"{self.label}: not a Proton Pass export (no {DATA!r} in the zip)")
        doc = ac.parse_json(read_member(archive, DATA, self.label), self.label, what=DATA)
        if not isinstance(doc, dict) or not isinstance(doc.get("vaults"), dict):
            raise FormatError(f"{self.label}: not a Proton Pass export (no 'vaults' object)")
        result = ReadResult()
        index = 0
        for vault in doc["vaults"].values():
            if not isinstance(vault, dict) or not isinstance(vault.get("items"), list):
                result.errors.append(EntryError(f"vault {str(vault.get('name'))[:40] if isinstance(vault, dict) else '?'}",
                                                "the vault has no item list"))
                continue
            folder = vault.get("name") if isinstance(vault.get("name"), str) else ""
            for item in vault["items"]:
                index += 1
                self._item(result, index, item, folder)
        return result

    def _item(self, result: ReadResult, index: int, item: Any, folder: str) -> None:
        data = item.get("data") if isinstance(item, dict) else None
        meta = data.get("metadata") if isinstance(data, dict) else None
        title = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else ""
        where = f"item {index}" + (f" ({title[:80]})" if title.strip() else "")
        if not isinstance(data, dict):
            result.errors.append(EntryError(where, "the item has no data"))
            return
        content = data.get("content") if isinstance(data.get("content"), dict) else {}
        fields = data.get("extraFields") if isinstance(data.get("extraFields"), list) else []
        uris: list[tuple[str, Any]] = []
        if content.get("totpUri"):
            uris.append(("", content["totpUri"]))
        for f in fields:
            if isinstance(f, dict) and f.get("type") == "totp":
                fdata = f.get("data")
                value = fdata.get("totpUri") if isinstance(fdata, dict) else None
                fname = f.get("fieldName") if isinstance(f.get("fieldName"), str) else "TOTP"
                if value:
                    uris.append((fname, value))
        if not uris:
            return  # not a 2FA account (a note, an alias, a login without TOTP)
        if item.get("state") == TRASHED:
            for fname, _ in uris:
                result.errors.append(EntryError(where + (f", field {fname!r}" if fname else ""), "in Proton Pass's trash"))
            return
        username = next(
            (content[k] for k in ("itemUsername", "itemEmail", "username") if isinstance(content.get(k), str) and content[k]),
            "",
        )
        for fname, value in uris:
            place = where + (f", field {fname[:40]!r}" if fname else "")
            ac.collect(result, place, lambda v=value, f=fname: _account(v, title, username, f, folder))


def _account(value: Any, title: str, username: str, field: str, folder: str) -> Account:
    text = ac.entry_text(value, "totpUri").strip()
    shown = f"{username} ({field})" if username and field else username or field
    if not text.lower().startswith("otpauth://"):
        if "://" in text:
            raise ac.EntryProblem("unsupported TOTP value (not an otpauth:// URI)")
        return Account(kind=Kind.TOTP, secret=b32decode(text), issuer=title, name=shown, folder=folder)
    account = parse_uri(text, folder=folder)
    changes: dict[str, str] = {}
    if account.name == PLACEHOLDER or not account.name:
        changes["name"] = shown
    if not account.issuer:
        changes["issuer"] = title
    return account.replace(**changes) if changes else account
