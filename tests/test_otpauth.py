from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otpbridge.core.model import MAX_DIGITS, Account, Algorithm, Kind
from otpbridge.core.otpauth import UriError, format_uri, parse_uri

S = "JBSWY3DPEHPK3PXP"  # 10 bytes: pyotp refuses it by default; we must not
HELLO = b"Hello!\xde\xad\xbe\xef"


@pytest.mark.parametrize(
    "uri, expect",
    [
        (f"otpauth://totp/ACME:alice?secret={S}&issuer=ACME", {"issuer": "ACME", "name": "alice"}),
        (f"otpauth://totp/ACME%3Aalice?secret={S}", {"issuer": "ACME", "name": "alice"}),
        (f"otpauth://totp/ACME%3A%20alice?secret={S}", {"issuer": "ACME", "name": "alice"}),
        (f"otpauth://totp/alice?secret={S}&issuer=ACME", {"issuer": "ACME", "name": "alice"}),
        (f"otpauth://totp/Label%20Co:alice?secret={S}&issuer=ACME", {"issuer": "ACME", "name": "alice"}),
        (f"otpauth://totp/My+Bank:alice+smith?secret={S}", {"issuer": "My Bank", "name": "alice smith"}),
        (f"otpauth://totp/My%20Bank:alice?secret={S}", {"issuer": "My Bank"}),
        (f"otpauth://totp/x?secret={S.lower()}", {"secret": HELLO}),
        ("otpauth://totp/x?secret=JBSW%20Y3DP-EHPK-3PXP", {"secret": HELLO}),
        (f"otpauth://totp/x?secret={S}%3D%3D%3D%3D", {"secret": HELLO}),
        (f"otpauth://totp/x?secret={S}====", {"secret": HELLO}),
        (f"otpauth://totp/x?secret={S}&algorithm=HMAC-SHA-256", {"algorithm": Algorithm.SHA256}),
        (f"otpauth://totp/x?secret={S}&algorithm=sha512", {"algorithm": Algorithm.SHA512}),
        (f"otpauth://totp/x?secret={S}&digits=8&period=60", {"digits": 8, "period": 60}),
        (f"otpauth://totp/x?secret={S}&digits=10", {"digits": 10}),
        (f"otpauth://totp/x?secret={S}&image=https%3A%2F%2Fx%2Fy.png&foo=bar", {"name": "x"}),
        (f"otpauth://totp/Steam:me?secret={S}&encoder=steam", {"kind": Kind.STEAM, "digits": 5}),
        (f"otpauth://totp/me?secret={S}&digits=s&issuer=Steam", {"kind": Kind.STEAM}),
        (f"otpauth://steam/Steam:me?secret={S}", {"kind": Kind.STEAM}),
        (f"otpauth://hotp/x?secret={S}&counter=42", {"kind": Kind.HOTP, "counter": 42}),
        (f"otpauth://hotp/x?secret={S}", {"kind": Kind.HOTP, "counter": 0}),
        (f"OTPAUTH://TOTP/x?secret={S}", {"kind": Kind.TOTP}),
        (f"  otpauth://totp/x?secret={S}\n", {"name": "x"}),
        (f"otpauth://totp/100%ZZ?secret={S}", {"name": "100%ZZ"}),
        (f"otpauth://totp/?secret={S}&issuer=Only", {"issuer": "Only", "name": ""}),
        (f"otpauth://totp/a b:c d?secret={S}", {"issuer": "a b", "name": "c d"}),
    ],
)
def test_tolerant_parse(uri, expect):
    acc = parse_uri(uri)
    for key, value in expect.items():
        assert getattr(acc, key) == value, key


@pytest.mark.parametrize(
    "uri, message",
    [
        ("https://example.com", "not an otpauth"),
        ("otpauth://motp/x?secret=AAAA", "unsupported OTP type"),
        ("otpauth://totp/x?issuer=A", "no secret"),
        ("otpauth://totp/x?secret=!!!", "Base32"),
        ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=abc", "digits"),
        ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=4", "digits"),
        ("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=MD5", "algorithm"),
        ("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP&counter=5counter=6", "counter"),
    ],
)
def test_parse_errors_are_clear_and_secret_free(uri, message):
    with pytest.raises(UriError, match=message) as info:
        parse_uri(uri)
    assert "JBSWY3DPEHPK3PXP" not in str(info.value)


def test_canonical_output():
    acc = Account(Kind.TOTP, HELLO, issuer="My Bank: EU", name="alice@example.com", digits=8, period=60)
    uri = format_uri(acc)
    assert uri == (
        "otpauth://totp/My%20Bank%3A%20EU:alice%40example.com?secret=JBSWY3DPEHPK3PXP"
        "&issuer=My%20Bank%3A%20EU&algorithm=SHA1&digits=8&period=60"
    )
    assert "=" not in uri.split("secret=")[1].split("&")[0]
    assert parse_uri(uri) == acc


def test_hotp_and_steam_output():
    assert "counter=7" in format_uri(Account(Kind.HOTP, HELLO, counter=7))
    steam = format_uri(Account(Kind.STEAM, HELLO, issuer="Steam", name="me"))
    assert steam.startswith("otpauth://totp/") and "encoder=steam" in steam and "digits=5" in steam


text_field = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30
).map(str.strip)

accounts = st.builds(
    Account,
    kind=st.sampled_from(list(Kind)),
    secret=st.binary(min_size=1, max_size=64),
    issuer=text_field,
    name=text_field,
    algorithm=st.sampled_from(list(Algorithm)),
    digits=st.integers(min_value=5, max_value=MAX_DIGITS),
    period=st.integers(min_value=1, max_value=3600),
    counter=st.integers(min_value=0, max_value=2**40),
)


@settings(max_examples=400, deadline=None)
@given(accounts)
def test_roundtrip_property(acc):
    assert parse_uri(format_uri(acc)) == acc


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_text_never_raises_unexpectedly(text):
    try:
        parse_uri(text)
    except UriError:
        pass


@settings(max_examples=400, deadline=None)
@given(accounts, st.data())
def test_mutated_uris_never_raise_unexpectedly(acc, data):
    uri = format_uri(acc)
    pos = data.draw(st.integers(min_value=0, max_value=len(uri)))
    junk = data.draw(st.text(max_size=5))
    cut = data.draw(st.booleans())
    mutated = uri[:pos] + junk + ("" if cut else uri[pos:])
    try:
        parse_uri(mutated)
    except UriError:
        pass
