"""A second reader of the vault format, written from docs/FORMAT.md alone.

It imports nothing from otpbridge (only the standard library and ``cryptography``; the
age and ssh key slots of a version-2 header, FORMAT.md §12, also need ``pyrage``, the age
implementation, imported only when such a slot is tried), so if it and ``otpbridge.vault``
agree on the golden vectors, FORMAT.md really is enough to decrypt a backup. Keep it that
way: fix FORMAT.md, not this file, when they disagree.

    python tests/independent_reader.py HEADER_FILE OBJECT_FILE KIND DEVICE SEQ  # passphrase on stdin
    python tests/independent_reader.py --recovery-code HEADER_FILE OBJECT_FILE KIND DEVICE SEQ  # code on stdin
    python tests/independent_reader.py --identity KEY_FILE HEADER_FILE OBJECT_FILE KIND DEVICE SEQ

Exit 0 and the plaintext on stdout, 2 for a mistyped recovery code or an unusable key
file, 3 for a wrong passphrase/code/key, 4 for damaged or tampered data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class WrongPassphrase(Exception):
    pass


class Damaged(Exception):
    pass


class BadCredential(Exception):
    """A mistyped recovery code or a key file holding no key (exit 2)."""


class NeedsAge(Exception):
    """An age or ssh slot had to be tried and pyrage is not installed."""


def _okm(ikm: bytes, salt: bytes | None, info: bytes) -> tuple[bytes, bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=76, salt=salt, info=info).derive(ikm)
    return okm[0:32], okm[32:44], okm[44:76]


def read_header(header: bytes, passphrase: str, derivations: list | None = None) -> tuple[bytes, int, bytes]:
    """FORMAT.md §4 "Reading", steps 1-8. Returns (vault id, epoch, vault key)."""
    s, m, t, p, salt, vault_id, epoch, stored_check, wrapped = _parse_v1(header)
    if derivations is not None:
        derivations.append(1)
    master = Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(
        passphrase.encode("utf-8")
    )
    wrap_key, wrap_nonce, check = _okm(master, None, b"otpbridge/vault/v1/kek")
    if not hmac.compare_digest(check, stored_check):
        raise WrongPassphrase()
    try:
        vault_key = AESGCM(wrap_key).decrypt(wrap_nonce, wrapped, header[: 87 + s])
    except InvalidTag:
        raise Damaged("wrap") from None
    return vault_id, epoch, vault_key


def _parse_v1(header: bytes) -> tuple:
    """FORMAT.md §4 "Reading", steps 1-5 (no derivation)."""
    if len(header) < 23 or header[0:8] != b"otpbEPCH":
        raise Damaged("not a header")
    if header[8] != 1:
        raise Damaged("version")
    s = header[22]
    if not 16 <= s <= 64 or len(header) != 167 + s:
        raise Damaged("length")
    if hashlib.sha256(header[: 135 + s]).digest() != header[135 + s :]:
        raise Damaged("checksum")
    kdf_id = header[9]
    m, t, p = struct.unpack(">III", header[10:22])
    if kdf_id != 1 or not 8192 <= m <= 1048576 or not 1 <= t <= 4 or not 1 <= p <= 4:
        raise Damaged("kdf parameters")
    salt = header[23 : 23 + s]
    vault_id = header[23 + s : 39 + s]
    (epoch,) = struct.unpack(">Q", header[39 + s : 47 + s])
    if not 1 <= epoch <= 2**63 - 1:
        raise Damaged("epoch")
    stored_check = header[55 + s : 87 + s]
    wrapped = header[87 + s : 135 + s]
    return s, m, t, p, salt, vault_id, epoch, stored_check, wrapped


# --- version 2: key slots (FORMAT.md §12) -----------------------------------------------------
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_AGE_LINE = b"age-encryption.org/v1\n"


def recovery_code_bytes(text: str) -> bytes:
    """FORMAT.md §12.6 "Reading a code": the 20 secret bytes R, or BadCredential."""
    ignored = "-\u2010\u2011\u2012\u2013\u2014\u2212\ufeff\u200b\u200c\u200d\u2060"
    text = "".join(ch for ch in text if not ch.isspace() and ch not in ignored).upper()
    text = text.replace("0", "O").replace("1", "I").replace("8", "B")
    if len(text) != 36 or any(ch not in _B32 for ch in text):
        raise BadCredential("not 36 base32 characters")
    value = 0
    for ch in text:
        value = value << 5 | _B32.index(ch)
    data = (value >> 4).to_bytes(22, "big")  # 180 bits: the last 4 are ignored
    r, check = data[:20], data[20:]
    if hashlib.sha256(r).digest()[:2] != check:
        raise BadCredential("checksum")
    return r


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _raw_public(sk: X25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _ecies_open(ikm: bytes, salt: bytes, wrap: bytes, ad: bytes) -> bytes | None:
    """§12.3 and §12.4 "Opening": the vault key, or None if the check value differs."""
    sk = X25519PrivateKey.from_private_bytes(_hkdf(ikm, salt, b"otpbridge/vault/v2/slot", 32))
    epk, stored_check, sealed = wrap[0:32], wrap[32:64], wrap[64:112]
    try:
        shared = sk.exchange(X25519PublicKey.from_public_bytes(epk))
    except ValueError:  # cryptography refuses an all-zero shared secret
        raise Damaged("all-zero shared secret") from None
    if shared == bytes(32):
        raise Damaged("all-zero shared secret")
    okm = _hkdf(shared, epk + _raw_public(sk), b"otpbridge/vault/v2/wrap", 76)
    key, nonce, check = okm[0:32], okm[32:44], okm[44:76]
    if not hmac.compare_digest(check, stored_check):
        return None
    try:
        return AESGCM(key).decrypt(nonce, sealed, ad)
    except InvalidTag:
        raise Damaged("slot wrap") from None


def _age_identities(text: str) -> list:
    try:
        import pyrage
    except ImportError:
        raise NeedsAge() from None
    try:
        if "-----BEGIN OPENSSH PRIVATE KEY-----" in text:
            return [pyrage.ssh.Identity.from_buffer(text.encode())]
        found = [pyrage.x25519.Identity.from_str(line.strip()) for line in text.splitlines()
                 if line.strip().startswith("AGE-SECRET-KEY-1")]
    except (ValueError, pyrage.IdentityError):
        raise BadCredential("malformed key file") from None
    if not found:
        raise BadCredential("no key in the key file")
    return found


def _age_open(identities: list, body: bytes) -> bytes | None:
    import pyrage

    try:
        return pyrage.decrypt(body, identities)
    except pyrage.DecryptError:
        return None


def read_header_v2(header: bytes, kind: str, credential: str, derivations: list | None = None) -> dict:
    """FORMAT.md §12.7, steps 1-13. ``kind``: passphrase, recovery or identity.

    Returns {"vault_id", "epoch", "vault_key", "slot" (id hex), "keyring" (the JSON)}."""
    # 1-2: magic, version, length, checksum
    if len(header) < 78 or header[0:8] != b"otpbEPCH" or header[8] != 2:
        raise Damaged("not a version-2 header")
    if hashlib.sha256(header[:-32]).digest() != header[-32:]:
        raise Damaged("checksum")
    end = len(header) - 32
    # 3: epoch, slot count
    vault_id = header[9:25]
    epoch, _created = struct.unpack(">QQ", header[25:41])
    n = header[41]
    if not 1 <= epoch <= 2**63 - 1 or not 1 <= n <= 8:
        raise Damaged("epoch or slot count")
    prefix = header[:42]
    # 4: slot records
    slots = []
    off = 42
    for _ in range(n):
        if off + 11 > end:
            raise Damaged("slot head")
        stype, sid, length = header[off], header[off + 1 : off + 9], struct.unpack(">H", header[off + 9 : off + 11])[0]
        body = header[off + 11 : off + 11 + length]
        if off + 11 + length > end:
            raise Damaged("slot body")
        off += 11 + length
        if stype == 1:
            if length < 14:
                raise Damaged("passphrase slot")
            m, t, p = struct.unpack(">III", body[1:13])
            s = body[13]
            if body[0] != 1 or not 8192 <= m <= 1048576 or not 1 <= t <= 4 or not 1 <= p <= 4:
                raise Damaged("kdf parameters")
            if not 16 <= s <= 64 or length != 126 + s:
                raise Damaged("passphrase slot length")
            slots.append({"type": 1, "id": sid, "kdf": (m, t, p), "salt": body[14 : 14 + s], "wrap": body[14 + s :]})
        elif stype == 2:
            if length != 144:
                raise Damaged("recovery slot length")
            slots.append({"type": 2, "id": sid, "salt": body[:32], "wrap": body[32:]})
        elif stype in (3, 4):
            if not 1 <= length <= 1024 or not body.startswith(_AGE_LINE):
                raise Damaged("age slot")
            slots.append({"type": stype, "id": sid, "body": body})
        else:
            raise Damaged("slot type")
    # 5: per-type counts, distinct ids
    types = [x["type"] for x in slots]
    if types.count(1) > 4 or types.count(2) > 2 or len({x["id"] for x in slots}) != n:
        raise Damaged("slot counts or ids")
    # 6: keyring length
    k = off
    if k + 4 > end:
        raise Damaged("keyring length missing")
    (klen,) = struct.unpack(">I", header[k : k + 4])
    if not 48 < klen <= 16384 or k + 4 + klen != end:
        raise Damaged("keyring length")
    sealed_ring = header[k + 4 : end]
    # 7: candidates
    wanted = {"passphrase": (1,), "recovery": (2,), "identity": (3, 4)}[kind]
    candidates = [x for x in slots if x["type"] in wanted]
    if not candidates:
        raise WrongPassphrase("no slot of this kind")
    # 8: the credential
    r = recovery_code_bytes(credential) if kind == "recovery" else b""
    identities = _age_identities(credential) if kind == "identity" else []
    # 9-10: try the candidates
    vault_key = None
    opened = None
    for slot in candidates:
        ad = prefix + bytes([slot["type"]]) + slot["id"]
        if slot["type"] == 1:
            m, t, p = slot["kdf"]
            if derivations is not None:
                derivations.append(1)
            ikm = Argon2id(salt=slot["salt"], length=32, iterations=t, lanes=p, memory_cost=m).derive(
                credential.encode("utf-8")
            )
            vault_key = _ecies_open(ikm, slot["salt"], slot["wrap"], ad)
        elif slot["type"] == 2:
            vault_key = _ecies_open(r, slot["salt"], slot["wrap"], ad)
        else:
            if b"\n-> scrypt " in slot["body"]:
                raise Damaged("scrypt stanza")
            vault_key = _age_open(identities, slot["body"])
        if vault_key is not None:
            opened = slot
            break
    if vault_key is None or opened is None:
        raise WrongPassphrase("no slot opened")
    # 11: 32 bytes
    if len(vault_key) != 32:
        raise Damaged("vault key length")
    # 12: the keyring
    okm = _hkdf(vault_key, sealed_ring[:32], b"otpbridge/vault/v2/keyring", 76)
    try:
        ring = json.loads(AESGCM(okm[0:32]).decrypt(okm[32:44], sealed_ring[32:], header[:k]))
        listed = [(x["id"], x["type"]) for x in ring["slots"]]
    except InvalidTag:
        raise Damaged("keyring") from None
    except (ValueError, KeyError, TypeError):
        raise Damaged("keyring json") from None
    names = {1: "passphrase", 2: "recovery", 3: "age", 4: "ssh"}
    if listed != [(x["id"].hex(), names[x["type"]]) for x in slots]:
        raise Damaged("keyring does not describe the slots")
    return {"vault_id": vault_id, "epoch": epoch, "vault_key": vault_key, "slot": opened["id"].hex(),
            "keyring": ring}


def read_any_header(header: bytes, kind: str, credential: str, derivations: list | None = None):
    """Either version, by the version byte (FORMAT.md §4 step 2). Returns (vault id, epoch, key)."""
    if len(header) > 8 and header[0:8] == b"otpbEPCH" and header[8] == 2:
        got = read_header_v2(header, kind, credential, derivations)
        return got["vault_id"], got["epoch"], got["vault_key"]
    if kind != "passphrase":
        _parse_v1(header)  # a damaged header is still exit 4 first (steps 1-5)
        raise WrongPassphrase("a version-1 header opens with its passphrase only")
    return read_header(header, credential, derivations)


def read_object(
    blob: bytes, vault_id: bytes, epoch: int, vault_key: bytes, kind: str, device: str, seq: int
) -> bytes:
    """FORMAT.md §5 "Opening" and §6."""
    if len(blob) < 98 or blob[0:8] != b"otpbOBJT" or blob[8] != 1 or blob[9] != 1:
        raise Damaged("not an object")
    b = len(blob) - 114
    if b < 16384 or b > 2**28 or b & (b - 1):
        raise Damaged("length")
    if blob[10:26] != vault_id or struct.unpack(">Q", blob[26:34])[0] != epoch:
        raise Damaged("other vault or epoch")
    key, nonce, check = _okm(vault_key, blob[34:66], b"otpbridge/vault/v1/object")
    if not hmac.compare_digest(check, blob[66:98]):
        raise Damaged("key check")
    k, d = kind.encode("ascii"), device.encode("ascii")
    ad = blob[:98] + bytes([len(k)]) + k + bytes([len(d)]) + d + struct.pack(">Q", seq)
    try:
        padded = AESGCM(key).decrypt(nonce, blob[98:], ad)
    except InvalidTag:
        raise Damaged("aead") from None
    (n,) = struct.unpack(">I", padded[:4])
    if 4 + n > len(padded) or any(padded[4 + n :]):
        raise Damaged("padding")
    return padded[4 : 4 + n]


def main(argv: list[str]) -> int:
    credential_kind = "passphrase"
    if argv and argv[0] == "--recovery-code":
        credential_kind, argv = "recovery", argv[1:]
    elif argv and argv[0] == "--identity":
        with open(argv[1], encoding="utf-8") as fh:
            credential = fh.read()
        credential_kind, argv = "identity", argv[2:]
    header_file, object_file, kind, device, seq = argv
    if credential_kind != "identity":
        credential = sys.stdin.readline().rstrip("\n")
    with open(header_file, "rb") as fh:
        header = fh.read()
    with open(object_file, "rb") as fh:
        blob = fh.read()
    try:
        vid, ep, vk = read_any_header(header, credential_kind, credential)
        sys.stdout.buffer.write(read_object(blob, vid, ep, vk, kind, device, int(seq)))
    except BadCredential as exc:
        print(f"unusable {credential_kind}: {exc}", file=sys.stderr)
        return 2
    except WrongPassphrase:
        print(f"wrong {credential_kind}", file=sys.stderr)
        return 3
    except Damaged as exc:
        print(f"damaged: {exc}", file=sys.stderr)
        return 4
    except NeedsAge:
        print("this header's key slots need pyrage (pip install pyrage)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
