"""The account model (SPEC §3): one value type every store converts to and from.

Identity (SPEC §3, revised in 0.2) is the code generator *and* the label: kind, secret,
algorithm, digits, period, issuer and name. Two entries that agree on all seven are one
account (an exact duplicate); entries that differ in any of them are two accounts, even
when they share a secret. Counter, folder, note and mtime are attributes. Issuer and name
are compared exactly as stored after the model's own normalisation (leading/trailing
whitespace stripped, nothing else): a change of case is a rename the user can see.
Secrets are excluded from ``repr``/``str`` so an
account can be logged or shown in a traceback without leaking anything.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property

# C0 control characters (what ``ord(c) < 32`` tested per character): one C-level scan
# instead of a Python generator per field (measured ~20x faster on a 20-character name).
_has_control = re.compile(r"[\x00-\x1f]").search


class Kind(StrEnum):
    TOTP = "totp"
    HOTP = "hotp"
    STEAM = "steam"


class Algorithm(StrEnum):
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"

    @classmethod
    def parse(cls, text: str) -> Algorithm:
        """Accept the spellings real exports use: ``sha256``, ``HMAC-SHA-256``, ``SHA-256``, ``HmacSHA256``."""
        norm = re.sub(r"[^A-Z0-9]", "", text.upper())
        for prefix in ("HMAC",):
            if norm.startswith(prefix):
                norm = norm[len(prefix):]
        try:
            return cls(norm)
        except ValueError:
            # The value is not quoted: a mangled export may hold anything in any field.
            raise ValueError("unsupported algorithm (use SHA1, SHA256 or SHA512)") from None


MIN_DIGITS, MAX_DIGITS = 5, 10
MAX_PERIOD = 24 * 3600
MAX_SECRET_BYTES = 1024
STEAM_DIGITS = 5


def b32encode(secret: bytes) -> str:
    """Canonical Base32: upper case, no padding (padding breaks phone apps)."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


#: How apps read a Base32 secret whose length no encoder writes (1, 3 or 6 characters past
#: the last full group of 8: 9, 11, 14, 17, 19 … characters). Such secrets are real (typed
#: by hand into 2FAS, Ente, Bitwarden, Proton); each app decodes them its own way, and the
#: codes it shows come from the bytes it decoded, so we read them as the app that wrote the
#: file did. Verified against the apps' sources (details and vectors: docs/stores/apps.md,
#: "Secrets of impossible Base32 length"):
#:
#: ``bits``          whole bytes only; the bits past the last whole byte are dropped. Google
#:                   Authenticator (Base32String), KeePass 2, Bitwarden, Proton Pass and
#:                   Proton Authenticator (Rust ``base32`` crate). The default.
#: ``ente``          the partial group of 1, 3 or 6 characters is dropped entirely: Ente Auth
#:                   (Dart ``otp`` 3.1.4 → ``base32`` 2.1.3 ``decode``).
#: ``2fas-ios``      as ``bits``, but 1 trailing character becomes one more byte, its 5 bits
#:                   followed by 3 zero bits: 2FAS for iOS (``MF_Base32Codec``).
#: ``2fas-android``  as ``bits``, but 1 trailing character becomes one more byte made of the
#:                   previous character's 5 bits and this one's top 3: 2FAS for Android
#:                   (Apache Commons Codec 1.20 ``Base32``, lenient mode).
BASE32_RULES = ("bits", "ente", "2fas-ios", "2fas-android")
DEFAULT_BASE32_RULE = "bits"
_RULE_WHO = {
    "bits": "as Google Authenticator, KeePass, Bitwarden and Proton read it",
    "ente": "as Ente Auth reads it",
    "2fas-ios": "as 2FAS for iOS reads it",
    "2fas-android": "as 2FAS for Android reads it",
}
_B32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class DecodedSecret(bytes):
    """Secret bytes read from Base32 of a non-standard length, carrying how they were read.

    ``note`` says so in words (lengths only, never a character of the secret); an
    :class:`Account` built from these bytes keeps it as ``secret_note`` so the read can
    be reported once per account (``Store.read`` does).
    """

    note: str = ""


def b32decode(text: str, *, rule: str | None = None) -> bytes:
    """Lenient Base32 as KeePassXC and oathtool read it: case, spaces, dashes and padding ignored.

    A length no encoder writes (1, 3 or 6 characters past a group of 8) is read by ``rule``
    (see :data:`BASE32_RULES`; default ``bits``) and returned as a :class:`DecodedSecret`
    whose ``note`` describes the reading.
    """
    rule = rule or DEFAULT_BASE32_RULE
    if rule not in BASE32_RULES:
        raise ValueError(f"unknown Base32 rule {rule!r}")
    cleaned = re.sub(r"[\s\-=]", "", text).upper()
    if not cleaned:
        raise ValueError("the secret is empty")
    if not re.fullmatch(r"[A-Z2-7]+", cleaned):
        raise ValueError("the secret is not valid Base32 (letters A-Z and digits 2-7)")
    extra = len(cleaned) % 8
    if extra not in (1, 3, 6):
        return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    full = len(cleaned) - extra
    head = base64.b32decode(cleaned[:full]) if full else b""
    values = [_B32_ALPHABET.index(c) for c in cleaned[full:]]
    if rule == "ente":
        tail, how = b"", f"the last {extra} characters dropped"
    elif extra == 1 and rule == "2fas-ios":
        tail, how = bytes([values[0] << 3]), "the last character's 5 bits completed with 3 zero bits"
    elif extra == 1 and rule == "2fas-android":
        before = _B32_ALPHABET.index(cleaned[full - 1]) if full else 0
        tail = bytes([(before << 3 | values[0] >> 2) & 0xFF])
        how = "one more byte: the previous character's 5 bits, then the last one's top 3"
    else:
        acc = 0
        for v in values:
            acc = acc << 5 | v
        nbytes = extra * 5 // 8
        tail = (acc >> (extra * 5 - nbytes * 8)).to_bytes(nbytes, "big")
        how = f"the last {extra * 5 - nbytes * 8} bits dropped"
    if not head + tail:
        raise ValueError(f"the secret is empty: {len(cleaned)} Base32 characters hold no whole byte")
    secret = DecodedSecret(head + tail)
    secret.note = (
        f"non-standard secret: {len(cleaned)} Base32 characters ({len(cleaned) * 5} bits) is a length "
        f"no encoder writes; read as {len(secret)} bytes ({how}), {_RULE_WHO[rule]}; "
        f"written back as the canonical Base32 of those bytes ({len(b32encode(secret))} characters)"
    )
    return secret


@dataclass(frozen=True)
class Account:
    """One 2FA account. ``counter`` is the *next* HOTP counter to use."""

    kind: Kind
    secret: bytes = field(repr=False)
    issuer: str = ""
    name: str = ""
    algorithm: Algorithm = Algorithm.SHA1
    digits: int = 6
    period: int = 30
    counter: int = 0
    folder: str = ""
    note: str = field(default="", repr=False)
    mtime: float | None = field(default=None, repr=False, compare=False)
    #: how a non-standard secret was read (see :func:`b32decode`); "" for ordinary ones.
    #: Not part of equality: it describes the source file, not the account.
    secret_note: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        object.__setattr__(self, "algorithm", Algorithm(self.algorithm))
        if isinstance(self.secret, DecodedSecret) and not self.secret_note:
            object.__setattr__(self, "secret_note", self.secret.note)
        if isinstance(self.secret, bytearray | memoryview) or (
            isinstance(self.secret, bytes) and type(self.secret) is not bytes
        ):
            object.__setattr__(self, "secret", bytes(self.secret))
        if not isinstance(self.secret, bytes) or not self.secret:
            raise ValueError("the secret is empty")
        if len(self.secret) > MAX_SECRET_BYTES:
            raise ValueError(f"the secret is longer than {MAX_SECRET_BYTES} bytes")
        # Normalise what a kind cannot hold, so equal accounts compare equal.
        if self.kind is Kind.STEAM:
            object.__setattr__(self, "digits", STEAM_DIGITS)
            object.__setattr__(self, "algorithm", Algorithm.SHA1)
        if self.kind is Kind.HOTP:
            object.__setattr__(self, "period", 30)
        else:
            object.__setattr__(self, "counter", 0)
        if not MIN_DIGITS <= int(self.digits) <= MAX_DIGITS:
            raise ValueError(f"digits must be between {MIN_DIGITS} and {MAX_DIGITS}, not {self.digits}")
        if not 1 <= int(self.period) <= MAX_PERIOD:
            raise ValueError(f"period must be between 1 and {MAX_PERIOD} seconds, not {self.period}")
        if not 0 <= int(self.counter) < 2**64:
            raise ValueError("the HOTP counter must be between 0 and 2^64-1")
        for attr in ("issuer", "name", "folder", "note"):
            value = getattr(self, attr)
            if not isinstance(value, str):
                raise ValueError(f"{attr} must be text")
            if attr in ("issuer", "name"):
                value = value.strip()
                object.__setattr__(self, attr, value)
            if attr != "note" and _has_control(value):
                raise ValueError(f"{attr} contains control characters")
        object.__setattr__(self, "folder", self.folder.strip("/"))

    # -- identity ---------------------------------------------------------------
    # Cached: a frozen account's fields never change, and a 10,000-entry read or sync
    # asks for each id several times (cached_property writes the instance dict directly,
    # which a frozen dataclass allows; equality and repr see only the fields).
    @cached_property
    def identity(self) -> str:
        """A stable id from the seven identity fields; a hash so it can be logged and stored safely.

        Fields are length-prefixed so no two different accounts hash alike.
        """
        parts = [
            self.kind.value.encode(),
            self.secret,
            self.algorithm.value.encode(),
            str(int(self.digits)).encode(),
            str(int(self.period)).encode(),
            self.issuer.encode("utf-8"),
            self.name.encode("utf-8"),
        ]
        h = hashlib.sha256(b"otpbridge/account-id/v2\0")
        for part in parts:
            h.update(len(part).to_bytes(4, "big") + part)
        return h.hexdigest()[:32]

    @cached_property
    def secret_id(self) -> str:
        """Kind + secret only (the identity of 0.1.0): accounts sharing a code seed share it.

        Used to recognise a rename or parameter edit (old entry gone, one with the same
        secret present) and to report accounts that share a secret.
        """
        digest = hashlib.sha256(b"otpbridge/account-id/v1\0" + self.kind.value.encode() + b"\0" + self.secret)
        return digest.hexdigest()[:32]

    @property
    def label(self) -> str:
        """What a person calls the account: ``Issuer (name)`` or whichever part exists."""
        if self.issuer and self.name:
            return f"{self.issuer} ({self.name})"
        return self.issuer or self.name or "(unnamed)"

    @property
    def secret_b32(self) -> str:
        return b32encode(self.secret)

    def replace(self, **changes: object) -> Account:
        return replace(self, **changes)

    def same_settings(self, other: Account) -> bool:
        """Equal in everything a store holds (mtime aside)."""
        return self == other


def dedupe(accounts: list[Account]) -> list[Account]:
    """Keep the first of each identity (SPEC §3: equal in all seven identity fields is one account)."""
    seen: set[str] = set()
    out = []
    for acc in accounts:
        key = acc.identity
        if key not in seen:
            seen.add(key)
            out.append(acc)
    return out


def shared_secrets(accounts: list[Account]) -> dict[str, list[Account]]:
    """identity -> the other accounts (distinct identities) that share its kind + secret."""
    groups: dict[str, list[Account]] = {}
    for acc in dedupe(list(accounts)):
        groups.setdefault(acc.secret_id, []).append(acc)
    out: dict[str, list[Account]] = {}
    for members in groups.values():
        if len(members) > 1:
            for acc in members:
                out[acc.identity] = [o for o in members if o.identity != acc.identity]
    return out


def pair_renames(gone: list[Account], new: list[Account]) -> list[tuple[Account, Account]]:
    """Pair entries that disappeared with entries that appeared with the same kind + secret.

    Each such pair is one rename/edit of one account (SPEC §3). With several candidates
    the pair that agrees in most other fields is taken first; order breaks ties, so the
    pairing is deterministic.
    """
    pairs: list[tuple[int, int, int]] = []
    for i, old in enumerate(gone):
        for j, acc in enumerate(new):
            if old.secret_id == acc.secret_id:
                pairs.append((-_likeness(old, acc), i, j))
    pairs.sort()
    used_old: set[int] = set()
    used_new: set[int] = set()
    out = []
    for _score, i, j in pairs:
        if i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        out.append((gone[i], new[j]))
    return out


def _likeness(a: Account, b: Account) -> int:
    return sum(getattr(a, f) == getattr(b, f) for f in ("issuer", "name", "algorithm", "digits", "period", "folder"))
