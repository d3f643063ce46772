"""``andotp:`` — andOTP backups: plain JSON, and both AES-GCM encrypted formats.

Format (andOTP ``BackupHelper.java``, ``EncryptionHelper.java``; shared notes
app-formats §4). Plain: a JSON array of entries. Encrypted, current format:
``iterations(4, big-endian) ‖ salt(12) ‖ iv(12) ‖ ciphertext ‖ tag(16)`` with
PBKDF2-HMAC-SHA1 → AES-256-GCM. Old format: ``iv(12) ‖ ciphertext ‖ tag`` keyed with
SHA-256(password).

andOTP marks neither format, so ``?format=new|old`` picks one; the default tries the
current format when its iteration field is plausible, then the old one. A wrong
password and a file that is not an andOTP backup look the same to AES-GCM, so when
the header is implausible *and* the old format fails we say "not an andOTP backup"
(exit 4); ``?format=old`` turns that into a plain wrong-password error (exit 3).

andOTP is discontinued: we write plain backups only (its import reads them).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otpbridge.core.errors import AuthenticationError, FormatError, UsageError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Algorithm, Kind, b32decode
from otpbridge.plugins import appcrypto as ac
from otpbridge.stores.base import ReadResult, Store

# andOTP writes a random count in 140 000–160 000 (early versions used a few thousand);
# Aegis accepts up to 10 M, but 10 M PBKDF2-SHA1 rounds take ~9 s, so a crafted file
# could stall us. 1 M (about 1 s) leaves a wide margin over anything andOTP wrote.
MAX_ITERATIONS = 1_000_000
_HEADER = 4 + 12 + 12
_TAG = 16
_TYPES = {"TOTP": Kind.TOTP, "HOTP": Kind.HOTP, "STEAM": Kind.STEAM}
_UNSUPPORTED = {"MOTP": "mOTP"}


def _new_format_iterations(data: bytes) -> int | None:
    if len(data) < _HEADER + _TAG:
        return None
    (iterations,) = struct.unpack(">i", data[:4])
    return iterations if 1 <= iterations <= MAX_ITERATIONS else None


def _looks_binary(head: bytes) -> bool:
    """Ciphertext, not text: invalid UTF-8 or control characters (a text file named
    ``andotp-….txt`` must stay with the text formats)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return any(ord(c) < 32 and c not in "\t\r\n" for c in text)


class AndOtpStore(Store):
    kind = "andotp"
    title = "andOTP backup"
    reads = "plain JSON, encrypted .json.aes (current PBKDF2 format and the old SHA-256 one; ?format=new|old)"
    writes = "plain JSON backups (andOTP's import reads them)"
    drops = frozenset({"note"})
    loses = "notes; all but the first tag; thumbnails; last used and usage counts (reset when the file is written)"
    options = ("format",)
    carries = {"folders": "partly"}
    source = "andOTP: ☰ → Backups → Backup (plain text or password-encrypted)"
    sniff_priority = 30
    keeps_unreadable = True

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._unread: list[Any] = []

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if stripped[:1] == b"[":
            top = ac.json_head(head)
            first = top[0] if isinstance(top, list) and top else None
            return isinstance(first, dict) and {"secret", "type", "label"} <= first.keys()
        if stripped[:1] in (b"{", b"<") or not head or not _looks_binary(head):
            return False
        # Encrypted backups carry no marker: the current format's iteration field, or
        # andOTP's own file names (otp_accounts_*.json.aes) for the old format.
        name = path.name.lower()
        named = name.endswith(".json.aes") or name.startswith("otp_accounts") or "andotp" in name
        return named or (_new_format_iterations(head) is not None and len(head) < 16 * 1024 * 1024)

    def read(self) -> ReadResult:
        data = ac.read_file(self.path, self.label)
        if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{"):
            entries = ac.parse_json(data, self.label)
        else:
            entries = ac.parse_json(self._decrypt(data), self.label, what="decrypted backup")
        if not isinstance(entries, list):
            raise FormatError(f"{self.label}: not an andOTP backup (expected a JSON list of entries)")
        result = ReadResult()
        self._unread = []
        for i, raw in enumerate(entries):
            names = (raw.get("issuer"), raw.get("label")) if isinstance(raw, dict) else ()
            if ac.collect(result, ac.entry_where(i, *names), lambda raw=raw: entry_account(raw)) is None:
                self._unread.append(raw)  # mOTP, damaged: written back untouched
        return result

    def _decrypt(self, data: bytes) -> bytes:
        mode = self.spec.options.get("format", "auto").strip().lower()
        if mode not in ("auto", "new", "old"):
            raise UsageError(f"option format={mode!r} is not auto, new or old")
        iterations = _new_format_iterations(data)
        if mode == "new" and iterations is None:
            raise FormatError(f"{self.label}: not an encrypted andOTP backup in the current format")
        if len(data) < 12 + _TAG:
            raise FormatError(f"{self.label}: too short to be an encrypted andOTP backup")
        password = self.ctx.password(self.spec, label=self.label).encode()
        if mode in ("auto", "new") and iterations is not None:
            salt, iv = data[4:16], data[16:28]
            key = ac.pbkdf2(
                password, salt, iterations, hash_name="sha1", label=self.label, stats=self.ctx.stats
            )
            plain = ac.gcm_open(key, iv, data[_HEADER:])
            if plain is not None:
                return plain
        if mode in ("auto", "old"):
            plain = ac.gcm_open(hashlib.sha256(password).digest(), data[:12], data[12:])
            if plain is not None:
                return plain
        if mode == "auto" and iterations is None:
            raise FormatError(
                f"{self.label}: not an andOTP backup, or an old-format one and the password is wrong",
                hint="for an old-format backup add ?format=old and check the password",
            )
        # AES-GCM cannot tell a wrong key from altered bytes: say both, as Stratum and Proton do.
        raise AuthenticationError(f"wrong password for {self.label} (or the file was truncated or altered)",
                                  hint="check the password; if it is right, the backup file is damaged")

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        ac.warn_cleartext(self.ctx, self.label)
        entries = [account_entry(a) for a in accounts] + list(self._unread)
        return atomic_write(self.path, ac.dump_json(entries), mode=0o600)


def entry_account(raw: Any) -> Account:
    if not isinstance(raw, dict):
        raise ac.EntryProblem("not an object")
    otp_type = ac.entry_text(raw.get("type"), "type").upper() or "TOTP"
    if otp_type in _UNSUPPORTED:
        raise ac.skipped(_UNSUPPORTED[otp_type])
    if otp_type not in _TYPES:
        raise ac.EntryProblem(f"unknown OTP type {otp_type[:20]!r}")
    kind = _TYPES[otp_type]
    label = ac.entry_text(raw.get("label"), "label")
    if "issuer" in raw:
        issuer, name = ac.entry_text(raw.get("issuer"), "issuer"), label
    elif " - " in label:
        # Old backups had no issuer field and wrote "Issuer - label", where the label
        # was the whole otpauth label, often "Issuer:account" (andotp_encrypted_old.bin).
        issuer, _, name = label.partition(" - ")
        if issuer and name.startswith(issuer + ":"):
            name = name[len(issuer) + 1 :]
    else:
        issuer, name = "", label
    tags = raw.get("tags")
    folder = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else ""
    return Account(
        kind=kind,
        secret=b32decode(ac.entry_text(raw.get("secret"), "secret")),
        issuer=issuer,
        name=name,
        algorithm=Algorithm.parse(ac.entry_text(raw.get("algorithm"), "algorithm") or "SHA1"),
        digits=ac.entry_int(raw.get("digits"), "digits", default=6),
        period=ac.entry_int(raw.get("period"), "period", default=30) if kind is not Kind.HOTP else 30,
        counter=ac.entry_int(raw.get("counter"), "counter", default=0) if kind is Kind.HOTP else 0,
        folder=folder,
    )


def account_entry(acc: Account) -> dict[str, Any]:
    import base64

    entry: dict[str, Any] = {
        "secret": base64.b32encode(acc.secret).decode("ascii"),  # andOTP writes padded Base32
        "issuer": acc.issuer,
        "label": acc.name,
        "digits": acc.digits,
        "type": acc.kind.value.upper(),
        "algorithm": acc.algorithm.value,
        "thumbnail": "Default",
        "last_used": 0,
        "used_frequency": 0,
    }
    if acc.kind is Kind.HOTP:
        entry["counter"] = acc.counter
    else:
        entry["period"] = acc.period
    entry["tags"] = [acc.folder] if acc.folder else []
    return entry
