"""``authy:`` — Authy's Android shared_prefs XML, taken from a rooted phone (read-only).

Authy has no export. Its tokens live in ``shared_prefs/com.authy.storage.tokens.authenticator.xml``
(and ``….authy.xml`` for Authy's own tokens): a ``<map>`` whose ``<string name="….key">``
holds a JSON array. Each entry has either ``decryptedSecret`` (Base32) or
``encryptedSecret`` + ``salt``, encrypted under the user's Authy *backup password*:
PBKDF2-HMAC-SHA1(password, salt as UTF-8, 1000 iterations, 32 bytes) → AES-256-CBC with an
all-zero IV and PKCS#7 → the Base32 secret (verified on Aegis's fixtures).

That scheme has no MAC: a wrong password is recognised by bad padding or a plaintext that
is not Base32. Authy re-encrypts only new tokens when the backup password changes, so one
file can mix passwords: when *every* encrypted token fails we call it a wrong password
(exit 3); when only some fail, those are per-entry errors and the rest is imported.

Authy's authenticator tokens are TOTP/SHA1/30 s with 6–8 digits (it stores no algorithm
or period). Authy-native tokens (``secretSeed``, hex) are 7-digit TOTP with a 10 s period.

The file is untrusted XML, so any DTD or entity declaration is refused before parsing
(no billion-laughs or external-entity tricks reach the parser).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from otpbridge.core.errors import AuthenticationError, EntryError, FormatError
from otpbridge.core.model import Account, Algorithm, Kind, b32decode
from otpbridge.stores.base import ReadResult, Store

_MAX_FILE = 16 * 1024 * 1024
PBKDF2_ITERATIONS = 1000
_KEY_NAME = re.compile(r"^com\.authy\.storage\.tokens\.[A-Za-z0-9_]+\.key$")
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_B32 = re.compile(r"[A-Za-z2-7\s=\-]+")


class _Undecryptable(ValueError):
    """This entry did not decrypt with the password (wrong or a different one)."""




def parse_prefs(data: bytes, label: str) -> list[object]:
    """The token JSON arrays of a shared_prefs ``<map>``, concatenated."""
    import xml.etree.ElementTree as ET  # noqa: S405 - DTDs/entities are refused below, before parsing

    if _DTD.search(data):
        raise FormatError(f"{label}: the XML declares a DTD or entities; refusing to parse it")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{label}: not a UTF-8 XML file") from None
    try:
        root = ET.fromstring(data)  # noqa: S314 - see the DTD check above
    except ET.ParseError as exc:
        raise FormatError(f"{label}: not valid XML ({exc})") from None
    except (LookupError, ValueError, RecursionError):  # e.g. an unknown encoding= in the XML declaration
        raise FormatError(f"{label}: not a readable XML file") from None
    if root.tag != "map":
        raise FormatError(f"{label}: not an Android shared_prefs file (no <map>)")
    tokens: list[object] = []
    found = False
    for elem in root.findall("string"):
        if not _KEY_NAME.match(elem.get("name", "")):
            continue
        found = True
        try:
            array = json.loads(elem.text or "[]")
        except (ValueError, RecursionError):
            raise FormatError(f"{label}: the token list {elem.get('name')!r} is not valid JSON") from None
        if not isinstance(array, list):
            raise FormatError(f"{label}: the token list {elem.get('name')!r} is not a JSON array")
        tokens.extend(array)
    if not found:
        raise FormatError(f"{label}: no Authy token list (com.authy.storage.tokens.*.key) in this file")
    return tokens


def _text(entry: dict, key: str) -> str:
    value = entry.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} is not text")
    return value


def split_names(entry: dict) -> tuple[str, str]:
    """Issuer and account name, as Aegis's AuthyImporter derives them."""
    original = _text(entry, "originalName")
    name = _text(entry, "name")
    issuer = _text(entry, "originalIssuer")
    if ":" in original:
        prefix, _, rest = original.partition(":")
        return (issuer or prefix).strip(), rest.strip()
    if " - " in name:
        prefix, _, rest = name.partition(" - ")
        return (issuer or prefix).strip(), rest.strip()
    if not issuer:
        account_type = _text(entry, "accountType")
        issuer = account_type[:1].upper() + account_type[1:]
    if issuer and name.startswith(issuer):
        name = name[len(issuer):].lstrip(":- ")
    return issuer.strip(), (name or original).strip()


def decrypt_secret(encrypted_b64: str, salt: str, password: bytes) -> str:
    """The Base32 text of one ``encryptedSecret``; :class:`_Undecryptable` when the password is not it."""
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    try:
        blob = base64.b64decode(encrypted_b64, validate=True)
    except ValueError:
        raise ValueError("encryptedSecret is not Base64") from None
    if not blob or len(blob) % 16:
        raise ValueError("encryptedSecret is not whole AES blocks (truncated?)")
    key = PBKDF2HMAC(hashes.SHA1(), 32, salt.encode("utf-8"), PBKDF2_ITERATIONS).derive(password)  # noqa: S303 - Authy's scheme
    dec = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    padded = dec.update(blob) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    try:
        plain = unpad.update(padded) + unpad.finalize()
        text = plain.decode("ascii")
    except ValueError:
        raise _Undecryptable() from None
    if not _B32.fullmatch(text):
        raise _Undecryptable()
    return text


class AuthyStore(Store):
    kind = "authy"
    title = "Authy Android preferences (rooted phone)"
    reads = (
        "Authy's shared_prefs XML (com.authy.storage.tokens.*.xml from a rooted Android phone), "
        "plain or encrypted with the Authy backup password"
    )
    writes = ""
    drops = frozenset({"folder", "note"})
    loses = "read-only: Authy cannot import anything"
    carries = {"HOTP": "lost", "Steam": "lost"}
    source = "rooted Android phone: /data/data/com.authy.authy/shared_prefs/com.authy.storage.tokens.authenticator.xml"
    sniff_priority = 60

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return b"<map" in head and b"com.authy.storage.tokens." in head

    def read(self) -> ReadResult:
        tokens = parse_prefs(self.read_bytes(max_bytes=_MAX_FILE), self.label)
        result = ReadResult()
        password: bytes | None = None
        tried = failed = 0
        for index, entry in enumerate(tokens, start=1):
            where = f"token {index}"
            try:
                if not isinstance(entry, dict):
                    raise ValueError("the token is not a JSON object")
                issuer, name = split_names(entry)
                where += f" ({issuer}: {name})" if issuer else f" ({name})"
                digits = entry.get("digits", 6)
                if isinstance(digits, str) and digits.isdigit():
                    digits = int(digits)
                if isinstance(digits, bool) or not isinstance(digits, int):
                    raise ValueError("digits is not a whole number")
                if "secretSeed" in entry:
                    seed = _text(entry, "secretSeed")
                    try:
                        secret = bytes.fromhex(seed)
                    except ValueError:
                        raise ValueError("secretSeed is not hex") from None
                    result.accounts.append(Account(Kind.TOTP, secret, issuer or "Authy", name, Algorithm.SHA1, digits, 10))
                    continue
                if entry.get("decryptedSecret"):
                    b32 = _text(entry, "decryptedSecret")
                elif entry.get("encryptedSecret"):
                    if password is None:
                        password = self.ctx.password(self.spec, label=f"{self.label} (Authy backup password)").encode()
                    tried += 1
                    try:
                        b32 = decrypt_secret(_text(entry, "encryptedSecret"), _text(entry, "salt"), password)
                    except _Undecryptable:
                        failed += 1
                        result.errors.append(
                            EntryError(where, "does not decrypt with this password (Authy keeps each token "
                                       "under the backup password it was added with)")
                        )
                        continue
                else:
                    raise ValueError("the token has no secret (decryptedSecret, encryptedSecret or secretSeed)")
                result.accounts.append(Account(Kind.TOTP, b32decode(b32), issuer, name, Algorithm.SHA1, digits, 30))
            except (ValueError, TypeError, OverflowError) as exc:
                result.errors.append(EntryError(where, str(exc) or "unreadable token"))
        if tried and failed == tried:
            raise AuthenticationError(
                f"{self.label}: wrong Authy backup password (no encrypted token decrypts with it)",
                hint="the password is the one set under Authy > Settings > Accounts > Backups",
            )
        return result
