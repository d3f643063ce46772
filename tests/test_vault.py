"""Vault v1 behaviour: round trips, hostile bytes, KDF bounds, caching, rotation, no leaks."""

from __future__ import annotations

import json
import os
import pickle
import struct
import threading
from collections import Counter
from hashlib import sha256

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, IntegrityError, OtpBridgeError, UsageError
from otpbridge.core.model import b32encode
from otpbridge.core.secrets import Secret
from otpbridge.vault import format as vault

ENV = {"OTPBRIDGE_ALLOW_INSECURE_KDF": "1"}
PASS = Secret("tr0ub4dor & 3 — backup")
PARAMS = vault.choose_params("insecure-test", ENV)
CTX = {"kind": "delta", "device": "laptop-1", "seq": 7}
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def epoch1():
    return vault.create_epoch(PASS, params=PARAMS)


@pytest.fixture(scope="module")
def sealed(epoch1):
    header, key = epoch1
    plaintext = _accounts(3)
    return header, key, plaintext, key.seal(CTX["kind"], CTX["device"], CTX["seq"], plaintext)


def _accounts(n: int, *, seed: int = 0) -> bytes:
    """Serialised accounts of realistic size (~300 bytes each, random secrets)."""
    rows = [
        {
            "kind": "totp",
            "secret": b32encode(sha256(f"{seed}/{i}".encode()).digest()[:20]),
            "issuer": f"Some Service Number {i}",
            "name": f"alice.example.person+{i}@example.com",
            "algorithm": "SHA256",
            "digits": 6,
            "period": 30,
            "folder": "Personal/Two-factor",
            "note": "recovery codes are in the safe",
            "mtime": 1_700_000_000.5 + i,
            "lamport": i,
            "device": "laptop-1",
        }
        for i in range(n)
    ]
    return json.dumps(rows).encode()


def _rechecksum(header: bytes) -> bytes:
    return header[:-32] + sha256(header[:-32]).digest()


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- presets ------------------------------------------------------------------------------


def test_presets_meet_rfc9106_and_bounds():
    floor = vault.KdfParams(memory_kib=64 * 1024, iterations=3, lanes=4)
    for name in ("default", "strong"):
        p = vault.PRESETS[name]
        assert p.memory_kib >= floor.memory_kib and p.iterations >= floor.iterations and p.problems() == []
    assert vault.PRESETS["strong"].memory_kib > vault.PRESETS["default"].memory_kib
    assert vault.PRESETS["insecure-test"].problems() == []


def test_choose_params_gates_insecure_preset(monkeypatch):
    assert vault.choose_params("default", {}) == vault.PRESETS["default"]
    assert vault.choose_params("strong", {}) == vault.PRESETS["strong"]
    assert vault.choose_params(environ={}) == vault.PRESETS["default"]
    assert vault.choose_params("insecure-test", ENV) == vault.PRESETS["insecure-test"]
    for env in ({}, {"OTPBRIDGE_ALLOW_INSECURE_KDF": "0"}, {"OTPBRIDGE_ALLOW_INSECURE_KDF": "yes"}):
        with pytest.raises(UsageError):
            vault.choose_params("insecure-test", env)
    with pytest.raises(UsageError) as info:
        vault.choose_params("fast", ENV)
    assert info.value.exit_code == 2
    monkeypatch.delenv("OTPBRIDGE_ALLOW_INSECURE_KDF", raising=False)
    with pytest.raises(UsageError):
        vault.choose_params("insecure-test")
    monkeypatch.setenv("OTPBRIDGE_ALLOW_INSECURE_KDF", "1")
    assert vault.choose_params("insecure-test") == vault.PRESETS["insecure-test"]


def test_create_epoch_refuses_bad_inputs():
    with pytest.raises(UsageError):
        vault.create_epoch(PASS, params=vault.KdfParams(4 * 1024 * 1024, 3, 4))
    with pytest.raises(UsageError):
        vault.create_epoch(Secret(""), params=PARAMS)
    with pytest.raises(UsageError):
        vault.create_epoch(PASS, params=PARAMS, vault_id=b"short")
    with pytest.raises(UsageError):
        vault.create_epoch(PASS, params=PARAMS, epoch=0)


# --- headers ------------------------------------------------------------------------------


def test_peek_epoch_reads_public_fields_without_a_key():
    stats = Counter()
    header, key = vault.create_epoch(PASS, params=PARAMS, epoch=5, clock=lambda: 1234567890.9, stats=stats)
    info = vault.peek_epoch(header)
    assert (info.vault_id, info.epoch, info.params, info.created) == (key.vault_id, 5, PARAMS, 1234567890)
    assert info.digest == sha256(header).hexdigest() == key.header_digest
    assert stats["kdf"] == 1
    assert len(header) == 199


def test_wrong_passphrase_is_exit_3_and_opaque(epoch1):
    header, _ = epoch1
    stats = Counter()
    with pytest.raises(vault.WrongPassphrase) as info:
        vault.open_epoch(header, Secret("tr0ub4dor & 3 — backuP"), stats=stats)
    err = info.value
    assert isinstance(err, AuthenticationError) and err.exit_code == 3
    assert "backuP" not in str(err) and "backuP" not in repr(err) and stats["kdf"] == 1


@pytest.mark.parametrize(
    "offset, fmt, value",
    [
        (10, ">I", 4 * 1024 * 1024),
        (10, ">I", 2 * 1024 * 1024 + 1),
        (10, ">I", 4096),
        (14, ">I", 11),
        (14, ">I", 0),
        (18, ">I", 9),
        (18, ">I", 0),
        (9, ">B", 7),
    ],
)
def test_out_of_bounds_params_refused_before_deriving(epoch1, offset, fmt, value):
    header, _ = epoch1
    out = bytearray(header)
    struct.pack_into(fmt, out, offset, value)
    bad = _rechecksum(bytes(out))
    stats = Counter()
    with pytest.raises(vault.VaultIntegrityError) as info:
        vault.open_epoch(bad, PASS, stats=stats, cache=vault.KeyCache())
    assert info.value.exit_code == 4 and stats["kdf"] == 0
    with pytest.raises(vault.VaultIntegrityError):
        vault.peek_epoch(bad)


def test_bounds_edges_are_accepted():
    assert vault.KdfParams(vault.MAX_MEMORY_KIB, vault.MAX_ITERATIONS, vault.MAX_LANES).problems() == []
    assert vault.KdfParams(vault.MIN_MEMORY_KIB, 1, 1).problems() == []
    assert vault.KdfParams(vault.MIN_MEMORY_KIB - 1, 1, 1).problems()


def test_deliberate_header_edits(epoch1):
    """Rechecksummed edits: KDF inputs look like a wrong passphrase, the rest is exit 4."""
    header, _ = epoch1
    salt_edit = _rechecksum(_flip(header, 8 * 30))
    with pytest.raises(vault.WrongPassphrase):
        vault.open_epoch(salt_edit, PASS)
    for offset in (
        23 + 32,
        23 + 32 + 16 + 7,
        23 + 32 + 24 + 3,
        len(header) - 33,
    ):  # vault id, epoch, created, wrapped
        with pytest.raises(vault.VaultIntegrityError):
            vault.open_epoch(_rechecksum(_flip(header, 8 * offset)), PASS)


def test_memory_error_is_a_clear_error(monkeypatch, epoch1):
    header, _ = epoch1
    import cryptography.hazmat.primitives.kdf.argon2 as argon2

    class Exhausted:
        def __init__(self, **kw):
            pass

        def derive(self, data):
            raise MemoryError

    monkeypatch.setattr(argon2, "Argon2id", Exhausted)
    with pytest.raises(OtpBridgeError) as info:
        vault.open_epoch(header, PASS)
    assert "memory" in str(info.value) and info.value.exit_code == 1


@given(bit=st.integers(min_value=0, max_value=199 * 8 - 1))
@SETTINGS
def test_header_bitflip_is_always_refused_without_deriving(epoch1, bit):
    header, _ = epoch1
    stats = Counter()
    with pytest.raises(vault.VaultIntegrityError):
        vault.open_epoch(_flip(header, bit), PASS, stats=stats, cache=vault.KeyCache())
    assert stats["kdf"] == 0


@given(bit=st.integers(min_value=0, max_value=(199 - 32) * 8 - 1))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rechecksummed_header_bitflip_never_opens(epoch1, bit):
    header, _ = epoch1
    bad = _rechecksum(_flip(header, bit))
    if 10 * 8 <= bit < 14 * 8:  # memory field: keep derivations cheap, the rest is covered by bounds
        try:
            info = vault.peek_epoch(bad)
        except vault.VaultIntegrityError:
            return
        if info.params.memory_kib > 64 * 1024:
            return
    with pytest.raises((vault.WrongPassphrase, vault.VaultIntegrityError)):
        vault.open_epoch(bad, PASS)


@given(cut=st.integers(min_value=0, max_value=198))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_truncated_header_is_refused(epoch1, cut):
    header, _ = epoch1
    stats = Counter()
    with pytest.raises(vault.VaultIntegrityError):
        vault.open_epoch(header[:cut], PASS, stats=stats)
    assert stats["kdf"] == 0


@pytest.mark.parametrize("blob", [b"", b"\0" * 199, os.urandom(199), os.urandom(4000), "text", None])
def test_garbage_headers(blob):
    with pytest.raises(vault.VaultIntegrityError):
        vault.open_epoch(blob, PASS)


# --- objects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        100,
        16 * 1024 - 5,
        16 * 1024 - 4,
        16 * 1024 - 3,
        100_000,
        1_000_000,
        2 * 1024 * 1024 - 4,
        2_200_000,
    ],
)
def test_round_trip_sizes(epoch1, size):
    _, key = epoch1
    plaintext = os.urandom(size)
    blob = key.seal("snapshot", "dev", size, plaintext)
    assert len(blob) == vault.padded_size(size)
    assert key.open(blob, kind="snapshot", device="dev", seq=size) == plaintext


def test_padding_hides_account_count(epoch1):
    _, key = epoch1
    one, twenty = _accounts(1), _accounts(20)
    assert len(one) < 400 and len(twenty) > 20 * 250  # realistic sizes
    a = key.seal("snapshot", "dev", 1, one)
    b = key.seal("snapshot", "dev", 1, twenty)
    assert len(a) == len(b) == 16 * 1024 + vault.OBJECT_OVERHEAD
    sizes = {len(key.seal("delta", "dev", 1, _accounts(n))) for n in (0, 5, 40)}
    assert sizes == {len(a)}
    assert vault.padded_size(16 * 1024) == 32 * 1024 + vault.OBJECT_OVERHEAD


def test_fresh_randomness_per_object(epoch1):
    _, key = epoch1
    a = key.seal(**CTX, plaintext=b"same")
    b = key.seal(**CTX, plaintext=b"same")
    assert a != b and a[34:66] != b[34:66]
    assert key.open(a, **CTX) == key.open(b, **CTX) == b"same"


@pytest.mark.parametrize(
    "other",
    [
        {"kind": "snapshot"},
        {"device": "laptop-2"},
        {"seq": 8},
        {"seq": 7 + 2**32},
        {"kind": "delta2"},
        {"device": "laptop-10"},
    ],
)
def test_object_bound_to_its_name(sealed, other):
    _, key, _, blob = sealed
    with pytest.raises(vault.VaultIntegrityError) as info:
        key.open(blob, **{**CTX, **other})
    assert isinstance(info.value, IntegrityError) and info.value.exit_code == 4


@given(bit=st.integers(min_value=0, max_value=(98 + 16 * 1024 + 16) * 8 - 1))
@SETTINGS
def test_object_bitflip_is_always_rejected(sealed, bit):
    _, key, _, blob = sealed
    with pytest.raises(vault.VaultIntegrityError):
        key.open(_flip(blob, bit), **CTX)


@given(cut=st.integers(min_value=0, max_value=98 + 16 * 1024 + 15), extra=st.binary(max_size=40))
@SETTINGS
def test_object_truncation_and_extension_rejected(sealed, cut, extra):
    _, key, _, blob = sealed
    with pytest.raises(vault.VaultIntegrityError):
        key.open(blob[:cut], **CTX)
    if extra:
        with pytest.raises(vault.VaultIntegrityError):
            key.open(blob + extra, **CTX)


@given(
    data=st.binary(max_size=3000),
    kind=st.sampled_from(["delta", "head", "state"]),
    seq=st.integers(0, 2**64 - 1),
)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_round_trip_property(epoch1, data, kind, seq):
    _, key = epoch1
    assert key.open(key.seal(kind, "d.e-v_1", seq, data), kind=kind, device="d.e-v_1", seq=seq) == data


def test_not_objects_are_rejected(sealed):
    header, key, _, blob = sealed
    for bad in (
        b"",
        header,
        os.urandom(len(blob)),
        vault.OBJECT_MAGIC + os.urandom(len(blob) - 8),
        blob[:98],
        None,
    ):
        with pytest.raises(vault.VaultIntegrityError):
            key.open(bad, **CTX)
    with pytest.raises(vault.VaultIntegrityError):
        vault.open_epoch(blob, PASS)


def test_other_vault_cannot_open(sealed):
    _, _, _, blob = sealed
    _, stranger = vault.create_epoch(PASS, params=PARAMS)
    with pytest.raises(vault.VaultIntegrityError):
        stranger.open(blob, **CTX)
    # Even a key claiming the same vault id and epoch (a forged header) fails the key check.
    impostor = vault.VaultKey(stranger_id := vault.peek_object(blob).vault_id, 1, os.urandom(32))
    assert stranger_id == impostor.vault_id
    with pytest.raises(vault.VaultIntegrityError):
        impostor.open(blob, **CTX)


def test_names_are_validated(epoch1, sealed):
    _, key = epoch1
    for bad in (
        {"kind": ""},
        {"kind": "a b"},
        {"kind": "x" * 33},
        {"device": "dév"},
        {"device": ""},
        {"seq": -1},
        {"seq": 2**64},
        {"seq": True},
        {"seq": 1.0},
    ):
        with pytest.raises(UsageError):
            key.seal(**{**CTX, **bad}, plaintext=b"x")
        with pytest.raises(vault.VaultIntegrityError):
            key.open(sealed[3], **{**CTX, **bad})


def test_seal_refuses_oversized_plaintext(epoch1, monkeypatch):
    _, key = epoch1
    monkeypatch.setattr(vault, "PAD_MAX", 64 * 1024)
    with pytest.raises(UsageError):
        key.seal(**CTX, plaintext=bytes(64 * 1024))


# --- caching ------------------------------------------------------------------------------


def test_key_derived_once_per_process_with_cache(epoch1, sealed):
    header, key = epoch1
    _, _, plaintext, blob = sealed
    stats, cache = Counter(), vault.KeyCache()
    for _ in range(50):
        k = vault.open_epoch(header, Secret(PASS.reveal()), stats=stats, cache=cache)
        assert k.open(blob, **CTX) == plaintext
    assert stats["kdf"] == 1 and len(cache) == 1 and k == key
    # Without a cache, every open derives (proves the counter counts).
    for _ in range(2):
        vault.open_epoch(header, PASS, stats=stats)
    assert stats["kdf"] == 3


def test_cache_keyed_by_passphrase_and_header(epoch1):
    header, _ = epoch1
    stats, cache = Counter(), vault.KeyCache()
    vault.open_epoch(header, PASS, stats=stats, cache=cache)
    with pytest.raises(vault.WrongPassphrase):
        vault.open_epoch(header, Secret("wrong"), stats=stats, cache=cache)
    with pytest.raises(vault.VaultIntegrityError):  # a damaged copy never hits the cache
        vault.open_epoch(_flip(header, 8 * 60), PASS, stats=stats, cache=cache)
    assert stats["kdf"] == 2 and len(cache) == 1
    assert PASS.reveal() not in repr(cache)
    blobs = [v for v in vars(cache).values() if isinstance(v, bytes)]
    blobs += [b for slot in cache._keys for b in slot if isinstance(b, bytes)]
    assert all(PASS.encode() not in b and sha256(PASS.encode()).digest() != b for b in blobs)


def test_create_epoch_primes_the_cache():
    stats, cache = Counter(), vault.KeyCache()
    header, key = vault.create_epoch(PASS, params=PARAMS, stats=stats, cache=cache)
    assert vault.open_epoch(header, PASS, stats=stats, cache=cache) is key
    assert stats["kdf"] == 1


def test_concurrent_opens_derive_once(epoch1):
    header, _ = epoch1
    stats, cache, keys = Counter(), vault.KeyCache(), []
    threads = [
        threading.Thread(target=lambda: keys.append(vault.open_epoch(header, PASS, stats=stats, cache=cache)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and stats["kdf"] == 1


# --- no leaks -----------------------------------------------------------------------------


def test_reprs_and_errors_hold_no_key_material(sealed):
    header, key, plaintext, blob = sealed
    raw = key._key
    for text in (repr(key), str(key), repr(vault.peek_epoch(header)), repr(vault.KeyCache())):
        assert raw.hex() not in text and raw.hex().upper() not in text and repr(raw) not in text
    assert key.vault_id.hex() in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    errors = []
    for attempt in (
        lambda: key.open(_flip(blob, 900), **CTX),
        lambda: key.open(blob, **{**CTX, "seq": 9}),
        lambda: vault.open_epoch(header, Secret("nope-passphrase")),
        lambda: vault.open_epoch(header[:-3], PASS),
    ):
        with pytest.raises(OtpBridgeError) as info:
            attempt()
        errors.append(info.value)
    for err in errors:
        text = " ".join([str(err), repr(err), err.hint or ""])
        assert raw.hex() not in text and PASS.reveal() not in text and "nope-passphrase" not in text
        assert plaintext[:20].decode() not in text
        assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


# --- rotation -----------------------------------------------------------------------------


def test_rotation_keys_are_disjoint(epoch1, sealed):
    header1, key1 = epoch1
    _, _, _, blob1 = sealed
    new_pass = Secret("a brand new passphrase")
    header2, key2 = vault.create_epoch(new_pass, params=PARAMS, vault_id=key1.vault_id, epoch=2)
    info = vault.peek_epoch(header2)
    assert (info.vault_id, info.epoch) == (key1.vault_id, 2) and key2 != key1
    blob2 = key2.seal(**CTX, plaintext=b"epoch two")
    with pytest.raises(vault.VaultIntegrityError):
        key2.open(blob1, **CTX)
    with pytest.raises(vault.VaultIntegrityError):
        key1.open(blob2, **CTX)
    # An epoch-1 key relabelled as epoch 2 still cannot open epoch-2 objects.
    forged = vault.VaultKey(key1.vault_id, 2, key1._key)
    with pytest.raises(vault.VaultIntegrityError):
        forged.open(blob2, **CTX)
    with pytest.raises(vault.WrongPassphrase):
        vault.open_epoch(header2, PASS)
    assert vault.open_epoch(header2, new_pass).open(blob2, **CTX) == b"epoch two"
    assert vault.peek_object(blob2) == vault.ObjectInfo(key1.vault_id, 2)
