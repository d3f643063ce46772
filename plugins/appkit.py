"""Helpers the part-3 app formats share beyond ``appcrypto``: bounded zip, Argon2id, lenient Base32.

``appcrypto`` stays the home of the KDF bounds, AES-GCM and file reading; this module
adds what only the newer formats need, with the same rule: everything read from a file
is bounded *before* work is done on it, and every failure is one of our errors.
Only the standard library is imported at module level.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from otpbridge.core.errors import FormatError, MissingDependencyError

# -- zip archives (Proton Pass, 1Password 1PUX) ---------------------------------------------
#: A 1PUX with attachments holds a few hundred members; Proton Pass one per attachment.
MAX_ZIP_ENTRIES = 10_000
#: Declared uncompressed size of the whole archive (attachments included; never extracted).
MAX_ZIP_TOTAL = 4 * 1024 * 1024 * 1024
#: What we decompress of one member we read (data.json, export.data).
MAX_MEMBER_BYTES = 64 * 1024 * 1024
#: Deflate tops out near 1000:1 only on crafted input; JSON exports compress about 10:1.
MAX_RATIO = 200


def _unsafe_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (
        name.startswith(("/", "\\"))
        or "\0" in name
        or ".." in parts
        or bool(re.match(r"^[A-Za-z]:", name))
    )


def open_zip(data: bytes, label: str, *, what: str) -> Any:
    """A ``zipfile.ZipFile`` on ``data`` whose directory passed every bound.

    Refused with :class:`FormatError` (exit 4): not a zip, more than
    :data:`MAX_ZIP_ENTRIES` members, a member named with an absolute path or ``..``,
    declared sizes beyond :data:`MAX_ZIP_TOTAL`, or encrypted members. Nothing is
    extracted to disk; members are read with :func:`read_member`.
    """
    import io
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError, NotImplementedError):
        raise FormatError(f"{label}: not a {what} (not a readable zip archive)") from None
    if len(infos) > MAX_ZIP_ENTRIES:
        raise FormatError(f"{label}: the archive has {len(infos)} members, more than a {what} ever has")
    total = 0
    for info in infos:
        if _unsafe_name(info.filename):
            raise FormatError(f"{label}: the archive has a member with an unsafe path (absolute or '..')")
        total += max(info.file_size, 0)
    if total > MAX_ZIP_TOTAL:
        raise FormatError(f"{label}: the archive would unpack to more than {MAX_ZIP_TOTAL >> 30} GiB")
    return archive


def read_member(archive: Any, name: str, label: str, *, limit: int = MAX_MEMBER_BYTES) -> bytes:
    """One member's bytes, bounded by its declared size, ``limit`` and :data:`MAX_RATIO`.

    The declared size is not trusted: at most ``limit + 1`` bytes are ever decompressed.
    """
    import zipfile
    import zlib

    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise FormatError(f"{label}: {name!r} in the archive is encrypted (zip password)")
    if info.file_size > limit:
        raise FormatError(f"{label}: {name!r} in the archive is {info.file_size} bytes, too large")
    if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > 1024 * 1024:
        raise FormatError(f"{label}: {name!r} in the archive is compressed implausibly well (a zip bomb?)")
    try:
        with archive.open(info) as fh:
            data = fh.read(limit + 1)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, NotImplementedError, zlib.error, RuntimeError):
        raise FormatError(f"{label}: {name!r} in the archive is damaged") from None
    if len(data) > limit:
        raise FormatError(f"{label}: {name!r} in the archive unpacks to more than its limit")
    return data


# -- Argon2id (Proton Authenticator, Stratum) ----------------------------------------------
#: The formats using it fix their parameters in code (19 MiB / 64 MiB); these bounds keep a
#: future caller that reads them from a file from being stalled by a crafted one.
MAX_ARGON2_MEMORY_KIB = 1024 * 1024
MAX_ARGON2_ITERATIONS = 16
MAX_ARGON2_LANES = 16


def argon2id(
    password: bytes,
    salt: bytes,
    *,
    memory_kib: int,
    iterations: int,
    lanes: int,
    label: str,
    length: int = 32,
    stats: Any = None,
) -> bytes:
    """Argon2id (version 0x13) through ``cryptography``, parameters bounded first."""
    from otpbridge.plugins import appcrypto as ac

    ac.bounded_int(memory_kib, "the Argon2 memory", 8, MAX_ARGON2_MEMORY_KIB, label)
    ac.bounded_int(iterations, "the Argon2 iteration count", 1, MAX_ARGON2_ITERATIONS, label)
    ac.bounded_int(lanes, "the Argon2 parallelism", 1, MAX_ARGON2_LANES, label)
    if memory_kib < 8 * lanes:
        raise FormatError(f"{label}: the Argon2 memory is too small for its parallelism")
    if len(salt) < 8:
        raise FormatError(f"{label}: the Argon2 salt is shorter than 8 bytes")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    if stats is not None:
        stats["app_kdf"] += 1
    try:
        kdf = Argon2id(salt=salt, length=length, iterations=iterations, lanes=lanes, memory_cost=memory_kib)
        return kdf.derive(password)
    except UnsupportedAlgorithm:
        raise MissingDependencyError(
            "this build of 'cryptography' has no Argon2id (it needs OpenSSL 3.2 or newer)",
            hint="pip install --upgrade cryptography",
        ) from None


# -- OpenPGP messages (andOTP .json.gpg, Proton Pass encrypted exports) ----------------------
PGP_ARMOR = b"-----BEGIN PGP MESSAGE-----"
#: packet tags: a session key encrypted to a public key, or with a passphrase
PKESK, SKESK = 1, 3


def first_packet_tag(head: bytes) -> int | None:
    """The tag of the first OpenPGP packet of an armoured or binary message, or None."""
    text = head.lstrip()
    if text.startswith(PGP_ARMOR):
        lines = [ln.strip() for ln in text.decode("ascii", "replace").splitlines()[1:40]]
        body = lines[lines.index("") + 1 :] if "" in lines else [ln for ln in lines if ":" not in ln]
        chunk = "".join(body[:2])
        try:
            raw = base64.b64decode(chunk[: len(chunk) // 4 * 4], validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        raw = head
    if not raw or not raw[0] & 0x80:
        return None
    return raw[0] & 0x3F if raw[0] & 0x40 else (raw[0] >> 2) & 0x0F
