"""Small helpers shared by the authenticator-app format plugins.

Every app export is read the same way: bytes → (maybe decrypt) → JSON → per-entry
conversion. These helpers put the hostile-input rules in one place: parameters read
from a file are bounded *before* a KDF runs (a crafted file must not make us burn
minutes or gigabytes), decoding failures become :class:`FormatError`, and per-entry
problems become :class:`EntryError` records whose text never quotes a secret.

The API is used by other plugins too; keep it stable (add, don't change).
Only the standard library is imported at module level, so sniffers stay cheap;
``cryptography`` is imported inside the functions that need it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otpbridge.core.errors import EntryError, FormatError
from otpbridge.core.model import Account
from otpbridge.stores.base import Context, ReadResult
from otpbridge.stores.base import read_file as _read_file

#: Upper bounds for KDF parameters read from a file (checked before deriving).
MAX_PBKDF2_ITERATIONS = 10_000_000
MAX_SCRYPT_N = 1 << 20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
MAX_SCRYPT_MEMORY = 1 << 30  # 128 * N * r bytes

#: Upper bound for any file we parse whole (real exports are kilobytes; icons make MBs).
MAX_FILE_BYTES = 64 * 1024 * 1024


class EntryProblem(ValueError):
    """Why one entry cannot be imported; the message is shown to the user (no secrets)."""


class _Partial:
    """Marks a value the sniffer could not parse because the head was cut off."""

    def __repr__(self) -> str:
        return "PARTIAL"


PARTIAL = _Partial()


# -- files and JSON --------------------------------------------------------------------
def read_file(path: Path, label: str) -> bytes:
    """The whole file, or a FormatError that names it (missing, unreadable, huge)."""
    return _read_file(path, label, max_bytes=MAX_FILE_BYTES)


#: No export nests JSON deeper than a handful of levels; deeper values would later blow
#: Python's recursion limit in copy.deepcopy / json.dumps (a traceback, not an error).
MAX_JSON_DEPTH = 64


def parse_json(data: bytes | str, label: str, *, what: str = "JSON") -> Any:
    """Parse UTF-8 JSON (a BOM is allowed) or raise FormatError naming ``what``."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes | bytearray) else data
        value = json.loads(text)
    except UnicodeDecodeError:
        raise FormatError(f"{label}: the {what} is not UTF-8 text") from None
    except RecursionError:
        raise FormatError(f"{label}: the {what} is nested too deeply") from None
    except json.JSONDecodeError as exc:  # its message holds a position, not data
        raise FormatError(
            f"{label}: the {what} is not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None
    except ValueError:  # e.g. an integer longer than Python's int conversion limit
        raise FormatError(f"{label}: the {what} is not valid JSON (a value is out of range)") from None
    if too_deep(value):
        raise FormatError(f"{label}: the {what} is nested too deeply")
    return value


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``value`` nests lists/objects more than ``limit`` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def dump_json(obj: Any) -> bytes:
    """JSON as the apps write it: UTF-8, indented, non-ASCII kept."""
    return (json.dumps(obj, ensure_ascii=False, indent=4) + "\n").encode("utf-8")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def json_head(head: bytes) -> dict | list | None:
    """The top level of a JSON document from its first bytes, for sniffers.

    A complete document is parsed normally. A document cut off by the sniff limit
    yields what could be parsed: an object's keys in order, with :data:`PARTIAL` for
    a value that was cut; for an array, its first element if complete. ``None`` when
    the head is not JSON at all. Never raises.
    """
    try:
        text = head.decode("utf-8-sig", "replace")
    except Exception:  # noqa: BLE001 - a sniffer must never raise
        return None
    start = _skip_ws(text, 0)
    if start >= len(text) or text[start] not in "{[":
        return None
    try:
        value = json.loads(text)
        return value if isinstance(value, dict | list) else None
    except (ValueError, RecursionError):
        pass
    decoder = json.JSONDecoder()
    try:
        if text[start] == "[":
            i = _skip_ws(text, start + 1)
            try:
                first, _ = decoder.raw_decode(text, i)
            except ValueError:
                return []
            return [first]
        out: dict[str, Any] = {}
        i = start + 1
        while True:
            i = _skip_ws(text, i)
            if i >= len(text) or text[i] == "}":
                return out
            key, i = decoder.raw_decode(text, i)
            if not isinstance(key, str):
                return None
            i = _skip_ws(text, i)
            if i >= len(text) or text[i] != ":":
                return out if i >= len(text) else None
            i = _skip_ws(text, i + 1)
            out[key] = PARTIAL
            try:
                out[key], i = decoder.raw_decode(text, i)
            except ValueError:
                return out
            i = _skip_ws(text, i)
            if i < len(text) and text[i] == ",":
                i += 1
            else:
                return out
    except (ValueError, RecursionError, IndexError):
        return None


# -- decoding of fields ------------------------------------------------------------------
def b64decode(text: Any, what: str, label: str, *, urlsafe: bool = False) -> bytes:
    """Standard Base64 (padding optional) or FormatError naming ``what``."""
    if not isinstance(text, str):
        raise FormatError(f"{label}: {what} is not a text field")
    cleaned = "".join(text.split())
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(cleaned.encode("ascii"))
        return base64.b64decode(cleaned.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise FormatError(f"{label}: {what} is not valid Base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unhex(text: Any, what: str, label: str, *, size: int | None = None) -> bytes:
    """Hex text (any case) or FormatError; ``size`` checks the decoded length."""
    if not isinstance(text, str):
        raise FormatError(f"{label}: {what} is not a text field")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise FormatError(f"{label}: {what} is not valid hex") from None
    if size is not None and len(data) != size:
        raise FormatError(f"{label}: {what} is {len(data)} bytes, expected {size}")
    return data


def bounded_int(value: Any, what: str, lo: int, hi: int, label: str) -> int:
    """An integer parameter read from a file, within [lo, hi], else FormatError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"{label}: {what} is not a whole number")
    if not lo <= value <= hi:
        raise FormatError(f"{label}: {what} is {value}, outside the plausible range {lo}–{hi}")
    return value


def entry_int(value: Any, what: str, *, default: int | None = None) -> int:
    """An integer field of one entry (ints, or digit strings as some apps write)."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool):
        raise EntryProblem(f"{what} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        return int(value.strip())
    raise EntryProblem(f"{what} is not a whole number")


def entry_text(value: Any, what: str) -> str:
    """A text field of one entry; ``None`` means empty."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EntryProblem(f"{what} is not text")
    return value


# -- key derivation and AEAD --------------------------------------------------------------
def pbkdf2(
    password: bytes,
    salt: bytes,
    iterations: int,
    *,
    hash_name: str,
    label: str,
    length: int = 32,
    stats: Any = None,
) -> bytes:
    """PBKDF2-HMAC (``sha1``/``sha256``/``sha512``) with the iteration count bounded first.

    ``stats`` (a Counter, e.g. ``ctx.stats``) counts derivations as ``app_kdf``.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    bounded_int(iterations, "the PBKDF2 iteration count", 1, MAX_PBKDF2_ITERATIONS, label)
    algorithm = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha512": hashes.SHA512}[hash_name]()
    if stats is not None:
        stats["app_kdf"] += 1
    return PBKDF2HMAC(algorithm=algorithm, length=length, salt=salt, iterations=iterations).derive(password)


def scrypt(
    password: bytes, salt: bytes, *, n: int, r: int, p: int, label: str, length: int = 32, stats: Any = None
) -> bytes:
    """scrypt with N, r, p bounded first (N a power of two, memory ≤ 1 GiB); ``stats`` as for pbkdf2."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    bounded_int(n, "the scrypt cost N", 2, MAX_SCRYPT_N, label)
    bounded_int(r, "the scrypt block size r", 1, MAX_SCRYPT_R, label)
    bounded_int(p, "the scrypt parallelism p", 1, MAX_SCRYPT_P, label)
    if n & (n - 1):
        raise FormatError(f"{label}: the scrypt cost N is {n}, not a power of two")
    if 128 * n * r > MAX_SCRYPT_MEMORY:
        raise FormatError(f"{label}: the scrypt parameters would need more than 1 GiB of memory")
    if stats is not None:
        stats["app_kdf"] += 1
    return Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(password)


def gcm_open(key: bytes, nonce: bytes, data: bytes, aad: bytes | None = None) -> bytes | None:
    """AES-GCM decrypt of ``ciphertext‖tag``; ``None`` when authentication fails.

    The caller decides what a failure means (wrong password vs. tampering), because
    only it knows whether the key was already confirmed.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(key) not in (16, 24, 32) or not 8 <= len(nonce) <= 128 or len(data) < 16:
        return None
    try:
        return AESGCM(key).decrypt(nonce, data, aad)
    except (InvalidTag, ValueError, OverflowError):
        return None


def gcm_seal(key: bytes, nonce: bytes, data: bytes, aad: bytes | None = None) -> bytes:
    """AES-GCM encrypt; returns ``ciphertext‖tag`` (16-byte tag)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key).encrypt(nonce, data, aad)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


# -- per-entry conversion -----------------------------------------------------------------
def collect(result: ReadResult, where: str, convert: Callable[[], Account | None]) -> Account | None:
    """Run one entry's conversion; file its failure as an EntryError instead of raising.

    Messages come from :class:`EntryProblem` and the model's ValueErrors, which never
    quote a secret; anything else gets a generic reason (its text could hold data).
    """
    try:
        account = convert()
    except ValueError as exc:  # EntryProblem, model and Base32 validation
        result.errors.append(EntryError(where, str(exc) or "invalid entry"))
        return None
    except KeyError as exc:
        field = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "?"
        result.errors.append(EntryError(where, f"missing field {field!r}"))
        return None
    except (TypeError, AttributeError, IndexError, OverflowError):
        result.errors.append(EntryError(where, "malformed entry (a field has the wrong type)"))
        return None
    if account is not None:
        result.accounts.append(account)
    return account


def skipped(kind: str) -> EntryProblem:
    """The per-entry reason for an OTP kind we cannot represent (mOTP, Yandex…)."""
    return EntryProblem(f"{kind} accounts are not supported (only TOTP, HOTP and Steam)")


def entry_where(index: int, *names: Any) -> str:
    """``entry 3 (Deno / Mason)``: 1-based, with whatever names the entry has."""
    shown = [n.strip() for n in names if isinstance(n, str) and n.strip()]
    return f"entry {index + 1}" + (f" ({' / '.join(shown)[:80]})" if shown else "")


def warn_cleartext(ctx: Context, label: str) -> None:
    ctx.warn(f"{label} holds your 2FA secrets in clear text; keep it safe and delete it when done")


def flag(options: dict[str, str] | Any, name: str) -> bool | None:
    """A yes/no store option: True, False, or None when absent; UsageError when unclear."""
    from otpbridge.core.errors import UsageError

    if name not in options:
        return None
    value = str(options[name]).strip().lower()
    if value in ("", "1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise UsageError(f"option {name}={options[name]!r} is not yes or no")


PASSWORD_OPTIONS = ("password-file", "password-env", "password-command")


def wants_password(options: dict[str, str] | Any) -> bool:
    """True when the store spec names a password source explicitly."""
    return any(k in options for k in PASSWORD_OPTIONS)


def should_encrypt(store: Any, was_encrypted: bool, encrypted_marker: Callable[[Any], bool]) -> bool:
    """Whether a rewrite of ``store`` is encrypted: ``?encrypt=`` decides; else a password
    option, a file this store read encrypted, or an existing file that ``encrypted_marker``
    (given its parsed JSON head) says is encrypted — an encrypted file is never silently
    rewritten in clear text."""
    explicit = flag(store.spec.options, "encrypt")
    if explicit is not None:
        return explicit
    if wants_password(store.spec.options) or was_encrypted:
        return True
    from otpbridge.stores.base import read_head

    top = json_head(read_head(store.path)) if store.path.is_file() else None
    return isinstance(top, dict) and encrypted_marker(top)
