"""``bitwarden:`` — Bitwarden and Bitwarden Authenticator exports (read-only).

Reads the plain JSON export (``items[].login.totp``), the CSV export (``login_totp``
column), the Bitwarden Authenticator app's JSON (same shape) and the *password-protected*
JSON export. ``login.totp`` holds an otpauth:// URI, ``steam://SECRET`` or a bare Base32
secret; when the URI names no issuer or account, the item's name and username fill in.
Folders (or, in organisation exports, the first collection) become the account's folder.
Items that are not logins, or have no TOTP, are not 2FA accounts and are passed over.

Password-protected exports (verified against Stratum's fixtures; see
shared/notes/app-formats.md §5): key = PBKDF2-SHA256(password, salt string as UTF-8) or
Argon2id(password, SHA-256(salt string), t, m MiB, p); HKDF-Expand-SHA256 (no extract)
stretches it into an AES key (info "enc") and a MAC key (info "mac"); every value is an
EncString ``2.iv|ct|mac`` = AES-256-CBC + HMAC-SHA256(iv‖ct), MAC checked first in
constant time. ``encKeyValidation_DO_NOT_EDIT`` tells a wrong password (its MAC fails:
exit 3) from a damaged ``data`` field (the validation passes, the data MAC fails: exit 4).

An *account-restricted* export (``encrypted: true`` without ``passwordProtected``) is
encrypted with the Bitwarden account's own key, which no password given to us can
derive; it is refused with exit 1 and a hint to re-export.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

from otpbridge.core.errors import (
    AuthenticationError,
    EntryError,
    FormatError,
    MissingDependencyError,
    OtpBridgeError,
)
from otpbridge.core.model import Account, Kind, b32decode
from otpbridge.core.otpauth import UriError, parse_uri
from otpbridge.stores.base import ReadResult, Store, not_text_error

_MAX_FILE = 128 * 1024 * 1024
LOGIN = 1

# Bounds on KDF parameters read from a file, checked before deriving (a hostile file must
# not make us spend minutes or gigabytes). Bitwarden's own settings stay well inside.
# The bounds are Bitwarden's own settings limits (PBKDF2 at most 2 000 000 iterations;
# Argon2id 16–1024 MiB, 2–10 iterations, 1–16 threads): a file outside them was not
# made by Bitwarden, and the old bounds (2 GiB × 64 passes) let a file stall us for minutes.
PBKDF2_MAX_ITERATIONS = 2_000_000
ARGON2_MAX_MEMORY_MIB = 1024
ARGON2_MAX_ITERATIONS = 10
ARGON2_MAX_PARALLELISM = 16


class AccountRestrictedExport(OtpBridgeError):
    """An export encrypted with the Bitwarden account key (exit 1): no password opens it."""

    exit_code = 1




# -- turning one login into an account ---------------------------------------------------
def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def totp_to_account(totp: str, *, item_name: str, username: str, folder: str) -> Account:
    """One ``login.totp`` value to an account; UriError/ValueError with a secret-free reason."""
    value = totp.strip()
    lowered = value.lower()
    if lowered.startswith("otpauth://"):
        acc = parse_uri(value, folder=folder)
        changes: dict[str, object] = {}
        if not acc.issuer and item_name and item_name != acc.name:
            changes["issuer"] = item_name
        if not acc.name and username:
            changes["name"] = username
        return acc.replace(**changes) if changes else acc
    if lowered.startswith("steam://"):
        return Account(Kind.STEAM, b32decode(value[len("steam://"):]), item_name, username, folder=folder)
    if "://" in value:
        raise ValueError(f"unsupported TOTP value (scheme {value.split('://', 1)[0][:20]!r})")
    # A bare secret: Bitwarden computes a 6-digit SHA1 TOTP with a 30 s period.
    return Account(Kind.TOTP, b32decode(value), item_name, username, folder=folder)


def _folder_names(doc: dict) -> Callable[[dict], str]:
    """How to find an item's folder: personal ``folders`` by id, else the first collection."""
    def names(key: str) -> dict[str, str]:
        return {
            f["id"]: _text(f.get("name"))
            for f in doc.get(key) or []
            if isinstance(f, dict) and isinstance(f.get("id"), str)
        }

    folders, collections = names("folders"), names("collections")

    def lookup(item: dict) -> str:
        fid = item.get("folderId")
        if isinstance(fid, str) and fid in folders:
            return folders[fid]
        for cid in item.get("collectionIds") or []:
            if isinstance(cid, str) and cid in collections:
                return collections[cid]
        return ""

    return lookup


def convert_json_export(doc: dict, result: ReadResult) -> None:
    items = doc.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise FormatError("the export's 'items' is not a list")
    if not isinstance(doc.get("folders") or [], list) or not isinstance(doc.get("collections") or [], list):
        raise FormatError("the export's 'folders' or 'collections' is not a list")
    folder_of = _folder_names(doc)
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            result.errors.append(EntryError(f"item {index}", "not a JSON object"))
            continue
        name = _text(item.get("name"))
        where = f"item {index} ({name})" if name else f"item {index}"
        login = item.get("login")
        if not isinstance(login, dict):
            continue  # cards, identities, notes: not 2FA accounts
        # ``type`` is not checked: a login object holding a TOTP is a 2FA account whatever
        # the type says (a mislabelled item must not vanish without a word).
        totp = login.get("totp")
        if totp is None or (isinstance(totp, str) and not totp.strip()):
            continue  # a login without 2FA
        if not isinstance(totp, str):
            result.errors.append(EntryError(where, "login.totp is not text"))
            continue
        try:
            result.accounts.append(
                totp_to_account(totp, item_name=name.strip(), username=_text(login.get("username")).strip(),
                                folder=folder_of(item))
            )
        except (UriError, ValueError, TypeError) as exc:
            result.errors.append(EntryError(where, str(exc) or "unreadable TOTP value"))


def convert_csv_export(text: str, result: ReadResult) -> None:
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise FormatError(f"not a readable CSV file ({exc})") from None
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        name = _text(row.get("name")).strip()
        where = f"line {number} ({name})" if name else f"line {number}"
        totp = _text(row.get("login_totp")).strip()
        if not totp:
            continue  # notes, cards, identities and logins without 2FA have none
        # The type column is not trusted: real exports hold "login" or the numeric type
        # (1), and a TOTP value anywhere is a 2FA account that must not vanish silently.
        folder = _text(row.get("folder") or row.get("collections")).split(",")[0].strip()
        try:
            result.accounts.append(
                totp_to_account(totp, item_name=name, username=_text(row.get("login_username")).strip(), folder=folder)
            )
        except (UriError, ValueError, TypeError) as exc:
            result.errors.append(EntryError(where, str(exc) or "unreadable TOTP value"))


# -- password-protected exports -----------------------------------------------------------
def _bounded_int(doc: dict, key: str, low: int, high: int) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"the export's {key} is missing or not a whole number")
    if not low <= value <= high:
        raise FormatError(f"the export's {key} ({value}) is outside the accepted range {low}–{high}")
    return value


def derive_key(doc: dict, password: bytes) -> bytes:
    """The 32-byte export key (before stretching), with the file's KDF parameters bounded first."""
    salt = doc.get("salt")
    if not isinstance(salt, str) or not salt:
        raise FormatError("the export has no salt")
    kdf = doc.get("kdfType")
    if kdf == 0:
        iterations = _bounded_int(doc, "kdfIterations", 1, PBKDF2_MAX_ITERATIONS)
        return hashlib.pbkdf2_hmac("sha256", password, salt.encode("utf-8"), iterations, 32)
    if kdf == 1:
        iterations = _bounded_int(doc, "kdfIterations", 1, ARGON2_MAX_ITERATIONS)
        memory = _bounded_int(doc, "kdfMemory", 1, ARGON2_MAX_MEMORY_MIB)
        lanes = _bounded_int(doc, "kdfParallelism", 1, ARGON2_MAX_PARALLELISM)
        return _argon2id(password, hashlib.sha256(salt.encode("utf-8")).digest(), iterations, memory * 1024, lanes)
    raise FormatError(f"unsupported kdfType {str(kdf)[:10]!r} (known: 0 = PBKDF2, 1 = Argon2id)")


def _argon2id(password: bytes, salt: bytes, iterations: int, memory_kib: int, lanes: int) -> bytes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    if memory_kib < 8 * lanes:
        raise FormatError("the export's kdfMemory is too small for its kdfParallelism")
    try:
        return Argon2id(salt=salt, length=32, iterations=iterations, lanes=lanes, memory_cost=memory_kib).derive(password)
    except UnsupportedAlgorithm:
        raise MissingDependencyError(
            "this build of 'cryptography' has no Argon2id (it needs OpenSSL 3.2 or newer)",
            hint="pip install --upgrade cryptography",
        ) from None


def stretch(key: bytes) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    enc = HKDFExpand(hashes.SHA256(), 32, b"enc").derive(key)
    mac = HKDFExpand(hashes.SHA256(), 32, b"mac").derive(key)
    return enc, mac


class MacMismatch(Exception):
    """The EncString's MAC does not verify under this key."""


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def decrypt_encstring(value: object, enc_key: bytes, mac_key: bytes, what: str) -> bytes:
    """Decrypt a type-2 EncString (``2.iv|ct|mac``); MAC first, constant-time compare."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if not isinstance(value, str):
        raise FormatError(f"the export's {what} is missing")
    head, dot, rest = value.partition(".")
    if not dot or head != "2":
        raise FormatError(f"the export's {what} is not an AES-CBC-HMAC EncString (type {head[:4]!r})")
    parts = rest.split("|")
    if len(parts) != 3:
        raise FormatError(f"the export's {what} is damaged (expected iv|data|mac)")
    try:
        iv, ct, mac = (_b64(p) for p in parts)
    except (ValueError, binascii.Error):
        raise FormatError(f"the export's {what} is damaged (not Base64)") from None
    if len(iv) != 16 or len(mac) != 32 or not ct or len(ct) % 16:
        raise FormatError(f"the export's {what} is damaged or truncated")
    expected = hmac.new(mac_key, iv + ct, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise MacMismatch()
    dec = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
    unpad = padding.PKCS7(128).unpadder()
    try:
        return unpad.update(dec.update(ct) + dec.finalize()) + unpad.finalize()
    except ValueError:
        # The MAC verified, so only someone holding the key could have made this.
        raise FormatError(f"the export's {what} decrypts to invalid padding") from None


def decrypt_password_protected(doc: dict, password: bytes) -> dict:
    """The plain export inside; AuthenticationError for a wrong password, FormatError for damage."""
    enc_key, mac_key = stretch(derive_key(doc, password))
    try:
        decrypt_encstring(doc.get("encKeyValidation_DO_NOT_EDIT"), enc_key, mac_key, "encKeyValidation_DO_NOT_EDIT")
    except MacMismatch:
        raise AuthenticationError(
            "wrong password for this Bitwarden export",
            hint="use the file password chosen when the export was made (not the master password)",
        ) from None
    try:
        plain = decrypt_encstring(doc.get("data"), enc_key, mac_key, "data")
    except MacMismatch:
        raise FormatError("the password is right but the encrypted data was modified or damaged") from None
    try:
        inner = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FormatError("the decrypted data is not a JSON export") from None
    if not isinstance(inner, dict) or inner.get("encrypted") is True:
        raise FormatError("the decrypted data is not a plain JSON export")
    return inner


_CSV_HEADER = re.compile(rb"^(\xef\xbb\xbf)?[^\r\n]*\blogin_totp\b")
_OLD_JSON_ITEMS = re.compile(rb'"items"\s*:\s*\[')
_OLD_JSON_LOGIN = re.compile(rb'"login"\s*:\s*(\{|null)')
_OLD_JSON_TYPE = re.compile(rb'"type"\s*:\s*[1-5]\b')


class BitwardenStore(Store):
    kind = "bitwarden"
    title = "Bitwarden / Bitwarden Authenticator export"
    reads = (
        "Bitwarden JSON and CSV exports, password-protected JSON exports (PBKDF2 or Argon2id), "
        "and Bitwarden Authenticator JSON exports: TOTP, Steam, bare secrets"
    )
    writes = ""
    loses = "read-only (import into Bitwarden from an otpauth:// list or an Aegis file instead)"
    carries = {"notes": "lost", "HOTP": "lost"}
    source = "Bitwarden: Tools → Export vault (.json, .csv or password-protected .json); Bitwarden Authenticator: Settings → Export"
    sniff_priority = 60

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if text.startswith(b"{"):
            if re.search(rb'"encrypted"\s*:\s*(true|false)', head):
                return b'"items"' in head or b'"passwordProtected"' in head
            # Older exports (KeePassXC's test export) have no "encrypted" key: items with
            # Bitwarden's login object and numeric cipher type.
            return bool(_OLD_JSON_ITEMS.search(head) and _OLD_JSON_LOGIN.search(head) and _OLD_JSON_TYPE.search(head))
        header = head.split(b"\n", 1)[0]
        return bool(_CSV_HEADER.match(head)) and any(
            col in header for col in (b"login_username", b"login_uri", b"login_password")
        )

    def read(self) -> ReadResult:
        data = self.read_bytes(max_bytes=_MAX_FILE)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise not_text_error(self.label, data, "a UTF-8 Bitwarden export") from None
        result = ReadResult()
        if not text.lstrip().startswith("{"):
            if not _CSV_HEADER.match(text.encode("utf-8")):
                raise FormatError(f"{self.label}: not a Bitwarden export (neither JSON nor a CSV with login_totp)")
            try:
                convert_csv_export(text, result)
            except FormatError as exc:
                raise FormatError(f"{self.label}: {exc}") from None
            return result
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            raise FormatError(f"{self.label}: not a Bitwarden export (invalid JSON)") from None
        if not isinstance(doc, dict):
            raise FormatError(f"{self.label}: not a Bitwarden export (not a JSON object)")
        if doc.get("encrypted") is True:
            if doc.get("passwordProtected") is not True:
                raise AccountRestrictedExport(
                    f"{self.label} is encrypted with your Bitwarden account key, which only Bitwarden can open",
                    hint="export again from Bitwarden choosing 'Password protected' (or the plain .json format)",
                )
            secret = self.ctx.password(self.spec, label=f"{self.label} (export password)")
            if not secret:
                raise AuthenticationError(f"{self.label}: an empty password cannot open a password-protected export")
            try:
                doc = decrypt_password_protected(doc, secret.encode())
            except (FormatError, AuthenticationError) as exc:
                raise type(exc)(f"{self.label}: {exc}", hint=exc.hint) from None
        try:
            convert_json_export(doc, result)
        except FormatError as exc:
            raise FormatError(f"{self.label}: {exc}") from None
        return result
