"""Ente Auth exports: plain text quirks, the encrypted fixture, writing both, hostile input.

The fixture's KDF is Argon2id with 1 GiB: it is derived once for the right password
(module-scoped) and once for the wrong one. Files we write in tests use cheaper limits
(a module constant lowered with monkeypatch) so that tamper tests stay fast.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, unquote, urlsplit

import nacl.bindings as sodium
import nacl.pwhash.argon2id as argon2id
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.codes import code_at
from otpbridge.core.errors import AuthenticationError, FormatError, UsageError
from otpbridge.core.model import Account, Algorithm, Kind
from otpbridge.plugins import ente
from otpbridge.plugins.ente import EnteStore
from otpbridge.plugins.uris import UrisStore
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.oracles import needs_oathtool, oathtool_code
from tests.support.paths import FIXTURES

DIR = FIXTURES / "ente_auth"
FAST_MEM, FAST_OPS = 8 * 1024 * 1024, 2


AEGIS = F.by_secret(C.AEGIS_VECTORS)
# Stratum's Ente files list the accounts sorted by issuer, then name.
STRATUM = sorted(C.STRATUM, key=lambda a: (a.issuer, a.name))


def make(path, password: str | None = "test", **options) -> EnteStore:
    env = {} if password is None else {"OTPBRIDGE_STORE_PASSWORD": password}
    return EnteStore(StoreSpec("ente", str(path), options), Context(environ=env, warn=lambda m: None))


@pytest.fixture
def fast_kdf(monkeypatch):
    monkeypatch.setattr(ente, "WRITE_MEMLIMIT", FAST_MEM)
    monkeypatch.setattr(ente, "WRITE_OPSLIMIT", FAST_OPS)


@pytest.fixture(scope="module")
def encrypted_fixture_result():
    return make(DIR / "ente.encrypted.json", "test").read()


# -- the fixtures --------------------------------------------------------------------------------
def test_aegis_plain_fixture_matches_reference_vectors():
    result = make(DIR / "ente_auth.txt").read()
    assert result.errors == []
    assert len(result.accounts) == 7
    for acc in result.accounts:
        assert acc == AEGIS[acc.secret], acc


def test_stratum_plain_fixture():
    result = make(DIR / "ente.unencrypted.txt").read()
    assert result.errors == []
    assert result.accounts == STRATUM


def test_encrypted_fixture_decrypts_to_the_stratum_vectors(encrypted_fixture_result):
    assert encrypted_fixture_result.errors == []
    assert encrypted_fixture_result.accounts == STRATUM


def test_encrypted_fixture_wrong_password_is_exit_3():
    err = F.assert_wrong_password(make(DIR / "ente.encrypted.json", "test1").read, match="wrong password")
    assert "test1" not in str(err)


@needs_oathtool
def test_codes_agree_with_oathtool():
    at = time.time()
    checked = 0
    for acc in make(DIR / "ente_auth.txt").read().accounts:
        if acc.kind is Kind.TOTP or (acc.kind is Kind.HOTP and acc.algorithm is Algorithm.SHA1):
            assert code_at(acc, at) == oathtool_code(acc, at), acc
            checked += 1
    assert checked == 4


def test_detection():
    assert detect_kind(DIR / "ente_auth.txt") == "ente"
    assert detect_kind(DIR / "ente.encrypted.json") == "ente"
    # Stratum's "Ente" plain file carries nothing Ente-specific: it is a plain URI list,
    # and both readers agree on it.
    assert detect_kind(DIR / "ente.unencrypted.txt") == "uris"
    uris = UrisStore(StoreSpec("uris", str(DIR / "ente.unencrypted.txt")), Context(environ={}))
    assert uris.read().accounts == make(DIR / "ente.unencrypted.txt").read().accounts


@pytest.mark.parametrize(
    "path",
    [
        FIXTURES / "aegis" / "aegis_encrypted.json",
        FIXTURES / "twofas" / "2fas_authenticator_encrypted_v4.2fas",
        FIXTURES / "andotp" / "andotp_plain.json",
        FIXTURES / "bitwarden" / "bitwarden.encrypted.argon2id.json",
        FIXTURES / "freeotp_plus" / "freeotp_plus.json",
        FIXTURES / "otpauth_uri" / "plain.txt",
        FIXTURES / "google_authenticator" / "example_export.txt",
    ],
    ids=lambda p: p.name,
)
def test_sniffer_leaves_other_formats_alone(path):
    assert not EnteStore.sniff(path, path.read_bytes())


# -- Ente's plain-text quirks ------------------------------------------------------------------
CD = "codeDisplay=%7B%22pinned%22%3Afalse%2C%22trashed%22%3A{t}%2C%22tags%22%3A%5B{tags}%5D{note}%7D"


def cd(trashed="false", tags="", note=""):
    return CD.format(t=trashed, tags=tags, note=note)


def test_quirks(tmp_path):
    lines = [
        "otpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme&algorithm=Algorithm.sha256&" + cd(tags="%22Work%22"),
        "otpauth://totp/Corp:bob?secret=GEZDGNBVGY3TQOJQ&issuer=Corp%20period%3D30&period=30",
        "otpauth://totp/Chat:c#hash?secret=MFRGGZDFMZTWQ2LK&issuer=Chat",
        "otpauth://totp/Old:gone?secret=ONSWG4TFOQ======&issuer=Old&" + cd(trashed="true"),
        "otpauth://yaotp/Yandex:me?secret=JBSWY3DPEHPK3PXP&pin=1234",
        "otpauth://steam/Steam:me?secret=JBSWY3DPEHPK3PXQ&issuer=Steam",
        "otpauth://totp/Noted:n?" + cd(note="%2C%22note%22%3A%22call%20IT%22") + "&secret=MZXW6YTBOI======",
        "otpauth://totp/Broken:x?issuer=Broken",
        "not a uri at all",
    ]
    path = tmp_path / "ente.txt"
    path.write_text("\n".join(lines) + "\n")
    result = make(path).read()
    got = {(a.issuer, a.name): a for a in result.accounts}
    assert got[("Acme", "alice")].algorithm is Algorithm.SHA256 and got[("Acme", "alice")].folder == "Work"
    assert ("Corp ", "bob") not in got and ("Corp", "bob") in got
    assert ("Chat", "c#hash") in got
    assert got[("Steam", "me")].kind is Kind.STEAM
    assert got[("Noted", "n")].note == "call IT"
    assert len(result.accounts) == 5
    reasons = {e.where: e.reason for e in result.errors}
    assert "trash" in reasons["line 4"]
    assert "Yandex" in reasons["line 5"]
    assert "no secret" in reasons["line 8"]
    assert "line 9" in reasons
    assert len(result.errors) == 4


# -- writing --------------------------------------------------------------------------------------
SAMPLES = [
    *AEGIS.values(),
    Account(Kind.TOTP, b"0123456789", "", "no issuer"),
    Account(Kind.TOTP, b"abcdefghij", "", "colon:in:name"),
    Account(Kind.TOTP, b"\xff" * 20, "Ünï & Co: Ltd", "a+b c%d#e", digits=8, folder="Work", note="line\nbreak"),
    Account(Kind.HOTP, b"\x00" * 10, "Zero", "first", counter=0),
]


def independent_parse(line: str) -> dict:
    """Parse what we wrote with urllib only, the way Ente's Dart code reads it."""
    parts = urlsplit(line)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    path = unquote(parts.path)[1:]
    issuer = query["issuer"]
    account = path if ":" not in path else (path[len(issuer) + 1:] if path.startswith(issuer + ":") else
                                              path[path.index(":") + 1:])
    return {"type": parts.netloc, "issuer": issuer, "account": account, "query": query,
            "display": json.loads(query["codeDisplay"])}


def test_plain_write_round_trip_and_independent_reader(tmp_path):
    path = tmp_path / "out.txt"
    make(path).write_all(SAMPLES)
    assert path.stat().st_mode & 0o777 == 0o600
    assert make(path).read().accounts == SAMPLES  # lossless: Ente holds every field we have
    lines = path.read_text().splitlines()
    assert len(lines) == len(SAMPLES)
    for acc, line in zip(SAMPLES, lines, strict=True):
        row = independent_parse(line)
        assert row["type"] == acc.kind.value
        assert (row["issuer"], row["account"]) == (acc.issuer, acc.name)
        assert F.b32decode_unpadded(row["query"]["secret"]) == acc.secret
        assert int(row["query"]["digits"]) == acc.digits
        assert row["query"]["algorithm"] == acc.algorithm.value
        assert row["display"]["tags"] == ([acc.folder] if acc.folder else [])
        if acc.kind is Kind.HOTP:
            assert int(row["query"]["counter"]) == acc.counter
        else:
            assert int(row["query"]["period"]) == acc.period
    assert detect_kind(path) == "ente"


def test_encrypted_write_round_trip_and_independent_decrypt(tmp_path, fast_kdf):
    path = tmp_path / "out.json"
    make(path, "s3cret pw", encrypt="yes").write_all(SAMPLES)
    assert detect_kind(path) == "ente"
    assert make(path, "s3cret pw").read().accounts == SAMPLES
    # Independent: libsodium through PyNaCl's bindings, nothing from the plugin.
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["kdfParams"]["memLimit"] == FAST_MEM
    salt = base64.b64decode(doc["kdfParams"]["salt"])
    key = argon2id.kdf(32, b"s3cret pw", salt, opslimit=doc["kdfParams"]["opsLimit"],
                       memlimit=doc["kdfParams"]["memLimit"])
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, base64.b64decode(doc["encryptionNonce"]), key)
    plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, base64.b64decode(doc["encryptedData"]))
    assert tag == sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    assert [independent_parse(line)["account"] for line in plain.decode().splitlines()] == [a.name for a in SAMPLES]


def test_default_write_is_plain_and_an_encrypted_file_stays_encrypted(tmp_path, fast_kdf):
    path = tmp_path / "out.txt"
    make(path).write_all(SAMPLES[:2])
    assert path.read_text().startswith("otpauth://")
    make(path, encrypt="yes").write_all(SAMPLES[:2])
    assert path.read_text().startswith("{")
    report = make(path).apply([SAMPLES[2]])  # no ?encrypt: the existing file decides
    assert report.added == [SAMPLES[2]]
    assert path.read_text().startswith("{")
    assert make(path).read().accounts == SAMPLES[:3]
    make(path, encrypt="no").write_all(SAMPLES[:1])
    assert path.read_text().startswith("otpauth://")


def test_bad_encrypt_option_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        make(tmp_path / "x.txt", encrypt="maybe").write_all(SAMPLES[:1])


# -- damage and hostile input ----------------------------------------------------------------------
@pytest.fixture
def written(tmp_path, fast_kdf):
    path = tmp_path / "enc.json"
    make(path, "pw", encrypt="yes").write_all(SAMPLES[:3])
    return path, json.loads(path.read_text())


def _flip(b64: str, pos: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[pos % len(raw)] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("field, pos", [("encryptedData", 0), ("encryptedData", -1), ("encryptionNonce", 5)])
def test_tampered_ciphertext_is_exit_3_naming_both_causes(written, field, pos):
    path, doc = written
    doc[field] = _flip(doc[field], pos)
    path.write_text(json.dumps(doc))
    with pytest.raises(AuthenticationError, match="modified"):
        make(path, "pw").read()


def test_wrong_password_on_written_file(written):
    path, _ = written
    with pytest.raises(AuthenticationError):
        make(path, "not it").read()


def test_truncated_ciphertext(written):
    path, doc = written
    data = base64.b64decode(doc["encryptedData"])
    doc["encryptedData"] = base64.b64encode(data[:-5]).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(AuthenticationError):
        make(path, "pw").read()
    doc["encryptedData"] = base64.b64encode(data[:10]).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="truncated"):
        make(path, "pw").read()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["kdfParams"].update(memLimit=4 * 1024**3), "memLimit"),
        (lambda d: d["kdfParams"].update(memLimit=1024), "memLimit"),
        (lambda d: d["kdfParams"].update(opsLimit=0), "opsLimit"),
        (lambda d: d["kdfParams"].update(opsLimit=10**6), "opsLimit"),
        (lambda d: d["kdfParams"].update(memLimit=1024**3, opsLimit=100), "more work"),
        (lambda d: d["kdfParams"].update(opsLimit="4"), "opsLimit"),
        (lambda d: d["kdfParams"].update(salt="AAAA"), "wrong length"),
        (lambda d: d["kdfParams"].update(salt="***"), "not Base64"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(kdfParams=[]), "kdfParams"),
        (lambda d: d.update(encryptionNonce="AAAA"), "wrong length"),
        (lambda d: d.pop("encryptedData"), "missing"),
    ],
)
def test_hostile_parameters_fail_before_deriving(written, change, message):
    path, doc = written
    change(doc)
    path.write_text(json.dumps(doc))
    started = time.monotonic()
    with pytest.raises(FormatError, match=message):
        make(path, "pw").read()
    assert time.monotonic() - started < 2


def test_truncated_fixture_json_is_exit_4(tmp_path):
    data = (DIR / "ente.encrypted.json").read_bytes()
    path = tmp_path / "x.json"
    path.write_bytes(data[:200])
    with pytest.raises(FormatError, match="invalid JSON") as info:
        make(path).read()
    assert info.value.exit_code == 4


def test_non_utf8_is_a_format_error(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"\xff\xfeo\x00t\x00")
    with pytest.raises(FormatError):
        make(path).read()


PLAIN = (DIR / "ente_auth.txt").read_bytes()


@F.examples(150)
@given(raw=F.flipped_and_cut(PLAIN, max_flips=6))
def test_hypothesis_mutated_plain_never_crashes(tmp_path, raw):
    path = tmp_path / "x.txt"
    path.write_bytes(raw)
    result = F.read_or_refuse(make(path))
    if result is not None:
        assert len(result.accounts) <= 7


@F.examples(150)
@given(params=st.lists(st.tuples(st.sampled_from(["secret", "issuer", "algorithm", "digits", "period", "counter",
                                                     "codeDisplay", "pin"]),
                                  st.text(max_size=12) | st.sampled_from(["JBSWY3DPEHPK3PXP", "%7B%22tags%22%3A1%7D",
                                                                          "%5B%5B%5B", "Algorithm.sha1"])),
                        max_size=6),
       host=st.sampled_from(["totp", "hotp", "steam", "yaotp", "motp", ""]), label=st.text(max_size=10))
def test_hypothesis_random_lines_never_crash(tmp_path, params, host, label):
    line = f"otpauth://{host}/{label}?" + "&".join(f"{k}={v}" for k, v in params) + "\n"
    path = tmp_path / "x.txt"
    path.write_text(line, encoding="utf-8")
    result = make(path).read()
    assert len(result.accounts) + len(result.errors) <= max(1, len(line.splitlines()))


def test_broken_code_display_does_not_cost_the_account(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&issuer=A&codeDisplay=%7Bnot-json\n")
    result = make(path).read()
    assert [(a.issuer, a.name, a.folder) for a in result.accounts] == [("A", "b", "")]
    assert result.errors == []


def test_merging_keeps_each_entrys_pin_usage_and_further_tags(tmp_path):
    """--merge into an Ente export: the entries already there keep their codeDisplay
    (pinned, last use, taps, tags after the first, keys we do not know); the folder and
    note are the account's. A new entry gets Ente's defaults."""
    display = {"pinned": True, "lastUsedAt": 1700000000, "tapCount": 42, "tags": ["a", "b"], "iconSrc": "x"}
    from urllib.parse import quote

    path = tmp_path / "pin.txt"
    path.write_text("otpauth://totp/Pin:me?secret=JBSWY3DPEHPK3PXP&issuer=Pin&codeDisplay="
                    + quote(json.dumps(display)) + "\n", encoding="utf-8")
    s = make(path)
    (pin,) = s.read().accounts
    assert pin.folder == "a"
    new = Account(kind=Kind.TOTP, secret=b"new-secret", issuer="New", name="n")
    make(path).apply([pin, new])
    lines = path.read_text(encoding="utf-8").splitlines()
    shown = [json.loads(parse_qs(urlsplit(line).query)["codeDisplay"][0]) for line in lines]
    assert shown[0] == {**display, "trashed": False}
    assert shown[1]["pinned"] is False and shown[1]["tags"] == [] and shown[1]["tapCount"] == 0
    # a folder changed here replaces the first tag only; no folder clears the tags
    make(path).apply([pin.replace(folder="z")])
    assert json.loads(parse_qs(urlsplit(path.read_text().splitlines()[0]).query)["codeDisplay"][0])["tags"] == ["z", "b"]
    assert [a.folder for a in make(path).read().accounts if a.issuer == "Pin"] == ["z"]
