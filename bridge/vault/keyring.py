"""Epoch headers version 2: the vault key wrapped for several key slots.

A version-1 header (vault/format.py) wraps the epoch's vault key under one passphrase.
A version-2 header wraps it once per *slot*: passphrases (one per person of a shared
vault), a recovery code, age X25519 and OpenSSH ed25519 key files. docs/FORMAT.md §12
specifies every byte; ``tests/independent_reader.py`` reads them from that page alone.

Why public-key slots: removing a key must re-key the vault (a new epoch, a new vault key)
and wrap the new key for every *remaining* slot without their secrets, as restic's
``key remove`` cannot and LUKS's does not. Each passphrase or recovery slot therefore
holds an X25519 key pair whose private half is derived from the secret (Argon2id for a
passphrase, HKDF alone for a 160-bit recovery code) and whose public half is kept in the
*keyring*; whoever holds the current vault key wraps a new one to it (ECIES with HKDF and
AES-256-GCM). Key files are age recipients, wrapped by pyrage (the age implementation),
never by hand-written X25519.

Why the keyring is sealed: anyone who knows a slot's public key could wrap a key of
their own choosing to it and plant a header that the slot's owner opens - and then
upload secrets under a key the planter knows. The public keys, recipient strings and
names therefore travel only inside the header, sealed under the epoch's vault key and
bound to every slot's bytes: the cloud and anyone who never held a vault key cannot
forge a header. (A removed member knew the public keys: docs/SYNC.md "Shared vaults".)

Work is bounded before any derivation: at most MAX_SLOTS slots, MAX_PASSPHRASE_SLOTS of
them Argon2id-derived with parameters inside the version-1 bounds, and at most
``max_derivations`` tried per call; an age slot with an scrypt stanza is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from otpbridge.core.errors import IntegrityError, MissingDependencyError, UsageError
from otpbridge.core.secrets import IdentityKey, RecoveryKey, Secret
from otpbridge.vault.format import (
    CHECK_LEN,
    HEADER_MAGIC,
    KDF_ARGON2ID,
    MAX_SALT_LEN,
    MIN_SALT_LEN,
    NONCE_LEN,
    TAG_LEN,
    VAULT_ID_LEN,
    VAULT_KEY_LEN,
    KdfParams,
    Rng,
    VaultKey,
    WrongPassphrase,
    derive_master,
    hkdf,
    integrity_error,
    split_keys,
)

VERSION = 2
MAX_SLOTS = 8
MAX_PASSPHRASE_SLOTS = 4
MAX_RECOVERY_SLOTS = 2
MAX_AGE_BLOB = 1024  # one X25519 or ssh-ed25519 stanza and a 32-byte payload: ~300 bytes
MAX_KEYRING = 16 * 1024
MAX_NAME = 64

SLOT_PASSPHRASE = 1
SLOT_RECOVERY = 2
SLOT_AGE = 3
SLOT_SSH = 4
TYPE_NAMES = {SLOT_PASSPHRASE: "passphrase", SLOT_RECOVERY: "recovery", SLOT_AGE: "age", SLOT_SSH: "ssh"}
TYPE_IDS = {v: k for k, v in TYPE_NAMES.items()}
OPENS = {"passphrase": (SLOT_PASSPHRASE,), "recovery": (SLOT_RECOVERY,), "identity": (SLOT_AGE, SLOT_SSH)}

HKDF_INFO_SLOT = b"otpbridge/vault/v2/slot"
HKDF_INFO_WRAP = b"otpbridge/vault/v2/wrap"
HKDF_INFO_KEYRING = b"otpbridge/vault/v2/keyring"
LINK_INFO = b"otpbridge/vault/v2/link"
AUTH_KEPT = 3  # earlier authentication secrets a header still links under (devices that missed changes)

SLOT_ID_LEN = 8
SALT_LEN = 32
_PREFIX = struct.Struct(">8sB16sQQB")  # magic, version 2, vault id, epoch, created, slot count
_SLOT_HEAD = struct.Struct(">B8sH")  # type, slot id, body length
_KDF = struct.Struct(">BIIIB")  # kdf id, m KiB, t, p, salt length
_ECIES_LEN = 32 + CHECK_LEN + VAULT_KEY_LEN + TAG_LEN  # ephemeral public key, check, wrapped key
RECOVERY_BYTES = 20  # 160 bits
RECOVERY_CHECK = 2  # bytes of SHA-256 appended: a typo is caught before any work


# --- recovery codes ------------------------------------------------------------------------
def new_recovery_code(rng: Rng = os.urandom) -> RecoveryKey:
    """160 random bits and a 16-bit checksum, base32 in groups of six (36 characters)."""
    raw = rng(RECOVERY_BYTES)
    text = base64.b32encode(raw + hashlib.sha256(raw).digest()[:RECOVERY_CHECK]).decode().rstrip("=")
    return RecoveryKey("-".join(text[i : i + 6] for i in range(0, len(text), 6)))


_CODE_SEPARATORS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212\ufeff\u200b\u200c\u200d\u2060")


def recovery_bytes(code: Secret) -> bytes:
    """The 20 secret bytes of a recovery code; a typo is a UsageError (exit 2), not a try."""
    # Group separators and what editors and documents add around a copied code: spaces of
    # every kind, CR LF, a byte-order mark (Notepad), zero-width characters, typographic
    # dashes (a code pasted from a word processor or a PDF).
    text = "".join(ch for ch in code.reveal().upper() if not ch.isspace() and ch not in _CODE_SEPARATORS)
    text = text.replace("0", "O").replace("1", "I").replace("8", "B")  # look-alikes base32 lacks
    want = -(-(RECOVERY_BYTES + RECOVERY_CHECK) * 8 // 5)
    if len(text) != want:
        raise UsageError(f"a recovery code has {want} letters and digits (groups of six); this one has {len(text)}",
                         hint="copy it again from where you kept it")
    try:
        data = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        raise UsageError("the recovery code holds characters that are not in it (A-Z, 2-7)") from None
    raw, check = data[:RECOVERY_BYTES], data[RECOVERY_BYTES:]
    if not hmac.compare_digest(hashlib.sha256(raw).digest()[:RECOVERY_CHECK], check):
        raise UsageError("the recovery code has a typo (its checksum does not match)",
                         hint="compare it group by group with where you kept it")
    return raw


# --- slot key pairs ------------------------------------------------------------------------
def _x25519():
    from cryptography.hazmat.primitives.asymmetric import x25519

    return x25519


def _raw(public: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _slot_private(ikm: bytes, salt: bytes):
    return _x25519().X25519PrivateKey.from_private_bytes(hkdf(ikm, salt, HKDF_INFO_SLOT, 32))


def _ecies_keys(shared: bytes, epk: bytes, pk: bytes) -> tuple[bytes, bytes, bytes]:
    return split_keys(hkdf(shared, epk + pk, HKDF_INFO_WRAP, 32 + NONCE_LEN + CHECK_LEN))


def _ecies_wrap(pk: bytes, vault_key: bytes, ad: bytes, rng: Rng) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    esk = _x25519().X25519PrivateKey.from_private_bytes(rng(32))
    epk = _raw(esk.public_key())
    key, nonce, check = _ecies_keys(esk.exchange(_x25519().X25519PublicKey.from_public_bytes(pk)), epk, pk)
    return epk + check + AESGCM(key).encrypt(nonce, vault_key, ad)


def _ecies_unwrap(private: Any, blob: bytes, ad: bytes) -> bytes | None:
    """The vault key, or None when ``private`` is not this slot's key (check value differs)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    epk, check, wrapped = blob[:32], blob[32 : 32 + CHECK_LEN], blob[32 + CHECK_LEN :]
    try:
        shared = private.exchange(_x25519().X25519PublicKey.from_public_bytes(epk))
    except ValueError:  # an all-zero shared secret: a crafted ephemeral key
        raise integrity_error("a key slot's ephemeral key is invalid") from None
    key, nonce, want = _ecies_keys(shared, epk, _raw(private.public_key()))
    if not hmac.compare_digest(check, want):
        return None
    try:
        return AESGCM(key).decrypt(nonce, wrapped, ad)
    except InvalidTag:
        raise integrity_error("a key slot opened but its wrapped key did not authenticate (tampered)") from None


# --- age / ssh -----------------------------------------------------------------------------
def _pyrage():
    try:
        import pyrage
    except ImportError:
        raise MissingDependencyError("age and ssh key slots need pyrage", hint="pip install 'otpbridge[age]'") from None
    return pyrage


def parse_recipient(kind: str, text: str) -> Any:
    """An age X25519 recipient (age1...) or an OpenSSH ed25519 public key line."""
    pyrage = _pyrage()
    text = text.strip()
    try:
        if kind == "age":
            if not text.startswith("age1"):
                raise ValueError("not age1...")
            return pyrage.x25519.Recipient.from_str(text)
        if not text.startswith("ssh-ed25519 "):
            raise ValueError("not ssh-ed25519")
        return pyrage.ssh.Recipient.from_str(" ".join(text.split()[:2]))
    except (ValueError, pyrage.RecipientError) as exc:
        want = "an age X25519 public key (age1...)" if kind == "age" else "an OpenSSH ed25519 public key (ssh-ed25519 AAAA...)"
        raise UsageError(f"not {want}: {type(exc).__name__}") from None


def parse_identities(identity: IdentityKey) -> list[Any]:
    """Every identity in an age identity file, or the one OpenSSH ed25519 private key."""
    pyrage = _pyrage()
    text = identity.reveal()
    where = identity.path or "the identity"
    if "-----BEGIN OPENSSH PRIVATE KEY-----" in text:
        try:
            return [pyrage.ssh.Identity.from_buffer(text.encode())]
        except (ValueError, pyrage.IdentityError) as exc:
            raise UsageError(f"{where} is not an unencrypted OpenSSH ed25519 private key "
                             f"({type(exc).__name__})", hint="passphrase-protected ssh keys are not supported") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-1"):
            try:
                out.append(pyrage.x25519.Identity.from_str(line))
            except (ValueError, pyrage.IdentityError):
                raise UsageError(f"{where} holds a malformed AGE-SECRET-KEY line") from None
    if not out:
        raise UsageError(f"{where} holds no age identity (AGE-SECRET-KEY-1...) and no OpenSSH private key")
    return out


def identity_recipients(identity: IdentityKey) -> list[str]:
    """The public keys of an identity (for messages and ``key list``: which slot is ours)."""
    out = []
    for ident in parse_identities(identity):
        to_public = getattr(ident, "to_public", None)
        if to_public is not None:
            out.append(str(to_public()))
    return out


def _age_wrap(kind: str, recipient: str, vault_key: bytes) -> bytes:
    blob = _pyrage().encrypt(vault_key, [parse_recipient(kind, recipient)])
    if len(blob) > MAX_AGE_BLOB:
        raise UsageError("the age ciphertext of a key slot is larger than a header allows")
    return blob


def _age_unwrap(identities: list[Any], blob: bytes) -> bytes | None:
    if b"\n-> scrypt " in blob:  # a passphrase stanza would make us run scrypt for a stranger
        raise integrity_error("an age key slot holds an scrypt stanza")
    pyrage = _pyrage()
    try:
        return pyrage.decrypt(blob, identities)
    except pyrage.DecryptError:
        return None


# --- the keyring ---------------------------------------------------------------------------
@dataclass
class Slot:
    """One key slot's public description (kept in the sealed keyring, copied at re-key)."""

    id: str  # 16 hex digits
    type: str  # passphrase | recovery | age | ssh
    name: str = ""
    public: str = ""  # hex X25519 public key (passphrase, recovery) or the recipient string
    salt: str = ""  # hex (passphrase, recovery)
    kdf: tuple[int, int, int] | None = None  # (m KiB, t, p) for passphrase
    created: int = 0
    device: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "name": self.name, "public": self.public,
                               "created": self.created, "device": self.device}
        if self.salt:
            out["salt"] = self.salt
        if self.kdf:
            out["kdf"] = list(self.kdf)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Slot:
        kdf = data.get("kdf")
        return cls(str(data["id"]), str(data["type"]), str(data.get("name", "")), str(data.get("public", "")),
                   str(data.get("salt", "")), tuple(int(x) for x in kdf) if kdf else None,  # type: ignore[arg-type]
                   int(data.get("created", 0)), str(data.get("device", "")))

    @property
    def params(self) -> KdfParams | None:
        return KdfParams(*self.kdf) if self.kdf else None

    def describe(self) -> str:
        what = {"passphrase": "passphrase", "recovery": "recovery code", "age": "age key", "ssh": "ssh key"}[self.type]
        return f"{what} {self.name!r} ({self.id})" if self.name else f"{what} ({self.id})"


@dataclass
class NewSlot:
    """A slot to create: its secret (passphrase, recovery code) or recipient, and a name."""

    type: str
    name: str = ""
    secret: Secret | None = None
    recipient: str = ""
    params: KdfParams | None = None
    device: str = ""
    id: str = ""  # set to keep a slot's id (a passphrase change)


@dataclass
class Keyring:
    slots: list[Slot] = field(default_factory=list)
    # The vault's authentication secret and up to AUTH_KEPT earlier ones (hex): a new
    # header carries a link (an HMAC) under each, so a device that knew one of them
    # accepts only headers made by a holder of the vault key (open_header, FORMAT.md §12).
    auth: str = field(default="", repr=False)
    prev_auth: list[str] = field(default_factory=list, repr=False)
    links: dict[str, str] = field(default_factory=dict, repr=False)

    def find(self, ref: str) -> list[Slot]:
        """Slots whose id starts with ``ref`` or whose name is ``ref``."""
        ref = ref.strip()
        by_name = [s for s in self.slots if s.name and s.name == ref]
        return by_name or [s for s in self.slots if ref and s.id.startswith(ref.lower())]


def _seal_keyring(vault_key: bytes, salt: bytes, keyring: Keyring, ad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, nonce, _check = split_keys(hkdf(vault_key, salt, HKDF_INFO_KEYRING, 32 + NONCE_LEN + CHECK_LEN))
    doc: dict[str, Any] = {"slots": [s.to_json() for s in keyring.slots]}
    if keyring.auth:
        doc.update(auth=keyring.auth, prev_auth=keyring.prev_auth, links=keyring.links)
    plain = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return salt + AESGCM(key).encrypt(nonce, plain.encode(), ad)


def _open_keyring(vault_key: bytes, blob: bytes, ad: bytes) -> Keyring:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, sealed = blob[:SALT_LEN], blob[SALT_LEN:]
    key, nonce, _check = split_keys(hkdf(vault_key, salt, HKDF_INFO_KEYRING, 32 + NONCE_LEN + CHECK_LEN))
    try:
        data = json.loads(AESGCM(key).decrypt(nonce, sealed, ad))
        return Keyring([Slot.from_json(x) for x in data["slots"]], str(data.get("auth", "")),
                       [str(x) for x in data.get("prev_auth", [])][:AUTH_KEPT],
                       {str(k): str(v) for k, v in (data.get("links") or {}).items()})
    except InvalidTag:
        raise integrity_error("the header's keyring did not authenticate (tampered, or planted by someone "
                         "who never held the vault key)") from None
    except (ValueError, KeyError, TypeError):
        raise integrity_error("the header's keyring is malformed") from None


# --- header bytes --------------------------------------------------------------------------
@dataclass(frozen=True)
class ClearSlot:
    type: int
    id: bytes
    body: bytes
    params: KdfParams | None = None
    salt: bytes = b""
    wrap: bytes = b""  # ECIES blob (passphrase, recovery) or the age ciphertext


@dataclass(frozen=True)
class ParsedHeader:
    vault_id: bytes
    epoch: int
    created: int
    prefix: bytes  # magic .. slot count: part of every wrap's associated data
    slots: tuple[ClearSlot, ...]
    slot_bytes: bytes
    keyring: bytes
    digest: str

    @property
    def strongest(self) -> KdfParams | None:
        ps = [s.params for s in self.slots if s.params is not None]
        return max(ps, key=lambda p: (p.memory_kib * p.iterations * p.lanes)) if ps else None


def is_v2(header: bytes) -> bool:
    return len(header) > 9 and header[:8] == HEADER_MAGIC and header[8] == VERSION


def _slot_ad(prefix: bytes, slot_type: int, slot_id: bytes) -> bytes:
    return prefix + bytes([slot_type]) + slot_id


def parse_header(header: bytes) -> ParsedHeader:
    """Every bound checked before any key is derived (docs/FORMAT.md §12)."""
    if len(header) < _PREFIX.size + 32 + 4:
        raise integrity_error("version-2 epoch header is truncated")
    body, checksum = header[:-32], header[-32:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), checksum):
        raise integrity_error("epoch header checksum mismatch (corrupted)")
    magic, version, vault_id, epoch, created, count = _PREFIX.unpack_from(body)
    if magic != HEADER_MAGIC or version != VERSION:
        raise integrity_error("not a version-2 epoch header")
    if not 1 <= epoch <= 2**63 - 1:
        raise integrity_error(f"epoch number {epoch} out of range")
    if not 1 <= count <= MAX_SLOTS:
        raise integrity_error(f"{count} key slots (1..{MAX_SLOTS} allowed)")
    off = _PREFIX.size
    prefix = body[:off]
    slots: list[ClearSlot] = []
    counts: Counter = Counter()
    for _ in range(count):
        if off + _SLOT_HEAD.size > len(body):
            raise integrity_error("key slot table is truncated")
        stype, sid, size = _SLOT_HEAD.unpack_from(body, off)
        off += _SLOT_HEAD.size
        slot_body = body[off : off + size]
        if len(slot_body) != size:
            raise integrity_error("key slot is truncated")
        off += size
        counts[stype] += 1
        slots.append(_parse_slot(stype, sid, slot_body))
    if counts[SLOT_PASSPHRASE] > MAX_PASSPHRASE_SLOTS or counts[SLOT_RECOVERY] > MAX_RECOVERY_SLOTS:
        raise integrity_error(f"too many passphrase or recovery slots (at most {MAX_PASSPHRASE_SLOTS} and "
                         f"{MAX_RECOVERY_SLOTS})")
    if len({s.id for s in slots}) != len(slots):
        raise integrity_error("two key slots share an id")
    slot_bytes = body[_PREFIX.size : off]
    if off + 4 > len(body):
        raise integrity_error("the header's keyring is missing")
    (klen,) = struct.unpack_from(">I", body, off)
    off += 4
    if not SALT_LEN + TAG_LEN < klen <= MAX_KEYRING or off + klen != len(body):
        raise integrity_error("the header's keyring has an impossible length (truncated or extended)")
    return ParsedHeader(vault_id, epoch, created, prefix, tuple(slots), slot_bytes, body[off:],
                        hashlib.sha256(header).hexdigest())


def _parse_slot(stype: int, sid: bytes, body: bytes) -> ClearSlot:
    if stype == SLOT_PASSPHRASE:
        if len(body) < _KDF.size:
            raise integrity_error("passphrase slot is truncated")
        kdf_id, m, t, p, salt_len = _KDF.unpack_from(body)
        if kdf_id != KDF_ARGON2ID:
            raise integrity_error(f"unknown KDF id {kdf_id}")
        params = KdfParams(m, t, p)
        if bad := params.problems():  # before any derivation
            raise integrity_error("KDF parameters out of bounds: " + "; ".join(bad))
        if not MIN_SALT_LEN <= salt_len <= MAX_SALT_LEN or len(body) != _KDF.size + salt_len + _ECIES_LEN:
            raise integrity_error("passphrase slot has the wrong length")
        salt = body[_KDF.size : _KDF.size + salt_len]
        return ClearSlot(stype, sid, body, params, salt, body[_KDF.size + salt_len :])
    if stype == SLOT_RECOVERY:
        if len(body) != SALT_LEN + _ECIES_LEN:
            raise integrity_error("recovery slot has the wrong length")
        return ClearSlot(stype, sid, body, None, body[:SALT_LEN], body[SALT_LEN:])
    if stype in (SLOT_AGE, SLOT_SSH):
        if not 0 < len(body) <= MAX_AGE_BLOB or not body.startswith(b"age-encryption.org/v1\n"):
            raise integrity_error("age key slot is not an age ciphertext of a sane size")
        return ClearSlot(stype, sid, body, None, b"", body)
    raise integrity_error(f"unknown key slot type {stype}")


def auth_id(auth_hex: str) -> str:
    """The public name of an authentication secret (which link to check)."""
    return hashlib.sha256(bytes.fromhex(auth_hex)).hexdigest()[:16]


def _link(auth_hex: str, prefix: bytes, slot_bytes: bytes) -> str:
    return hmac.new(bytes.fromhex(auth_hex), LINK_INFO + prefix + slot_bytes, hashlib.sha256).hexdigest()


def create_header(
    vault_key: bytes,
    *,
    vault_id: bytes,
    epoch: int,
    created: int,
    keep: Sequence[Slot],
    new: Sequence[NewSlot] = (),
    rng: Rng = os.urandom,
    stats: Counter | None = None,
    now: int = 0,
    auth_from: Keyring | None = None,
    rotate_auth: bool = True,
) -> tuple[bytes, Keyring, dict[str, str]]:
    """A version-2 header for ``vault_key``: the ``keep`` slots re-wrapped from their public
    keys (no secret needed), the ``new`` ones made from their secrets or recipients.

    ``auth_from``: the keyring of the epoch this one replaces; its authentication secret
    is kept (``rotate_auth=False``: a key was only added) or replaced by a fresh one that
    links back to it (a key removed or a passphrase changed: what a removed holder knew
    must not authenticate the next header). The new header links under the current secret
    and up to AUTH_KEPT earlier ones.

    Returns the header, its keyring and the ids given to the new slots (by position)."""
    if len(vault_id) != VAULT_ID_LEN or len(vault_key) != VAULT_KEY_LEN:
        raise ValueError("bad vault id or key length")
    # The bounds first: no derivation for a slot that could not be written anyway.
    kinds = Counter([s.type for s in keep] + [n.type for n in new])
    if not 1 <= len(keep) + len(new) <= MAX_SLOTS:
        raise UsageError(f"a vault holds 1 to {MAX_SLOTS} keys ({len(keep) + len(new)} asked for)")
    if kinds["passphrase"] > MAX_PASSPHRASE_SLOTS or kinds["recovery"] > MAX_RECOVERY_SLOTS:
        raise UsageError(f"a vault holds at most {MAX_PASSPHRASE_SLOTS} passphrases and {MAX_RECOVERY_SLOTS} "
                         "recovery codes", hint="remove one first: otpbridge key remove ID")
    slots: list[Slot] = list(keep)
    made: dict[str, str] = {}
    for i, spec in enumerate(new):
        slot = _make_slot(spec, rng, stats, now)
        slots.append(slot)
        made[str(i)] = slot.id
    if len({s.id for s in slots}) != len(slots):
        raise UsageError("two keys share an id")
    prefix = _PREFIX.pack(HEADER_MAGIC, VERSION, vault_id, epoch, created, len(slots))
    parts = []
    for slot in slots:
        stype, sid = TYPE_IDS[slot.type], bytes.fromhex(slot.id)
        ad = _slot_ad(prefix, stype, sid)
        if slot.type == "passphrase":
            params = slot.params
            assert params is not None
            salt = bytes.fromhex(slot.salt)
            body = (_KDF.pack(KDF_ARGON2ID, params.memory_kib, params.iterations, params.lanes, len(salt)) + salt
                    + _ecies_wrap(bytes.fromhex(slot.public), vault_key, ad, rng))
        elif slot.type == "recovery":
            body = bytes.fromhex(slot.salt) + _ecies_wrap(bytes.fromhex(slot.public), vault_key, ad, rng)
        else:
            body = _age_wrap(slot.type, slot.public, vault_key)
        parts.append(_SLOT_HEAD.pack(stype, sid, len(body)) + body)
    slot_bytes = b"".join(parts)
    old_auth = auth_from.auth if auth_from is not None else ""
    if old_auth and not rotate_auth:
        auth, prev = old_auth, list(auth_from.prev_auth)[:AUTH_KEPT]  # type: ignore[union-attr]
    else:
        auth = rng(32).hex()
        prev = ([old_auth] + list(auth_from.prev_auth) if old_auth else [])[:AUTH_KEPT]  # type: ignore[union-attr]
    links = {auth_id(a): _link(a, prefix, slot_bytes) for a in [auth, *prev]}
    keyring = Keyring(slots, auth, prev, links)
    sealed = _seal_keyring(vault_key, rng(SALT_LEN), keyring, prefix + slot_bytes)
    body = prefix + slot_bytes + struct.pack(">I", len(sealed)) + sealed
    return body + hashlib.sha256(body).digest(), keyring, made


def _make_slot(spec: NewSlot, rng: Rng, stats: Counter | None, now: int) -> Slot:
    from otpbridge.core.activity import step

    sid = spec.id or rng(SLOT_ID_LEN).hex()
    name = spec.name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise UsageError(f"a key name has at most {MAX_NAME} printable characters")
    if spec.type == "passphrase":
        if spec.secret is None or not spec.secret or spec.params is None:
            raise UsageError("a passphrase slot needs a non-empty passphrase and KDF parameters")
        salt = rng(SALT_LEN)
        if stats is not None:
            stats["kdf"] += 1
        with step(f"key derivation ({spec.params.describe()})"):
            master = derive_master(spec.secret, salt, spec.params)
        public = _raw(_slot_private(master, salt).public_key()).hex()
        p = spec.params
        return Slot(sid, "passphrase", name, public, salt.hex(), (p.memory_kib, p.iterations, p.lanes), now, spec.device)
    if spec.type == "recovery":
        if spec.secret is None:
            raise UsageError("a recovery slot needs its code")
        salt = rng(SALT_LEN)
        public = _raw(_slot_private(recovery_bytes(spec.secret), salt).public_key()).hex()
        return Slot(sid, "recovery", name, public, salt.hex(), None, now, spec.device)
    if spec.type in ("age", "ssh"):
        recipient = spec.recipient.strip()
        if spec.type == "ssh":
            recipient = " ".join(recipient.split()[:2])
        parse_recipient(spec.type, recipient)
        return Slot(sid, spec.type, name, recipient, "", None, now, spec.device)
    raise UsageError(f"unknown key type {spec.type!r}")


def slot_holds(slot: Slot, spec: NewSlot, *, stats: Counter | None = None) -> bool:
    """Whether ``slot`` is the key ``spec`` would add: the same recipient (age, ssh), or a
    passphrase that derives the slot's public key (one derivation at the slot's own
    parameters, which this vault's own keyring set). A recovery code never matches."""
    if slot.type != spec.type:
        return False
    if spec.type in ("age", "ssh"):
        want = spec.recipient.strip()
        if spec.type == "ssh":
            want = " ".join(want.split()[:2])
        return hmac.compare_digest(want.encode(), slot.public.encode())
    if spec.type != "passphrase" or not spec.secret or slot.params is None or not slot.salt:
        return False
    if slot.params.problems():  # never derive at parameters a reader would refuse
        return False
    from otpbridge.core.activity import step

    salt = bytes.fromhex(slot.salt)
    if stats is not None:
        stats["kdf"] += 1
    with step(f"key derivation ({slot.params.describe()})"):
        master = derive_master(spec.secret, salt, slot.params)
    return hmac.compare_digest(_raw(_slot_private(master, salt).public_key()).hex().encode(), slot.public.encode())


def open_header(
    parsed: ParsedHeader,
    credential: Secret,
    *,
    hint: str = "",
    max_derivations: int = MAX_PASSPHRASE_SLOTS,
    stats: Counter | None = None,
    known_auth: str = "",
) -> VaultKey:
    """Unwrap with whichever slot of the credential's kind opens; ``hint`` (a slot id this
    device used before) is tried first. Raises WrongPassphrase when none does.

    ``known_auth``: the vault's authentication secret this device learnt from an earlier
    header (hex). The header must then carry a valid link under it: anyone who knows a
    slot's public key (an age or ssh public key is often published) could otherwise wrap
    a key of their own choosing to it, and this device would seal its secrets under a key
    the forger knows. A first opening (no secret known yet) trusts the header, as a first
    ssh connection trusts the host key."""
    kind = getattr(credential, "kind", "passphrase")
    secret = recovery_bytes(credential) if isinstance(credential, RecoveryKey) else None  # a typo: exit 2 first
    candidates = [s for s in parsed.slots if s.type in OPENS.get(kind, ())]
    candidates.sort(key=lambda s: s.id.hex() != hint)
    what = {"passphrase": "passphrase", "recovery": "recovery code", "identity": "key file"}.get(kind, kind)
    if not candidates:
        raise WrongPassphrase(f"this vault has no {what} key slot (epoch {parsed.epoch})",
                              hint="'otpbridge key list' shows the keys that open it")
    tried = 0
    vault_key = None
    opened: ClearSlot | None = None
    identities = parse_identities(credential) if isinstance(credential, IdentityKey) else None
    for slot in candidates:
        ad = _slot_ad(parsed.prefix, slot.type, slot.id)
        if slot.type == SLOT_PASSPHRASE:
            if tried >= max_derivations:
                break
            tried += 1
            if stats is not None:
                stats["kdf"] += 1
            from otpbridge.core.activity import step

            assert slot.params is not None
            with step(f"key derivation ({slot.params.describe()})"):
                master = derive_master(credential, slot.salt, slot.params)
            vault_key = _ecies_unwrap(_slot_private(master, slot.salt), slot.wrap, ad)
        elif slot.type == SLOT_RECOVERY:
            assert secret is not None
            vault_key = _ecies_unwrap(_slot_private(secret, slot.salt), slot.wrap, ad)
        else:
            assert identities is not None
            vault_key = _age_unwrap(identities, slot.wrap)
        if vault_key is not None:
            opened = slot
            break
    if vault_key is None or opened is None:
        untried = sum(1 for s in candidates if s.type == SLOT_PASSPHRASE) - tried
        more = f"; {untried} passphrase slots left untried (at most {max_derivations} derivations)" if untried > 0 else ""
        raise WrongPassphrase(f"the {what} opens no key slot of this vault (epoch {parsed.epoch}){more}",
                              hint="check it; 'otpbridge key list' (with a key that opens) shows the vault's keys")
    if len(vault_key) != VAULT_KEY_LEN:
        raise integrity_error("a key slot holds a vault key of the wrong length")
    keyring = _open_keyring(vault_key, parsed.keyring, parsed.prefix + parsed.slot_bytes)
    ids = [s.id.hex() for s in parsed.slots]
    if [s.id for s in keyring.slots] != ids or any(
            TYPE_IDS.get(k.type) != c.type for k, c in zip(keyring.slots, parsed.slots, strict=True)):
        raise integrity_error("the header's keyring does not describe its key slots")
    if known_auth:
        link = keyring.links.get(auth_id(known_auth), "")
        if not hmac.compare_digest(link.encode(), _link(known_auth, parsed.prefix, parsed.slot_bytes).encode()):
            raise UnlinkedHeader(
                f"epoch {parsed.epoch}'s header is not linked to the vault this device knows: it was not made "
                "by a holder of the vault's keys (a forged header), or this device missed more than "
                f"{AUTH_KEPT} key changes",
                hint="if the vault's keys were changed while this device was away, trust the new header once: "
                "otpbridge sync --accept-new-keys (docs/SYNC.md 'Keys')")
    key = VaultKey(parsed.vault_id, parsed.epoch, vault_key, parsed.digest)
    key.slot = opened.id.hex()
    key.keyring = keyring
    return key


class UnlinkedHeader(IntegrityError):
    """A version-2 header that opens but carries no link under the authentication secret
    this device knows (open_header): forged, or too many key changes missed (exit 4)."""


def auth_of(key: VaultKey, previous: str = "") -> str:
    """The authentication secret a device remembers after opening ``key`` (hex)."""
    ring = getattr(key, "keyring", None)
    return ring.auth if ring is not None and ring.auth else previous


def hint_of(key: VaultKey, previous: str = "") -> str:
    """The slot id a device remembers to try first: the passphrase slot that opened, else
    what it remembered (a run opened with a recovery code or key file needs no hint, and
    must not make the device's usual passphrase pay for every slot next time)."""
    ring = getattr(key, "keyring", None)
    if ring is not None and any(s.id == key.slot and s.type == "passphrase" for s in ring.slots):
        return key.slot
    return previous


def keyring_of(key: VaultKey) -> Keyring | None:
    """The keyring of a version-2 epoch (None: a version-1 vault with its one passphrase)."""
    return getattr(key, "keyring", None)


__all__ = [
    "Keyring",
    "UnlinkedHeader",
    "auth_id",
    "auth_of",
    "NewSlot",
    "Slot",
    "create_header",
    "hint_of",
    "identity_recipients",
    "is_v2",
    "keyring_of",
    "new_recovery_code",
    "open_header",
    "parse_header",
    "parse_recipient",
    "recovery_bytes",
    "slot_holds",
]
