"""``proton-authenticator:`` — Proton Authenticator exports, plain and password-protected.

Format (proton-pass-common ``entry/exporter.rs``, ``entry/password_exporter.rs``,
``crypto.rs``; shared notes app-formats-2 §4). Plain: ``{"version": 1, "entries":
[{"id", "content": {"uri", "entry_type": "Totp"|"Steam", "name"}, "note"}]}``; a TOTP
``uri`` is an otpauth URI, a Steam one ``steam://SECRET`` (Base32, or unpadded Base64
when it was entered so) with the name in ``name``. Protected: ``{"version": 1, "salt":
b64(16 bytes), "content": b64(nonce12 ‖ ct ‖ tag16)}``: Argon2id v0x13 (19 MiB, t=2,
p=1; fixed in code, not stored) → AES-256-GCM with AAD ``proton.authenticator.export.v1``
over the plain JSON.

Proton Authenticator has no HOTP and no folders: a write skips HOTP accounts (listed,
exit 7 through ``apply``) and drops folders. A Steam account keeps only its name (the
issuer reads back as "Steam"). Entries we cannot read are written back untouched.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import uuid as uuidlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otpbridge.core.errors import AuthenticationError, EntryError, FormatError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Kind, b32decode, b32encode
from otpbridge.core.otpauth import format_uri, parse_uri
from otpbridge.core.secrets import Secret
from otpbridge.plugins import appcrypto as ac
from otpbridge.plugins.appkit import argon2id
from otpbridge.stores.base import ReadResult, Store, WriteReport

ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES = 19 * 1024, 2, 1
SALT_BYTES, NONCE_BYTES = 16, 12
AAD = b"proton.authenticator.export.v1"
VERSION = 1
STEAM_ISSUER = "Steam"


def _is_protected(top: Any) -> bool:
    return isinstance(top, dict) and "salt" in top and "content" in top and "entries" not in top and "encrypted" not in top


class ProtonAuthenticatorStore(Store):
    kind = "proton-authenticator"
    title = "Proton Authenticator export (JSON)"
    reads = "Proton Authenticator exports, plain and password-protected (Argon2id + AES-GCM): TOTP, Steam, notes"
    writes = (
        "Proton Authenticator export (Settings → Import in the app reads both); password-protected with a "
        "password option, ?encrypt=yes, or when the file was protected; else plain"
    )
    loses = (
        "folders; HOTP accounts are skipped (listed): Proton Authenticator has none; "
        "a Steam account's issuer becomes 'Steam', one with a period other than 30 s is skipped (listed)"
    )
    drops = frozenset({"folder"})
    carries = {"HOTP": "lost", "Steam": "partly"}
    source = "Proton Authenticator: Settings → Export (a password is asked for a protected export)"
    options = ("encrypt",)
    sniff_priority = 55
    keeps_unreadable = True

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._password: Secret | None = None
        self._was_encrypted = False
        self._ids: dict[str, str] = {}  # identity -> entry id, kept on rewrite
        self._unread: list[Any] = []

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        top = ac.json_head(head)
        if not isinstance(top, dict) or "version" not in top:
            return False
        if _is_protected(top):
            return set(top) == {"version", "salt", "content"}
        entries = top.get("entries")
        if not isinstance(entries, list) or not entries:
            return isinstance(entries, list) and set(top) == {"version", "entries"}
        first = entries[0]
        return isinstance(first, dict) and isinstance(first.get("content"), dict) and {
            "uri",
            "entry_type",
        } <= first["content"].keys()

    # -- reading -------------------------------------------------------------------------
    def _get_password(self) -> Secret:
        if self._password is None:
            self._password = self.ctx.password(self.spec, label=self.label)
        return self._password

    def read(self) -> ReadResult:
        self._ids, self._unread = {}, []
        doc = ac.parse_json(ac.read_file(self.path, self.label), self.label)
        if _is_protected(doc):
            self._was_encrypted = True
            doc = ac.parse_json(self._decrypt(doc), self.label, what="decrypted export")
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
            raise FormatError(f"{self.label}: not a Proton Authenticator export (no 'entries' list)")
        if doc.get("version") != VERSION:
            raise FormatError(f"{self.label}: unsupported Proton Authenticator export version (this reads 1)")
        result = ReadResult()
        for i, raw in enumerate(doc["entries"]):
            content = raw.get("content") if isinstance(raw, dict) else None
            name = content.get("name") if isinstance(content, dict) else None
            account = ac.collect(result, ac.entry_where(i, name), lambda raw=raw: _entry(raw))
            if account is None:
                self._unread.append(copy.deepcopy(raw))
            elif isinstance(raw.get("id"), str):
                self._ids[account.identity] = raw["id"]
        return result

    def _decrypt(self, doc: dict) -> bytes:
        if doc.get("version") != VERSION:
            raise FormatError(f"{self.label}: unsupported protected export version (this reads 1)")
        salt = ac.b64decode(doc.get("salt"), "the salt", self.label)
        blob = ac.b64decode(doc.get("content"), "the encrypted content", self.label)
        if len(salt) != SALT_BYTES:
            raise FormatError(f"{self.label}: the salt is {len(salt)} bytes, expected {SALT_BYTES}")
        if len(blob) < NONCE_BYTES + 16:
            raise FormatError(f"{self.label}: the encrypted content is too short")
        password = self._get_password()
        if not password:
            raise AuthenticationError(f"{self.label}: an empty password cannot open a protected export")
        key = self._derive(password, salt)
        plain = ac.gcm_open(key, blob[:NONCE_BYTES], blob[NONCE_BYTES:], AAD)
        if plain is None:
            self._password = None
            # GCM cannot tell a wrong password from altered content; the password is likelier.
            raise AuthenticationError(f"wrong password for {self.label} (or the file was altered)")
        return plain

    def _derive(self, password: Secret, salt: bytes) -> bytes:
        return argon2id(
            password.encode(),
            salt,
            memory_kib=ARGON2_MEMORY_KIB,
            iterations=ARGON2_ITERATIONS,
            lanes=ARGON2_LANES,
            label=self.label,
            stats=self.ctx.stats,
        )

    # -- writing -------------------------------------------------------------------------
    def apply(
        self, upserts: Sequence[Account] = (), removals: Sequence[Account] = (), *, dry_run: bool = False
    ) -> WriteReport:
        keep = [a for a in upserts if _unwritable(a) is None]
        errors = [EntryError(a.label, why) for a in upserts if (why := _unwritable(a)) is not None]
        report = super().apply(keep, removals, dry_run=dry_run)
        report.errors.extend(errors)
        return report

    def build(self, accounts: Sequence[Account]) -> dict:
        """The plain export object for ``accounts`` (HOTP skipped with a warning)."""
        entries, used = [], set()
        for acc in accounts:
            if (why := _unwritable(acc)) is not None:
                self.ctx.warn(f"{acc.label}: not written to {self.label}: {why}")
                continue
            entry_id = self._ids.get(acc.identity)
            if entry_id is None or entry_id in used:
                entry_id = str(uuidlib.uuid4())
            used.add(entry_id)
            if acc.kind is Kind.STEAM:
                content = {"uri": f"steam://{b32encode(acc.secret)}", "entry_type": "Steam", "name": acc.name or None}
            else:
                content = {"uri": format_uri(acc), "entry_type": "Totp", "name": acc.name or acc.issuer or None}
            entries.append({"id": entry_id, "content": content, "note": acc.note or None})
        return {"version": VERSION, "entries": entries + copy.deepcopy(self._unread)}

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        body = ac.dump_json(self.build(accounts))
        if ac.should_encrypt(self, self._was_encrypted, _is_protected):
            password = self._get_password()
            if not password:
                raise FormatError(f"{self.label}: refusing to encrypt with an empty password")
            salt, nonce = ac.random_bytes(SALT_BYTES), ac.random_bytes(NONCE_BYTES)
            sealed = ac.gcm_seal(self._derive(password, salt), nonce, body, AAD)
            doc = {"version": VERSION, "salt": ac.b64encode(salt), "content": ac.b64encode(nonce + sealed)}
            return atomic_write(self.path, ac.dump_json(doc), mode=0o600)
        ac.warn_cleartext(self.ctx, self.label)
        return atomic_write(self.path, body, mode=0o600)


def _unwritable(acc: Account) -> str | None:
    """Why Proton Authenticator cannot hold ``acc`` unchanged, or None: a ``steam://``
    entry has only a secret (Steam's 30 s, 5 characters), so another period would be
    lost without a word."""
    if acc.kind is Kind.HOTP:
        return "Proton Authenticator has no HOTP accounts"
    if acc.kind is Kind.STEAM and acc.period != 30:
        return f"a Steam account with a {acc.period}-second period (Proton Authenticator's Steam entries are 30 s)"
    return None


def _steam_secret(text: str) -> bytes:
    """Base32 first, then unpadded standard Base64, as ``SteamTotp::new`` decodes."""
    try:
        return b32decode(text)
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9+/]+=*", text):
        raise ac.EntryProblem("the Steam secret is neither Base32 nor Base64")
    try:
        return base64.b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ac.EntryProblem("the Steam secret is neither Base32 nor Base64") from None


def _entry(raw: Any) -> Account:
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), dict):
        raise ac.EntryProblem("the entry has no content object")
    content = raw["content"]
    uri = ac.entry_text(content.get("uri"), "uri").strip()
    entry_type = ac.entry_text(content.get("entry_type"), "entry_type")
    name = ac.entry_text(content.get("name"), "name")
    note = ac.entry_text(raw.get("note"), "note")
    if entry_type == "Steam":
        if uri.lower().startswith("steam://"):
            secret = _steam_secret(uri[len("steam://") :].strip("/"))
            return Account(kind=Kind.STEAM, secret=secret, issuer=STEAM_ISSUER, name=name, note=note)
        account = parse_uri(uri, note=note)  # otpauth://… accepted for Steam too
        return account.replace(kind=Kind.STEAM, issuer=account.issuer or STEAM_ISSUER, name=account.name or name)
    if entry_type != "Totp":
        raise ac.EntryProblem(f"unknown entry type {entry_type[:20]!r}")
    account = parse_uri(uri, note=note)
    if not account.name and not account.issuer and name:
        account = account.replace(name=name)
    return account
