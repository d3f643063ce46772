"""The vault container format v1: every byte of backup cryptography lives here.

Byte layout, reasoning and error semantics are specified in ``docs/FORMAT.md``; keep the
two in step (``tests/independent_reader.py`` decrypts the golden vectors from FORMAT.md
alone, and ``tests/vectors/vault/`` pins the bytes).

Shape, in one breath: passphrase --Argon2id--> 32 bytes --HKDF--> wrap key, wrap nonce
and a key-commitment check value; the wrap key seals a random 32-byte *vault key*, one
per epoch, in an authenticated *epoch header*. Every object gets a random 32-byte salt;
HKDF(vault key, salt) gives a fresh AES-256-GCM key, nonce and check value, so no nonce
is ever stored, counted or reused across writers or rollbacks. The associated data binds
each object to vault id, epoch, kind, device and sequence number.

Python cannot wipe ``bytes``; keys live as long as their :class:`VaultKey` does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from otpbridge.core.errors import (
    AuthenticationError,
    IntegrityError,
    MissingDependencyError,
    OtpBridgeError,
    UsageError,
)
from otpbridge.core.secrets import Secret

FORMAT_VERSION: int = 1

Rng = Callable[[int], bytes]
Clock = Callable[[], float]

# --- constants (docs/FORMAT.md §2) -------------------------------------------------------

HEADER_MAGIC = b"otpbEPCH"
OBJECT_MAGIC = b"otpbOBJT"
KDF_ARGON2ID = 1  # Argon2id, version 1.3 (0x13), no secret, no associated data
AEAD_AES256GCM = 1

VAULT_ID_LEN = 16
VAULT_KEY_LEN = 32
OBJECT_SALT_LEN = 32
HEADER_SALT_LEN = 32  # written; 16..64 accepted on read
CHECK_LEN = 32
TAG_LEN = 16
NONCE_LEN = 12

HKDF_INFO_KEK = b"otpbridge/vault/v1/kek"
HKDF_INFO_OBJECT = b"otpbridge/vault/v1/object"

# Padding (FORMAT.md §6): u32 length prefix, then zeros up to a power of two, 16 KiB at
# least. 16 KiB holds ~60-100 serialised accounts, so most vaults are one size.
PAD_MIN = 16 * 1024
PAD_MAX = 256 * 1024 * 1024
LEN_PREFIX = 4

# Bounds checked on every header BEFORE deriving (FORMAT.md §4). The floor is what the
# insecure-test preset needs: a derived key never leaves this process, so a downgraded
# header can only fail to unwrap, never leak a cheap hash. The ceiling stops a hostile
# remote from making us allocate gigabytes or spin for minutes (age caps scrypt at 22):
# it is exactly the ``strong`` preset, the most any otpbridge writes, so a planted header
# costs at most what the strongest real one does (and the engine derives at most twice a
# run, docs/SYNC.md "Epoch headers").
MIN_MEMORY_KIB = 8 * 1024
MAX_MEMORY_KIB = 1024 * 1024
MIN_ITERATIONS, MAX_ITERATIONS = 1, 4
MIN_LANES, MAX_LANES = 1, 4
MIN_SALT_LEN, MAX_SALT_LEN = 16, 64
MAX_EPOCH = 2**63 - 1
MAX_SEQ = 2**64 - 1

INSECURE_ENV = "OTPBRIDGE_ALLOW_INSECURE_KDF"

_FIXED = struct.Struct(">8sBBIIIB")  # magic, version, kdf id, memory KiB, iterations, lanes, salt len
_TAIL = struct.Struct(">16sQQ")  # vault id, epoch, created (unix seconds)
_OBJ_PREFIX = struct.Struct(">8sBB16sQ32s32s")  # magic, version, aead, vault id, epoch, salt, check
OBJECT_OVERHEAD = _OBJ_PREFIX.size + TAG_LEN  # 114 bytes (plus padding)


# --- errors ------------------------------------------------------------------------------


class WrongPassphrase(AuthenticationError):
    """The passphrase does not open this epoch header (exit 3).

    Also what a deliberately re-checksummed header with altered KDF salt or parameters
    looks like: the derived key changes, which is indistinguishable from a wrong
    passphrase (FORMAT.md §7).
    """


class VaultIntegrityError(IntegrityError):
    """Damaged, tampered, truncated, out-of-bounds or misplaced vault data (exit 4)."""


def integrity_error(reason: str) -> VaultIntegrityError:
    return VaultIntegrityError(
        f"vault data failed the integrity check: {reason}",
        hint="the remote copy is damaged or was tampered with; run 'otpbridge verify'",
    )


# --- KDF parameters ----------------------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: memory in KiB, passes, lanes (RFC 9106 names: m, t, p)."""

    memory_kib: int
    iterations: int
    lanes: int

    def problems(self) -> list[str]:
        out = []
        if not isinstance(self.memory_kib, int) or not MIN_MEMORY_KIB <= self.memory_kib <= MAX_MEMORY_KIB:
            out.append(f"memory {self.memory_kib} KiB outside {MIN_MEMORY_KIB}..{MAX_MEMORY_KIB}")
        if not isinstance(self.iterations, int) or not MIN_ITERATIONS <= self.iterations <= MAX_ITERATIONS:
            out.append(f"iterations {self.iterations} outside {MIN_ITERATIONS}..{MAX_ITERATIONS}")
        if not isinstance(self.lanes, int) or not MIN_LANES <= self.lanes <= MAX_LANES:
            out.append(f"lanes {self.lanes} outside {MIN_LANES}..{MAX_LANES}")
        return out

    def describe(self) -> str:
        mem = self.memory_kib
        size = f"{mem // 1024} MiB" if mem % 1024 == 0 else f"{mem} KiB"
        return f"Argon2id {size}, t={self.iterations}, p={self.lanes}"


# default: 4x RFC 9106's second option; measured 0.57-0.64 s on a 2-vCPU EPYC (notes §4),
# a one-off cost per sync that buys 4x the memory-hardness of Bitwarden/Borg.
PRESETS: Mapping[str, KdfParams] = MappingProxyType(
    {
        "default": KdfParams(memory_kib=256 * 1024, iterations=3, lanes=4),
        "strong": KdfParams(memory_kib=1024 * 1024, iterations=4, lanes=4),
        "insecure-test": KdfParams(memory_kib=8 * 1024, iterations=1, lanes=1),
    }
)


def choose_params(preset: str = "default", environ: Mapping[str, str] | None = None) -> KdfParams:
    """The parameters for NEW wraps; never taken from a remote (downgrade guard)."""
    env = os.environ if environ is None else environ
    if preset not in PRESETS:
        raise UsageError(
            f"unknown KDF preset {preset!r}", hint="choose default or strong"
        )
    if preset == "insecure-test" and env.get(INSECURE_ENV) != "1":
        raise UsageError(
            "the 'insecure-test' KDF preset is for tests only",
            hint=f"set {INSECURE_ENV}=1 to allow it (never for real secrets)",
        )
    return PRESETS[preset]


def derive_master(passphrase: Secret, salt: bytes, params: KdfParams) -> bytes:
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
    except ImportError:  # cryptography < 44
        raise MissingDependencyError(
            "this cryptography library has no Argon2id", hint="pip install 'cryptography>=44'"
        ) from None
    try:
        kdf = Argon2id(
            salt=salt,
            length=32,
            iterations=params.iterations,
            lanes=params.lanes,
            memory_cost=params.memory_kib,
        )
        return kdf.derive(passphrase.encode())
    except UnsupportedAlgorithm:
        raise MissingDependencyError(
            "Argon2id needs cryptography built against OpenSSL 3.2 or newer",
            hint="pip install --force-reinstall 'cryptography>=44' (the wheels bundle it)",
        ) from None
    except MemoryError:
        raise OtpBridgeError(
            f"not enough memory to derive the vault key ({params.describe()})",
            hint="run on a machine with more free memory",
        ) from None


def hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def split_keys(okm: bytes) -> tuple[bytes, bytes, bytes]:
    """key (32) | nonce (12) | key-commitment check value (32)."""
    return okm[:32], okm[32:44], okm[44:76]


_OKM_LEN = 32 + NONCE_LEN + CHECK_LEN


# --- epoch header ------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochInfo:
    """What a header says without any key: enough to name, order and cost an epoch."""

    vault_id: bytes
    epoch: int
    params: KdfParams
    created: int  # unix seconds, from the creator's clock
    digest: str  # SHA-256 of the header bytes, hex

    @property
    def vault_id_hex(self) -> str:
        return self.vault_id.hex()


@dataclass(frozen=True)
class _Header:
    info: EpochInfo
    salt: bytes
    ad: bytes  # bytes before the wrapped key: the unwrap's associated data
    check: bytes
    wrapped: bytes


def _header_len(salt_len: int) -> int:
    return _FIXED.size + salt_len + _TAIL.size + CHECK_LEN + VAULT_KEY_LEN + TAG_LEN + 32


def _parse_header(header: bytes) -> _Header:
    if not isinstance(header, (bytes, bytearray, memoryview)):
        raise integrity_error("epoch header is not bytes")
    header = bytes(header)
    if len(header) < _FIXED.size or not header.startswith(HEADER_MAGIC):
        raise integrity_error("not an otpbridge epoch header")
    magic, version, kdf_id, memory, iterations, lanes, salt_len = _FIXED.unpack_from(header)
    if version != FORMAT_VERSION:
        raise integrity_error(
            f"epoch header format version {version} is not supported (this reads {FORMAT_VERSION})"
        )
    if not MIN_SALT_LEN <= salt_len <= MAX_SALT_LEN:
        raise integrity_error(f"epoch header salt length {salt_len} outside {MIN_SALT_LEN}..{MAX_SALT_LEN}")
    if len(header) != _header_len(salt_len):
        raise integrity_error(
            f"epoch header is {len(header)} bytes, expected {_header_len(salt_len)} (truncated or extended)"
        )
    digest_at = len(header) - 32
    if not hmac.compare_digest(hashlib.sha256(header[:digest_at]).digest(), header[digest_at:]):
        raise integrity_error("epoch header checksum mismatch (corrupted)")
    if kdf_id != KDF_ARGON2ID:
        raise integrity_error(f"unknown KDF id {kdf_id}")
    params = KdfParams(memory_kib=memory, iterations=iterations, lanes=lanes)
    bad = params.problems()
    if bad:  # before any derivation: a hostile header must not cost us memory or time
        raise integrity_error("KDF parameters out of bounds: " + "; ".join(bad))
    off = _FIXED.size
    salt = header[off : off + salt_len]
    off += salt_len
    vault_id, epoch, created = _TAIL.unpack_from(header, off)
    off += _TAIL.size
    if not 1 <= epoch <= MAX_EPOCH:
        raise integrity_error(f"epoch number {epoch} out of range")
    check = header[off : off + CHECK_LEN]
    off += CHECK_LEN
    ad = header[:off]
    wrapped = header[off : off + VAULT_KEY_LEN + TAG_LEN]
    info = EpochInfo(
        vault_id=vault_id,
        epoch=epoch,
        params=params,
        created=created,
        digest=hashlib.sha256(header).hexdigest(),
    )
    return _Header(info=info, salt=salt, ad=ad, check=check, wrapped=wrapped)


def peek_epoch(header: bytes) -> EpochInfo:
    """Read a header's public fields (checksum and bounds verified, nothing decrypted).
    For a version-2 header (key slots), ``params`` are its costliest passphrase slot's."""
    from otpbridge.vault import keyring

    if isinstance(header, (bytes, bytearray)) and keyring.is_v2(bytes(header)):
        parsed = keyring.parse_header(bytes(header))
        return EpochInfo(parsed.vault_id, parsed.epoch, parsed.strongest or PRESETS["insecure-test"],
                         parsed.created, parsed.digest)
    return _parse_header(header).info


# --- the vault key and objects -----------------------------------------------------------


def _check_name(value: str, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise ValueError(f"{what} must be 1..{limit} characters")
    raw = value.encode("ascii", "strict") if value.isascii() else b""
    if not raw or any(c < 0x21 or c > 0x7E for c in raw):
        raise ValueError(f"{what} must be printable ASCII without spaces")
    return raw


def _context(kind: str, device: str, seq: int) -> bytes:
    k = _check_name(kind, "object kind", 32)
    d = _check_name(device, "device id", 255)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number must be an integer in 0..{MAX_SEQ}")
    return bytes([len(k)]) + k + bytes([len(d)]) + d + struct.pack(">Q", seq)


def _bucket(n: int) -> int:
    need = max(n + LEN_PREFIX, PAD_MIN)
    return 1 << (need - 1).bit_length()


def max_object_size() -> int:
    """No valid sealed object is bigger: a listing alone can refuse a huge one unread."""
    return _OBJ_PREFIX.size + PAD_MAX + TAG_LEN


def max_header_size() -> int:
    """The largest epoch header of either version: a version-2 header with its most key
    slots and largest keyring (vault/keyring.py) stays under 32 KiB."""
    return max(_header_len(MAX_SALT_LEN), 32 * 1024)


def padded_size(plaintext_len: int) -> int:
    """Size of the sealed object for a plaintext of this length (for docs, tests and the engine)."""
    return _OBJ_PREFIX.size + _bucket(plaintext_len) + TAG_LEN


@dataclass(frozen=True)
class ObjectInfo:
    vault_id: bytes
    epoch: int


def peek_object(blob: bytes) -> ObjectInfo:
    """Which vault and epoch an object claims to belong to (unauthenticated until opened)."""
    _, _, _, vault_id, epoch, _, _ = _parse_object(blob)
    return ObjectInfo(vault_id=vault_id, epoch=epoch)


def _parse_object(blob: bytes):
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise integrity_error("object is not bytes")
    blob = bytes(blob)
    if len(blob) < _OBJ_PREFIX.size or not blob.startswith(OBJECT_MAGIC):
        raise integrity_error("not an otpbridge vault object")
    magic, version, aead, vault_id, epoch, salt, check = _OBJ_PREFIX.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise integrity_error(f"object format version {version} is not supported (this reads {FORMAT_VERSION})")
    if aead != AEAD_AES256GCM:
        raise integrity_error(f"unknown cipher id {aead}")
    body = len(blob) - _OBJ_PREFIX.size - TAG_LEN
    if body < PAD_MIN or body > PAD_MAX or body & (body - 1):
        raise integrity_error("object has an impossible length (truncated or extended)")
    return blob, version, aead, vault_id, epoch, salt, check


class VaultKey:
    """The unwrapped per-epoch key. Its repr names the vault and epoch, never the key."""

    __slots__ = ("vault_id", "epoch", "_key", "header_digest", "slot", "keyring")

    def __init__(self, vault_id: bytes, epoch: int, key: bytes, header_digest: str = "") -> None:
        if len(vault_id) != VAULT_ID_LEN or len(key) != VAULT_KEY_LEN:
            raise ValueError("bad vault id or key length")
        self.vault_id = bytes(vault_id)
        self.epoch = int(epoch)
        self._key = bytes(key)
        self.header_digest = header_digest
        self.slot = ""  # the key slot that opened a version-2 header (vault/keyring.py)
        self.keyring = None  # its keyring; None for a version-1 header (one passphrase)

    def rewrap(self, build):
        """Hand the raw key to ``build`` (vault/keyring.py writing a version-2 header for
        this epoch's key, e.g. at re-key); the key never leaves through an attribute."""
        return build(self._key)

    def __repr__(self) -> str:
        return f"VaultKey(vault_id={self.vault_id.hex()}, epoch={self.epoch})"

    __str__ = __repr__

    def __reduce__(self):  # never pickle a key by accident
        raise TypeError("VaultKey cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, VaultKey)
            and (self.vault_id, self.epoch) == (other.vault_id, other.epoch)
            and hmac.compare_digest(self._key, other._key)
        )

    __hash__ = None  # type: ignore[assignment]

    def _object_keys(self, salt: bytes) -> tuple[bytes, bytes, bytes]:
        return split_keys(hkdf(self._key, salt, HKDF_INFO_OBJECT, _OKM_LEN))

    def seal(self, kind: str, device: str, seq: int, plaintext: bytes, *, rng: Rng = os.urandom) -> bytes:
        """Encrypt one object bound to (vault, epoch, kind, device, seq)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            context = _context(kind, device, seq)
        except ValueError as exc:
            raise UsageError(f"cannot seal a vault object: {exc}") from None
        plaintext = bytes(plaintext)
        size = _bucket(len(plaintext))
        if size > PAD_MAX:
            raise UsageError(f"a vault object holds at most {PAD_MAX - LEN_PREFIX} bytes of plaintext")
        salt = rng(OBJECT_SALT_LEN)
        if len(salt) != OBJECT_SALT_LEN:
            raise ValueError("rng returned the wrong number of bytes")
        key, nonce, check = self._object_keys(salt)
        prefix = _OBJ_PREFIX.pack(
            OBJECT_MAGIC, FORMAT_VERSION, AEAD_AES256GCM, self.vault_id, self.epoch, salt, check
        )
        padded = struct.pack(">I", len(plaintext)) + plaintext + bytes(size - LEN_PREFIX - len(plaintext))
        return prefix + AESGCM(key).encrypt(nonce, padded, prefix + context)

    def open(self, blob: bytes, *, kind: str, device: str, seq: int) -> bytes:
        """Decrypt one object, or raise VaultIntegrityError; never returns partial plaintext."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            context = _context(kind, device, seq)
        except ValueError as exc:
            raise integrity_error(f"impossible object name ({exc})") from None
        blob, _, _, vault_id, epoch, salt, check = _parse_object(blob)
        if vault_id != self.vault_id:
            raise integrity_error("object belongs to another vault")
        if epoch != self.epoch:
            raise integrity_error(f"object belongs to epoch {epoch}, not {self.epoch}")
        key, nonce, want = self._object_keys(salt)
        if not hmac.compare_digest(check, want):  # key commitment, before any decryption
            raise integrity_error("object key check failed (tampered, or sealed under another key)")
        prefix = blob[: _OBJ_PREFIX.size]
        try:
            padded = AESGCM(key).decrypt(nonce, blob[_OBJ_PREFIX.size :], prefix + context)
        except InvalidTag:
            raise integrity_error(
                f"object did not authenticate as {kind} #{seq} of device {device!r} (tampered or swapped)"
            ) from None
        (n,) = struct.unpack_from(">I", padded)
        end = LEN_PREFIX + n
        # Authenticated already, so a bad length or non-zero padding means a writer bug.
        if end > len(padded) or padded[end:].count(0) != len(padded) - end:
            raise integrity_error("object padding is malformed")
        return padded[LEN_PREFIX:end]


# --- key cache ---------------------------------------------------------------------------


class KeyCache:
    """Unwrapped keys for this process, so each (header, passphrase) costs one derivation.

    Not module-global on purpose: the engine owns its lifetime. Passphrases are never
    stored; the slot is HMAC(random per-cache key, passphrase), useless outside this object.
    """

    def __init__(self) -> None:
        self._secret = os.urandom(32)
        self._keys: dict[tuple[str, bytes], VaultKey] = {}
        self.lock = threading.Lock()

    def _slot(self, header_digest: str, passphrase: Secret) -> tuple[str, bytes]:
        kind = getattr(passphrase, "kind", "passphrase").encode() + b"\0"
        return header_digest, hmac.new(self._secret, kind + passphrase.encode(), hashlib.sha256).digest()

    def get(self, header_digest: str, passphrase: Secret) -> VaultKey | None:
        return self._keys.get(self._slot(header_digest, passphrase))

    def put(self, header_digest: str, passphrase: Secret, key: VaultKey) -> None:
        self._keys[self._slot(header_digest, passphrase)] = key

    def clear(self) -> None:
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyCache({len(self._keys)} keys)"


# --- epochs ------------------------------------------------------------------------------


def _kek(
    passphrase: Secret, salt: bytes, params: KdfParams, stats: Counter | None
) -> tuple[bytes, bytes, bytes]:
    from otpbridge.core.activity import step

    if stats is not None:
        stats["kdf"] += 1
    with step(f"key derivation (Argon2id, {params.memory_kib // 1024} MiB, {params.iterations} passes)"):
        master = derive_master(passphrase, salt, params)
    return split_keys(hkdf(master, None, HKDF_INFO_KEK, _OKM_LEN))


def create_epoch(
    passphrase: Secret,
    *,
    params: KdfParams,
    vault_id: bytes | None = None,
    epoch: int = 1,
    rng: Rng = os.urandom,
    clock: Clock = time.time,
    stats: Counter | None = None,
    cache: KeyCache | None = None,
) -> tuple[bytes, VaultKey]:
    """A new epoch: fresh vault key, wrapped under ``passphrase`` with the LOCAL params.

    New vault: ``vault_id=None`` draws one. Rotation: same vault id, ``epoch + 1``.
    With ``cache``, the new key is remembered so reading the header back costs nothing;
    pass no cache to prove the passphrase really unwraps it.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not isinstance(passphrase, Secret) or not passphrase:
        raise UsageError("the backup passphrase must not be empty")
    bad = params.problems()
    if bad:
        raise UsageError("KDF parameters out of bounds: " + "; ".join(bad))
    if not isinstance(epoch, int) or not 1 <= epoch <= MAX_EPOCH:
        raise UsageError(f"epoch must be in 1..{MAX_EPOCH}")
    vid = rng(VAULT_ID_LEN) if vault_id is None else bytes(vault_id)
    if len(vid) != VAULT_ID_LEN:
        raise UsageError(f"vault id must be {VAULT_ID_LEN} bytes")
    # Draw order is part of the golden vectors: salt, [vault id above], vault key.
    salt = rng(HEADER_SALT_LEN)
    vault_key = rng(VAULT_KEY_LEN)
    if len(salt) != HEADER_SALT_LEN or len(vault_key) != VAULT_KEY_LEN:
        raise ValueError("rng returned the wrong number of bytes")
    created = max(0, int(clock()))
    body = (
        _FIXED.pack(
            HEADER_MAGIC,
            FORMAT_VERSION,
            KDF_ARGON2ID,
            params.memory_kib,
            params.iterations,
            params.lanes,
            len(salt),
        )
        + salt
        + _TAIL.pack(vid, epoch, created)
    )
    wrap_key, nonce, check = _kek(passphrase, salt, params, stats)
    ad = body + check
    unsigned = ad + AESGCM(wrap_key).encrypt(nonce, vault_key, ad)
    header = unsigned + hashlib.sha256(unsigned).digest()
    digest = hashlib.sha256(header).hexdigest()
    key = VaultKey(vid, epoch, vault_key, digest)
    if cache is not None:
        with cache.lock:
            cache.put(digest, passphrase, key)
    return header, key


def open_epoch(
    header: bytes,
    passphrase: Secret,
    *,
    stats: Counter | None = None,
    cache: KeyCache | None = None,
    hint: str = "",
    max_derivations: int = 4,
    known_auth: str = "",
) -> VaultKey:
    """Parse, bound-check, derive (at most once per cache), check commitment, unwrap.

    A version-2 header (key slots, vault/keyring.py) opens with a passphrase, a recovery
    code (RecoveryKey) or a key file (IdentityKey); ``hint`` is the slot id to try first.
    A version-1 header opens with its one passphrase only."""
    from otpbridge.vault import keyring

    v2 = isinstance(header, (bytes, bytearray)) and keyring.is_v2(bytes(header))
    parsed = keyring.parse_header(bytes(header)) if v2 else _parse_header(header)
    digest = parsed.digest if v2 else parsed.info.digest

    def unwrap() -> VaultKey:
        if v2:
            return keyring.open_header(parsed, passphrase, hint=hint, stats=stats, known_auth=known_auth,
                                       max_derivations=max(1, min(max_derivations, keyring.MAX_PASSPHRASE_SLOTS)))
        if getattr(passphrase, "kind", "passphrase") != "passphrase":
            raise WrongPassphrase(
                f"this vault opens with its passphrase only (epoch {parsed.info.epoch}): it has no recovery "
                "code or key file", hint="'otpbridge key add' gives it more keys")
        return _unwrap(parsed, passphrase, stats)

    if cache is not None:
        with cache.lock:
            hit = cache.get(digest, passphrase)
            if hit is not None:
                return hit
            key = unwrap()
            cache.put(digest, passphrase, key)
            return key
    return unwrap()


def _unwrap(parsed: _Header, passphrase: Secret, stats: Counter | None) -> VaultKey:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    info = parsed.info
    wrap_key, nonce, check = _kek(passphrase, parsed.salt, info.params, stats)
    if not hmac.compare_digest(check, parsed.check):
        raise WrongPassphrase(
            f"the backup passphrase does not open this vault (epoch {info.epoch})",
            hint="check the passphrase; if it was changed on another device, use the new one",
        )
    try:
        vault_key = AESGCM(wrap_key).decrypt(nonce, parsed.wrapped, parsed.ad)
    except InvalidTag:
        # The passphrase is right (the check value matched), so the header was altered.
        raise integrity_error("epoch header did not authenticate (tampered)") from None
    return VaultKey(info.vault_id, info.epoch, vault_key, info.digest)


__all__ = [
    "FORMAT_VERSION",
    "PRESETS",
    "EpochInfo",
    "KdfParams",
    "KeyCache",
    "ObjectInfo",
    "VaultIntegrityError",
    "VaultKey",
    "WrongPassphrase",
    "choose_params",
    "create_epoch",
    "open_epoch",
    "padded_size",
    "peek_epoch",
    "peek_object",
]
