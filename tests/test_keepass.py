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

from otpbridge.errors import AuthenticationError, FormatError, OtpBridgeError, UsageError
from otpbridge.model import Account, Algorithm, Kind, b32decode, b32encode
from otpbridge.otpauth import parse_uri
from otpbridge.plugins import keepass_fields as kf
from otpbridge.plugins import keepass_kdbx as kdbx
from otpbridge.secrets import Secret
from otpbridge.store import Context, StoreSpec, detect_kind, open_store
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
    kstore(path).apply([acc(1), acc(3, Kind.HOTP)])
    make_kdbx4(tmp_path / "n.kdbx", [E("N", "u", "", "", {"TimeOtp-Secret-Base32": (S[9], False)})])
    kstore(tmp_path / "n.kdbx").apply([Account(Kind.TOTP, secret(9), "N", "u", digits=8)])
    for db, title, name in ((path, "Issuer1", "otp"), (path, "Issuer3", "HmacOtp-Secret-Base32"),
                            (tmp_path / "n.kdbx", "N", "TimeOtp-Secret-Base32")):
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
    with pytest.raises(OtpBridgeError, match="changed on disk"):
        kstore(user_db).apply([acc(35)])
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
    report = kstore(user_db).apply([old.replace(digits=8)])
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
    kstore(user_db).apply([old.replace(period=60)])
    entry = PyKeePass(str(user_db), "pw").find_entries(title="Uri", first=True)
    assert len(entry.history) == 1 and entry.history[0].otp.endswith("issuer=GitHub")


def test_keepass2_native_fields_are_updated_in_place(user_db):
    old = read_map(user_db)[secret(9)]
    kstore(user_db).apply([old.replace(digits=8)])
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


def test_hotp_keepass_cannot_hold_is_reported_not_written(user_db):
    odd = acc(29, Kind.HOTP, digits=8, algorithm=Algorithm.SHA256, counter=5)
    report = kstore(user_db).apply([odd, acc(24)])
    assert len(report.added) == 1 and len(report.errors) == 1 and "6-digit" in report.errors[0].reason
    assert secret(29) not in read_map(user_db)


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
    report = kstore(user_db).apply([acc(31), accounts[0].replace(digits=7)], accounts[1:2], dry_run=True)
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
    path = tmp_path / "rt.kdbx"
    report = kstore(path).apply(source)
    writable = [a for a in source if a.kind is not Kind.HOTP or kf.can_kp2_hotp(a)]
    # KeePass holds HOTP only as 6-digit SHA-1: the others are reported, never silently dropped.
    assert len(report.errors) == len({a.identity for a in source}) - len({a.identity for a in writable})
    back = kstore(path).read().accounts
    strip = lambda a: key(a.replace(folder=""))  # noqa: E731
    assert sorted(map(strip, back)) == sorted({strip(a) for a in writable})


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
    report = kstore(path).apply([old.replace(digits=8)])
    assert len(report.updated) == 1 and not report.errors
    fields = entry_fields(path, "Two")
    assert fields["TOTP Settings"] == "30;8" and parse_uri(fields["otp"]).secret == secret(7)
    refused = kstore(path).apply([old.replace(algorithm=Algorithm.SHA256)])  # legacy cannot hold SHA-256
    assert refused.errors and not refused.updated and entry_fields(path, "Two") == fields


def test_hotp_uri_becomes_keepass_fields_on_update(tmp_path):
    path = make_kdbx4(tmp_path / "h.kdbx", [E("H", "u", "pwh", "", {
        "otp": f"otpauth://hotp/Bank:u?secret={S[17]}&counter=3&issuer=Bank"})])
    old = read_map(path)[secret(17)]
    kstore(path).apply([old.replace(counter=4)])
    fields = entry_fields(path, "H")
    assert "otp" not in fields and fields["HmacOtp-Counter"] == "4" and fields["Password"] == "pwh"
    assert read_map(path)[secret(17)].counter == 4
