"""The canonical account sets the app fixtures encode, and how to compare against them.

``AEGIS_VECTORS``: Aegis's reference entries (``VaultEntries.java``; fixtures README
"VaultEntries"), which Aegis's importer tests check every ``A:`` fixture against. The
secrets come from ``otpauth_uri/plain.txt``. The README lists an 8th vector, Battle.net,
but no fixture holds its secret, so it is not here.

``STRATUM``: the seven standard accounts every Stratum (``S:``) fixture holds (Long
Period, Many Digits, Sha 256/512, Standard Totp/Hotp, NoIssuer), from
``otpauth_uri/urilist.txt``. Stratum files add mOTP/Yandex/Steam extras that differ
per file; tests check those by hand.

Where a format cannot hold a value, a test passes an explicit *fix-up* that turns the
expected account into what that format can say (as Aegis's tests do), e.g.
``lambda a: a.replace(period=30)`` for Google Authenticator. Keep this module small
and stable: other test modules import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from otpbridge.core.model import Account, Algorithm, Kind, b32decode

Fixup = Callable[[Account], Account | None]

#: The fields compared by default (folder and note only when a test asks for them).
FIELDS = ("kind", "issuer", "name", "algorithm", "digits", "period", "counter")


def _acc(
    kind: str,
    issuer: str,
    name: str,
    secret: str,
    algorithm: str = "SHA1",
    digits: int = 6,
    period: int = 30,
    counter: int = 0,
) -> Account:
    return Account(
        kind=Kind(kind),
        secret=b32decode(secret),
        issuer=issuer,
        name=name,
        algorithm=Algorithm(algorithm),
        digits=digits,
        period=period,
        counter=counter,
    )


AEGIS_VECTORS: tuple[Account, ...] = (
    _acc("totp", "Deno", "Mason", "4SJHB4GSD43FZBAI7C2HLRJGPQ"),
    _acc("totp", "SPDX", "James", "5OM4WOOGPLQEF6UGN3CPEOOLWU", "SHA256", 7, 20),
    _acc("totp", "Airbnb", "Elijah", "7ELGJSGXNCCTV3O6LKJWYFV2RA", "SHA512", 8, 50),
    _acc("hotp", "Issuu", "James", "YOOMIXWS5GN6RTBPUFFWKTW5M4", counter=1),
    _acc("hotp", "Air Canada", "Benjamin", "KUVJJOM753IHTNDSZVCNKL7GII", "SHA256", 7, counter=50),
    _acc("hotp", "WWE", "Mason", "5VAML3X35THCEBVRLV24CGBKOY", "SHA512", 8, counter=10300),
    _acc("steam", "Boeing", "Sophia", "JRZCL47CMXVOQMNPZR2F7J4RGI", digits=5),
)

STRATUM: tuple[Account, ...] = (
    _acc("totp", "Long", "Period", "JGRMXBLPPYQIFMRBFQDHNP3MPPYQYNUN", period=60),
    _acc("totp", "Many", "Digits", "WEV2GHDH4EAU7D5SZGCIQOFBNQ35EHBS", digits=9),
    _acc("totp", "Sha", "256", "RJNZJM7PAGJUBG32XHQWHFZVLYOMGIUQ", "SHA256"),
    _acc("totp", "Sha", "512", "UW33SR5O4EKTDXNCBBS5FSPUKAYXIWOH", "SHA512"),
    _acc("hotp", "Standard", "Hotp", "JOR2VZXMNHACFNLRAOACFFRDRYAOFMLB", counter=10),
    _acc("totp", "Standard", "Totp", "54VEGZFJHM3BGDONFERMPUOKNGDJETGM"),
    _acc("totp", "NoIssuer", "NoIssuer", "KY2QJPMNQLSGSZE2C5F7AYBLBVEEDHFX"),
)


def without(accounts: Iterable[Account], *issuers: str) -> tuple[Account, ...]:
    """The set minus the accounts of the named issuers (what a format drops)."""
    return tuple(a for a in accounts if a.issuer not in issuers)


def fix_where(predicate: Callable[[Account], bool], **changes: object) -> Fixup:
    """A fix-up applying ``changes`` to the expected accounts that match ``predicate``."""
    return lambda a: a.replace(**changes) if predicate(a) else a


def differences(
    imported: Sequence[Account],
    expected: Iterable[Account],
    *,
    fixups: Sequence[Fixup] = (),
    fields: Sequence[str] = FIELDS,
) -> list[str]:
    """Human-readable differences; empty when ``imported`` is exactly ``expected``.

    Accounts are matched by kind + secret (the canonical set has one account per secret,
    and a fix-up may change an identity field); each fix-up maps an expected
    account to what the format can hold, or to None when the format cannot hold it.
    Messages name accounts by label, never by secret.
    """
    wanted: list[Account] = []
    for acc in expected:
        fixed: Account | None = acc
        for fix in fixups:
            fixed = fix(fixed) if fixed is not None else None
        if fixed is not None:
            wanted.append(fixed)
    problems: list[str] = []
    remaining = list(imported)
    for want in wanted:
        match = next((a for a in remaining if a.kind == want.kind and a.secret == want.secret), None)
        if match is None:
            problems.append(f"missing: {want.label} ({want.kind.value})")
            continue
        remaining.remove(match)
        for name in fields:
            got, exp = getattr(match, name), getattr(want, name)
            if got != exp:
                problems.append(f"{want.label}: {name} is {got!r}, expected {exp!r}")
    problems.extend(f"unexpected: {a.label} ({a.kind.value})" for a in remaining)
    return problems


def assert_matches(imported: Sequence[Account], expected: Iterable[Account], **kwargs) -> None:
    problems = differences(imported, expected, **kwargs)
    assert not problems, "\n".join(problems)


def assert_codes_match_oathtool(accounts: Iterable[Account], at: float = 1_700_000_000.0) -> int:
    """Compare our codes with oathtool's for every account oathtool can compute; returns how many.

    oathtool (liboath) does TOTP with SHA1/256/512 and HOTP with SHA1 only, 6–8 digits,
    and no Steam.
    """
    from otpbridge.core.codes import code_at
    from tests.support.oracles import oathtool_code

    checked = 0
    for acc in accounts:
        if acc.kind is Kind.STEAM or not 6 <= acc.digits <= 8:
            continue
        if acc.kind is Kind.HOTP and acc.algorithm is not Algorithm.SHA1:
            continue
        assert code_at(acc, at) == oathtool_code(acc, at), f"code mismatch for {acc.label}"
        checked += 1
    return checked
