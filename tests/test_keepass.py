"""The keepass: store on real KDBX files written by pykeepass (KeePassXC interop: test_keepass_interop.py)."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, FormatError, OtpBridgeError, UsageError
from otpbridge.core.model import Account, Algorithm, Kind, b32decode, b32encode
from otpbridge.core.otpauth import format_uri, parse_uri
from otpbridge.core.secrets import Secret
from otpbridge.plugins import keepass_fields as kf
from otpbridge.plugins import keepass_kdbx as kdbx
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import detect_kind, open_store
from tests.support.kdbx import E, entry_fields, make_kdbx4, make_keyfile
from tests.support.paths import FIXTURES

S = {i: b32encode(hashlib.sha256(f"otpbridge-keepass-{i}".encode()).digest()[:10 + i % 11]) for i in range(40)}


def secret(i: int) -> bytes:
    return b32decode(S[i])


def ctx_with(password: str | None = "pw", **env: str) -> Context:
    environ = dict(env)
    if password is not None:
        environ["OTPBRIDGE_KEEPASS_PASSWORD"] = password
    warnings: list[str] = []
    ctx = Context(environ=environ, warn=warnings.append, info=lambda m: None)
    ctx.warnings = warnings  # type: ignore[attr-defined]
    return ctx


def kstore(path: Path, ctx: Context | None = None, **options: str):
    return open_store(StoreSpec("keepass", str(path), options), ctx or ctx_with())


def key(acc: Account) -> tuple:
    return (acc.kind, acc.secret, acc.issuer, acc.name, acc.algorithm, acc.digits, acc.period, acc.counter, acc.folder)


# -- the read conventions ---------------------------------------------------------------------

CONVENTIONS = [
    # (entry, expected account or None, expected error substring or None)
    (
        E("GitHub", "alice", "pw-a", "Dev", {"otp": f"otpauth://totp/GitHub:alice?secret={S[1]}&issuer=GitHub"}),
        Account(Kind.TOTP, secret(1), "GitHub", "alice", folder="Dev"),
    ),
    (
        # What KeePassXC writes: padding as %3D, issuer = title; lower case secret tolerated.
        E("Title X", "bob", "", "", {"otp": "otpauth://totp/Title%20X:bob?secret="
          + base64.b32encode(secret(2)).decode().lower().replace("=", "%3D")
          + "&period=30&digits=8&issuer=Title%20X&algorithm=SHA256"}),
        Account(Kind.TOTP, secret(2), "Title X", "bob", algorithm=Algorithm.SHA256, digits=8),
    ),
    (
        E("Fill", "carol", "", "A/B", {"otp": f"otpauth://totp/?secret={S[3]}"}),
        Account(Kind.TOTP, secret(3), "Fill", "carol", folder="A/B"),
    ),
    (
        E("KeeOtp", "dan", "", "", {"otp": f"key={S[4]}&size=8&step=60&otpHashMode=Sha512"}),
        Account(Kind.TOTP, secret(4), "KeeOtp", "dan", algorithm=Algorithm.SHA512, digits=8, period=60),
    ),
    (
        E("KeeOtpH", "erin", "", "", {"otp": f"key={S[5]}&type=Hotp&counter=7"}),
        Account(Kind.HOTP, secret(5), "KeeOtpH", "erin", counter=7),
    ),
    (
        E("Legacy", "fred", "", "", {"TOTP Seed": " ".join(S[6].lower()[i:i + 4] for i in range(0, len(S[6]), 4)),
                                     "TOTP Settings": "30;6"}),
        Account(Kind.TOTP, secret(6), "Legacy", "fred"),
    ),
    (
        E("Steam", "gina", "", "Games", {"TOTP Seed": S[7], "TOTP Settings": "30;S"}),
        Account(Kind.STEAM, secret(7), "Steam", "gina", folder="Games"),
    ),
    (
        E("Legacy8", "hal", "", "", {"TOTP Seed": S[8], "TOTP Settings": "60;8;https://time.example"}),
        Account(Kind.TOTP, secret(8), "Legacy8", "hal", digits=8, period=60),
    ),
    (
        E("KP2 utf8", "ian", "", "", {"TimeOtp-Secret": "12345678901234567890", "TimeOtp-Length": "8",
                                      "TimeOtp-Period": "45", "TimeOtp-Algorithm": "HMAC-SHA-256"}),
        Account(Kind.TOTP, b"12345678901234567890", "KP2 utf8", "ian", algorithm=Algorithm.SHA256, digits=8, period=45),
    ),
    (
        E("KP2 hex", "jo", "", "", {"TimeOtp-Secret-Hex": secret(10).hex(), "TimeOtp-Period": "0"}),
        Account(Kind.TOTP, secret(10), "KP2 hex", "jo"),
    ),
    (
        E("KP2 b32", "kim", "", "", {"TimeOtp-Secret-Base32": S[11].lower()}),
        Account(Kind.TOTP, secret(11), "KP2 b32", "kim"),
    ),
    (
        E("KP2 b64", "lee", "", "", {"TimeOtp-Secret-Base64": base64.b64encode(secret(12)).decode(),
                                     "TimeOtp-Algorithm": "HMAC-SHA-512"}),
        Account(Kind.TOTP, secret(12), "KP2 b64", "lee", algorithm=Algorithm.SHA512),
    ),
    (
        E("HOTP", "max", "", "", {"HmacOtp-Secret-Base32": S[13], "HmacOtp-Counter": "42"}),
        Account(Kind.HOTP, secret(13), "HOTP", "max", counter=42),
    ),
    (
        E("HOTP hex", "ned", "", "", {"HmacOtp-Secret-Hex": secret(14).hex()}),
        Account(Kind.HOTP, secret(14), "HOTP hex", "ned", counter=0),
    ),
    (
        E("SteamUri", "olga", "", "", {"otp": f"otpauth://totp/Steam:olga?secret={S[15]}&issuer=Steam&digits=5&encoder=steam"}),
        Account(Kind.STEAM, secret(15), "Steam", "olga"),
    ),
    (
        E("KeePassOTP", "pat", "", "", {"otp": f"otpauth://totp/Hexy:pat?secret={secret(16).hex()}&encoding=hex"}),
        Account(Kind.TOTP, secret(16), "Hexy", "pat"),
    ),
    (
        E("HotpUri", "quin", "", "", {"otp": f"otpauth://hotp/Bank:quin?secret={S[17]}&counter=3&issuer=Bank"}),
        Account(Kind.HOTP, secret(17), "Bank", "quin", counter=3),
    ),
]

BROKEN = [
    (E("Garbage", "", "", "Bad", {"otp": "hello world!"}), "Bad/Garbage", "neither"),
    (E("BadB32", "", "", "", {"TimeOtp-Secret-Base32": "!!!!"}), "BadB32", "empty"),
    (E("BadSettings", "", "", "", {"TOTP Seed": S[20], "TOTP Settings": "abc;6"}), "BadSettings", "period"),
    (E("Yandex", "", "", "", {"otp": f"otpauth://totp/Y:z?secret={S[21]}&encoder=yandex&yandexpin=1234"}), "Yandex", "yandex"),
    (E("Motp", "", "", "", {"otp": f"otpauth://motp/Y:z?secret={S[22]}"}), "Motp", "unsupported"),
    (E("Digits", "", "", "", {"TimeOtp-Secret-Base32": S[23], "TimeOtp-Length": "4"}), "Digits", "digits"),
]


@pytest.fixture(scope="module")
def conventions_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kp") / "conventions.kdbx"
    entries = [e for e, _ in CONVENTIONS] + [e for e, _, _ in BROKEN]
    entries.append(E("Plain", "nobody", "just-a-password", "", {"PIN": ("1234", True)}))
    recycled = [E("Deleted", "x", "", "", {"otp": f"otpauth://totp/Gone:x?secret={S[30]}"})]
    return make_kdbx4(path, entries, recycled=recycled)


def test_every_convention_is_read(conventions_db):
    result = kstore(conventions_db).read()
    got = {key(a) for a in result.accounts}
    for entry, expected in CONVENTIONS:
        assert key(expected) in got, entry.title
    assert len(result.accounts) == len(CONVENTIONS)  # the recycle bin and the broken ones are not there


def test_broken_entries_are_reported_by_path_without_secrets(conventions_db):
    result = kstore(conventions_db).read()
    errors = {e.where: e.reason for e in result.errors}
    assert len(result.errors) == len(BROKEN)
    for entry, where, reason in BROKEN:
        assert where in errors, where
        assert reason in errors[where].lower(), (where, errors[where])
        for value in entry.fields.values():
            if len(str(value)) >= 8:
                assert str(value) not in str(result.errors)


def test_recycle_bin_is_ignored(conventions_db):
    accounts = kstore(conventions_db).read().accounts
    assert secret(30) not in {a.secret for a in accounts}


def test_mtime_comes_from_the_entry(conventions_db):
    accounts = kstore(conventions_db).read().accounts
    assert all(a.mtime is not None and a.mtime > 1.6e9 for a in accounts)


def test_one_kdf_per_open(conventions_db):
    ctx = ctx_with()
    kstore(conventions_db, ctx).read()
    assert ctx.stats["keepass_kdf"] == 1


def test_kpxc_base32_leniency():
    # KeePassXC maps 0->O, 1->L, 8->B and drops anything else that is not Base32.
    assert kf.kpxc_b32decode("jbsw y3dp-ehpk 3pxp") == b32decode("JBSWY3DPEHPK3PXP")
    assert kf.kpxc_b32decode("JBSWY3DPEHPK3PXP0018") == b32decode("JBSWY3DPEHPK3PXPOOLB")
    assert kf.kpxc_b32decode("JBSWY3DP======") == b32decode("JBSWY3DP")
    with pytest.raises(ValueError):
        kf.kpxc_b32decode("!!!")


def test_first_slot_in_keepassxc_order_wins_and_others_are_not_hidden():
    fields = {
        "TOTP Seed": S[1], "TOTP Settings": "30;8",
        "otp": f"otpauth://totp/X:y?secret={S[1]}&digits=6",
        "TimeOtp-Secret-Base32": S[2],
    }
    accounts = kf.entry_accounts(kf.read_slots(fields, title="T", username="u"))
    assert [(a.secret, a.digits) for a in accounts] == [(secret(1), 8), (secret(2), 6)]


def test_sniff_and_detect(conventions_db, tmp_path):
    from otpbridge.plugins.keepass import KeePassStore

    head = conventions_db.read_bytes()[:256]
    assert KeePassStore.sniff(conventions_db, head)
    assert not KeePassStore.sniff(conventions_db, b"otpauth://totp/x?secret=AAAA")
    assert KeePassStore.sniff(conventions_db, kdbx.SIG1 + kdbx.SIG2_KDB + bytes(8))
    assert detect_kind(conventions_db) == "keepass"


# -- the key derivation ---------------------------------------------------------------------------


@given(seed=st.binary(min_size=32, max_size=32), rounds=st.integers(0, 3000), composite=st.binary(min_size=32, max_size=32))
@settings(max_examples=25, deadline=None)
def test_fast_aes_kdf_equals_pykeepass(seed, rounds, composite):
    from pykeepass.kdbx_parsing.common import aes_kdf

    assert kdbx.aes_kdf(seed, rounds, composite) == aes_kdf(seed, rounds, composite)


def test_fast_aes_kdf_crosses_chunk_boundaries():
    from pykeepass.kdbx_parsing.common import aes_kdf

    seed, composite = os.urandom(32), os.urandom(32)
    rounds = kdbx._CHUNK_BLOCKS * 2 + 3
    assert kdbx.aes_kdf(seed, rounds, composite) == aes_kdf(seed, rounds, composite)


@pytest.mark.parametrize("kdf", ["aes", "argon2d", "argon2id"])
def test_transformed_key_equals_pykeepass(tmp_path, kdf):
    from pykeepass import PyKeePass

    path = make_kdbx4(tmp_path / "k.kdbx", [E("x")], kdf=kdf, rounds=5000)
    data = path.read_bytes()
    header = kdbx.read_header(data)
    assert header.major == 4 and header.kdf.kind == kdf.replace("aes", "aes")
    ours = kdbx.derive(header.kdf, kdbx.composite_key(Secret("pw"), None))
    assert ours == PyKeePass(str(path), "pw").transformed_key


def test_header_bounds_refuse_absurd_kdf():
    with pytest.raises(FormatError, match="rounds"):
        kdbx.check_kdf(kdbx.KdfParams("aes", bytes(32), rounds=2**40))
    with pytest.raises(FormatError, match="memory"):
        kdbx.check_kdf(kdbx.KdfParams("argon2d", bytes(32), memory=2**50, iterations=1, parallelism=1))


# -- opening: credentials and damage --------------------------------------------------------------


def test_wrong_password_is_exit_3(conventions_db):
    with pytest.raises(AuthenticationError) as info:
        kstore(conventions_db, ctx_with("wrong")).read()
    assert info.value.exit_code == 3


def test_password_option_sources(conventions_db, tmp_path):
    pwfile = tmp_path / "pw.txt"
    pwfile.write_text("pw\n")
    assert kstore(conventions_db, ctx_with(None), **{"password-file": str(pwfile)}).read().accounts
    assert kstore(conventions_db, ctx_with(None, MYPW="pw"), **{"password-env": "MYPW"}).read().accounts
    assert kstore(conventions_db, ctx_with(None, OTPBRIDGE_STORE_PASSWORD="pw")).read().accounts


def test_no_password_source_is_a_usage_error(conventions_db):
    with pytest.raises(UsageError):
        kstore(conventions_db, ctx_with(None)).read()


def test_keyfile_only(tmp_path):
    kf_path = make_keyfile(tmp_path / "db.key")
    path = make_kdbx4(tmp_path / "k.kdbx", CONVENTIONS[0][:1], password=None, keyfile=kf_path)
    accounts = kstore(path, ctx_with(None), keyfile=str(kf_path)).read().accounts
    assert [a.secret for a in accounts] == [secret(1)]
    with pytest.raises(AuthenticationError):
        kstore(path, ctx_with(None), keyfile=str(make_keyfile(tmp_path / "other.key"))).read()


def test_password_and_keyfile(tmp_path):
    kf_path = make_keyfile(tmp_path / "db.key")
    path = make_kdbx4(tmp_path / "k.kdbx", CONVENTIONS[0][:1], password="pw", keyfile=kf_path)
    assert kstore(path, keyfile=str(kf_path)).read().accounts
    with pytest.raises(AuthenticationError):
        kstore(path).read()  # the key file is missing from the spec
    with pytest.raises(UsageError, match="key file"):
        kstore(path, keyfile=str(tmp_path / "nope.key")).read()


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        kstore(tmp_path / "absent.kdbx").read()


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not a database", kdbx.SIG1 + kdbx.SIG2_KDB + bytes(200), kdbx.SIG1 + kdbx.SIG2_KDBX + b"\x01\x00\x09\x00"],
)
def test_garbage_is_a_format_error(tmp_path, data):
    path = tmp_path / "bad.kdbx"
    path.write_bytes(data)
    with pytest.raises(FormatError):
        kstore(path).read()


def test_truncated_is_a_format_error(tmp_path):
    path = make_kdbx4(tmp_path / "k.kdbx", [e for e, _ in CONVENTIONS[:3]], kdf="aes", rounds=100)
    data = path.read_bytes()
    for cut in (10, 40, 150, len(data) // 2, len(data) - 40, len(data) - 1):
        bad = tmp_path / f"cut{cut}.kdbx"
        bad.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            kstore(bad).read()


@pytest.fixture(scope="module")
def small_dbs(tmp_path_factory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("small")
    entries = [CONVENTIONS[0][0], CONVENTIONS[5][0]]
    return [
        make_kdbx4(folder / "aes.kdbx", entries, kdf="aes", rounds=200).read_bytes(),
        make_kdbx4(folder / "argon.kdbx", entries, kdf="argon2d").read_bytes(),
    ]


@given(which=st.integers(0, 1), data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_corruption_raises_only_our_errors(small_dbs, tmp_path, which, data):
    blob = bytearray(small_dbs[which])
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)), min_size=1, max_size=4))
    for pos, xor in flips:
        blob[pos] ^= xor
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    path = tmp_path / "corrupt.kdbx"
    path.write_bytes(bytes(blob))
    with pytest.MonkeyPatch.context() as mp:
        # Bound the work a corrupted header may ask for, so the test stays fast.
        mp.setattr(kdbx, "MAX_AES_ROUNDS", 100_000)
        mp.setattr(kdbx, "MAX_ARGON2_MEMORY", 8 << 20)
        mp.setattr(kdbx, "MAX_ARGON2_ITERATIONS", 8)
        mp.setattr(kdbx, "MAX_ARGON2_PARALLELISM", 4)
        try:
            kstore(path).read()
        except OtpBridgeError as exc:
            assert exc.exit_code in (3, 4)


# -- the read-only reader (keepass_kdbx.open_for_reading) ------------------------------------------


def _pykeepass_tree(path: Path, password: str | None = "pw", keyfile: Path | None = None) -> bytes:
    from lxml import etree
    from pykeepass import PyKeePass

    return etree.tostring(PyKeePass(str(path), password=password, keyfile=None if keyfile is None else str(keyfile)).tree)


@pytest.mark.parametrize("kdf", ["aes", "argon2d"])
def test_reader_gives_the_tree_pykeepass_gives(tmp_path, kdf):
    """Protected values (the inner ChaCha20 stream, decrypted in one call) land where pykeepass puts them;
    History entries consume the stream too."""
    from lxml import etree

    odd = {"otp": f"otpauth://totp/Ünï:çødé?secret={S[9]}", "Secret note": ("tab\there \u2603 \U0001F600", True),
           "Plain": ("not protected", False), "Empty": ("", True)}
    entries = [E(f"t{i}", f"u{i}", f"pw-{i}-\u00e9", "F/G" if i % 2 else "", odd) for i in range(25)]
    path = make_kdbx4(tmp_path / "k.kdbx", entries, kdf=kdf, rounds=100)
    from pykeepass import PyKeePass

    kp = PyKeePass(str(path), "pw")  # give one entry a history (protected values in History/Entry)
    kp.find_entries(title="t3", first=True).save_history()
    kp.save()
    db = kdbx.open_for_reading(path.read_bytes(), Secret("pw"), None, "k")
    assert isinstance(db, kdbx.ReadOnlyDatabase) and db.version == (4, 0)
    assert etree.tostring(db.tree) == _pykeepass_tree(path)


def test_reader_with_a_keyfile_and_no_password(tmp_path):
    from lxml import etree

    keyfile = make_keyfile(tmp_path / "k.key")
    path = make_kdbx4(tmp_path / "k.kdbx", [e for e, _ in CONVENTIONS[:2]], password=None, keyfile=keyfile, kdf="aes", rounds=100)
    db = kdbx.open_for_reading(path.read_bytes(), None, keyfile, "k")
    assert etree.tostring(db.tree) == _pykeepass_tree(path, None, keyfile)


def test_reader_checks_every_block(tmp_path):
    """A flipped byte in the encrypted payload fails its block HMAC: damage, not a wrong password."""
    path = make_kdbx4(tmp_path / "k.kdbx", [e for e, _ in CONVENTIONS[:3]], kdf="aes", rounds=100)
    data = bytearray(path.read_bytes())
    start = kdbx.read_header(bytes(data)).length + 64 + 36  # first block's data
    data[start + 5] ^= 0x40
    with pytest.raises(FormatError, match="damaged"):
        kdbx.open_for_reading(bytes(data), Secret("pw"), None, "k")
    with pytest.raises(AuthenticationError):
        kdbx.open_for_reading(path.read_bytes(), Secret("nope"), None, "k")


def test_reading_does_not_import_pykeepass(conventions_db):
    """The read path is the fast one: no construct parsing, no per-value cipher calls."""
    import subprocess
    import sys

    code = (
        "import sys; from otpbridge.stores.base import Context, StoreSpec; from otpbridge.stores.registry import open_store;"
        "ctx = Context(environ={'OTPBRIDGE_KEEPASS_PASSWORD': 'pw'}, warn=lambda m: None, info=lambda m: None);"
        f"r = open_store(StoreSpec('keepass', {str(conventions_db)!r}, {{}}), ctx).read();"
        "assert r.accounts; print(sorted(m for m in sys.modules if m.startswith(('pykeepass', 'construct'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- writing ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def cheap_new_databases(monkeypatch):
    """New databases normally cost a second of Argon2; tests of everything else need not pay it."""
    from otpbridge.plugins import keepass

    monkeypatch.setattr(keepass, "NEW_DATABASE_ARGON2", {"memory": 1 << 20, "iterations": 2, "parallelism": 1})


def acc(i: int, kind: Kind = Kind.TOTP, **kw) -> Account:
    return Account(kind, secret(i), **{"issuer": f"Issuer{i}", "name": f"user{i}", **kw})


def test_new_database_is_created_and_reads_back(tmp_path):
    path = tmp_path / "new.kdbx"
    accounts = [acc(1, folder="Work/Dev"), acc(2, Kind.STEAM), acc(3, Kind.HOTP, counter=9), acc(4, digits=8, period=60,
                algorithm=Algorithm.SHA512)]
    report = kstore(path).apply(accounts)
    assert len(report.added) == 4 and not report.errors and report.backup is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kdbx.read_header(path.read_bytes()).major == 4
    back = kstore(path).read()
    assert sorted(map(key, back.accounts)) == sorted(map(key, accounts)) and not back.errors
    hotp = entry_fields(path, "Issuer3")
    assert hotp["HmacOtp-Secret-Base32"] == S[3] and hotp["HmacOtp-Counter"] == "9" and "otp" not in hotp
    assert entry_fields(path, "Issuer1")["otp"].startswith("otpauth://totp/Issuer1:user1?secret=")


def test_secrets_are_stored_protected(tmp_path):
    from pykeepass import PyKeePass

    path = tmp_path / "p.kdbx"
    kstore(path).apply([acc(1), acc(3, Kind.HOTP), acc(5, Kind.HOTP, algorithm=Algorithm.SHA512)])
    make_kdbx4(tmp_path / "n.kdbx", [E("N", "u", "", "", {"TimeOtp-Secret-Base32": (S[9], False)})])
    (native,) = kstore(tmp_path / "n.kdbx").read().accounts
    kstore(tmp_path / "n.kdbx").apply([native.replace(digits=8)], [native])
    for db, title, name in ((path, "Issuer1", "otp"), (path, "Issuer3", "HmacOtp-Secret-Base32"),
                            (path, "Issuer5", kf.OB_HOTP_FIELD), (tmp_path / "n.kdbx", "N", "TimeOtp-Secret-Base32")):
        entry = PyKeePass(str(db), "pw").find_entries(title=title, first=True)
        values = [s.find("Value") for s in entry._element.iterfind("String") if s.findtext("Key") == name]
        assert len(values) == 1 and values[0].get("Protected") == "True", (title, name)


def test_refuses_to_overwrite_a_concurrent_save(user_db, monkeypatch):
    from otpbridge.plugins import keepass

    real = kdbx.serialize

    def serialize_while_someone_saves(db):
        out = real(db)
        user_db.write_bytes(user_db.read_bytes() + b"")  # same bytes: still fine
        return out

    monkeypatch.setattr(keepass.kdbx, "serialize", serialize_while_someone_saves)
    assert kstore(user_db).apply([acc(34)]).added
    saved = user_db.read_bytes()

    def serialize_and_race(db):
        out = real(db)
        user_db.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))  # another program saved meanwhile
        return out

    monkeypatch.setattr(keepass.kdbx, "serialize", serialize_and_race)
    with pytest.raises(OtpBridgeError, match="changed on disk") as info:
        kstore(user_db).apply([acc(35)])
    assert info.value.exit_code == 6  # refused: writing would overwrite the other save
    assert user_db.read_bytes() == saved[:-1] + bytes([saved[-1] ^ 1])


def test_new_database_default_cost(tmp_path, monkeypatch):
    from otpbridge.plugins import keepass

    monkeypatch.undo()
    path = tmp_path / "new.kdbx"
    kstore(path).apply([acc(1)])
    kdf = kdbx.read_header(path.read_bytes()).kdf
    assert (kdf.kind, kdf.memory, kdf.iterations) == ("argon2d", 64 << 20, keepass.NEW_DATABASE_ARGON2["iterations"])


def test_new_database_needs_a_password(tmp_path):
    with pytest.raises(UsageError):
        kstore(tmp_path / "new.kdbx", ctx_with(None)).apply([acc(1)])
    with pytest.raises(UsageError, match="empty password"):
        kstore(tmp_path / "new.kdbx", ctx_with("")).apply([acc(1)])
    assert not (tmp_path / "new.kdbx").exists()


def test_new_database_with_keyfile(tmp_path):
    kf_path = make_keyfile(tmp_path / "k.key")
    path = tmp_path / "new.kdbx"
    kstore(path, keyfile=str(kf_path)).apply([acc(1)])
    assert [a.secret for a in kstore(path, keyfile=str(kf_path)).read().accounts] == [secret(1)]
    with pytest.raises(AuthenticationError):
        kstore(path).read()


@pytest.fixture
def user_db(tmp_path) -> Path:
    """A database a person uses: passwords, URLs, custom fields, notes, and OTP in several conventions."""
    return make_kdbx4(
        tmp_path / "user.kdbx",
        [
            E("Legacy", "fred", "hunter2", "Mail", {"TOTP Seed": S[6], "TOTP Settings": "30;6", "PIN": ("4321", True)},
              notes="my notes"),
            E("Native", "ian", "pw-native", "", {"TimeOtp-Secret-Base32": S[9], "TimeOtp-Length": "6", "URL2": "x"}),
            E("Uri", "alice", "pw-uri", "", {"otp": f"otpauth://totp/GitHub:alice?secret={S[1]}&issuer=GitHub"}),
            E("Hotp", "max", "pw-hotp", "", {"HmacOtp-Secret-Base32": S[13], "HmacOtp-Counter": "42"}),
            E("Yandex", "y", "pw-y", "", {"otp": f"otpauth://totp/Y:y?secret={S[21]}&encoder=yandex&yandexpin=1"}),
            E("Shop", "dave", "pw-shop", "Web"),
            E("Taken", "tom", "pw-taken", "", {"otp": "not an otp value"}),
        ],
        kdf="argon2id",
    )


def read_map(path: Path) -> dict[bytes, Account]:
    return {a.secret: a for a in kstore(path).read().accounts}


def test_update_changes_only_otp_fields_and_converts_legacy(user_db):
    old = read_map(user_db)[secret(6)]
    before = entry_fields(user_db, "Legacy")
    report = kstore(user_db).apply([old.replace(digits=8)], [old])  # an edit: new + old (SPEC §3)
    assert [a.secret for a in report.updated] == [secret(6)] and not report.added
    after = entry_fields(user_db, "Legacy")
    assert "TOTP Seed" not in after and "TOTP Settings" not in after
    assert parse_uri(after["otp"]).digits == 8
    for name in ("Password", "PIN", "Notes", "Title", "UserName"):
        assert after[name] == before[name]
    assert read_map(user_db)[secret(6)].digits == 8


def test_update_keeps_history(user_db):
    from pykeepass import PyKeePass

    old = read_map(user_db)[secret(1)]
    kstore(user_db).apply([old.replace(period=60)], [old])
    entry = PyKeePass(str(user_db), "pw").find_entries(title="Uri", first=True)
    assert len(entry.history) == 1 and entry.history[0].otp.endswith("issuer=GitHub")


def test_keepass2_native_fields_are_updated_in_place(user_db):
    old = read_map(user_db)[secret(9)]
    kstore(user_db).apply([old.replace(digits=8)], [old])
    after = entry_fields(user_db, "Native")
    assert after["TimeOtp-Length"] == "8" and "otp" not in after and after["URL2"] == "x"
    assert after["Password"] == "pw-native"


def test_removal_removes_only_otp_fields(user_db):
    accounts = read_map(user_db)
    gone = [accounts[secret(6)], accounts[secret(13)], accounts[secret(1)]]
    report = kstore(user_db).apply([], gone)
    assert sorted(a.secret for a in report.removed) == sorted(a.secret for a in gone)
    assert set(read_map(user_db)) == {secret(9)}
    legacy = entry_fields(user_db, "Legacy")
    assert legacy["Password"] == "hunter2" and legacy["PIN"] == "4321" and "TOTP Seed" not in legacy
    hotp = entry_fields(user_db, "Hotp")
    assert hotp["Password"] == "pw-hotp" and not any(k.startswith("HmacOtp") for k in hotp)
    assert entry_fields(user_db, "Uri")["Password"] == "pw-uri"


def test_unknown_kinds_are_left_untouched(user_db):
    before_y, before_t = entry_fields(user_db, "Yandex"), entry_fields(user_db, "Taken")
    accounts = list(read_map(user_db).values())
    kstore(user_db).apply([a.replace(period=45) for a in accounts if a.kind is Kind.TOTP] + [acc(25)], accounts[:1])
    assert entry_fields(user_db, "Yandex") == before_y
    assert entry_fields(user_db, "Taken") == before_t


def test_new_account_fills_matching_entry_without_otp(user_db):
    from pykeepass import PyKeePass

    count = len(PyKeePass(str(user_db), "pw").entries)
    report = kstore(user_db).apply([Account(Kind.TOTP, secret(26), "Shop", "dave", folder="Web")])
    assert len(report.added) == 1
    shop = entry_fields(user_db, "Shop")
    assert shop["Password"] == "pw-shop" and "otp" in shop
    assert len(PyKeePass(str(user_db), "pw").entries) == count


def test_new_account_never_overwrites_another_accounts_entry(user_db):
    # "Uri"/alice holds GitHub's otp: a different account with the same title+user gets its own entry.
    report = kstore(user_db).apply([Account(Kind.TOTP, secret(27), "Uri", "alice")])
    assert len(report.added) == 1
    assert {secret(1), secret(27)} <= set(read_map(user_db))
    assert kstore(user_db).apply([Account(Kind.TOTP, secret(28), "Taken", "tom")]).added
    assert entry_fields(user_db, "Taken")["otp"] == "not an otp value"


def test_hotp_keepass_cannot_compute_is_kept_whole(user_db):
    odd = acc(29, Kind.HOTP, digits=8, algorithm=Algorithm.SHA256, counter=5)
    report = kstore(user_db).apply([odd, acc(24)])
    assert len(report.added) == 2 and not report.errors
    fields = entry_fields(user_db, "Issuer29")
    assert fields[kf.OB_HOTP_FIELD] == format_uri(odd)
    assert "otp" not in fields and not any(k.startswith("HmacOtp-") for k in fields)
    assert key(read_map(user_db)[secret(29)]) == key(odd)
    assert kstore(user_db).apply([odd]).unchanged == 1  # read back as it was written: no churn
    renamed = odd.replace(issuer="Renamed Co", name="new name")  # the URI holds them: kept exactly
    assert kstore(user_db).apply([renamed], [odd]).updated  # an edit: new + old (SPEC §3)
    assert key(read_map(user_db)[secret(29)]) == key(renamed)


def test_hotp_counter_update(user_db):
    old = read_map(user_db)[secret(13)]
    kstore(user_db).apply([old.replace(counter=50)])
    assert entry_fields(user_db, "Hotp")["HmacOtp-Counter"] == "50"


def test_unchanged_apply_does_not_write(user_db):
    data = user_db.read_bytes()
    report = kstore(user_db).apply(list(read_map(user_db).values()))
    assert not report.changed and report.unchanged == 4
    assert user_db.read_bytes() == data and not user_db.with_name("user.kdbx.bak").exists()


def test_dry_run_changes_nothing(user_db):
    data = user_db.read_bytes()
    accounts = list(read_map(user_db).values())
    report = kstore(user_db).apply([acc(31), accounts[0].replace(digits=7)], [accounts[0], *accounts[1:2]], dry_run=True)
    assert report.dry_run and len(report.added) == 1 and len(report.updated) == 1 and len(report.removed) == 1
    assert user_db.read_bytes() == data
    assert sorted(p.name for p in user_db.parent.iterdir()) == ["user.kdbx"]


def test_save_keeps_backup_and_kdf_settings(user_db):
    data = user_db.read_bytes()
    before = kdbx.read_header(data).kdf
    report = kstore(user_db).apply([acc(32)])
    assert report.backup == user_db.with_name("user.kdbx.bak") and report.backup.read_bytes() == data
    after = kdbx.read_header(user_db.read_bytes()).kdf
    assert (after.kind, after.memory, after.iterations, after.parallelism) == (
        before.kind, before.memory, before.iterations, before.parallelism)
    assert after.salt != before.salt  # re-salted on save, as KeePass does


def test_save_keeps_aes_kdf_rounds(tmp_path):
    path = make_kdbx4(tmp_path / "aes.kdbx", [CONVENTIONS[0][0]], kdf="aes", rounds=12345)
    ctx = ctx_with()
    kstore(path, ctx).apply([acc(33)])
    assert ctx.stats["keepass_kdf"] == 2  # one to open, one to save
    kdf = kdbx.read_header(path.read_bytes()).kdf
    assert (kdf.kind, kdf.rounds) == ("aes", 12345)
    assert len(kstore(path).read().accounts) == 2


def test_round_trip_of_the_uri_fixtures(tmp_path):
    source = []
    for name in ("plain.txt", "urilist.txt"):
        source += kstore_uris(FIXTURES / "otpauth_uri" / name)
    # The point of this test: HOTP that KeePass itself cannot compute is in the fixtures.
    assert {(a.algorithm, a.digits) for a in source if a.kind is Kind.HOTP} >= {
        (Algorithm.SHA256, 7), (Algorithm.SHA512, 8), (Algorithm.SHA1, 6)}
    path = tmp_path / "rt.kdbx"
    report = kstore(path).apply(source)
    assert not report.errors and len(report.added) == len({a.identity for a in source})
    back = kstore(path).read()
    strip = lambda a: key(a.replace(folder=""))  # noqa: E731
    assert sorted(map(strip, back.accounts)) == sorted({strip(a) for a in source}) and not back.errors


def kstore_uris(path: Path) -> list[Account]:
    return open_store(StoreSpec("uris", str(path), {}), ctx_with()).read().accounts


def test_secrets_never_in_reports_or_reprs(user_db):
    result = kstore(user_db).read()
    text = repr(result) + "".join(str(e) for e in result.errors)
    for value in S.values():
        assert value not in text


def test_legacy_is_updated_in_place_when_otp_holds_another_account(tmp_path):
    path = make_kdbx4(tmp_path / "l.kdbx", [E("Two", "u", "pw2", "", {
        "TOTP Seed": S[6], "TOTP Settings": "30;6", "otp": f"otpauth://totp/B:u?secret={S[7]}&issuer=B"})])
    old = read_map(path)[secret(6)]
    report = kstore(path).apply([old.replace(digits=8)], [old])
    assert len(report.updated) == 1 and not report.errors
    fields = entry_fields(path, "Two")
    assert fields["TOTP Settings"] == "30;8" and parse_uri(fields["otp"]).secret == secret(7)
    old = read_map(path)[secret(6)]
    refused = kstore(path).apply([old.replace(algorithm=Algorithm.SHA256)], [old])  # legacy cannot hold SHA-256
    assert refused.errors and not refused.updated and entry_fields(path, "Two") == fields


def test_hotp_uri_becomes_keepass_fields_on_update(tmp_path):
    path = make_kdbx4(tmp_path / "h.kdbx", [E("H", "u", "pwh", "", {
        "otp": f"otpauth://hotp/Bank:u?secret={S[17]}&counter=3&issuer=Bank"})])
    old = read_map(path)[secret(17)]
    kstore(path).apply([old.replace(counter=4)])
    fields = entry_fields(path, "H")
    assert "otp" not in fields and fields["HmacOtp-Counter"] == "4" and fields["Password"] == "pwh"
    assert read_map(path)[secret(17)].counter == 4


# -- HOTP that KeePass's HmacOtp-* cannot express: the otpbridge-hotp URI --------------------------


def test_otpbridge_hotp_slot_is_read_last_and_checked():
    odd = Account(Kind.HOTP, secret(1), "Bank", "u", algorithm=Algorithm.SHA256, digits=7, counter=9)
    slots = kf.read_slots({kf.OB_HOTP_FIELD: format_uri(odd), "HmacOtp-Secret-Base32": S[2]}, title="Bank", username="u")
    assert [s.convention for s in slots] == [kf.KP2_HOTP, kf.OB_HOTP]
    assert [key(a) for a in kf.entry_accounts(slots)] == [key(Account(Kind.HOTP, secret(2), "Bank", "u")), key(odd)]
    for bad in (format_uri(odd.replace(kind=Kind.TOTP)), "hello", f"otpauth://hotp/X?secret={S[3]}&digits=99"):
        (slot,) = kf.read_slots({kf.OB_HOTP_FIELD: bad}, title="T", username="u")
        assert slot.account is None and kf.OB_HOTP_FIELD in slot.error and slot.family == "hotp"
        assert S[3] not in slot.error


@given(
    issuer=st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12),
    name=st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12),
    algorithm=st.sampled_from(list(Algorithm)),
    digits=st.integers(5, 10),
    counter=st.integers(0, 2**64 - 1),
    raw=st.binary(min_size=1, max_size=64),
)
@settings(max_examples=200, deadline=None)
def test_otpbridge_hotp_field_round_trips_any_hotp_account(issuer, name, algorithm, digits, counter, raw):
    a = Account(Kind.HOTP, raw, issuer, name, algorithm=algorithm, digits=digits, counter=counter)
    ((field, (value, protected)),) = kf.ob_hotp_field(a).items()
    assert field == kf.OB_HOTP_FIELD and protected
    # Title and user name as _add makes them.
    (slot,) = kf.read_slots({field: value}, title=a.issuer or a.name, username=a.name)
    assert slot.account is not None and key(slot.account) == key(a) and kf.slot_matches(slot, a)


def test_otp_field_refuses_hotp():
    with pytest.raises(ValueError):
        kf.otp_field(acc(1, Kind.HOTP))


# Start shapes x target accounts, all in one database and one apply.
HOTP_TARGETS = {
    "sha1-6": {},
    "sha256-7": {"algorithm": Algorithm.SHA256, "digits": 7},
    "sha512-8": {"algorithm": Algorithm.SHA512, "digits": 8},
    "sha1-8": {"digits": 8},
}


def _hotp_start(shape: str, i: int) -> dict:
    if shape == "hmacotp":
        return {"HmacOtp-Secret-Hex": secret(i).hex(), "HmacOtp-Counter": "3"}
    uri = f"otpauth://hotp/Start{i}:u{i}?secret={S[i]}&issuer=Start{i}&counter=3&algorithm=SHA256&digits=8"
    return {"otp": uri} if shape == "otp-uri" else {kf.OB_HOTP_FIELD: uri}


@pytest.fixture
def hotp_shapes_db(tmp_path):
    entries, cases, i = [], [], 0
    for shape in ("hmacotp", "otp-uri", "otpbridge-hotp", "new"):
        for target, params in HOTP_TARGETS.items():
            i += 1
            title = f"Start{i}"
            cases.append((shape, target, title, Account(Kind.HOTP, secret(i), title, f"u{i}", counter=4, **params)))
            if shape != "new":
                entries.append(E(title, f"u{i}", f"pw{i}", "F", {**_hotp_start(shape, i), "Extra": (f"x{i}", True)}))
    return make_kdbx4(tmp_path / "shapes.kdbx", entries), cases


def test_hotp_goes_to_exactly_one_shape_and_never_to_otp(hotp_shapes_db):
    path, cases = hotp_shapes_db
    # an edit of identity fields names the old account too (SPEC §3)
    report = kstore(path).apply([a.replace(folder="F") for *_, a in cases], list(read_map(path).values()))
    assert not report.errors and len(report.updated) == 12 and len(report.added) == 4
    back = read_map(path)
    for shape, target, title, a in cases:
        fields = entry_fields(path, title)
        where = (shape, target)
        assert "otp" not in fields, where
        hmac = {k for k in fields if k.startswith("HmacOtp-")}
        if kf.can_kp2_hotp(a):
            assert hmac == {"HmacOtp-Secret-Base32", "HmacOtp-Counter"} and kf.OB_HOTP_FIELD not in fields, where
            assert fields["HmacOtp-Counter"] == "4"
        else:
            assert not hmac and fields[kf.OB_HOTP_FIELD] == format_uri(a.replace(folder="F")), where
        assert key(back[a.secret]) == key(a.replace(folder="F")), where
        if shape != "new":  # the user's own fields survive the change of shape
            assert fields["Password"] == f"pw{title[5:]}" and fields["Extra"] == f"x{title[5:]}", where
    assert kstore(path).apply([a.replace(folder="F") for *_, a in cases]).unchanged == 16


def test_switching_hotp_shapes_back_and_forth_removes_the_old_fields(user_db):
    from pykeepass import PyKeePass

    old = read_map(user_db)[secret(13)]
    odd = old.replace(algorithm=Algorithm.SHA256, digits=7, counter=43)
    assert kstore(user_db).apply([odd], [old]).updated
    fields = entry_fields(user_db, "Hotp")
    assert not any(k.startswith("HmacOtp-") for k in fields) and "otp" not in fields
    assert fields[kf.OB_HOTP_FIELD] == format_uri(odd) and fields["Password"] == "pw-hotp"
    assert read_map(user_db)[secret(13)] == odd
    back = odd.replace(algorithm=Algorithm.SHA1, digits=6, counter=44)
    assert kstore(user_db).apply([back], [odd]).updated
    fields = entry_fields(user_db, "Hotp")
    assert kf.OB_HOTP_FIELD not in fields and fields["HmacOtp-Counter"] == "44" and fields["Password"] == "pw-hotp"
    assert read_map(user_db)[secret(13)] == back
    entry = PyKeePass(str(user_db), "pw").find_entries(title="Hotp", first=True)
    assert len(entry.history) == 2  # each change kept the previous state, as KeePass does
    # Removing the account removes our field too, and nothing else.
    kstore(user_db).apply([], [back])
    assert secret(13) not in read_map(user_db)
    fields = entry_fields(user_db, "Hotp")
    assert not any(k.startswith("HmacOtp-") or k == kf.OB_HOTP_FIELD for k in fields) and fields["Password"] == "pw-hotp"


def test_hotp_never_overwrites_another_accounts_hmacotp(tmp_path):
    # HmacOtp-* hold account 2; the otp URI holds account 3 (6-digit SHA-1): it moves to otpbridge-hotp.
    path = make_kdbx4(tmp_path / "two.kdbx", [E("Two", "u", "pw2", "", {
        "HmacOtp-Secret-Base32": S[2], "HmacOtp-Counter": "7",
        "otp": f"otpauth://hotp/Two:u?secret={S[3]}&issuer=Two&counter=1"})])
    mine = read_map(path)[secret(3)].replace(counter=2)
    report = kstore(path).apply([mine])
    assert report.updated and not report.errors
    fields = entry_fields(path, "Two")
    assert "otp" not in fields and fields["HmacOtp-Secret-Base32"] == S[2] and fields["HmacOtp-Counter"] == "7"
    assert fields[kf.OB_HOTP_FIELD] == format_uri(mine)
    assert read_map(path)[secret(3)] == mine and read_map(path)[secret(2)].counter == 7
    # Both HOTP shapes taken by other accounts (or unreadable): refused, entry untouched.
    path2 = make_kdbx4(tmp_path / "full.kdbx", [E("Full", "u", "", "", {
        "HmacOtp-Secret-Base32": S[2], kf.OB_HOTP_FIELD: "garbage",
        "otp": f"otpauth://hotp/Full:u?secret={S[3]}&issuer=Full&counter=1"})])
    before = entry_fields(path2, "Full")
    report = kstore(path2).apply([read_map(path2)[secret(3)].replace(counter=5)])
    assert report.errors and not report.updated and entry_fields(path2, "Full") == before


def rfc4226(secret_bytes: bytes, counter: int, digits: int, algorithm: Algorithm) -> str:
    """HOTP straight from RFC 4226 §5.3 (any HMAC hash), independent of pyotp and codes.py."""
    import hmac

    mac = hmac.new(secret_bytes, counter.to_bytes(8, "big"), algorithm.value.lower()).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset:offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def test_rfc4226_reference_meets_the_rfc_vectors():
    # RFC 4226 appendix D (SHA-1), and RFC 6238 appendix B at T=59 (counter 1) for SHA-256/512.
    sha1 = b"12345678901234567890"
    assert [rfc4226(sha1, c, 6, Algorithm.SHA1) for c in range(3)] == ["755224", "287082", "359152"]
    assert rfc4226(sha1 + sha1[:12], 1, 8, Algorithm.SHA256) == "46119246"
    assert rfc4226(sha1 * 3 + sha1[:4], 1, 8, Algorithm.SHA512) == "90693936"


def test_codes_of_read_back_hotp_accounts_are_right(tmp_path):
    from otpbridge.core.codes import code_at
    from tests.support.oracles import OATHTOOL, oathtool_code

    accounts = [acc(i, Kind.HOTP, algorithm=alg, digits=d, counter=c) for i, (alg, d, c) in enumerate([
        (Algorithm.SHA1, 6, 0), (Algorithm.SHA1, 8, 10300), (Algorithm.SHA1, 7, 2**40),
        (Algorithm.SHA256, 7, 50), (Algorithm.SHA512, 8, 10300), (Algorithm.SHA256, 6, 1)])]
    path = tmp_path / "codes.kdbx"
    assert not kstore(path).apply(accounts).errors
    back = kstore(path).read().accounts
    assert sorted(map(key, back)) == sorted(map(key, accounts))
    oathtool_checked = 0
    for a in back:
        for counter in (a.counter, a.counter + 1):
            a_at = a.replace(counter=counter)
            ours = code_at(a_at)
            assert ours == rfc4226(a.secret, counter, a.digits, a.algorithm), a.label
            if OATHTOOL is not None and a.algorithm is Algorithm.SHA1:
                assert ours == oathtool_code(a_at), a.label
                oathtool_checked += 1
    assert oathtool_checked == (6 if OATHTOOL is not None else 0)


def test_cli_convert_uri_fixture_to_new_keepass_and_list_it(tmp_path, monkeypatch, capsys):
    import json

    from otpbridge.cli import main

    monkeypatch.setenv("P", "cli-pw")
    monkeypatch.setenv("OTPBRIDGE_HOME", str(tmp_path / "home"))  # no log in the user's real home
    monkeypatch.delenv("OTPBRIDGE_KEEPASS_PASSWORD", raising=False)
    monkeypatch.delenv("OTPBRIDGE_STORE_PASSWORD", raising=False)
    fixture = FIXTURES / "otpauth_uri" / "plain.txt"
    db = tmp_path / "NEW.kdbx"
    dest = f"keepass:{db}?password-env=P"
    code = main(["convert", f"uris:{fixture}", dest])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    code = main(["list", dest, "--json", "--show-secrets"])
    out, err = capsys.readouterr()
    assert code == 0, err
    listed = json.loads(out)
    assert not listed["errors"]
    got = [parse_uri(a["uri"]) for a in listed["accounts"]]
    expected = kstore_uris(fixture)
    assert len(got) == len(expected) == 7
    assert sorted(map(key, got)) == sorted(key(a.replace(folder="")) for a in expected)
    # otpbridge computes the codes KeePass cannot (SHA-256 / SHA-512 HOTP).
    code = main(["code", dest, "Air Canada", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (shown,) = json.loads(out)["codes"]
    (air,) = [a for a in expected if a.issuer == "Air Canada"]
    assert shown["code"] == rfc4226(air.secret, air.counter, 7, Algorithm.SHA256)
    # --advance stores the next counter in the otpbridge-hotp URI.
    assert main(["code", dest, "Air Canada", "--advance"]) == 0
    capsys.readouterr()
    (after,) = [a for a in kstore(db, ctx_with("cli-pw")).read().accounts if a.issuer == "Air Canada"]
    assert after == air.replace(counter=air.counter + 1, folder="")


@pytest.mark.parametrize("counter", [10**12, 2**53 + 1, 2**64 - 1])
def test_hmacotp_counters_of_any_64_bit_value_read_back(counter):
    """What the writer writes, the reader reads: a counter of 13+ digits was refused on
    read ('not a whole number'), so the next merge added the account again."""
    a = acc(5, Kind.HOTP, counter=counter)
    (slot,) = kf.read_slots({"HmacOtp-Secret-Base32": S[5], "HmacOtp-Counter": str(counter)}, title=a.issuer,
                            username=a.name)
    assert slot.account is not None and slot.account.counter == counter


@pytest.mark.parametrize("text", ["²", "1" * 21, "-1", "0x10"])
def test_odd_hmacotp_counters_are_entry_errors(text):
    (slot,) = kf.read_slots({"HmacOtp-Secret-Base32": S[5], "HmacOtp-Counter": text}, title="T", username="u")
    assert slot.account is None and "HmacOtp-Counter" in slot.error
