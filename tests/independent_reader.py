"""A second reader of the vault v1 format, written from docs/FORMAT.md alone.

It imports nothing from otpbridge (only the standard library and ``cryptography``), so
if it and ``otpbridge.vault`` agree on the golden vectors, FORMAT.md really is enough to
decrypt a backup. Keep it that way: fix FORMAT.md, not this file, when they disagree.

    python tests/independent_reader.py HEADER_FILE OBJECT_FILE KIND DEVICE SEQ  # passphrase on stdin
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class WrongPassphrase(Exception):
    pass


class Damaged(Exception):
    pass


def _okm(ikm: bytes, salt: bytes | None, info: bytes) -> tuple[bytes, bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=76, salt=salt, info=info).derive(ikm)
    return okm[0:32], okm[32:44], okm[44:76]


def read_header(header: bytes, passphrase: str, derivations: list | None = None) -> tuple[bytes, int, bytes]:
    """FORMAT.md §4 "Reading", steps 1-8. Returns (vault id, epoch, vault key)."""
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
    header_file, object_file, kind, device, seq = argv
    passphrase = sys.stdin.readline().rstrip("\n")
    with open(header_file, "rb") as fh:
        header = fh.read()
    with open(object_file, "rb") as fh:
        blob = fh.read()
    try:
        vid, ep, vk = read_header(header, passphrase)
        sys.stdout.buffer.write(read_object(blob, vid, ep, vk, kind, device, int(seq)))
    except WrongPassphrase:
        print("wrong passphrase", file=sys.stderr)
        return 3
    except Damaged as exc:
        print(f"damaged: {exc}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
