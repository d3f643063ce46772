from __future__ import annotations

import pytest

from otpbridge.core.model import Account, Algorithm, Kind, b32decode, b32encode, dedupe

SECRET = b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"  # 10 bytes: common in the wild


def test_short_secret_is_accepted():
    acc = Account(Kind.TOTP, SECRET, issuer="Example", name="alice")
    assert acc.secret == SECRET


def test_repr_and_str_hide_the_secret():
    acc = Account(Kind.TOTP, SECRET, issuer="Example", name="alice", note="recovery codes: 1234")
    text = repr(acc) + str(acc)
    assert SECRET.hex() not in text
    assert acc.secret_b32 not in text
    assert "1234" not in text  # notes can hold recovery codes
    assert "Example" in text


def test_identity_is_generator_and_label():
    """SPEC §3 (revised): kind, secret, algorithm, digits, period, issuer and name."""
    a = Account(Kind.TOTP, SECRET, issuer="A", name="x")
    for change in ({"issuer": "B"}, {"name": "y"}, {"digits": 8}, {"period": 15},
                   {"algorithm": Algorithm.SHA256}, {"issuer": "a"}):  # case is a visible rename
        other = a.replace(**change)
        assert other.identity != a.identity, change
        assert other.secret_id == a.secret_id
        assert dedupe([a, other]) == [a, other]
    # attributes, not identity
    assert a.replace(folder="f", note="n", mtime=5.0).identity == a.identity
    assert Account(Kind.HOTP, SECRET, counter=7).identity == Account(Kind.HOTP, SECRET, counter=1).identity
    # leading/trailing whitespace is not part of a label (one store trims it)
    assert Account(Kind.TOTP, SECRET, issuer=" A ", name="x ").identity == a.identity
    assert Account(Kind.HOTP, SECRET).identity != Account(Kind.TOTP, SECRET).identity
    assert Account(Kind.TOTP, SECRET + b"!").identity != a.identity
    assert dedupe([a, a.replace(note="dup")]) == [a]  # an exact duplicate is kept once
    # length-prefixed: moving text between issuer and name is a different account
    assert Account(Kind.TOTP, SECRET, issuer="ab", name="c").identity != Account(
        Kind.TOTP, SECRET, issuer="a", name="bc").identity


def test_shared_secrets_are_reported_not_collapsed():
    from otpbridge.core.model import shared_secrets

    accs = [Account(Kind.TOTP, SECRET, issuer="Ente", name=f"Account {i}") for i in range(1, 21)]
    assert len(dedupe(accs)) == 20
    shared = shared_secrets(accs)
    assert len(shared) == 20 and all(len(v) == 19 for v in shared.values())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"secret": b""}, "empty"),
        ({"digits": 4}, "digits"),
        ({"digits": 11}, "digits"),
        ({"period": 0}, "period"),
        ({"counter": -1, "kind": Kind.HOTP}, "counter"),
        ({"counter": 2**64, "kind": Kind.HOTP}, "counter"),
        ({"issuer": "bad\nname"}, "control"),
        ({"secret": b"x" * 2000}, "longer"),
    ],
)
def test_validation_messages(kwargs, message):
    base = {"kind": Kind.TOTP, "secret": SECRET}
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Account(**base)


def test_kind_normalisation():
    steam = Account(Kind.STEAM, SECRET, digits=8, algorithm=Algorithm.SHA256)
    assert (steam.digits, steam.algorithm) == (5, Algorithm.SHA1)
    assert Account(Kind.HOTP, SECRET, period=60).period == 30
    assert Account(Kind.TOTP, SECRET, counter=5).counter == 0


@pytest.mark.parametrize("text", ["sha256", "HMAC-SHA-256", "SHA-256", "HmacSHA256", "Sha256"])
def test_algorithm_spellings(text):
    assert Algorithm.parse(text) is Algorithm.SHA256


def test_algorithm_unknown():
    with pytest.raises(ValueError, match="unsupported algorithm"):
        Algorithm.parse("MD5")


@pytest.mark.parametrize("text", ["jbswy3dpehpk3pxp", "JBSW Y3DP EHPK 3PXP", "JBSW-Y3DP-EHPK-3PXP", "JBSWY3DPEHPK3PXP===="])
def test_lenient_base32(text):
    assert b32decode(text) == b"Hello!\xde\xad\xbe\xef"


def test_canonical_base32_has_no_padding():
    assert b32encode(b"\x00") == "AA"


# "ABC" (a length no encoder writes) is read now, as the apps read it: test_short_base32.py
@pytest.mark.parametrize("text", ["", "!!!!", "A", "AB0", "ABCDEFG1"])
def test_base32_rejects(text):
    with pytest.raises(ValueError):
        b32decode(text)
