"""2fas: — 2FAS backups: schema v1–v4, encryption, wrong passwords, writing, detection."""

from __future__ import annotations

import base64
import json
import shutil

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, FormatError, IntegrityError
from otpbridge.core.model import Account, Kind
from otpbridge.plugins.twofas import TwoFasStore
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.oracles import needs_oathtool
from tests.support.paths import FIXTURES

TWOFAS = FIXTURES / "twofas"


store = F.store_opener(TwoFasStore, "2fas", password_env="TWOFAS_PW")


def _independent_decrypt(field: str, password: str) -> bytes:
    """``b64(ct‖tag):b64(salt):b64(iv)`` with PBKDF2-SHA256 10 000 → AES-GCM, from the notes."""
    data, salt, iv = (base64.b64decode(p) for p in field.split(":"))
    key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=10_000).derive(
        password.encode()
    )
    return AESGCM(key).decrypt(iv, data, None)


def _v1(accounts):
    """Schema 1 stores no type or parameters: everything reads as a default TOTP."""
    return [Account(kind=Kind.TOTP, secret=a.secret, issuer=a.issuer, name=a.name) for a in accounts]


@pytest.mark.parametrize(
    "name, password, expected, fixups",
    [
        ("2fas_authenticator.json", None, _v1(C.without(C.AEGIS_VECTORS, "Boeing")), ()),
        # v2 had no HOTP: Aegis's test vectors for it are the TOTP ones plus HOTP-as-TOTP rows.
        ("2fas_authenticator_plain.2fas", None, None, ()),
        ("2fas_authenticator_encrypted.2fas", "test", None, ()),
        ("2fas_authenticator_plain_v3.2fas", None, C.without(C.AEGIS_VECTORS, "Boeing"), ()),
        ("2fas_authenticator_encrypted_v3.2fas", "test", C.without(C.AEGIS_VECTORS, "Boeing"), ()),
        ("2fas_authenticator_plain_v4.2fas", None, C.without(C.AEGIS_VECTORS, "SPDX", "Airbnb"), ()),
        ("2fas_authenticator_encrypted_v4.2fas", "test", C.without(C.AEGIS_VECTORS, "SPDX", "Airbnb"), ()),
    ],
)
def test_reads_aegis_sourced_files(name, password, expected, fixups):
    result = store(TWOFAS / name, password).read()
    assert result.errors == []
    if expected is None:
        # Schema 2 files: Deno, Airbnb (TOTP) and Issuu, WWE stored without tokenType/counter.
        got = {a.issuer: (a.kind, a.algorithm.value, a.digits, a.period) for a in result.accounts}
        assert got == {
            "Deno": (Kind.TOTP, "SHA1", 6, 30),
            "Airbnb": (Kind.TOTP, "SHA512", 8, 50),
            "Issuu": (Kind.TOTP, "SHA1", 6, 30),
            "WWE": (Kind.TOTP, "SHA512", 8, 30),
        }
        vectors = {a.issuer: a for a in C.AEGIS_VECTORS}
        assert all(
            a.secret == vectors[a.issuer].secret and a.name == vectors[a.issuer].name for a in result.accounts
        )
        return
    C.assert_matches(result.accounts, expected, fixups=fixups)


def test_schema_3_stratum_files_with_a_group():
    for name, password in (("twofas.unencrypted.2fas", None), ("twofas.encrypted.2fas", "test")):
        result = store(TWOFAS / name, password).read()
        assert result.errors == [] and len(result.accounts) == 6
        # 2FAS keeps "NoIssuer" as the service name and an empty account name.
        no_account = C.fix_where(lambda a: a.issuer == "NoIssuer", name="")
        C.assert_matches(result.accounts, C.without(C.STRATUM, "Many"), fixups=[no_account])
        folders = {(a.issuer, a.name): a.folder for a in result.accounts if a.folder}
        assert folders == {("NoIssuer", ""): "Group", ("Long", "Period"): "Group"}


def test_encrypted_test_matches_its_published_plaintext():
    result = store(TWOFAS / "encrypted_test.2fas", "example.com").read()
    services = json.loads((TWOFAS / "plaintext_test.json").read_text())
    assert len(result.accounts) == len(services) == 5
    for acc, svc in zip(result.accounts, services, strict=True):
        otp = svc["otp"]
        assert acc.secret_b32 == svc["secret"]
        assert (acc.issuer, acc.name) == (svc["name"], otp["account"])
        assert acc.kind.value.upper() == otp["tokenType"]
        assert acc.digits == otp["digits"]
        if acc.kind is Kind.HOTP:
            assert acc.counter == otp["counter"] and acc.algorithm.value == otp["algorithm"]
        else:
            assert acc.period == otp["period"]
    # Steam keeps its (unusual) 10-second period.
    assert [a.period for a in result.accounts if a.kind is Kind.STEAM] == [10]


@pytest.mark.parametrize("name, password", [("2fas-demo-nopass.2fas", None), ("2fas-demo-pass.2fas", "test")])
def test_demo_files_with_folder(name, password):
    result = store(TWOFAS / name, password).read()
    assert result.errors == []
    got = [(a.issuer, a.name, a.folder, a.secret_b32) for a in result.accounts]
    # The service's own otp.issuer wins over the (user-edited) service name (issue #15).
    assert got == [
        ("Ledgy", "Additional Info", "", "N5LVC5JZNVVDSUZPJFIWUZSHGFDGMZJU"),
        ("Example", "Other Additional Info", "", "JBSWY3DPEHPK3PXP"),
        ("Example", "alice@google", "", "JBSWY3DPEHPK3PXW"),
        ("Example 3", "Example in Folder", "Folder 1", "XBSWY3DPEHPK3PXW"),
    ]


@needs_oathtool
def test_codes_agree_with_oathtool():
    accounts = store(TWOFAS / "2fas_authenticator_plain_v3.2fas").read().accounts
    accounts += store(TWOFAS / "twofas.unencrypted.2fas").read().accounts
    assert C.assert_codes_match_oathtool(accounts) >= 8


@pytest.mark.parametrize(
    "name, wrong",
    [
        ("twofas.encrypted.2fas", "test1"),
        ("2fas-demo-pass.2fas", "nope"),
        ("encrypted_test.2fas", "example.org"),
    ],
)
def test_wrong_password_is_exit_3(name, wrong):
    F.assert_wrong_password(store(TWOFAS / name, wrong).read)


# -- hostile input -------------------------------------------------------------------------
def _tampered(tmp_path, change):
    return F.tampered_json(TWOFAS / "twofas.encrypted.2fas", tmp_path / "t.2fas", change)


def _flip(field_name):
    def change(b):
        data, salt, iv = b[field_name].split(":")
        raw = bytearray(base64.b64decode(data))
        raw[3] ^= 0x40
        b[field_name] = ":".join([base64.b64encode(bytes(raw)).decode(), salt, iv])

    return change


@pytest.mark.parametrize(
    "change, error",
    [
        (_flip("servicesEncrypted"), IntegrityError),  # reference proves the password
        (_flip("reference"), AuthenticationError),
        (lambda b: b.update(servicesEncrypted="abc"), FormatError),
        (lambda b: b.update(servicesEncrypted="a:b:c:d"), FormatError),
        (lambda b: b.update(servicesEncrypted="!!:AAAA:AAAAAAAAAAAAAAAA"), FormatError),
        (lambda b: b.update(servicesEncrypted=12), FormatError),
        (lambda b: b.update(schemaVersion="3"), FormatError),
        (lambda b: b.pop("schemaVersion"), FormatError),
    ],
)
def test_tampered_encrypted_backups(tmp_path, change, error):
    F.assert_raises_exactly(error, store(_tampered(tmp_path, change), "test").read)


def test_encrypted_without_reference_still_detects_wrong_password(tmp_path):
    path = _tampered(tmp_path, lambda b: b.pop("reference"))
    assert len(store(path, "test").read().accounts) == 6
    with pytest.raises(AuthenticationError):
        store(path, "test1").read()


_PLAIN = (TWOFAS / "twofas.unencrypted.2fas").read_bytes()


@F.examples(60)
@given(data=st.data())
def test_mutated_plain_backups_never_crash(tmp_path, data):
    path = tmp_path / "m.2fas"
    path.write_bytes(F.mutate_bytes(data, _PLAIN))
    F.read_or_refuse(store(path))


_JSON = F.json_values()


@F.examples(80)
@given(data=st.data())
def test_structurally_mutated_services_never_crash(tmp_path, data):
    backup = json.loads(_PLAIN)
    svc = backup["services"][data.draw(st.integers(0, len(backup["services"]) - 1))]
    keys = [("svc", k) for k in svc] + [("otp", k) for k in svc["otp"]] + [("top", k) for k in backup]
    where, key = data.draw(st.sampled_from(keys))
    target = {"svc": svc, "otp": svc["otp"], "top": backup}[where]
    target[key] = data.draw(_JSON)
    path = tmp_path / "s.2fas"
    path.write_text(json.dumps(backup))
    result = F.read_or_refuse(store(path))
    if result is not None:
        assert len(result.accounts) + len(result.errors) == len(backup["services"])


# -- writing -------------------------------------------------------------------------------
def _everything():
    accounts = list(C.AEGIS_VECTORS) + list(C.STRATUM)
    folders = ["Work", "", "Home", "Work"]
    return [a.replace(folder=folders[i % 4]) for i, a in enumerate(accounts)] + [
        Account(kind=Kind.TOTP, secret=b"no-issuer!", issuer="", name="only a name")
    ]


def _check_services(services, groups, accounts):
    assert len(services) == len(accounts)
    names = {g["id"]: g["name"] for g in groups}
    for svc, acc in zip(services, accounts, strict=True):
        otp = svc["otp"]
        assert F.b32decode_unpadded(svc["secret"]) == acc.secret
        assert otp["tokenType"] == acc.kind.value.upper()
        assert (otp["issuer"], otp["account"], otp["digits"], otp["algorithm"]) == (
            acc.issuer, acc.name, acc.digits, acc.algorithm.value,
        )  # fmt: skip
        if acc.kind is Kind.HOTP:
            assert otp["counter"] == acc.counter
        else:
            assert otp["period"] == acc.period
        assert names.get(svc.get("groupId"), "") == acc.folder
        assert svc["name"] == (acc.issuer or acc.name)


def test_write_plain_round_trip(tmp_path):
    accounts = _everything()
    path = tmp_path / "out.2fas"
    s = store(path)
    s.write_all(accounts)
    F.assert_private_and_warned(path, s)
    backup = json.loads(path.read_text())
    assert backup["schemaVersion"] == 4 and "servicesEncrypted" not in backup
    _check_services(backup["services"], backup["groups"], accounts)
    assert store(path).read().accounts == accounts


def test_write_encrypted_round_trip_and_independent_decrypt(tmp_path):
    accounts = _everything()
    path = tmp_path / "enc.2fas"
    store(path, "pässword").write_all(accounts)
    backup = json.loads(path.read_text())
    assert backup["services"] == [] and b"Deno" not in path.read_bytes()
    _, salt, iv = backup["servicesEncrypted"].split(":")
    assert len(base64.b64decode(salt)) == 256 and len(base64.b64decode(iv)) == 12
    services = json.loads(_independent_decrypt(backup["servicesEncrypted"], "pässword"))
    _check_services(services, backup["groups"], accounts)
    # The check value is the app's constant: compare with the one in a real 2FAS file.
    real = json.loads((TWOFAS / "2fas-demo-pass.2fas").read_text())["reference"]
    assert _independent_decrypt(backup["reference"], "pässword") == _independent_decrypt(real, "test")
    assert store(path, "pässword").read().accounts == accounts
    with pytest.raises(AuthenticationError):
        store(path, "password").read()


def test_rewrite_keeps_encryption_icons_and_groups(tmp_path):
    path = tmp_path / "r.2fas"
    shutil.copy(TWOFAS / "twofas.encrypted.2fas", path)
    ctx = Context(environ={"OTPBRIDGE_STORE_PASSWORD": "test"}, warn=lambda m: None)
    new = Account(kind=Kind.TOTP, secret=b"0123456789", issuer="New", name="n", folder="Group")
    TwoFasStore(StoreSpec("2fas", str(path), {}), ctx).apply([new])
    backup = json.loads(path.read_text())
    assert backup["services"] == [] and backup["servicesEncrypted"]
    assert [g["id"] for g in backup["groups"]] == ["bf659268-d707-4f62-a0f0-67bbf5432b6a"]
    services = json.loads(_independent_decrypt(backup["servicesEncrypted"], "test"))
    original = json.loads(
        _independent_decrypt(
            json.loads((TWOFAS / "twofas.encrypted.2fas").read_text())["servicesEncrypted"], "test"
        )
    )
    assert [s.get("icon") for s in services[:6]] == [s.get("icon") for s in original]
    result = TwoFasStore(StoreSpec("2fas", str(path), {}), ctx).read()
    assert len(result.accounts) == 7 and result.accounts[-1] == new


hyp_accounts = F.account_lists()


@F.examples(40)
@given(accounts=hyp_accounts)
def test_plain_round_trip_is_lossless_except_notes(tmp_path, accounts):
    F.assert_round_trips(store, tmp_path / "h.2fas", accounts)


# -- detection -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in TWOFAS.iterdir() if p.is_file() and p.name != "plaintext_test.json"))
def test_detected_as_2fas(name):
    assert detect_kind(TWOFAS / name) == "2fas"


def test_does_not_claim_other_formats():
    others = F.other_fixtures(TWOFAS)
    others.append(TWOFAS / "plaintext_test.json")  # a bare services list is not a backup
    for path in others:
        assert not TwoFasStore.sniff(path, path.read_bytes()[: 256 * 1024]), path
