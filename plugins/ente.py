"""``ente:`` — Ente Auth exports: the plain text list and the encrypted JSON (read and write).

Plain export: one otpauth:// URI per line, each with Ente's own ``codeDisplay`` query
parameter (URL-encoded JSON: pinned, trashed, tags, …) and a few quirks this module undoes
the way Ente's own ``Code.fromOTPAuthUrl`` does: ``algorithm=Algorithm.sha256``, an issuer
that swallowed ``period=…``, an unencoded ``#`` in a name, and ``otpauth://steam/``.
``codeDisplay.tags[0]`` becomes the folder; codes in Ente's trash are reported as skipped.
Yandex codes (``yaotp``/``pin=``) are reported as unsupported.

Encrypted export (verified against Stratum's fixture; shared/notes/app-formats.md §6)::

    {"version": 1, "kdfParams": {"memLimit": bytes, "opsLimit": n, "salt": b64(16)},
     "encryptedData": b64, "encryptionNonce": b64(24)}

key = libsodium ``crypto_pwhash`` Argon2id13 (one lane, 32 bytes) with the file's limits,
bounded before deriving; the data is one ``crypto_secretstream_xchacha20poly1305`` chunk
whose header is ``encryptionNonce``; the plaintext is the plain export. The format has no
separate password check, so a wrong password and a modified ciphertext look the same to
the AEAD: both are reported as exit 3 with a message naming both causes.

Writing: plain text by default (what Ente's "Import > Plain text" reads); encrypted when
``?encrypt=yes`` or when the file being replaced is encrypted. Encrypted files use Ente's
own default limits (1 GiB, ops 4) and are decrypted again with the derived key before the
write is reported.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, unquote_plus

from otpbridge.core.errors import (
    AuthenticationError,
    EntryError,
    FormatError,
    MissingDependencyError,
    UsageError,
)
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Kind, b32encode
from otpbridge.core.otpauth import UriError, parse_uri
from otpbridge.stores.base import ReadResult, Store, not_text_error

_MAX_FILE = 64 * 1024 * 1024

# Bounds on the KDF limits of a file we read (Ente's default is 1 GiB / ops 4; on weak
# phones it halves memory and doubles ops, keeping the product).
# Ente starts at libsodium's SENSITIVE limits (1 GiB, ops 4) and only ever lowers memory
# (doubling ops), so memLimit never exceeds 1 GiB and the product stays 4 GiB. The old
# bounds (2 GiB, product 16 GiB) let a crafted file cost ~25 s and 2 GiB of memory.
MEMLIMIT_MIN, MEMLIMIT_MAX = 8192, 1024**3
OPSLIMIT_MIN, OPSLIMIT_MAX = 1, 1024
WORK_MAX = 4 * 1024**3  # memLimit × opsLimit

# What we write: libsodium's SENSITIVE limits, which Ente uses by default.
WRITE_MEMLIMIT = 1024**3
WRITE_OPSLIMIT = 4
SALT_BYTES = 16
HEADER_BYTES = 24
ABYTES = 17

_CODE_DISPLAY = re.compile(r"([?&])codeDisplay=([^&#]*)", re.IGNORECASE)
_ALGO_PREFIX = re.compile(r"([?&]algorithm=)algorithm\.", re.IGNORECASE)
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}




def _looks_encrypted(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"{") and all(k in head for k in (b'"kdfParams"', b'"encryptedData"', b'"encryptionNonce"'))


# -- plain text ------------------------------------------------------------------------------
def _code_display(raw: str) -> dict:
    """Ente's display metadata; a broken value is ignored (it must not cost the account).

    Ente writes it form-encoded (Dart's ``Uri.encodeQueryComponent``): a space is ``+``
    and a literal ``+`` is ``%2B``, so notes and tags decode ``+`` as a space.
    """
    try:
        value = json.loads(unquote_plus(raw, errors="strict"))
    except (ValueError, RecursionError, UnicodeError):
        return {}
    return value if isinstance(value, dict) else {}


def parse_line(line: str) -> tuple[Account | None, str | None]:
    """One line of Ente's plain export: (account, None), or (None, reason it is skipped).

    Raises UriError/ValueError for lines that are broken rather than merely unsupported.
    """
    display: dict = {}
    match = _CODE_DISPLAY.search(line)
    if match:
        display = _code_display(match.group(2))
        line = line[: match.start()] + (match.group(1) if match.group(1) == "?" else "") + line[match.end():]
        line = line.replace("?&", "?")
    line = _ALGO_PREFIX.sub(r"\1", line)
    scheme_rest = line.split("://", 1)
    host = scheme_rest[1].split("/", 1)[0].split("?", 1)[0].lower() if len(scheme_rest) == 2 else ""
    if host in ("yaotp", "yandex") or re.search(r"[?&]pin=", line, re.IGNORECASE):
        return None, "Yandex codes are not supported"
    if display.get("trashed") is True:
        return None, "in Ente's trash (restore it in Ente to migrate it)"
    tags = display.get("tags")
    folder = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else ""
    note = display.get("note") if isinstance(display.get("note"), str) else ""
    try:
        account = parse_uri(line, folder=folder, note=note, base32_rule="ente")
    except UriError:
        # Ente's own fallback: an unencoded '#' in a name turns the rest into a fragment.
        if "#" not in line:
            raise
        account = parse_uri(line.replace("#", "%23"), folder=folder, note=note, base32_rule="ente")
    if "period=" in account.issuer:
        # Ente's fix for issuers that swallowed "period=…" (ente-io/ente#77).
        account = account.replace(issuer=account.issuer[: account.issuer.index("period=")])
    return account, None


def parse_plain(text: str, unread: list[str] | None = None, displays: dict[str, dict] | None = None) -> ReadResult:
    """The accounts of a plain export; lines that are skipped or broken go to ``unread`` too,
    and each account's ``codeDisplay`` to ``displays`` (by identity: written back with it)."""
    result = ReadResult()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            account, skipped = parse_line(line)
        except (UriError, ValueError, TypeError) as exc:
            result.errors.append(EntryError(f"line {number}", str(exc) or "unreadable line"))
            if unread is not None:
                unread.append(line)
            continue
        if skipped:
            result.errors.append(EntryError(f"line {number}", skipped))
            if unread is not None:
                unread.append(line)
        else:
            result.accounts.append(account)
            if displays is not None and (match := _CODE_DISPLAY.search(line)):
                displays.setdefault(account.identity, _code_display(match.group(2)))
    return result


def _q(text: str) -> str:
    return quote(text, safe="")


def format_line(account: Account, kept: dict | None = None) -> str:
    """One account as Ente writes it (``otpauth://steam/`` for Steam, ``issuer=`` always present).

    ``kept``: the ``codeDisplay`` this account had in the file being rewritten. Its pinned
    state, last use, tap count, further tags and keys we do not know stay; the folder (the
    first tag) and the note are the account's."""
    kind = {Kind.TOTP: "totp", Kind.HOTP: "hotp", Kind.STEAM: "steam"}[account.kind]
    if account.issuer:
        label = f"{_q(account.issuer)}:{_q(account.name)}"
    elif ":" in account.name:
        label = f":{_q(account.name)}"
    else:
        label = _q(account.name)
    params = [
        f"secret={b32encode(account.secret)}",
        # Without an issuer parameter Ente takes the label's first part as the issuer.
        f"issuer={_q(account.issuer)}",
        f"algorithm={account.algorithm.value}",
        f"digits={account.digits}",
        f"period={account.period}",
    ]
    if account.kind is Kind.HOTP:
        params.append(f"counter={account.counter}")
    display: dict[str, object] = {"pinned": False, "trashed": False, "lastUsedAt": 0, "tapCount": 0, **(kept or {})}
    more = display.get("tags") if isinstance(display.get("tags"), list) else []
    display["tags"] = [account.folder, *more[1:]] if account.folder else []  # tags[0] is read as the folder
    display["trashed"] = False
    display.pop("note", None)
    if account.note:
        display["note"] = account.note
    params.append("codeDisplay=" + _q(json.dumps(display, separators=(",", ":"), ensure_ascii=False)))
    return f"otpauth://{kind}/{label}?{'&'.join(params)}"


def format_plain(accounts: Sequence[Account], displays: dict[str, dict] | None = None) -> str:
    return "".join(format_line(a, (displays or {}).get(a.identity)) + "\n" for a in accounts)


# -- encrypted JSON -----------------------------------------------------------------------------
def _nacl():
    try:
        import nacl.bindings as bindings
        import nacl.exceptions as exceptions
        import nacl.pwhash.argon2id as argon2id
    except ImportError:
        raise MissingDependencyError(
            "encrypted Ente Auth exports need the Python package 'pynacl', which is not installed",
            hint="pip install 'otpbridge[ente]'",
        ) from None
    return bindings, exceptions, argon2id


def _b64(doc: dict, key: str) -> bytes:
    value = doc.get(key)
    if not isinstance(value, str):
        raise FormatError(f"the export's {key} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise FormatError(f"the export's {key} is not Base64 (damaged?)") from None


def _limit(params: dict, key: str, low: int, high: int) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"the export's kdfParams.{key} is missing or not a whole number")
    if not low <= value <= high:
        raise FormatError(f"the export's kdfParams.{key} ({value}) is outside the accepted range {low}–{high}")
    return value


def derive_key(password: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    _, _, argon2id = _nacl()
    return argon2id.kdf(32, password, salt, opslimit=opslimit, memlimit=memlimit)


def open_encrypted(doc: object, password: bytes) -> str:
    """The plain export inside an encrypted one (FormatError: damaged; AuthenticationError: wrong password)."""
    if not isinstance(doc, dict):
        raise FormatError("not an Ente Auth export")
    if doc.get("version") != 1:
        raise FormatError(f"unsupported Ente export version {str(doc.get('version'))[:10]!r} (known: 1)")
    params = doc.get("kdfParams")
    if not isinstance(params, dict):
        raise FormatError("the export's kdfParams is missing")
    memlimit = _limit(params, "memLimit", MEMLIMIT_MIN, MEMLIMIT_MAX)
    opslimit = _limit(params, "opsLimit", OPSLIMIT_MIN, OPSLIMIT_MAX)
    if memlimit * opslimit > WORK_MAX:
        raise FormatError("the export's kdfParams ask for more work than any Ente device uses")
    salt = _b64(params, "salt")
    header = _b64(doc, "encryptionNonce")
    data = _b64(doc, "encryptedData")
    if len(salt) != SALT_BYTES or len(header) != HEADER_BYTES:
        raise FormatError("the export's salt or nonce has the wrong length (damaged?)")
    if len(data) < ABYTES:
        raise FormatError("the export's encryptedData is truncated")
    key = derive_key(password, salt, opslimit, memlimit)
    return decrypt_with_key(key, header, data)


def decrypt_with_key(key: bytes, header: bytes, data: bytes) -> str:
    bindings, exceptions, _ = _nacl()
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    try:
        bindings.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
        plain, tag = bindings.crypto_secretstream_xchacha20poly1305_pull(state, data, None)
    except (exceptions.CryptoError, ValueError, TypeError):
        raise AuthenticationError(
            "wrong password, or the encrypted data was modified (Ente's format cannot tell these apart)",
            hint="the password is the one chosen when the export was made in Ente Auth",
        ) from None
    # One chunk; Ente writes TAG_FINAL, older versions TAG_MESSAGE (Ente's CLI accepts both).
    if tag not in (bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL,
                   bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE):
        raise FormatError("the encrypted data is not a single Ente export chunk")
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("the decrypted data is not UTF-8 text") from None


def seal(plain: str, password: bytes) -> bytes:
    """An encrypted export of ``plain``, decrypted again (with the derived key) before it is returned."""
    bindings, _, _ = _nacl()
    salt = os.urandom(SALT_BYTES)
    key = derive_key(password, salt, WRITE_OPSLIMIT, WRITE_MEMLIMIT)
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    header = bindings.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    data = bindings.crypto_secretstream_xchacha20poly1305_push(
        state, plain.encode("utf-8"), None, bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    )
    if decrypt_with_key(key, header, data) != plain:  # pragma: no cover - libsodium broke
        raise FormatError("the encrypted export did not decrypt back to what was written")
    doc = {
        "version": 1,
        "kdfParams": {"memLimit": WRITE_MEMLIMIT, "opsLimit": WRITE_OPSLIMIT, "salt": base64.b64encode(salt).decode()},
        "encryptedData": base64.b64encode(data).decode(),
        "encryptionNonce": base64.b64encode(header).decode(),
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


class EnteStore(Store):
    kind = "ente"
    title = "Ente Auth export"
    reads = "Ente Auth plain text exports (otpauth:// with codeDisplay) and encrypted exports (Argon2id + XChaCha20-Poly1305)"
    writes = "Ente Auth plain text export, or the encrypted export with ?encrypt=yes (import both in Ente Auth)"
    loses = ("all but the first Ente tag (folder) of a new entry (an entry read from the same file keeps its "
             "tags, pinned state and usage); Yandex codes and codes in Ente's trash are skipped (listed)")
    options = ("encrypt",)
    carries = {"folders": "partly"}
    source = "Ente Auth: Settings → Data → Export codes (plain text or encrypted)"
    sniff_priority = 55
    keeps_unreadable = True  # trashed, Yandex and broken lines are written back as they were

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._unread: list[str] = []
        self._displays: dict[str, dict] = {}  # codeDisplay of each account read, by identity

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if _looks_encrypted(head):
            return True
        for line in head.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line:
                continue
            return line.lower().startswith("otpauth://") and "codedisplay=" in line.lower()
        return False

    def _password(self) -> bytes:
        return self.ctx.password(self.spec, label=f"{self.label} (export password)").encode()

    def read(self) -> ReadResult:
        data = self.read_bytes(max_bytes=_MAX_FILE)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise not_text_error(self.label, data, "an Ente Auth export (not UTF-8 text)") from None
        if text.lstrip().startswith("{"):
            try:
                doc = json.loads(text)
            except (ValueError, RecursionError):
                raise FormatError(f"{self.label}: not an Ente Auth export (invalid JSON; truncated?)") from None
            try:
                text = open_encrypted(doc, self._password())
            except (FormatError, AuthenticationError) as exc:
                raise type(exc)(f"{self.label}: {exc}", hint=exc.hint) from None
        self._unread, self._displays = [], {}
        return parse_plain(text, self._unread, self._displays)

    def _encrypt(self) -> bool:
        choice = self.spec.options.get("encrypt")
        if choice is None:
            try:
                with open(self.path, "rb") as fh:
                    return _looks_encrypted(fh.read(4096))
            except OSError:
                return False
        if choice.lower() in _TRUE:
            return True
        if choice.lower() in _FALSE:
            return False
        raise UsageError(f"?encrypt={choice!r} is not yes or no")

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        plain = format_plain(accounts, self._displays) + "".join(line + "\n" for line in self._unread)
        if self._encrypt():
            password = self._password()
            if not password:
                raise UsageError(f"{self.label}: an encrypted Ente export needs a non-empty password")
            body = seal(plain, password)
        else:
            self.ctx.warn(f"{self.label} holds your 2FA secrets in clear text; keep it safe and delete it when done")
            body = plain.encode("utf-8")
        return atomic_write(self.path, body, mode=0o600)
