"""gauth: — Google Authenticator migration exports: fixtures, batches, QR output, hostile input."""

from __future__ import annotations

import base64
import json
import stat
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import FormatError, OtpBridgeError
from otpbridge.core.model import Account, Algorithm, Kind
from otpbridge.plugins.gauth import GAuthStore
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.oracles import needs_oathtool
from tests.support.paths import FIXTURES

GA = FIXTURES / "google_authenticator"


store = F.store_opener(GAuthStore, "gauth")


# -- an independent protobuf wire decoder (no descriptor, no protobuf package) ----------------
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((number, value))
    return out


def _signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def decode_uri(uri: str) -> dict:
    """MigrationPayload as a dict, decoded by hand from the notes' schema."""
    assert uri.startswith("otpauth-migration://offline?data=")
    raw = base64.b64decode(unquote(uri.split("data=", 1)[1]))
    payload: dict = {"otp": []}
    for number, value in _fields(raw):
        if number == 1:
            params = {"algorithm": 0, "digits": 0, "type": 0, "counter": 0, "issuer": "", "name": ""}
            for n, v in _fields(value):
                key = {
                    1: "secret",
                    2: "name",
                    3: "issuer",
                    4: "algorithm",
                    5: "digits",
                    6: "type",
                    7: "counter",
                }[n]
                params[key] = v.decode() if n in (2, 3) else v
            payload["otp"].append(params)
        else:
            payload[{2: "version", 3: "batch_size", 4: "batch_index", 5: "batch_id"}[number]] = _signed32(
                value
            )
    return payload


# -- the fixtures ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, count",
    [
        ("example_export.txt", 6),
        ("example_export_only_totp.txt", 5),
        ("test_plus_problem_export.txt", 4),
        ("googleauthenticator.txt", 6),
    ],
)
def test_fixture_counts(name, count):
    result = store(GA / name).read()
    assert result.errors == [] and len(result.accounts) == count


def test_example_export_matches_example_output_json():
    got = store(GA / "example_export.txt").read().accounts
    expected = json.loads((GA / "example_output.json").read_text())
    assert len(got) == len(expected) == 6
    for acc, exp in zip(got, expected, strict=True):
        assert (acc.name, acc.secret_b32, acc.issuer, acc.kind.value) == (
            exp["name"],
            exp["secret"],
            exp["issuer"],
            exp["type"],
        )
        assert (acc.counter if acc.kind is Kind.HOTP else None) == exp["counter"]


def test_stratum_export_against_the_canonical_set():
    result = store(GA / "googleauthenticator.txt").read()
    C.assert_matches(
        result.accounts,
        C.without(C.STRATUM, "Many"),  # 9 digits: not exportable from the app
        fixups=[
            C.fix_where(lambda a: a.issuer == "Long", period=30),  # migration payloads have no period
            C.fix_where(lambda a: a.issuer == "NoIssuer", issuer=""),
        ],
    )


def test_unencoded_plus_is_base64_not_space():
    text = (GA / "test_plus_problem_export.txt").read_text()
    assert "+" in text.split("data=", 1)[1]
    accounts = store(GA / "test_plus_problem_export.txt").read().accounts
    assert [(a.issuer, a.name) for a in accounts] == [
        ("SerenityLabs", f"test{i}@serenitylabs.co.uk") for i in range(1, 5)
    ]
    assert [len(a.secret) for a in accounts] == [20] * 4


def test_wrong_prefix_is_read_with_a_warning():
    s = store(GA / "test_export_wrong_prefix.txt")
    result = s.read()
    assert [(a.issuer, a.name) for a in result.accounts] == [("raspberrypi", "pi@raspberrypi")]
    assert any("before the URI" in w for w in s.warnings)


def test_wrong_data_is_a_clear_format_error():
    with pytest.raises(FormatError) as err:
        store(GA / "test_export_wrong_data.txt").read()
    assert err.value.exit_code == 4 and "not a Google Authenticator migration payload" in str(err.value)


def test_plain_uri_list_is_not_a_migration_export():
    with pytest.raises(FormatError, match="no otpauth-migration"):
        store(GA / "url_list_output.txt").read()


@needs_oathtool
def test_codes_agree_with_oathtool():
    accounts = F.accounts_of(store(GA / "googleauthenticator.txt"), store(GA / "example_export.txt"))
    assert C.assert_codes_match_oathtool(accounts) >= 10


def test_bad_lines_are_per_entry_errors_when_others_are_good(tmp_path):
    good = (GA / "googleauthenticator.txt").read_text().strip()
    path = tmp_path / "mixed.txt"
    path.write_text(
        f"# comment\n{good}\notpauth-migration://offline?data=%%%\nhello\notpauth://totp/x?secret=AAAA\n"
        "otpauth-migration://offline?data=AB%FFCD\notpauth-migration://online?data=AAAA\n"
    )
    result = store(path).read()
    assert len(result.accounts) == 6
    assert [e.where for e in result.errors] == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "uris:" in result.errors[2].reason
    assert "percent-encoding" in result.errors[3].reason and "FF" not in result.errors[3].reason.upper()


def test_empty_and_binary_files(tmp_path):
    # A file of only comments is an empty export (test_import_defects.py), not an error.
    for content in (b"", b"\n\n", b"\xff\xfe\x00garbage"):
        path = tmp_path / "e.txt"
        path.write_bytes(content)
        with pytest.raises(FormatError):
            store(path).read()


def _uri_of(payload: bytes) -> str:
    return "otpauth-migration://offline?data=" + base64.b64encode(payload).decode()


_GOOD_PAYLOAD = base64.b64decode(
    unquote((GA / "googleauthenticator.txt").read_text().strip().split("data=")[1])
)


@F.examples(150)
@given(data=st.data())
def test_mutated_payloads_never_crash(tmp_path, data):
    raw = F.mutate_bytes(data, _GOOD_PAYLOAD, max_ops=6, max_delete=20, truncate=True)
    path = tmp_path / "p.txt"
    path.write_text(_uri_of(raw) + "\n")
    result = F.read_or_refuse(store(path))
    if result is not None:
        for acc in result.accounts:
            assert acc.digits in (6, 8) and acc.period == 30


@F.examples(60)
@given(text=st.text(max_size=200))
def test_mutated_text_never_crashes(tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_text("otpauth-migration://offline?data=" + text, encoding="utf-8", errors="surrogatepass")
    F.read_or_refuse(store(path))


# -- writing --------------------------------------------------------------------------------
def _many(n: int) -> list[Account]:
    kinds = [Kind.TOTP, Kind.HOTP]
    return [
        Account(
            kind=kinds[i % 2],
            secret=bytes([i + 1]) * (10 + i % 11),
            issuer=f"Issuer {i}" if i % 3 else "",
            name=f"user{i}@example.com" if i % 4 else f"Colon:{i}",
            algorithm=[Algorithm.SHA1, Algorithm.SHA256, Algorithm.SHA512][i % 3],
            digits=[6, 8][i % 2],
            counter=i * 7 if kinds[i % 2] is Kind.HOTP else 0,
        )
        for i in range(n)
    ]


def test_write_batches_and_independent_decode(tmp_path):
    accounts = _many(25)
    path = tmp_path / "export.txt"
    s = store(path)
    s.write_all(accounts)
    F.assert_private_and_warned(path, s)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    payloads = [decode_uri(line) for line in lines]
    assert [p["batch_index"] for p in payloads] == [0, 1, 2]
    assert {p["batch_size"] for p in payloads} == {3} and {p["version"] for p in payloads} == {1}
    assert len({p["batch_id"] for p in payloads}) == 1
    decoded = [o for p in payloads for o in p["otp"]]
    assert [len(p["otp"]) for p in payloads] == [10, 10, 5]
    for params, acc in zip(decoded, accounts, strict=True):
        assert params["secret"] == acc.secret
        assert params["issuer"] == acc.issuer
        assert params["name"] == (f"{acc.issuer}:{acc.name}" if acc.issuer else acc.name)
        assert params["algorithm"] == {"SHA1": 1, "SHA256": 2, "SHA512": 3}[acc.algorithm.value]
        assert params["digits"] == {6: 1, 8: 2}[acc.digits]
        assert params["type"] == (1 if acc.kind is Kind.HOTP else 2)
        assert params["counter"] == acc.counter
    assert store(path).read().accounts == accounts


def test_batch_size_option_and_missing_batch_warning(tmp_path):
    path = tmp_path / "b.txt"
    store(path, **{"batch-size": "4"}).write_all(_many(10))
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    path.write_text("\n".join(lines[:2]) + "\n")
    s = store(path)
    assert len(s.read().accounts) == 8
    assert any("2 of the 3 QR codes" in w for w in s.warnings)
    with pytest.raises(OtpBridgeError):
        store(path, **{"batch-size": "0"}).write_all(_many(1))


def test_accounts_the_app_cannot_hold_are_skipped_not_corrupted(tmp_path):
    path = tmp_path / "s.txt"
    ok = Account(kind=Kind.TOTP, secret=b"1234567890", issuer="Fine", name="a")
    bad = [
        Account(kind=Kind.STEAM, secret=b"steamsteam", issuer="Steam", name="s"),
        Account(kind=Kind.TOTP, secret=b"sevensevn", issuer="Seven", name="7", digits=7),
        Account(kind=Kind.TOTP, secret=b"sixtysixty", issuer="Sixty", name="60", period=60),
        Account(kind=Kind.HOTP, secret=b"bigcounter", issuer="Big", name="c", counter=2**63),  # an int64 field
    ]
    s = store(path)
    report = s.apply([ok, *bad])
    assert report.added == [ok]
    assert sorted(e.where for e in report.errors) == sorted(a.label for a in bad)
    reasons = " ".join(e.reason for e in report.errors)
    assert "Steam" in reasons and "7-digit" in reasons and "60-second" in reasons and "2^63" in reasons
    assert store(path).read().accounts == [ok]
    s2 = store(tmp_path / "direct.txt")
    s2.write_all([ok, *bad])
    assert sorted(w for w in s2.warnings if "not written" in w) == sorted(
        f"gauth:{tmp_path / 'direct.txt'}: not written: {e}" for e in report.errors
    )
    assert store(tmp_path / "direct.txt").read().accounts == [ok]


def test_qr_png_files(tmp_path):
    path = tmp_path / "ga.txt"
    qr_dir = tmp_path / "codes"
    s = store(path, qr=str(qr_dir))
    s.write_all(_many(12))
    pngs = sorted(qr_dir.iterdir())
    assert [p.name for p in pngs] == ["ga-1-of-2.png", "ga-2-of-2.png"]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert stat.S_IMODE(png.stat().st_mode) == 0o600


def test_qr_on_the_terminal(tmp_path):
    s = store(tmp_path / "ga.txt", qr="terminal")
    s.write_all(_many(3))
    drawn = [m for m in s.infos if "\u2588" in m or "\u2580" in m or "\u2584" in m]
    assert len(drawn) == 1 and len(drawn[0].splitlines()) > 20
    assert any("QR code 1 of 1" in m for m in s.infos)


@F.examples(40)
@given(
    accounts=F.account_lists(
        max_size=25,
        kind=st.sampled_from([Kind.TOTP, Kind.HOTP]),
        secret=st.binary(min_size=1, max_size=64),
        digits=st.sampled_from([6, 8]),
        counter=st.integers(0, 2**62),
        period=None,  # the app has 30 s only
        folder=None,
    )
)
def test_round_trip_is_lossless_for_what_the_app_holds(tmp_path, accounts):
    F.assert_round_trips(store, tmp_path / "h.txt", accounts)  # an empty export is one empty batch


# -- detection ------------------------------------------------------------------------------
MIGRATION_FILES = sorted(p.name for p in GA.glob("*.txt") if "otpauth-migration" in p.read_text())


@pytest.mark.parametrize("name", MIGRATION_FILES)
def test_detected_as_gauth(name):
    assert detect_kind(GA / name) == "gauth"


def test_does_not_claim_other_files():
    others = [
        p
        for p in FIXTURES.rglob("*")
        if p.is_file() and p.parent != FIXTURES and p.name not in MIGRATION_FILES
    ]
    for path in others:
        assert not GAuthStore.sniff(path, path.read_bytes()[: 256 * 1024]), path
    assert detect_kind(GA / "url_list_output.txt") != "gauth"
