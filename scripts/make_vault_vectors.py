"""Regenerate the vault v1 golden vectors in tests/vectors/vault/ (deterministically).

    .venv/bin/python scripts/make_vault_vectors.py          # rewrite the files
    .venv/bin/python scripts/make_vault_vectors.py --check  # exit 1 if they would change
    .venv/bin/python scripts/make_vault_vectors.py --bench  # seal/open timing, 10,000 accounts

Randomness comes from a SHA-256 counter stream seeded with a fixed label and the clock is
fixed, so the same code always yields the same bytes; a change in the bytes is a format
change and must come with a FORMAT_VERSION bump (tests/test_vault_vectors.py checks it).
Vectors use the insecure-test KDF preset (8 MiB, t=1, p=1) so they open in milliseconds;
the bounds accept it on read, and the format is the same for every preset.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from otpbridge.core.secrets import Secret
from otpbridge.vault import format as vault

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
    obj = more.pop("object", None)
    if obj is not None:
        doc["object_b64"] = _b64(obj)
        doc["open_as"] = more.pop("open_as")
    plaintext = more.pop("plaintext", None)
    if plaintext is not None:
        doc["plaintext_b64"] = _b64(plaintext)
    doc.update(more)
    return doc


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


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    vectors = build_vectors()
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
    vectors = build_vectors()
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
