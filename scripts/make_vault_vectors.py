"""Regenerate the vault golden vectors in tests/vectors/vault/ (deterministically).

    .venv/bin/python scripts/make_vault_vectors.py          # rewrite the files
    .venv/bin/python scripts/make_vault_vectors.py --check  # exit 1 if they would change
    .venv/bin/python scripts/make_vault_vectors.py --bench  # seal/open timing, 10,000 accounts

Randomness comes from a SHA-256 counter stream seeded with a fixed label and the clock is
fixed, so the same code always yields the same bytes; a change in the bytes is a format
change and must come with a FORMAT_VERSION bump (tests/test_vault_vectors.py checks it).
Vectors use the insecure-test KDF preset (8 MiB, t=1, p=1) so they open in milliseconds;
the bounds accept it on read, and the format is the same for every preset.

Version-2 epoch headers (key slots, docs/FORMAT.md §12) are written by
``otpbridge.vault.keyring.create_header`` with the same kind of deterministic rng; their
files carry ``"header_version": 2`` (tests/test_vault_v2_vectors.py reads them). The one
random part is an age or ssh slot: pyrage draws its own randomness. So an age ciphertext
already committed in a v2 vector is reused when it still decrypts (with the vector's
identity) to the vault key being wrapped, and a fresh one is made only when it does not
(a format change, or the file was deleted). Regeneration is therefore byte-identical as
long as the committed files exist; pyrage is needed (``pip install 'otpbridge[age]'``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from otpbridge.core.errors import UsageError
from otpbridge.core.secrets import RecoveryKey, Secret
from otpbridge.vault import format as vault
from otpbridge.vault import keyring

OUT = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "vault"
CLOCK = 1_700_000_000.0
PASSPHRASE = "correct horse battery staple"
UNICODE_PASSPHRASE = "pässwörd ✓ 🔑"
PARAMS = vault.PRESETS["insecure-test"]


class DetRng:
    """SHA-256(seed ‖ u64 counter) blocks, consumed in order: a reproducible ``os.urandom``."""

    def __init__(self, seed: str) -> None:
        self._seed = seed.encode()
        self._counter = 0
        self._buf = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._buf += hashlib.sha256(self._seed + struct.pack(">Q", self._counter)).digest()
            self._counter += 1
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _with_object(doc: dict, more: dict) -> dict:
    """A vector's optional object, its open_as and plaintext, then the remaining fields."""
    obj = more.pop("object", None)
    if obj is not None:
        doc["object_b64"] = _b64(obj)
        doc["open_as"] = more.pop("open_as")
    plaintext = more.pop("plaintext", None)
    if plaintext is not None:
        doc["plaintext_b64"] = _b64(plaintext)
    doc.update(more)
    return doc


def _flip(data: bytes, byte: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[byte] ^= 1 << bit
    return bytes(out)


def _rechecksum(header: bytes) -> bytes:
    """Recompute the trailing SHA-256 so a deliberate edit passes the corruption check."""
    return header[:-32] + hashlib.sha256(header[:-32]).digest()


def _set_field(header: bytes, fmt: str, offset: int, value: int) -> bytes:
    out = bytearray(header)
    struct.pack_into(fmt, out, offset, value)
    return _rechecksum(bytes(out))


def _accounts_json(n: int) -> bytes:
    """Plaintext that looks like what the engine stores (fake secrets, stable)."""
    items = [
        {
            "kind": "totp",
            "secret": "JBSWY3DPEHPK3PXP" + f"{i:08d}".replace("0", "A").replace("1", "B")[:8],
            "issuer": f"Example {i}",
            "name": f"user{i}@example.org",
            "algorithm": "SHA1",
            "digits": 6,
            "period": 30,
            "folder": "Work/2FA",
            "mtime": 1_700_000_000 + i,
        }
        for i in range(n)
    ]
    return json.dumps({"accounts": items}, separators=(",", ":"), sort_keys=True).encode()


def _vector(name: str, description: str, expect: str, *, header: bytes, passphrase: str, **more) -> dict:
    exit_code = {"success": 0, "wrong-passphrase": 3, "integrity": 4}[expect]
    doc = {
        "name": name,
        "description": description,
        "expect": expect,
        "exit_code": exit_code,
        "kdf_derivations": more.pop("kdf_derivations", 1),
        "passphrase": passphrase,
        "header_b64": _b64(header),
        "object_b64": None,
        "open_as": None,
    }
    return _with_object(doc, more)


def build_vectors() -> dict[str, dict]:
    """Every vector, by file stem. Pure function of the code: no real randomness or time."""
    clock: Callable[[], float] = lambda: CLOCK  # noqa: E731
    rng = DetRng("otpbridge vault v1 vectors: vault A")
    header, key = vault.create_epoch(Secret(PASSPHRASE), params=PARAMS, rng=rng, clock=clock)
    ctx = {"kind": "delta", "device": "laptop-1", "seq": 7}
    small = _accounts_json(1)
    obj = key.seal(ctx["kind"], ctx["device"], ctx["seq"], small, rng=rng)
    large = _accounts_json(100)
    assert vault.PAD_MIN < len(large) + 4 <= 2 * vault.PAD_MIN, len(large)
    obj_large = key.seal("snapshot", "server_2", 2**64 - 1, large, rng=rng)
    obj_empty = key.seal("head", "laptop-1", 0, b"", rng=rng)
    header2, key2 = vault.create_epoch(
        Secret(PASSPHRASE),
        params=PARAMS,
        vault_id=key.vault_id,
        epoch=2,
        rng=rng,
        clock=lambda: CLOCK + 86400,
    )
    obj_epoch2 = key2.seal(ctx["kind"], ctx["device"], ctx["seq"], small, rng=rng)

    rng_u = DetRng("otpbridge vault v1 vectors: vault B")
    header_u, key_u = vault.create_epoch(
        Secret(UNICODE_PASSPHRASE), params=PARAMS, epoch=3, rng=rng_u, clock=clock
    )
    obj_u = key_u.seal("state", "pi.local", 12345, small, rng=rng_u)

    salt_len = header[22]
    tail = 23 + salt_len  # offset of vault id
    epoch_at = tail + 16
    info = {"vault_id_hex": key.vault_id.hex(), "epoch": 1, "created": int(CLOCK)}
    v = {}

    def add(name: str, *args, **kw) -> None:
        v[name] = _vector(name, *args, **kw)

    # --- successes
    add(
        "success-small",
        "one account, one 16 KiB bucket; insecure-test KDF (8 MiB, t=1, p=1)",
        "success",
        header=header,
        passphrase=PASSPHRASE,
        object=obj,
        open_as=ctx,
        plaintext=small,
        **info,
    )
    add(
        "success-two-buckets",
        "100 accounts: plaintext over 16 KiB pads to 32 KiB; largest seq (2^64-1)",
        "success",
        header=header,
        passphrase=PASSPHRASE,
        object=obj_large,
        open_as={"kind": "snapshot", "device": "server_2", "seq": 2**64 - 1},
        plaintext=large,
        **info,
    )
    add(
        "success-empty",
        "empty plaintext, seq 0",
        "success",
        header=header,
        passphrase=PASSPHRASE,
        object=obj_empty,
        open_as={"kind": "head", "device": "laptop-1", "seq": 0},
        plaintext=b"",
        **info,
    )
    add(
        "success-epoch2-rotation",
        "epoch 2 of the same vault (fresh salt and vault key, same passphrase)",
        "success",
        header=header2,
        passphrase=PASSPHRASE,
        object=obj_epoch2,
        open_as=ctx,
        plaintext=small,
        vault_id_hex=key.vault_id.hex(),
        epoch=2,
        created=int(CLOCK) + 86400,
    )
    add(
        "success-unicode-passphrase",
        "passphrase is UTF-8 encoded exactly as given (no normalisation); epoch 3",
        "success",
        header=header_u,
        passphrase=UNICODE_PASSPHRASE,
        object=obj_u,
        open_as={"kind": "state", "device": "pi.local", "seq": 12345},
        plaintext=small,
        vault_id_hex=key_u.vault_id.hex(),
        epoch=3,
        created=int(CLOCK),
    )
    # --- passphrase
    add(
        "wrong-passphrase",
        "intact header, passphrase differs in case: key-commitment check fails",
        "wrong-passphrase",
        header=header,
        passphrase=PASSPHRASE.capitalize(),
    )
    add(
        "header-salt-edited-rechecksummed",
        "one salt bit flipped and the checksum recomputed: the derived key changes, which is "
        "indistinguishable from a wrong passphrase (FORMAT.md §7)",
        "wrong-passphrase",
        header=_rechecksum(_flip(header, 23 + 5)),
        passphrase=PASSPHRASE,
    )
    # --- header integrity
    add(
        "header-bitflip",
        "one bit of the vault id flipped: checksum mismatch, no derivation",
        "integrity",
        header=_flip(header, tail + 3, 6),
        passphrase=PASSPHRASE,
        kdf_derivations=0,
    )
    add(
        "header-truncated",
        "last byte missing",
        "integrity",
        header=header[:-1],
        passphrase=PASSPHRASE,
        kdf_derivations=0,
    )
    add(
        "header-extended",
        "one byte appended",
        "integrity",
        header=header + b"\0",
        passphrase=PASSPHRASE,
        kdf_derivations=0,
    )
    add(
        "header-epoch-edited-rechecksummed",
        "epoch 1 -> 2 with the checksum recomputed: the key check passes, the wrap's associated "
        "data does not authenticate",
        "integrity",
        header=_set_field(header, ">Q", epoch_at, 2),
        passphrase=PASSPHRASE,
    )
    add(
        "header-wrapped-key-edited-rechecksummed",
        "one bit of the wrapped key flipped, checksum recomputed",
        "integrity",
        header=_rechecksum(_flip(header, len(header) - 32 - 20)),
        passphrase=PASSPHRASE,
    )
    add(
        "header-version-2",
        "format version byte 2 (checksum recomputed): unsupported, no derivation",
        "integrity",
        header=_set_field(header, ">B", 8, 2),
        passphrase=PASSPHRASE,
        kdf_derivations=0,
    )
    # --- KDF bounds (refused before deriving)
    for name, fmt, off, value, why in [
        ("kdf-memory-too-large", ">I", 10, 4 * 1024 * 1024, "memory 4 GiB > 1 GiB cap"),
        ("kdf-memory-too-small", ">I", 10, 1024, "memory 1 MiB < 8 MiB floor"),
        ("kdf-iterations-too-large", ">I", 14, 1000, "t=1000 > 4"),
        ("kdf-iterations-zero", ">I", 14, 0, "t=0"),
        ("kdf-lanes-too-large", ">I", 18, 255, "p=255 > 4"),
        ("kdf-unknown-id", ">B", 9, 2, "KDF id 2 is not defined in v1"),
    ]:
        add(
            name,
            why + " (checksum recomputed): refused before any derivation",
            "integrity",
            header=_set_field(header, fmt, off, value),
            passphrase=PASSPHRASE,
            kdf_derivations=0,
        )
    short = header[:22] + bytes([8]) + header[23 : 23 + 8] + header[23 + salt_len :]
    add(
        "kdf-salt-too-short",
        "8-byte salt (length byte and checksum consistent): refused before any derivation",
        "integrity",
        header=_rechecksum(short),
        passphrase=PASSPHRASE,
        kdf_derivations=0,
    )
    # --- objects (the header is intact and opens: one derivation)
    bad_objects = [
        ("object-bitflip-ciphertext", "one bit of the ciphertext flipped", _flip(obj, 500, 3), ctx),
        ("object-bitflip-tag", "one bit of the GCM tag flipped", _flip(obj, len(obj) - 1, 7), ctx),
        ("object-bitflip-salt", "one bit of the object salt flipped: key check fails", _flip(obj, 40), ctx),
        ("object-bitflip-epoch", "epoch field says 3", _flip(obj, 33, 1), ctx),
        ("object-truncated", "last byte missing", obj[:-1], ctx),
        ("object-truncated-to-prefix", "only the 98-byte prefix", obj[:98], ctx),
        ("object-extended", "one byte appended", obj + b"\0", ctx),
        ("object-empty", "zero bytes", b"", ctx),
        ("object-is-header", "the epoch header fed as an object", header, ctx),
        ("object-wrong-kind", "opened as kind 'snapshot'", obj, {**ctx, "kind": "snapshot"}),
        ("object-wrong-device", "opened as device 'laptop-2'", obj, {**ctx, "device": "laptop-2"}),
        ("object-wrong-seq", "opened as seq 8 (replayed under another number)", obj, {**ctx, "seq": 8}),
        ("object-other-epoch", "an epoch-2 object opened with the epoch-1 key", obj_epoch2, ctx),
    ]
    for name, why, blob, as_ in bad_objects:
        add(name, why, "integrity", header=header, passphrase=PASSPHRASE, object=blob, open_as=as_)
    # --- sync views of both payload versions (docs/FORMAT.md "View payload"); own rng, so
    # the vectors above do not change
    rng_v = DetRng("otpbridge view payload vectors")
    for version, why in ((1, "a view as otpbridge 0.1.0 wrote it: record id = kind + secret"),
                         (2, "a view of payload v2: stable record ids, two accounts sharing a secret, "
                             "one record renamed since it was made")):
        plain = view_payload(version)
        as_ = {"kind": "view", "device": "0123456789ab", "seq": 3}
        blob = key.seal(as_["kind"], as_["device"], as_["seq"], plain, rng=rng_v)
        add(f"success-view-v{version}", why, "success", header=header, passphrase=PASSPHRASE, object=blob,
            open_as=as_, plaintext=plain, **info)
    return v


# Test secrets of the view vectors (the example seed and an HOTP one).
_SEED = "JBSWY3DPEHPK3PXP"
_HOTP_SEED = "GEZDGNBVGY3TQOJQ"


def _account(issuer: str, name: str, *, kind: str = "totp", secret: str = _SEED, algorithm: str = "SHA1",
             digits: int = 6, period: int = 30, counter: int = 0) -> dict:
    return {"kind": kind, "secret": secret, "issuer": issuer, "name": name, "algorithm": algorithm,
            "digits": digits, "period": period, "counter": counter, "folder": "", "note": ""}


def _secret_id(kind: str, secret_b32: str) -> str:
    """0.1.0's account id: sha256("otpbridge/account-id/v1\\0" kind "\\0" secret)[:32]."""
    raw = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    return hashlib.sha256(b"otpbridge/account-id/v1\0" + kind.encode() + b"\0" + raw).hexdigest()[:32]


def _identity(acc: dict) -> str:
    """The v2 identity: seven length-prefixed fields (docs/FORMAT.md "Account identity")."""
    raw = base64.b32decode(acc["secret"] + "=" * (-len(acc["secret"]) % 8))
    h = hashlib.sha256(b"otpbridge/account-id/v2\0")
    for part in (acc["kind"].encode(), raw, acc["algorithm"].encode(), str(acc["digits"]).encode(),
                 str(acc["period"]).encode(), acc["issuer"].encode(), acc["name"].encode()):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.hexdigest()[:32]


def view_payload(version: int) -> bytes:
    """A whole sync view of payload ``version``, byte for byte as the engine writes it."""
    dev = "0123456789ab"
    if version == 1:
        accs = [_account("Bank", "alice"), _account("Token", "hw", kind="hotp", secret=_HOTP_SEED, counter=4)]
        records = [{"id": _secret_id(a["kind"], a["secret"]), "c": 2, "d": dev, "n": a["counter"], "a": a}
                   for a in accs]
    else:
        bank = _account("Bank", "alice", algorithm="SHA256", digits=8, period=15)
        mail = _account("Mail", "bob")
        born = _account("Token", "hw", kind="hotp", secret=_HOTP_SEED, counter=4)
        renamed = {**born, "issuer": "Token Co", "counter": 6}
        records = [
            {"id": _identity(bank), "c": 2, "d": dev, "n": 0, "a": bank},
            {"id": _identity(mail), "c": 2, "d": dev, "n": 0, "a": mail},
            {"id": _identity(born), "c": 3, "d": dev, "n": 6, "a": renamed},  # id kept across the rename
            {"id": _secret_id("totp", "MFRGGZDFMZTWQ2LK"), "c": 3, "d": dev, "n": 0, "a": None},  # a tombstone
        ]
    payload = {"w": "00" * 8, "home": "11" * 8, "prev": 2, "v": version, "device": dev, "name": "laptop",
               "seq": 3, "epoch": 1, "time": int(CLOCK), "clock": 3, "removed": {}, "devices": {dev: "laptop"},
               "records": sorted(records, key=lambda r: r["id"])}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


# --- version-2 epoch headers: key slots (docs/FORMAT.md §12) ---------------------------------
V2_SECOND_PASSPHRASE = "Tr0ub4dor&3 of the second member"
V2_DEVICE = "0123456789ab"
V2_EXPECT = {"success": 0, "usage": 2, "wrong-passphrase": 3, "integrity": 4}
_PREFIX_LEN = 42  # magic, version 2, vault id, epoch, created, slot count
_AGE_MAGIC = b"age-encryption.org/v1\n"


def _bech32(hrp: str, data: bytes) -> str:
    """BIP 173 bech32 (what age uses for its keys), for a deterministic AGE-SECRET-KEY."""
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

    def polymod(values: list[int]) -> int:
        chk = 1
        for v in values:
            top = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i in range(5):
                if (top >> i) & 1:
                    chk ^= gen[i]
        return chk

    five, acc, bits = [], 0, 0
    for byte in data:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            five.append((acc >> bits) & 31)
    if bits:
        five.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    poly = polymod(expanded + five + [0] * 6) ^ 1
    return hrp + "1" + "".join(alphabet[d] for d in five + [(poly >> 5 * (5 - i)) & 31 for i in range(6)])


def age_identity(secret: bytes) -> tuple[str, str]:
    """(AGE-SECRET-KEY-1..., age1...) for a 32-byte X25519 secret."""
    import pyrage

    text = _bech32("age-secret-key-", secret).upper()
    return text, str(pyrage.x25519.Identity.from_str(text).to_public())


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def ssh_identity(seed: bytes, checkint: bytes, comment: str = "vectors@otpbridge") -> tuple[str, str]:
    """An unencrypted OpenSSH ed25519 private key file and its public key line, written by
    hand (the library's writer draws a random check integer) from a 32-byte seed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pk = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    public = _ssh_string(b"ssh-ed25519") + _ssh_string(pk)
    private = checkint + checkint + public + _ssh_string(seed + pk) + _ssh_string(comment.encode())
    private += bytes(range(1, 1 + (-len(private) % 8)))
    blob = (b"openssh-key-v1\0" + _ssh_string(b"none") + _ssh_string(b"none") + _ssh_string(b"")
            + struct.pack(">I", 1) + _ssh_string(public) + _ssh_string(private))
    b64 = base64.b64encode(blob).decode()
    text = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(b64[i : i + 70] for i in range(0, len(b64), 70))
            + "\n-----END OPENSSH PRIVATE KEY-----\n")
    return text, f"ssh-ed25519 {base64.b64encode(public).decode()} {comment}"


def _identities(texts: list[str]) -> list:
    import pyrage

    out = []
    for text in texts:
        if text.startswith("AGE-SECRET-KEY-1"):
            out.append(pyrage.x25519.Identity.from_str(text))
        else:
            out.append(pyrage.ssh.Identity.from_buffer(text.encode()))
    return out


def _committed_age_blobs(out: Path) -> list[bytes]:
    """The age/ssh slot bodies of the v2 headers already in ``out`` (see the module doc)."""
    blobs = []
    for path in sorted(out.glob("*.json")):
        try:
            doc = json.loads(path.read_text("utf-8"))
            if doc.get("header_version") != 2 or doc.get("expect") != "success":
                continue
            spans = slot_spans(base64.b64decode(doc["header_b64"]))[0]
        except (ValueError, KeyError, IndexError, struct.error):
            continue
        blobs += [body for stype, _sid, _at, body in spans if stype in (3, 4) and body.startswith(_AGE_MAGIC)]
    return blobs


@contextmanager
def _pinned_age_wraps(identity_texts: list[str], out: Path) -> Iterator[None]:
    """Let create_header reuse a committed age ciphertext of the same vault key, so that
    regenerating gives the same bytes (pyrage's encryption is randomized)."""
    import pyrage

    committed = _committed_age_blobs(out)
    identities = _identities(identity_texts)
    original = keyring._age_wrap

    def wrap(kind: str, recipient: str, vault_key: bytes) -> bytes:
        target = keyring.parse_recipient(kind, recipient)
        for blob in committed:
            stanza = b"\n-> X25519 " if kind == "age" else b"\n-> ssh-ed25519 "
            if stanza not in blob:
                continue
            for ident in identities:
                try:
                    if pyrage.decrypt(blob, [ident]) == vault_key and _opens(ident, target):
                        return blob
                except pyrage.DecryptError:
                    pass
        return original(kind, recipient, vault_key)

    keyring._age_wrap = wrap
    try:
        yield
    finally:
        keyring._age_wrap = original


def _opens(identity, recipient) -> bool:
    """Does ``identity`` belong to ``recipient``? (probe: encrypt to it, decrypt with it)"""
    import pyrage

    try:
        return pyrage.decrypt(pyrage.encrypt(b"probe", [recipient]), [identity]) == b"probe"
    except pyrage.DecryptError:
        return False


def slot_spans(header: bytes) -> tuple[list[tuple[int, bytes, int, bytes]], int]:
    """[(type, id, offset of the slot record, body)], offset of the keyring length (§12)."""
    count = header[_PREFIX_LEN - 1]
    off, spans = _PREFIX_LEN, []
    for _ in range(count):
        stype, sid, size = struct.unpack_from(">B8sH", header, off)
        spans.append((stype, sid, off, header[off + 11 : off + 11 + size]))
        off += 11 + size
    return spans, off


def _with_slots(header: bytes, records: list[bytes], count: int | None = None) -> bytes:
    """The header with its slot table replaced by the slot records in ``records`` (count
    byte set, keyring kept, checksum recomputed): what someone without the vault key can build."""
    _spans, end = slot_spans(header)
    table = b"".join(records)
    n, at = 0, 0
    while at < len(table):
        at += 11 + struct.unpack_from(">H", table, at + 9)[0]
        n += 1
    return _rechecksum(header[: _PREFIX_LEN - 1] + bytes([n if count is None else count]) + table + header[end:])


def _record(stype: int, sid: bytes, body: bytes) -> bytes:
    return struct.pack(">B8sH", stype, sid, len(body)) + body


def _typo(code: str) -> str:
    """The code with one letter of its first group changed so that its checksum fails."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    for c in alphabet:
        if c == code[2]:
            continue
        wrong = code[:2] + c + code[3:]
        try:
            keyring.recovery_bytes(Secret(wrong))
        except UsageError:
            return wrong
    raise AssertionError("no typo fails the checksum")


def _lookalikes(code: str) -> str:
    """The code as a person might type it: lower case, spaces, 0/1/8 for O/I/B."""
    return code.replace("O", "0").replace("I", "1").replace("B", "8").replace("-", " ").lower()


def _v2_vector(name: str, description: str, expect: str, *, header: bytes, open_with: str, credential: str,
               secrets: dict, **more) -> dict:
    doc = {
        "name": name,
        "description": description,
        "header_version": 2,
        "expect": expect,
        "exit_code": V2_EXPECT[expect],
        "kdf_derivations": more.pop("kdf_derivations", 0),
        "open_with": open_with,
        "credential": credential,
        **secrets,
        "header_b64": _b64(header),
        "object_b64": None,
        "open_as": None,
    }
    return _with_object(doc, more)


def build_v2_vectors(out: Path = OUT) -> dict[str, dict]:
    """Every version-2 vector, by file stem (needs pyrage for the age and ssh slots)."""
    from otpbridge.vault.keyring import NewSlot, create_header

    rng = DetRng("otpbridge vault v2 vectors: vault C")
    vault_id, vault_key = rng(vault.VAULT_ID_LEN), rng(vault.VAULT_KEY_LEN)
    code = keyring.new_recovery_code(rng).reveal()
    age_secret, age_public = age_identity(rng(32))
    ssh_secret, ssh_public = ssh_identity(rng(32), rng(4))
    other_age, _ = age_identity(rng(32))
    other_code = keyring.new_recovery_code(rng).reveal()
    created = int(CLOCK)
    with _pinned_age_wraps([age_secret, ssh_secret], out):
        header, ring, _made = create_header(
            vault_key, vault_id=vault_id, epoch=1, created=created, keep=(), rng=rng, now=created,
            new=[NewSlot("passphrase", "alice", Secret(PASSPHRASE), params=PARAMS, device=V2_DEVICE),
                 NewSlot("recovery", "paper in the safe", RecoveryKey(code), device=V2_DEVICE),
                 NewSlot("age", "alice's age key", recipient=age_public, device=V2_DEVICE),
                 NewSlot("ssh", "alice's ssh key", recipient=ssh_public, device=V2_DEVICE)])
    key = vault.VaultKey(vault_id, 1, vault_key)
    ctx = {"kind": "delta", "device": "laptop-1", "seq": 7}
    small = _accounts_json(1)
    obj = key.seal(ctx["kind"], ctx["device"], ctx["seq"], small, rng=rng)
    # epoch 2, re-keyed by whoever holds the epoch-1 key: the key files removed, the
    # passphrase and recovery slots re-wrapped from their public keys (no secret needed)
    key2_raw = rng(vault.VAULT_KEY_LEN)
    kept = [s for s in ring.slots if s.type in ("passphrase", "recovery")]
    header2, _ring2, _ = create_header(key2_raw, vault_id=vault_id, epoch=2, created=created + 86400,
                                       keep=kept, rng=rng, now=created + 86400)
    obj2 = vault.VaultKey(vault_id, 2, key2_raw).seal(ctx["kind"], ctx["device"], ctx["seq"], small, rng=rng)
    # another vault: two members' passphrases and a recovery code, no key file
    rng_d = DetRng("otpbridge vault v2 vectors: vault D")
    vid_d, key_d = rng_d(vault.VAULT_ID_LEN), rng_d(vault.VAULT_KEY_LEN)
    code_d = keyring.new_recovery_code(rng_d).reveal()
    header_d, ring_d, _ = create_header(
        key_d, vault_id=vid_d, epoch=5, created=created, keep=(), rng=rng_d, now=created,
        new=[NewSlot("passphrase", "alice", Secret(PASSPHRASE), params=PARAMS, device=V2_DEVICE),
             NewSlot("passphrase", "bob", Secret(V2_SECOND_PASSPHRASE), params=PARAMS, device="fedcba987654"),
             NewSlot("recovery", "", RecoveryKey(code_d), device=V2_DEVICE)])
    obj_d = vault.VaultKey(vid_d, 5, key_d).seal("state", "pi.local", 12345, small, rng=rng_d)

    secrets = {"passphrase": PASSPHRASE, "recovery_code": code, "age_identity": age_secret,
               "age_recipient": age_public, "ssh_identity": ssh_secret, "ssh_public": ssh_public}
    secrets_d = {"passphrase": PASSPHRASE, "second_passphrase": V2_SECOND_PASSPHRASE, "recovery_code": code_d}
    info = {"vault_id_hex": vault_id.hex(), "epoch": 1, "created": created}
    ring_json = [{"id": s.id, "type": s.type, "name": s.name} for s in ring.slots]
    ids = {s.type: s.id for s in ring.slots}
    spans, keyring_at = slot_spans(header)
    (p_type, p_id, p_at, p_body), (r_type, r_id, r_at, r_body), (a_type, a_id, _a_at, a_body) = spans[:3]
    v: dict[str, dict] = {}

    def add(name: str, description: str, expect: str, open_with: str, credential: str, **kw) -> None:
        kw.setdefault("header", header)
        v[name] = _v2_vector(name, description, expect, open_with=open_with, credential=credential,
                             secrets=kw.pop("secrets", secrets), **kw)

    def ok(name: str, description: str, open_with: str, credential: str, slot_type: str, **kw) -> None:
        add(name, description, "success", open_with, credential, object=obj, open_as=ctx, plaintext=small,
            slot=ids[slot_type], keyring=ring_json, **{**info, **kw})

    # --- successes: one header, four kinds of key
    ok("success-v2-slots", "a passphrase, a recovery code, an age key and an ssh key; opened with the passphrase "
       "(one Argon2id derivation, insecure-test preset)", "passphrase", PASSPHRASE, "passphrase", kdf_derivations=1)
    ok("success-v2-recovery", "the same header opened with the recovery code: no Argon2id, HKDF alone",
       "recovery", code, "recovery")
    ok("success-v2-recovery-lookalikes", "the recovery code typed in lower case, with spaces for hyphens and "
       "0, 1, 8 for O, I, B: the same code", "recovery", _lookalikes(code), "recovery")
    ok("success-v2-age", "the same header opened with the age identity (AGE-SECRET-KEY-1...)",
       "identity", age_secret, "age")
    ok("success-v2-ssh", "the same header opened with the OpenSSH ed25519 private key (the age slot is tried "
       "first and does not open)", "identity", ssh_secret, "ssh")
    add("success-v2-rekeyed", "epoch 2: a fresh vault key re-wrapped to the epoch-1 passphrase and recovery "
        "slots from their public keys alone (the key files removed); opened with the recovery code",
        "success", "recovery", code, header=header2, object=obj2, open_as=ctx, plaintext=small,
        slot=ids["recovery"], keyring=[x for x in ring_json if x["type"] in ("passphrase", "recovery")],
        vault_id_hex=vault_id.hex(), epoch=2, created=created + 86400)
    add("success-v2-second-passphrase", "two members' passphrases: the second one opens the second slot "
        "after the first slot's check value did not match (two derivations)", "success", "passphrase",
        V2_SECOND_PASSPHRASE, header=header_d, secrets=secrets_d, kdf_derivations=2, object=obj_d,
        open_as={"kind": "state", "device": "pi.local", "seq": 12345}, plaintext=small, slot=ring_d.slots[1].id,
        keyring=[{"id": s.id, "type": s.type, "name": s.name} for s in ring_d.slots],
        vault_id_hex=vid_d.hex(), epoch=5, created=created)
    # --- the wrong key
    add("v2-wrong-passphrase", "intact header, passphrase differs in case: the passphrase slot's check value "
        "does not match", "wrong-passphrase", "passphrase", PASSPHRASE.capitalize(), kdf_derivations=1)
    add("v2-wrong-recovery-code", "one letter of the recovery code mistyped: its checksum fails, a usage error "
        "before any key is derived", "usage", "recovery", _typo(code))
    add("v2-other-recovery-code", "a well-formed recovery code of another vault: the recovery slot's check "
        "value does not match", "wrong-passphrase", "recovery", other_code)
    add("v2-wrong-age-identity", "an age identity that has no slot in this header", "wrong-passphrase",
        "identity", other_age)
    add("v2-removed-age-key", "epoch 2 no longer has the age slot: the removed key opens nothing",
        "wrong-passphrase", "identity", age_secret, header=header2)
    add("v2-recovery-salt-edited-rechecksummed", "one bit of the recovery slot's salt flipped, checksum "
        "recomputed: another key pair, so the check value does not match (as a wrong code)",
        "wrong-passphrase", "recovery", code, header=_rechecksum(_flip(header, r_at + 11 + 3)))
    # --- tampering that needs the right key to notice (one derivation with a passphrase)
    add("v2-keyring-tampered-rechecksummed", "one bit of the sealed keyring flipped, checksum recomputed: the "
        "slot opens, the keyring does not authenticate", "integrity", "passphrase", PASSPHRASE,
        header=_rechecksum(_flip(header, keyring_at + 4 + 32 + 5)), kdf_derivations=1)
    age_edited = _with_slots(header, [header[p_at:spans[2][2]],
                                      _record(a_type, a_id, a_body.replace(b"\n--- ", b"\n-> x\n\n--- ", 1)),
                                      *(_record(t, i, b) for t, i, _o, b in spans[3:])])
    add("v2-age-slot-edited-rechecksummed", "an empty stanza added to the age slot (checksum recomputed): age's "
        "header MAC fails, which age cannot tell from a wrong identity", "wrong-passphrase", "identity",
        age_secret, header=age_edited)
    add("v2-age-slot-edited-passphrase", "the same edited header opened with the passphrase: its slot opens, "
        "the keyring's associated data (every slot's bytes) does not authenticate", "integrity",
        "passphrase", PASSPHRASE, header=age_edited, kdf_derivations=1)
    add("v2-slot-id-edited-rechecksummed", "the passphrase slot's id changed, checksum recomputed: the check "
        "value matches (it does not depend on the id), the wrap's associated data does not",
        "integrity", "passphrase", PASSPHRASE, header=_rechecksum(_flip(header, p_at + 1)), kdf_derivations=1)
    add("v2-epoch-edited-rechecksummed", "epoch 1 -> 2, checksum recomputed: the recovery slot's check value "
        "matches, its wrap does not authenticate", "integrity", "recovery", code,
        header=_set_field(header, ">Q", 25, 2))
    add("v2-ephemeral-key-zero-rechecksummed", "the recovery slot's ephemeral public key set to zero (a "
        "low-order point, all-zero shared secret), checksum recomputed", "integrity", "recovery", code,
        header=_with_slots(header, [header[p_at:r_at], _record(r_type, r_id, r_body[:32] + bytes(32) + r_body[64:]),
                                    *(_record(t, i, b) for t, i, _o, b in spans[2:])]))
    # --- refused before any derivation
    add("v2-truncated", "last byte missing: checksum mismatch", "integrity", "passphrase", PASSPHRASE,
        header=header[:-1])
    add("v2-truncated-rechecksummed", "last keyring byte missing, checksum recomputed: the keyring length does "
        "not reach the checksum", "integrity", "passphrase", PASSPHRASE,
        header=_rechecksum(header[:-33] + header[-32:]))
    add("v2-bitflip", "one bit of the vault id flipped: checksum mismatch", "integrity", "recovery", code,
        header=_flip(header, 12, 2))
    add("v2-kdf-out-of-bounds", "the passphrase slot asks for 4 GiB of Argon2id memory (checksum recomputed)",
        "integrity", "passphrase", PASSPHRASE, header=_set_field(header, ">I", p_at + 11 + 1, 4 * 1024 * 1024))
    add("v2-kdf-unknown-id", "the passphrase slot names KDF id 2 (checksum recomputed)", "integrity",
        "passphrase", PASSPHRASE, header=_set_field(header, ">B", p_at + 11, 2))
    extra_age = [_record(3, bytes([0xA0 + i]) * 8, a_body) for i in range(5)]
    add("v2-too-many-slots", "nine well-formed slots (the four, and five copies of the age slot under new ids; "
        "checksum recomputed): more than 8", "integrity", "passphrase", PASSPHRASE,
        header=_with_slots(header, [header[p_at:keyring_at], *extra_age]))
    extra_pass = [_record(1, bytes([0xB0 + i]) * 8, p_body) for i in range(4)]
    add("v2-too-many-passphrase-slots", "five passphrase slots (checksum recomputed): more than 4",
        "integrity", "passphrase", PASSPHRASE, header=_with_slots(header, [header[p_at:keyring_at], *extra_pass]))
    add("v2-duplicate-slot-id", "a fifth slot with the age slot's id (checksum recomputed)", "integrity",
        "identity", age_secret, header=_with_slots(header, [header[p_at:keyring_at], _record(3, a_id, a_body)]))
    add("v2-slot-count-zero", "slot count 0 (checksum recomputed)", "integrity", "passphrase", PASSPHRASE,
        header=_with_slots(header, [], count=0))
    add("v2-unknown-slot-type", "the age slot's type byte says 5 (checksum recomputed)", "integrity",
        "identity", age_secret, header=_set_field(header, ">B", spans[2][2], 5))
    add("v2-slot-table-truncated", "slot count 5 but four slot records (checksum recomputed): the keyring's "
        "bytes are read as a fifth slot record, which is none", "integrity", "passphrase",
        PASSPHRASE, header=_with_slots(header, [header[p_at:keyring_at]], count=5))
    add("v2-age-slot-oversized", "the age slot grown past 1024 bytes by a long stanza (checksum recomputed)",
        "integrity", "identity", age_secret,
        header=_with_slots(header, [header[p_at:spans[2][2]],
                                    _record(3, a_id, a_body.replace(b"\n--- ", b"\n-> pad\n" + b"A" * 64 * 14
                                                                    + b"\n--- ", 1) + b"\n" * 64),
                                    *(_record(t, i, b) for t, i, _o, b in spans[3:])]))
    scrypt = b"-> scrypt " + base64.b64encode(bytes(16)).rstrip(b"=") + b" 22\n" + b"A" * 43 + b"\n"
    add("v2-scrypt-stanza", "an scrypt (passphrase) stanza put in the age slot (checksum recomputed): refused "
        "before age runs, so a planted header cannot make the reader run scrypt", "integrity", "identity",
        age_secret, header=_with_slots(header, [header[p_at:spans[2][2]],
                                               _record(3, a_id, a_body.replace(_AGE_MAGIC, _AGE_MAGIC + scrypt, 1)),
                                               *(_record(t, i, b) for t, i, _o, b in spans[3:])]))
    add("v2-not-age", "the age slot holds an armored (PEM) age file, not the binary format (checksum "
        "recomputed)",
        "integrity", "identity", age_secret,
        header=_with_slots(header, [header[p_at:spans[2][2]],
                                    _record(3, a_id, b"-----BEGIN AGE ENCRYPTED FILE-----\n"
                                            + base64.encodebytes(a_body)
                                            + b"-----END AGE ENCRYPTED FILE-----\n"),
                                    *(_record(t, i, b) for t, i, _o, b in spans[3:])]))
    return v


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def build_all(out: Path = OUT) -> dict[str, dict]:
    """The version-1 vectors and the version-2 ones (docs/FORMAT.md §12)."""
    return {**build_vectors(), **build_v2_vectors(out)}


def write(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    vectors = build_all(out)
    for stale in out.glob("*.json"):
        if stale.stem not in vectors:
            stale.unlink()
    paths = []
    for name, doc in sorted(vectors.items()):
        path = out / f"{name}.json"
        path.write_text(render(doc), encoding="utf-8")
        paths.append(path)
    return paths


def check(out: Path = OUT) -> list[str]:
    """Names of vectors whose file differs from what the code produces now."""
    vectors = build_all(out)
    bad = [
        n
        for n, d in vectors.items()
        if not (out / f"{n}.json").is_file() or (out / f"{n}.json").read_text("utf-8") != render(d)
    ]
    bad += [p.stem for p in out.glob("*.json") if p.stem not in vectors]
    return sorted(bad)


def bench(accounts: int = 10_000, rounds: int = 5) -> None:
    import time

    from otpbridge.vault.format import KdfParams

    plaintext = _accounts_json(accounts)
    _, key = vault.create_epoch(Secret(PASSPHRASE), params=PARAMS)
    best_seal = best_open = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        blob = key.seal("snapshot", "bench", 1, plaintext)
        t1 = time.perf_counter()
        assert key.open(blob, kind="snapshot", device="bench", seq=1) == plaintext
        t2 = time.perf_counter()
        best_seal, best_open = min(best_seal, t1 - t0), min(best_open, t2 - t1)
    print(f"{accounts} accounts: plaintext {len(plaintext):,} B, object {len(blob):,} B")
    print(f"seal {best_seal * 1000:.2f} ms, open {best_open * 1000:.2f} ms (best of {rounds})")
    for name in ("insecure-test", "default"):
        p: KdfParams = vault.PRESETS[name]
        t0 = time.perf_counter()
        vault.create_epoch(Secret(PASSPHRASE), params=p)
        print(f"create_epoch with {name} ({p.describe()}): {time.perf_counter() - t0:.3f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    ap.add_argument("--bench", action="store_true", help="print seal/open timings for 10,000 accounts")
    args = ap.parse_args(argv)
    if args.bench:
        bench()
        return 0
    if args.check:
        bad = check()
        for name in bad:
            print(f"differs: {name}")
        return 1 if bad else 0
    for path in write():
        print(path.relative_to(OUT.parents[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
