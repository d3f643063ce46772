"""Opening and saving KDBX files: our own header reader, key derivation and read-only
decryption (:func:`open_for_reading`, every read), and pykeepass to edit and save.

Why not let pykeepass do everything:

* its AES-KDF is a Python loop over single AES-ECB calls — 17 s for a database that
  KeePassXC opens in under 1 s. Iterating AES-ECB on a block is the same as encrypting
  that many zero blocks in CBC mode with the block as IV (c1 = E(0 ^ iv), c2 = E(0 ^ c1),
  …), which ``cryptography`` does natively. We derive the key here and hand pykeepass
  ``transformed_key=``, so each open and each save runs exactly one (native) KDF.
* it derives whatever the header asks for. A damaged or hostile header can ask for 2^64
  AES rounds or terabytes of Argon2 memory, so the parameters are bounded first.
* reading, it parses with construct and decrypts each protected value with its own
  cipher call: for 10,000 entries more than the rest of the read, so reading uses our
  own reader (same checks, same tree) and never imports pykeepass.
* it maps only some failures to its own exceptions and lets construct/zlib/lxml errors
  through; :func:`open_database` turns every failure into an ``OtpBridgeError``.
* on KDBX 3.1 it keeps the XML's ``Meta/HeaderHash`` although every save changes the
  header, and KeePassXC then refuses the file ("Header doesn't match hash");
  :func:`serialize` rewrites that hash.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from otpbridge.core.errors import AuthenticationError, FormatError, MissingDependencyError, UsageError
from otpbridge.core.secrets import Secret

SIG1 = b"\x03\xd9\xa2\x9a"
SIG2_KDBX = b"\x67\xfb\x4b\xb5"  # KeePass 2.x / KeePassXC
SIG2_KDBX_PRE = b"\x66\xfb\x4b\xb5"  # KeePass 2.x pre-release
SIG2_KDB = b"\x65\xfb\x4b\xb5"  # KeePass 1.x (.kdb)
SIGNATURES = (SIG2_KDBX, SIG2_KDBX_PRE, SIG2_KDB)

AES_KDF_UUID = bytes.fromhex("c9d9f39a628a4460bf740d08c18a4fea")
ARGON2D_UUID = bytes.fromhex("ef636ddf8c29444b91f7a9a403e30a0c")
ARGON2ID_UUID = bytes.fromhex("9e298b1956db4773b23dfc3ec6f0a1e6")

# Bounds on what a header may ask for (module constants so tests of damaged files can
# lower them). Generous: KeePassXC's slowest preset is 5 s of work on a fast machine.
MAX_AES_ROUNDS = 2**31
MAX_ARGON2_MEMORY = 4 * 2**30  # bytes
MAX_ARGON2_ITERATIONS = 100_000
MAX_ARGON2_PARALLELISM = 256
# memory x passes: each bound alone still allows 4 GiB x 100,000 passes (days of work).
# 64 GiB-passes is about a minute here, beyond any preset KeePassXC or KeePass offers.
MAX_ARGON2_WORK = 64 * 2**30
MAX_HEADER = 1 << 20

_CHUNK_BLOCKS = 1 << 16  # 1 MiB of zero blocks per CBC call

# pykeepass logs (without secrets) when a protected value cannot be decrypted; keep
# that off the user's terminal unless the application configures logging.
logging.getLogger("pykeepass").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class KdfParams:
    """What the outer header says about key derivation (no secret in here)."""

    kind: str  # "aes", "argon2d", "argon2id"
    salt: bytes
    rounds: int = 0  # aes
    memory: int = 0  # argon2, bytes
    iterations: int = 0
    parallelism: int = 0
    version: int = 0x13


@dataclass(frozen=True)
class Header:
    major: int
    minor: int
    kdf: KdfParams
    length: int  # bytes up to and including the end-of-header field


def is_kdbx(head: bytes) -> bool:
    return head[:4] == SIG1 and head[4:8] in SIGNATURES


def _need(data: bytes, pos: int, n: int) -> None:
    if n < 0 or pos + n > len(data):
        raise FormatError("the database header is truncated or damaged")


def _variant_dict(data: bytes) -> dict[str, tuple[int, bytes]]:
    """KDBX 4 VariantDictionary: ``{key: (type, raw value)}``."""
    _need(data, 0, 2)
    if data[1] > 1:  # major version of the dictionary format
        raise FormatError("the database uses an unknown key-derivation parameter format")
    pos, out = 2, {}
    while True:
        _need(data, pos, 1)
        vtype = data[pos]
        pos += 1
        if vtype == 0:
            return out
        _need(data, pos, 4)
        (klen,) = struct.unpack_from("<i", data, pos)
        pos += 4
        _need(data, pos, klen)
        key = data[pos : pos + klen].decode("utf-8", "replace")
        pos += klen
        _need(data, pos, 4)
        (vlen,) = struct.unpack_from("<i", data, pos)
        pos += 4
        _need(data, pos, vlen)
        out[key] = (vtype, data[pos : pos + vlen])
        pos += vlen


def _uint(raw: tuple[int, bytes] | None, what: str) -> int:
    if raw is None:
        raise FormatError(f"the database header lacks the key-derivation {what}")
    value = raw[1]
    if len(value) == 4:
        return struct.unpack("<I", value)[0]
    if len(value) == 8:
        return struct.unpack("<Q", value)[0]
    raise FormatError(f"the database header has a malformed key-derivation {what}")


def read_header(data: bytes) -> Header:
    """Parse the outer header far enough to know the KDF; FormatError on anything odd."""
    return _read_header_fields(data)[0]


def _read_header_fields(data: bytes) -> tuple[Header, dict[int, bytes]]:
    """:func:`read_header`, plus the raw header fields (cipher, seeds, IV, …) for the reader."""
    if len(data) < 12 or data[:4] != SIG1:
        raise FormatError("not a KeePass database")
    sig2 = data[4:8]
    if sig2 == SIG2_KDB:
        raise FormatError(
            "this is a KeePass 1.x database (.kdb), which is not supported",
            hint="open it in KeePassXC or KeePass 2 and save it as .kdbx",
        )
    if sig2 != SIG2_KDBX:
        raise FormatError("not a KeePass 2 database (pre-release or unknown signature)")
    minor, major = struct.unpack_from("<HH", data, 8)
    if major not in (3, 4):
        raise FormatError(f"unsupported KDBX version {major}.{minor}", hint="KDBX 3.1 and 4.x are supported")
    pos = 12
    size_fmt, size_len = ("<H", 2) if major == 3 else ("<I", 4)
    fields: dict[int, bytes] = {}
    while True:
        if pos > MAX_HEADER:
            raise FormatError("the database header is damaged (too long)")
        _need(data, pos, 1 + size_len)
        fid = data[pos]
        (flen,) = struct.unpack_from(size_fmt, data, pos + 1)
        pos += 1 + size_len
        _need(data, pos, flen)
        fields[fid] = data[pos : pos + flen]
        pos += flen
        if fid == 0:
            break
    if major == 4:
        # KDBX 4 stores SHA-256 of the header in clear: check it before any KDF runs, so a
        # damaged header (a bit flip in its KDF parameters) fails at once, not after minutes.
        _need(data, pos, 32)
        if hashlib.sha256(data[:pos]).digest() != data[pos : pos + 32]:
            raise FormatError("the database header is damaged or was tampered with (header checksum mismatch)")
    if major == 3:
        seed, rounds = fields.get(5), fields.get(6)
        if seed is None or rounds is None or len(rounds) != 8:
            raise FormatError("the database header lacks its key-derivation settings")
        kdf = KdfParams("aes", seed, rounds=struct.unpack("<Q", rounds)[0])
    else:
        raw = fields.get(11)
        if raw is None:
            raise FormatError("the database header lacks its key-derivation settings")
        params = _variant_dict(raw)
        uuid = params.get("$UUID", (0, b""))[1]
        salt = params.get("S", (0, b""))[1]
        if uuid == AES_KDF_UUID:
            kdf = KdfParams("aes", salt, rounds=_uint(params.get("R"), "rounds"))
        elif uuid in (ARGON2D_UUID, ARGON2ID_UUID):
            kdf = KdfParams(
                "argon2d" if uuid == ARGON2D_UUID else "argon2id",
                salt,
                memory=_uint(params.get("M"), "memory"),
                iterations=_uint(params.get("I"), "iterations"),
                parallelism=_uint(params.get("P"), "parallelism"),
                version=_uint(params.get("V"), "version") if "V" in params else 0x13,
            )
        else:
            raise FormatError("the database uses an unknown key-derivation function")
    check_kdf(kdf)
    return Header(major, minor, kdf, pos), fields


def check_kdf(kdf: KdfParams) -> None:
    if kdf.kind == "aes":
        if len(kdf.salt) != 32:
            raise FormatError("the database's AES-KDF seed has the wrong length")
        if kdf.rounds > MAX_AES_ROUNDS:
            raise FormatError(f"the database asks for {kdf.rounds} AES-KDF rounds, more than {MAX_AES_ROUNDS}")
        return
    if not 8 <= len(kdf.salt) <= 1024:
        raise FormatError("the database's Argon2 salt has an impossible length")
    if not 8 * 1024 <= kdf.memory <= MAX_ARGON2_MEMORY:
        raise FormatError("the database asks for an unreasonable amount of Argon2 memory")
    if not 1 <= kdf.iterations <= MAX_ARGON2_ITERATIONS:
        raise FormatError("the database asks for an unreasonable number of Argon2 iterations")
    if not 1 <= kdf.parallelism <= MAX_ARGON2_PARALLELISM:
        raise FormatError("the database asks for an unreasonable Argon2 parallelism")
    if kdf.memory < 8 * 1024 * kdf.parallelism:  # Argon2 needs 8 KiB per lane (argon2-cffi raises)
        raise FormatError("the database's Argon2 memory is too small for its parallelism")
    if kdf.memory * kdf.iterations > MAX_ARGON2_WORK:
        raise FormatError("the database asks for an unreasonable amount of Argon2 work (memory x iterations)")
    if kdf.version not in (0x10, 0x13):
        raise FormatError("the database uses an unknown Argon2 version")


# -- key derivation ---------------------------------------------------------------------


def _aes_rounds(seed: bytes, block: bytes, rounds: int) -> bytes:
    """``block`` AES-ECB'd ``rounds`` times under ``seed``.

    Encrypting N zero blocks in CBC mode with IV = x leaves E^N(x) as the last block.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    zeros = bytes(16 * _CHUNK_BLOCKS)
    out = bytearray(len(zeros) + 15)
    last = block
    enc = Cipher(algorithms.AES(seed), modes.CBC(block)).encryptor()
    remaining = rounds
    while remaining:
        n = min(remaining, _CHUNK_BLOCKS)
        written = enc.update_into(zeros[: 16 * n], out)
        last = bytes(out[written - 16 : written])
        remaining -= n
    return last


def aes_kdf(seed: bytes, rounds: int, composite: bytes) -> bytes:
    """KeePass AES-KDF: SHA-256 of each 16-byte half of ``composite`` AES-ECB'd ``rounds`` times.

    The two halves are independent, so the second runs on a thread beside the first, as
    KeePassXC does (src/crypto/kdf/AesKdf.cpp): cryptography (≥ 45) releases the GIL in
    ``update_into``, so on two cores the KDF takes half the time; where it does not, the
    threads merely take turns and the result is the same.
    """
    import threading

    second: list[bytes] = []
    failure: list[BaseException] = []

    def run_second() -> None:
        try:
            second.append(_aes_rounds(seed, composite[16:32], rounds))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run_second, name="otpbridge-aes-kdf", daemon=True)
    worker.start()
    first = _aes_rounds(seed, composite[:16], rounds)
    worker.join()
    if failure:
        raise failure[0]
    return hashlib.sha256(first + second[0]).digest()


def composite_key(password: Secret | None, keyfile: Path | None) -> bytes:
    """SHA-256(SHA-256(password) ‖ keyfile key), with pykeepass's keyfile formats (XML v1/v2, raw, hex, hashed)."""
    if keyfile is None:
        # pykeepass's rule without a key file, computed here so reading never imports
        # pykeepass (and construct): about 0.1 s of start-up.
        pw = b"" if password is None else hashlib.sha256(password.reveal().encode("utf-8")).digest()
        return hashlib.sha256(pw).digest()
    from pykeepass.kdbx_parsing.common import compute_key_composite

    if not keyfile.is_file():
        raise UsageError(f"the key file {str(keyfile)!r} does not exist or is not a file")
    try:
        return compute_key_composite(
            password=None if password is None else password.reveal(),
            keyfile=None if keyfile is None else str(keyfile),
        )
    except (AssertionError, OSError, ValueError, TypeError):
        # pykeepass asserts on a v2 key file whose hash does not match.
        raise UsageError(f"the key file {str(keyfile)!r} cannot be read or is damaged") from None


def derive(kdf: KdfParams, composite: bytes) -> bytes:
    check_kdf(kdf)
    if kdf.kind == "aes":
        return aes_kdf(kdf.salt, kdf.rounds, composite)
    import argon2.exceptions
    import argon2.low_level as a2

    try:
        return a2.hash_secret_raw(
            secret=composite,
            salt=kdf.salt,
            hash_len=32,
            type=a2.Type.D if kdf.kind == "argon2d" else a2.Type.ID,
            time_cost=kdf.iterations,
            memory_cost=kdf.memory // 1024,
            parallelism=kdf.parallelism,
            version=kdf.version,
        )
    except argon2.exceptions.HashingError as exc:  # parameters the header got past check_kdf
        raise FormatError(f"the database's Argon2 settings are unusable ({exc})") from None


# -- open and save ------------------------------------------------------------------------


def require_pykeepass() -> None:
    try:
        import pykeepass  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "KeePass support needs the Python package 'pykeepass'", hint="pip install 'otpbridge[keepass]'"
        ) from None


@dataclass
class OpenDatabase:
    """An open pykeepass database plus what we need to save it again."""

    kp: object  # pykeepass.PyKeePass
    header: Header
    password: Secret | None
    keyfile: Path | None


def open_database(
    data: bytes, password: Secret | None, keyfile: Path | None, label: str, *, transformed: bytes | None = None
) -> OpenDatabase:
    """Decrypt ``data``; AuthenticationError for wrong credentials, FormatError for damage.

    ``transformed``: a transformed key already known (pykeepass's public blank template).
    """
    require_pykeepass()
    header = read_header(data)
    if transformed is not None:
        return OpenDatabase(_parse(data, password, keyfile, transformed, label), header, password, keyfile)
    candidates = [password]
    if keyfile is not None and not password:
        # KeePassXC's GUI leaves an empty password out of the key, its CLI puts it in:
        # with a key file, try the other reading of "no password" before giving up.
        candidates.append(Secret("") if password is None else None)
    last_error: Exception | None = None
    for candidate in candidates:
        composite = composite_key(candidate, keyfile)
        transformed = derive(header.kdf, composite)
        try:
            kp = _parse(data, candidate, keyfile, transformed, label)
        except AuthenticationError as exc:
            last_error = exc
            continue
        return OpenDatabase(kp, header, candidate, keyfile)
    assert last_error is not None
    raise last_error


def _parse(data: bytes, password: Secret | None, keyfile: Path | None, transformed: bytes, label: str):
    from construct import ChecksumError
    from pykeepass import PyKeePass
    from pykeepass.exceptions import CredentialsError, HeaderChecksumError, PayloadChecksumError

    try:
        return PyKeePass(
            io.BytesIO(data),
            password=None if password is None else password.reveal(),
            keyfile=None if keyfile is None else str(keyfile),
            transformed_key=transformed,
        )
    except CredentialsError:
        raise AuthenticationError(
            f"wrong password or key file for {label}", hint="check ?keyfile= and the password source"
        ) from None
    except HeaderChecksumError:
        raise FormatError(f"{label}: the database header is damaged or was tampered with") from None
    except PayloadChecksumError:
        raise FormatError(f"{label}: the database contents are damaged (checksum mismatch)") from None
    except ChecksumError as exc:
        if str(getattr(exc, "path", "")).endswith("cred_check"):
            raise AuthenticationError(f"wrong password or key file for {label}") from None
        raise FormatError(f"{label}: the database is damaged (checksum mismatch)") from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - construct/zlib/lxml/crypto errors on damaged input
        raise FormatError(f"{label}: the database is damaged ({type(exc).__name__})") from None


# -- reading without pykeepass ------------------------------------------------------------
#
# ``otpbridge list``/``code``/``sync`` only read a database. pykeepass parses it with
# construct and decrypts each protected value with its own cipher call and regex, which
# for 10,000 entries costs more than the whole rest of the read (and its import alone
# about 0.1 s). This reader does the same steps natively and in bulk: block HMACs (KDBX 4)
# or block hashes (3.1), one ``cryptography`` call for the payload, zlib, one lxml parse
# with pykeepass's parser settings, and one stream-cipher call for all protected values
# together (the inner stream is a plain keystream consumed in document order, so the
# concatenation of the values decrypts in one call). The tree it gives is the one
# pykeepass gives, so the same walker reads both. Writing still goes through pykeepass.

CIPHER_AES256 = bytes.fromhex("31c1f2e6bf714350be5805216afc5aff")
CIPHER_CHACHA20 = bytes.fromhex("d6038a2b8b6f4cb5a524339a31dbb59a")
_STREAM_NONE, _STREAM_SALSA20, _STREAM_CHACHA20 = 0, 2, 3
_SALSA20_NONCE = bytes.fromhex("e830094b97205d2a")
# pykeepass drops characters XML cannot hold from decrypted values; so do we (same set).
_XML_INVALID = None


class _WrongKey(Exception):
    """The key does not open this database (header HMAC or stream start bytes differ)."""


@dataclass
class ReadOnlyDatabase:
    """What :func:`open_for_reading` gives: the XML tree (protected values decrypted)."""

    tree: object  # lxml ElementTree, as ``PyKeePass.tree``
    version: tuple[int, int]


def _kdbx4_payload(data: bytes, fields: dict[int, bytes], start: int, transformed: bytes) -> tuple[bytes, bytes]:
    """(cipher id, ciphertext) of a KDBX 4 file after checking the header HMAC and every block's."""
    import hmac

    seed = fields.get(4, b"")
    if len(seed) != 32:
        raise FormatError("the database's master seed has the wrong length")
    base = hashlib.sha512(seed + transformed + b"\x01").digest()
    _need(data, start, 64)
    header_key = hashlib.sha512(b"\xff" * 8 + base).digest()
    if not hmac.compare_digest(hmac.new(header_key, data[:start], hashlib.sha256).digest(), data[start + 32 : start + 64]):
        raise _WrongKey
    pos, index, blocks = start + 64, 0, []
    while True:
        _need(data, pos, 36)
        mac = data[pos : pos + 32]
        (size,) = struct.unpack_from("<i", data, pos + 32)
        _need(data, pos + 36, size)
        block = data[pos + 36 : pos + 36 + size]
        idx = struct.pack("<Q", index)
        key = hashlib.sha512(idx + base).digest()
        if not hmac.compare_digest(hmac.new(key, idx + data[pos + 32 : pos + 36] + block, hashlib.sha256).digest(), mac):
            raise FormatError("the database contents are damaged (checksum mismatch)")
        pos += 36 + size
        index += 1
        if size == 0:
            return fields.get(2, b""), b"".join(blocks)
        blocks.append(block)


def _decrypt(cipher_id: bytes, key: bytes, iv: bytes, payload: bytes, *, padded: bool) -> bytes | None:
    """The payload decrypted (AES-256-CBC or ChaCha20); None for a cipher we leave to pykeepass."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if cipher_id == CIPHER_AES256:
        if len(iv) != 16 or len(payload) % 16:
            raise FormatError("the database's encrypted payload is damaged")
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        plain = dec.update(payload) + dec.finalize()
        if padded:
            pad = plain[-1] if plain else 0
            if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:  # the key was checked by the HMAC
                raise FormatError("the database contents are damaged (bad padding)")
            plain = plain[:-pad]
        return plain
    if cipher_id == CIPHER_CHACHA20:
        if len(iv) != 12:
            raise FormatError("the database's ChaCha20 nonce has the wrong length")
        return Cipher(algorithms.ChaCha20(key, bytes(4) + iv), mode=None).decryptor().update(payload)
    return None


def _unhash_blocks(data: bytes) -> bytes:
    """KDBX 3.1 hashed block stream: index, SHA-256, size, data; ends with an empty block."""
    pos, blocks = 0, []
    while True:
        _need(data, pos, 40)
        digest = data[pos + 4 : pos + 36]
        (size,) = struct.unpack_from("<i", data, pos + 36)
        _need(data, pos + 40, size)
        if size == 0:
            if digest != bytes(32):
                raise FormatError("the database contents are damaged (checksum mismatch)")
            return b"".join(blocks)
        block = data[pos + 40 : pos + 40 + size]
        if hashlib.sha256(block).digest() != digest:
            raise FormatError("the database contents are damaged (checksum mismatch)")
        blocks.append(block)
        pos += 40 + size


def _unprotect(root, stream_id: int, stream_key: bytes) -> None:
    """Decrypt every ``Value Protected="True"`` in document order, as pykeepass does, in one cipher call."""
    global _XML_INVALID
    import binascii
    import re

    if stream_id == _STREAM_NONE:
        return
    values, pieces = [], []
    for elem in root.iter("Value"):
        if elem.get("Protected") == "True" and elem.text is not None:
            try:
                raw = base64.b64decode(elem.text)
            except (binascii.Error, ValueError):
                continue  # pykeepass leaves such a value as it is (and consumes no keystream)
            values.append((elem, len(raw)))
            pieces.append(raw)
    if not values:
        return
    if stream_id == _STREAM_CHACHA20:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

        digest = hashlib.sha512(stream_key).digest()
        plain = Cipher(algorithms.ChaCha20(digest[:32], bytes(4) + digest[32:44]), mode=None).decryptor().update(b"".join(pieces))
    elif stream_id == _STREAM_SALSA20:
        from Cryptodome.Cipher import Salsa20  # a pykeepass dependency; cryptography has no Salsa20

        plain = Salsa20.new(key=hashlib.sha256(stream_key).digest(), nonce=_SALSA20_NONCE).decrypt(b"".join(pieces))
    else:
        raise FormatError("the database protects its values with an unsupported stream cipher")
    if _XML_INVALID is None:
        _XML_INVALID = re.compile("[^\u0020-\uD7FF\u0009\u000A\u000D\uE000-\uFFFD\U00010000-\U0010FFFF]+")
    strip = _XML_INVALID.sub
    pos = 0
    for elem, n in values:
        chunk = plain[pos : pos + n]
        pos += n
        try:
            elem.text = strip("", chunk.decode("utf-8"))
        except UnicodeDecodeError:
            continue  # as pykeepass: left as it was


def _read_plain(data: bytes, header: Header, fields: dict[int, bytes], transformed: bytes):
    """The decrypted tree of ``data``, or None when pykeepass must do it (Twofish)."""
    import zlib

    from lxml import etree

    seed = fields.get(4, b"")
    if len(seed) != 32:
        raise FormatError("the database's master seed has the wrong length")
    master = hashlib.sha256(seed + transformed).digest()
    iv = fields.get(7, b"")
    if header.major == 4:
        cipher_id, payload = _kdbx4_payload(data, fields, header.length, transformed)
        plain = _decrypt(cipher_id, master, iv, payload, padded=True)
    else:
        cipher_id = fields.get(2, b"")
        plain = _decrypt(cipher_id, master, iv, data[header.length :], padded=False)
        if plain is not None:
            start = fields.get(9, b"")
            if len(start) != 32 or len(plain) < 32 or plain[:32] != start:
                raise _WrongKey
            if cipher_id == CIPHER_AES256:
                pad = plain[-1]
                if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
                    raise FormatError("the database contents are damaged (bad padding)")
                plain = plain[:-pad]
            plain = _unhash_blocks(plain[32:])
    if plain is None:
        return None
    flags = fields.get(3, b"\0\0\0\0")
    if len(flags) != 4 or struct.unpack("<I", flags)[0] > 1:
        raise FormatError("the database uses an unknown compression")
    if flags[0] == 1:
        plain = zlib.decompress(plain, 16 + zlib.MAX_WBITS)
    if header.major == 4:
        pos, inner = 0, {}
        while True:
            _need(plain, pos, 5)
            kind = plain[pos]
            (size,) = struct.unpack_from("<i", plain, pos + 1)
            _need(plain, pos + 5, size)
            if kind != 3:  # 3: attachments, not needed to read OTP fields
                inner.setdefault(kind, plain[pos + 5 : pos + 5 + size])
            pos += 5 + size
            if kind == 0:
                break
        xml = plain[pos:]
        stream_id_raw, stream_key = inner.get(1, b""), inner.get(2, b"")
    else:
        xml = plain
        stream_id_raw, stream_key = fields.get(10, b""), fields.get(8, b"")
    stream_id = struct.unpack("<I", stream_id_raw)[0] if len(stream_id_raw) == 4 else _STREAM_NONE
    root = etree.fromstring(xml, etree.XMLParser(remove_blank_text=True, resolve_entities=False))
    _unprotect(root, stream_id, stream_key)
    return root.getroottree()


def open_for_reading(data: bytes, password: Secret | None, keyfile: Path | None, label: str):
    """Decrypt ``data`` for reading only: a :class:`ReadOnlyDatabase` (or pykeepass's object
    for ciphers this reader leaves to it). Same checks and errors as :func:`open_database`:
    KDF bounds before derivation, header checksum and HMAC, every block's HMAC or hash."""
    header, fields = _read_header_fields(data)
    candidates = [password]
    if keyfile is not None and not password:
        candidates.append(Secret("") if password is None else None)  # see open_database
    for i, candidate in enumerate(candidates):
        transformed = derive(header.kdf, composite_key(candidate, keyfile))
        try:
            tree = _read_plain(data, header, fields, transformed)
        except _WrongKey:
            if i + 1 < len(candidates):
                continue
            raise AuthenticationError(
                f"wrong password or key file for {label}", hint="check ?keyfile= and the password source"
            ) from None
        except FormatError as exc:
            raise FormatError(f"{label}: {exc.message}") from None
        except ImportError:  # lxml, cryptography and pycryptodomex come with pykeepass
            require_pykeepass()
            raise
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - zlib/lxml/crypto errors on damaged input
            raise FormatError(f"{label}: the database is damaged ({type(exc).__name__})") from None
        if tree is None:
            require_pykeepass()
            return _parse(data, candidate, keyfile, transformed, label)
        return ReadOnlyDatabase(tree, (header.major, header.minor))
    raise AssertionError("unreachable")


def set_argon2(db: OpenDatabase, *, memory: int, iterations: int, parallelism: int) -> None:
    """Change an Argon2 database's cost (used for new databases)."""
    params = db.kp.kdbx.header.value.dynamic_header.kdf_parameters.data.dict  # type: ignore[attr-defined]
    params["M"].value, params["I"].value, params["P"].value = memory, iterations, parallelism
    kdf = KdfParams(**{**db.header.kdf.__dict__, "memory": memory, "iterations": iterations, "parallelism": parallelism})
    check_kdf(kdf)
    db.header = Header(db.header.major, db.header.minor, kdf, db.header.length)


def rotate_kdf_salt(db: OpenDatabase) -> KdfParams:
    """Give the KDF a fresh salt (as KeePass does on every save); return the new parameters."""
    kdbx = db.kp.kdbx  # type: ignore[attr-defined]
    salt = os.urandom(32)
    dynamic = kdbx.header.value.dynamic_header
    if kdbx.header.value.major_version >= 4:
        dynamic.kdf_parameters.data.dict["S"].value = salt
    else:
        dynamic.transform_seed.data = salt
    kdf = KdfParams(**{**db.header.kdf.__dict__, "salt": salt})
    db.header = Header(db.header.major, db.header.minor, kdf, db.header.length)
    return kdf


def serialize(db: OpenDatabase) -> bytes:
    """The database as bytes, freshly salted and seeded, its KDF and cipher settings kept."""
    from pykeepass.kdbx_parsing import KDBX
    from pykeepass.kdbx_parsing.common import rotate_seeds

    kp = db.kp
    kdf = rotate_kdf_salt(db)
    transformed = derive(kdf, composite_key(db.password, db.keyfile))
    rotate_seeds(kp.kdbx, rotate_kdf_salt=False)  # type: ignore[attr-defined]
    password = None if db.password is None else db.password.reveal()
    keyfile = None if db.keyfile is None else str(db.keyfile)

    def build() -> bytes:
        buf = io.BytesIO()
        KDBX.build_stream(
            kp.kdbx, buf, password=password, keyfile=keyfile, transformed_key=transformed, decrypt=True  # type: ignore[attr-defined]
        )
        return buf.getvalue()

    if db.header.major == 3:
        # KDBX 3.1 authenticates the header through a hash inside the XML: build once to
        # learn the new header, store its hash, build again (seeds unchanged, so the
        # header is byte-identical).
        meta = kp.tree.getroot().find("Meta")  # type: ignore[attr-defined]
        first = build()
        digest = base64.b64encode(hashlib.sha256(first[: read_header(first).length]).digest()).decode()
        hh = meta.find("HeaderHash")
        if hh is None:
            from lxml import etree

            hh = etree.SubElement(meta, "HeaderHash")
        hh.text = digest
    return build()
