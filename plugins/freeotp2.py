"""``freeotp2:`` — FreeOTP 2 backups (``externalBackup.xml``), read-only.

Format (freeotp-android ``TokenPersistence.java``, ``MasterKey.java``, ``EncryptedKey.java``;
Aegis ``FreeOtpImporter``; shared notes app-formats-2 §2). Despite the name the file is not
XML but a Java-serialised ``HashMap<String, String>`` (read by :mod:`javaser`, which
executes nothing):

- ``masterKey``: ``{"mAlgorithm": "PBKDF2withHmacSHA512"|"…SHA1", "mIterations", "mSalt":
  [signed bytes], "mEncryptedKey": EK}``; the password key is PBKDF2(password, salt,
  iterations, len(salt) bytes), bounded before deriving;
- ``<uuid>``: ``{"key": "<EK as JSON text>"}``, the token's HMAC key wrapped by the master key;
- ``<uuid>-token``: the token's settings (Gson): type, algo, digits, period, counter,
  issuerExt/issuerAlt, label/labelAlt, image, color…

EK = ``{"mCipher": "AES/GCM/NoPadding", "mCipherText": [ct‖tag], "mParameters": DER(nonce,
tag length), "mToken": AAD}``. A master key that fails its tag means a wrong password
(exit 3); a token that fails its tag, or a key without settings (FreeOTP can leave
those, Aegis warns), is a per-entry error (exit 7). Steam has no type: FreeOTP shows Steam
codes for an ``issuerExt`` of exactly ``Steam``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from otpbridge.core.errors import AuthenticationError, EntryError, FormatError
from otpbridge.core.model import Account, Algorithm, Kind
from otpbridge.plugins import appcrypto as ac
from otpbridge.plugins.javaser import MAGIC, JavaSerError, read_hashmap
from otpbridge.stores.base import ReadResult, Store

#: FreeOTP uses 100 000; a crafted file must not make us derive for long.
MAX_ITERATIONS = 2_000_000
MAX_FILE_BYTES = 16 * 1024 * 1024
_HASHES = {"PBKDF2withHmacSHA512": "sha512", "PBKDF2withHmacSHA1": "sha1", "PBKDF2withHmacSHA256": "sha256"}
STEAM_ISSUER = "Steam"


class FreeOtp2Store(Store):
    kind = "freeotp2"
    title = "FreeOTP 2 backup (externalBackup.xml)"
    reads = "FreeOTP 2 backups (Java-serialised, password-encrypted): TOTP, HOTP, Steam (issuer 'Steam')"
    writes = ""
    loses = "read-only (FreeOTP imports otpauth:// QR codes; its backup writer was not verified); token images"
    drops = frozenset({"folder", "note"})
    source = "FreeOTP 2: ⋮ menu → Backup (saves externalBackup.xml, encrypted with the password FreeOTP asked for)"
    sniff_priority = 70

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return head.startswith(MAGIC) and b"java.util.HashMap" in head[:64] and b"masterKey" in head

    def read(self) -> ReadResult:
        data = self.read_bytes(max_bytes=MAX_FILE_BYTES)
        try:
            prefs = read_hashmap(data)
        except JavaSerError as exc:
            raise FormatError(f"{self.label}: not a readable FreeOTP 2 backup ({exc})") from None
        if not isinstance(prefs.get("masterKey"), str):
            raise FormatError(f"{self.label}: not a FreeOTP 2 backup (no master key)")
        master = self._master_key(prefs["masterKey"])
        result = ReadResult()
        uuids = sorted({k[: -len("-token")] if k.endswith("-token") else k for k in prefs} - {"masterKey"})
        for i, uuid in enumerate(uuids):
            settings, wrapped = prefs.get(uuid + "-token"), prefs.get(uuid)
            if uuid + "-token" not in prefs and not isinstance(wrapped, str):
                continue  # not a token (restoreComplete and other preferences)
            where = f"token {i + 1}" + _names(settings)
            if not isinstance(settings, str):
                result.errors.append(EntryError(where, "the token's settings are missing (an incomplete FreeOTP backup)"))
                continue
            if not isinstance(wrapped, str):
                result.errors.append(EntryError(where, "the token's key is missing (an incomplete FreeOTP backup)"))
                continue
            ac.collect(result, where, lambda s=settings, w=wrapped: _token(s, w, master))
        return result

    def _master_key(self, text: str) -> bytes:
        try:
            mk = json.loads(text)
        except (ValueError, RecursionError):
            raise FormatError(f"{self.label}: the master key record is not JSON") from None
        if not isinstance(mk, dict) or not isinstance(mk.get("mEncryptedKey"), dict):
            raise FormatError(f"{self.label}: the master key record is incomplete")
        hash_name = _HASHES.get(mk.get("mAlgorithm"))  # type: ignore[arg-type]
        if hash_name is None:
            raise FormatError(f"{self.label}: unsupported key derivation {str(mk.get('mAlgorithm'))[:40]!r}")
        iterations = ac.bounded_int(mk.get("mIterations"), "the PBKDF2 iteration count", 1, MAX_ITERATIONS, self.label)
        try:
            salt = _signed_bytes(mk.get("mSalt"))
            nonce, ct, aad = _encrypted_key(mk["mEncryptedKey"])
        except ac.EntryProblem as exc:
            raise FormatError(f"{self.label}: the master key record is damaged ({exc})") from None
        if len(salt) not in (16, 24, 32):
            raise FormatError(f"{self.label}: the master key salt is {len(salt)} bytes (expected 16, 24 or 32)")
        password = self.ctx.password(self.spec, label=self.label)
        key = ac.pbkdf2(
            password.encode(), salt, iterations, hash_name=hash_name, label=self.label, length=len(salt), stats=self.ctx.stats
        )
        master = ac.gcm_open(key, nonce, ct, aad)
        if master is None:
            raise AuthenticationError(f"wrong password for {self.label}")
        return master


def _names(settings: Any) -> str:
    try:
        meta = json.loads(settings) if isinstance(settings, str) else None
    except (ValueError, RecursionError):
        return ""
    if not isinstance(meta, dict):
        return ""
    issuer = meta.get("issuerAlt") or meta.get("issuerExt") or ""
    label = meta.get("labelAlt") or meta.get("label") or ""
    names = [n for n in (issuer, label) if isinstance(n, str) and n.strip()]
    return f" ({' / '.join(names)[:80]})" if names else ""


def _signed_bytes(value: Any) -> bytes:
    if not isinstance(value, list) or len(value) > 4096:
        raise ac.EntryProblem("a byte array is missing")
    if not all(isinstance(b, int) and not isinstance(b, bool) and -128 <= b <= 255 for b in value):
        raise ac.EntryProblem("a byte array holds a value that is not a byte")
    return bytes(b & 0xFF for b in value)


def _gcm_nonce(der: bytes) -> bytes:
    """The nonce of Java's DER GCM parameters: ``SEQUENCE {OCTET STRING, INTEGER 16}`` or a
    bare ``OCTET STRING`` (Android 6)."""
    if len(der) >= 2 and der[0] == 0x30 and der[1] == len(der) - 2:
        body = der[2:]
        if len(body) < 2 or body[0] != 0x04 or body[1] + 2 > len(body):
            raise ac.EntryProblem("the cipher parameters are damaged")
        nonce, rest = body[2 : 2 + body[1]], body[2 + body[1] :]
        if rest and rest != b"\x02\x01\x10":
            raise ac.EntryProblem("only a 128-bit GCM tag is supported")
        return nonce
    if len(der) >= 2 and der[0] == 0x04 and der[1] == len(der) - 2:
        return der[2:]
    raise ac.EntryProblem("the cipher parameters are damaged")


def _encrypted_key(ek: Any) -> tuple[bytes, bytes, bytes]:
    if not isinstance(ek, dict):
        raise ac.EntryProblem("the encrypted key is not an object")
    if ek.get("mCipher") != "AES/GCM/NoPadding":
        raise ac.EntryProblem("unsupported cipher")
    token = ek.get("mToken")
    if not isinstance(token, str):
        raise ac.EntryProblem("the encrypted key has no algorithm name")
    nonce = _gcm_nonce(_signed_bytes(ek.get("mParameters")))
    if not 12 <= len(nonce) <= 16:
        raise ac.EntryProblem("the nonce has an unusual length")
    return nonce, _signed_bytes(ek.get("mCipherText")), token.encode("utf-8")


def _token(settings: str, wrapped: str, master: bytes) -> Account:
    try:
        meta = json.loads(settings)
        outer = json.loads(wrapped)
        ek = json.loads(outer["key"]) if isinstance(outer, dict) and isinstance(outer.get("key"), str) else None
    except (ValueError, RecursionError):
        raise ac.EntryProblem("the token record is not JSON") from None
    if not isinstance(meta, dict) or ek is None:
        raise ac.EntryProblem("the token record is incomplete")
    nonce, ct, aad = _encrypted_key(ek)
    secret = ac.gcm_open(master, nonce, ct, aad)
    if secret is None:
        raise ac.EntryProblem("the token's key does not decrypt (damaged)")
    otp_type = ac.entry_text(meta.get("type"), "type").upper() or "TOTP"
    if otp_type not in ("TOTP", "HOTP"):
        raise ac.EntryProblem(f"unknown token type {otp_type[:10]!r}")
    issuer_ext = ac.entry_text(meta.get("issuerExt"), "issuerExt")
    issuer = ac.entry_text(meta.get("issuerAlt"), "issuerAlt") or issuer_ext
    name = ac.entry_text(meta.get("labelAlt"), "labelAlt") or ac.entry_text(meta.get("label"), "label")
    steam = issuer_ext == STEAM_ISSUER
    if steam and otp_type == "HOTP":
        raise ac.EntryProblem("counter-based Steam codes are not supported")
    kind = Kind.STEAM if steam else Kind.HOTP if otp_type == "HOTP" else Kind.TOTP
    return Account(
        kind=kind,
        secret=secret,
        issuer=issuer,
        name=name,
        algorithm=Algorithm.parse(ac.entry_text(meta.get("algo"), "algo") or "SHA1"),
        digits=ac.entry_int(meta.get("digits"), "digits", default=5 if steam else 6),
        period=ac.entry_int(meta.get("period"), "period", default=30) if kind is not Kind.HOTP else 30,
        counter=ac.entry_int(meta.get("counter"), "counter", default=0) if kind is Kind.HOTP else 0,
    )
