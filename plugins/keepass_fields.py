"""The OTP conventions of KeePass-family databases, as plain functions over an entry's fields.

An entry may hold OTP data in five places ("slots"), read in KeePassXC's order
(shared notes, keepass-and-pass §1.2 and §2), then ours:

* ``legacy`` — KeeTrayTOTP / old KeePassXC: ``TOTP Seed`` + ``TOTP Settings`` (``30;6``, ``30;S``);
* ``otp`` — KeePassXC, KeePassOTP, KeeWeb, Keepass2Android: an otpauth:// URI, or
  KeeOtp 1's ``key=…&size=…&step=…`` query string;
* ``kp2-totp`` — KeePass ≥ 2.47: ``TimeOtp-Secret[-Hex|-Base32|-Base64]``, ``-Length``,
  ``-Period``, ``-Algorithm``;
* ``kp2-hotp`` — KeePass: ``HmacOtp-Secret*`` and ``HmacOtp-Counter`` (the *next* counter);
* ``otpbridge-hotp`` — ours: the canonical otpauth://hotp URI of an HOTP account that
  ``HmacOtp-*`` cannot express (KeePass computes only 6-digit SHA-1 HOTP) and that must
  not go to ``otp`` (KeePassXC would show TOTP codes for it). Read last.

Nothing here touches pykeepass, so the conventions are testable on dictionaries.
Error messages name fields and settings, never secret values.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from otpbridge.core.model import Account, Algorithm, Kind, b32decode, b32encode
from otpbridge.core.otpauth import UriError, parse_uri

LEGACY_SEED = "TOTP Seed"
LEGACY_SETTINGS = "TOTP Settings"
OTP = "otp"
TOTP_PREFIX = "TimeOtp-"
HOTP_PREFIX = "HmacOtp-"
OB_HOTP_FIELD = "otpbridge-hotp"
SECRET_SUFFIXES = ("", "-Hex", "-Base32", "-Base64")  # KeePass's read order

LEGACY, URI, KP2_TOTP, KP2_HOTP, OB_HOTP = "legacy", "otp", "kp2-totp", "kp2-hotp", "otpbridge-hotp"

KP2_ALGORITHMS = {Algorithm.SHA1: "HMAC-SHA-1", Algorithm.SHA256: "HMAC-SHA-256", Algorithm.SHA512: "HMAC-SHA-512"}
KP2_MAX_DIGITS = 8  # KeePass's own limit for TimeOtp-Length


class FieldError(ValueError):
    """OTP fields that cannot be read; the message names fields, never values."""


@dataclass(frozen=True)
class Slot:
    """One place in an entry that holds (or should hold) one OTP account."""

    convention: str
    fields: tuple[str, ...]  # every field that belongs to it (removed together)
    account: Account | None = None
    error: str | None = None

    @property
    def family(self) -> str:
        """"totp" (time-based incl. Steam), "hotp", or "?" when unreadable and unknown."""
        if self.account is not None:
            return "hotp" if self.account.kind is Kind.HOTP else "totp"
        if self.convention in (KP2_HOTP, OB_HOTP):
            return "hotp"
        if self.convention in (LEGACY, KP2_TOTP):
            return "totp"
        return "?"


# -- Base32 the way KeePassXC reads it ---------------------------------------------------

_KPXC_MAP = str.maketrans("018", "OLB")
_KPXC_DROP = re.compile(r"[^A-Za-z2-7018]")
_CANONICAL_B32 = re.compile(r"[A-Z2-7]+")


def kpxc_b32decode(text: str) -> bytes:
    """KeePassXC's ``Base32::sanitizeInput``: 0→O, 1→L, 8→B, drop every other non-Base32 character.

    Matching KeePassXC matters more than strictness here: these are the codes the user
    already sees in KeePassXC for this entry.
    """
    return b32decode(_KPXC_DROP.sub("", text).translate(_KPXC_MAP))


def _decode_secret(value: str, encoding: str, where: str) -> bytes:
    value = value.strip()
    if not value:
        raise FieldError(f"{where} is empty")
    try:
        if encoding == "utf8":
            return value.encode("utf-8")
        if encoding == "hex":
            return bytes.fromhex(re.sub(r"\s", "", value))
        if encoding == "base64":
            return base64.b64decode(re.sub(r"\s", "", value), validate=True)
        return kpxc_b32decode(value)
    except (ValueError, binascii.Error) as exc:
        # These messages (ours, binascii's, bytes.fromhex's) name positions, never values.
        raise FieldError(f"{where} is not valid {encoding} ({exc})") from None


#: Values an error message may quote: names of things other apps write. Anything else
#: might be a secret pasted into the wrong field (Base32 looks like any other word).
_QUOTABLE = frozenset(
    "yandex motp steam totp hotp base32 base64 hex utf8 utf-8 sha1 sha256 sha384 sha512 sha-1 sha-256 sha-512 "
    "md5 hmac-sha-1 hmac-sha-256 hmac-sha-384 hmac-sha-512 hmac-md5 sha3-256 sha3-512".split()
)


def _shown(value: str, *, bare: bool = False) -> str:
    if value.strip().lower() in _QUOTABLE:
        return value.strip() if bare else repr(value.strip())
    return "(an unrecognised value)"


def _int(value: str | None, where: str, default: int) -> int:
    if value is None or not value.strip():
        return default
    text = value.strip()
    # 20 digits: an HOTP counter may be any 64-bit value (what this writer writes, and
    # KeePass's own HOTP code reads as a ulong); the model bounds each field after this.
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise FieldError(f"{where} is not a whole number")
    return int(text)


def _account(where: str, **kw: object) -> Account:
    try:
        return Account(**kw)  # type: ignore[arg-type]
    except ValueError as exc:  # model messages never quote the secret
        raise FieldError(f"{where}: {exc}") from None


# -- reading -----------------------------------------------------------------------------


def parse_legacy(fields: Mapping[str, str], ctx: dict) -> Account:
    seed = fields.get(LEGACY_SEED)
    if seed is None:
        raise FieldError(f"'{LEGACY_SETTINGS}' has no '{LEGACY_SEED}' beside it")
    settings = (fields.get(LEGACY_SETTINGS) or "30;6").strip()
    parts = [p.strip() for p in settings.split(";")]
    if len(parts) < 2:
        raise FieldError(f"'{LEGACY_SETTINGS}' is not PERIOD;DIGITS")
    period = _int(parts[0], f"the period in '{LEGACY_SETTINGS}'", 30) or 30
    kind, digits = Kind.TOTP, 6
    if parts[1].upper() == "S":
        kind, digits = Kind.STEAM, 5
    else:
        digits = _int(parts[1], f"the digits in '{LEGACY_SETTINGS}'", 6)
    secret = _decode_secret(seed, "base32", f"'{LEGACY_SEED}'")
    return _account(f"'{LEGACY_SETTINGS}'", kind=kind, secret=secret, digits=digits, period=period, **ctx)


def _query(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split("&"):
        key, sep, value = part.partition("=")
        if sep:
            out.setdefault(unquote(key).strip().lower(), value)
    return out


def _normalise_uri(uri: str) -> str:
    """Rewrite the secret of an otpauth URI into canonical Base32 before ``parse_uri``.

    Handles KeePassXC's Base32 leniency and KeePassOTP's ``encoding=hex|base64|utf8``;
    refuses encoders we cannot compute (KeePassOTP's ``encoder=yandex``).
    """
    head, sep, rest = uri.partition("?")
    if not sep:
        return uri
    query, hsep, fragment = rest.partition("#")
    params = _query(query)
    if "encoder" not in params and "encoding" not in params and _CANONICAL_B32.fullmatch(params.get("secret", "")):
        return uri  # the common case: nothing to rewrite
    encoder = unquote(params.get("encoder", "")).strip().lower()
    if encoder not in ("", "steam"):
        raise FieldError(f"unsupported OTP kind (encoder={_shown(encoder, bare=True)}); left untouched")
    encoding = unquote(params.get("encoding", "base32")).strip().lower().replace("-", "")
    if encoding not in ("base32", "hex", "base64", "utf8"):
        raise FieldError(f"unknown secret encoding {_shown(encoding)} in 'otp'")
    parts = []
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        name = unquote(key).strip().lower()
        if eq and name == "secret":
            raw = unquote(value) if encoding != "base32" else unquote_plus(value)
            decoded = _decode_secret(raw, encoding, "the secret in 'otp'")
            if getattr(decoded, "note", ""):
                # A length no encoder writes: hand parse_uri the sanitised text, so it reads
                # the same bytes and keeps the note saying how (reported per account).
                part = "secret=" + _KPXC_DROP.sub("", raw).translate(_KPXC_MAP).upper()
            else:
                part = "secret=" + b32encode(decoded)
        elif name == "encoding":
            continue
        parts.append(part)
    return head + "?" + "&".join(parts) + (hsep + fragment)


def parse_otp(value: str, ctx: dict, title: str, username: str) -> Account:
    text = value.strip()
    if not text:
        raise FieldError("'otp' is empty")
    lower = text.lower()
    if lower.startswith("otpauth-migration:"):
        raise FieldError("'otp' holds a Google Authenticator migration link; import it with gauth:")
    if lower.startswith("otpauth:"):
        acc = _parse_otpauth(text, ctx, OTP)
        issuer, name = acc.issuer, acc.name
        # KeePassXC writes "KeePassXC" / "none" for an empty title / user name.
        if issuer == "KeePassXC" and not title:
            issuer = ""
        if name == "none" and not username:
            name = ""
        return _fill_label(acc, issuer, name, ctx, title)
    params = _query(text)
    if "key" in params:
        return _parse_keeotp(params, ctx)
    raise FieldError("'otp' is neither an otpauth:// URI nor a KeeOtp key=… string")


def _parse_otpauth(text: str, ctx: dict, field: str) -> Account:
    # parse_uri quotes an unknown type; here it may be a secret typed after "otpauth://".
    rest = text.partition("://")[2]
    type_part = rest.partition("/")[0] if "/" in rest else rest.partition("?")[0]
    if "://" in text and type_part.strip().lower() not in ("totp", "hotp", "steam"):
        raise FieldError(f"'{field}': unsupported OTP type {_shown(type_part)} (expected totp, hotp or steam)")
    try:
        acc = parse_uri(_normalise_uri(text), folder=ctx["folder"])
    except UriError as exc:
        raise FieldError(f"'{field}': {exc}") from None
    # mtime is not validated and not compared; setting it on our fresh instance
    # spares a second validation pass per entry (10,000-entry databases).
    object.__setattr__(acc, "mtime", ctx["mtime"])
    return acc


def _fill_label(acc: Account, issuer: str, name: str, ctx: dict, title: str) -> Account:
    """Issuer / name the URI lacks come from the entry's title / user name."""
    name = name or ctx["name"]
    if not issuer and title != name:
        issuer = ctx["issuer"]
    if (issuer, name) != (acc.issuer, acc.name):
        acc = acc.replace(issuer=issuer, name=name)
    return acc


def parse_ob_hotp(value: str, ctx: dict, title: str) -> Account:
    """Our own field: exactly one otpauth://hotp URI (anything else is an entry error, not a guess)."""
    text = value.strip()
    if not text.lower().startswith("otpauth://hotp"):
        raise FieldError(f"'{OB_HOTP_FIELD}' does not hold an otpauth://hotp URI")
    acc = _parse_otpauth(text, ctx, OB_HOTP_FIELD)
    return _fill_label(acc, acc.issuer, acc.name, ctx, title)


def _parse_keeotp(params: dict[str, str], ctx: dict) -> Account:
    """KeeOtp 1: ``key=B32&type=Totp|Hotp&counter=N&step=N&size=N&otpHashMode=Sha256``."""
    encoding = unquote(params.get("encoding", "base32")).strip().lower().replace("-", "")
    secret = _decode_secret(unquote_plus(params["key"]), encoding if encoding in ("hex", "base64", "utf8") else "base32", "the key in 'otp'")
    otype = unquote(params.get("type", "totp")).strip().lower()
    if otype not in ("totp", "hotp"):
        raise FieldError(f"unsupported OTP type {_shown(otype)} in 'otp'")
    digits = _int(unquote(params.get("size", "")), "size in 'otp'", 6)
    mode = unquote(params.get("otphashmode", "")).strip()
    try:
        algorithm = Algorithm.parse(mode) if mode else Algorithm.SHA1
    except ValueError:
        raise FieldError(f"unsupported otpHashMode {_shown(mode)} in 'otp'") from None
    if otype == "hotp":
        counter = _int(unquote(params.get("counter", "")), "counter in 'otp'", 0)
        return _account("'otp'", kind=Kind.HOTP, secret=secret, digits=digits, algorithm=algorithm, counter=counter, **ctx)
    period = _int(unquote(params.get("step", "")), "step in 'otp'", 30) or 30
    return _account("'otp'", kind=Kind.TOTP, secret=secret, digits=digits, algorithm=algorithm, period=period, **ctx)


def _kp2_secret(fields: Mapping[str, str], prefix: str) -> bytes:
    for suffix, encoding in zip(SECRET_SUFFIXES, ("utf8", "hex", "base32", "base64"), strict=True):
        value = fields.get(f"{prefix}Secret{suffix}")
        if value is not None and value.strip():
            return _decode_secret(value, encoding, f"'{prefix}Secret{suffix}'")
    raise FieldError(f"the {prefix}* fields hold no secret")


def parse_kp2_totp(fields: Mapping[str, str], ctx: dict) -> Account:
    secret = _kp2_secret(fields, TOTP_PREFIX)
    digits = _int(fields.get("TimeOtp-Length"), "'TimeOtp-Length'", 6)
    try:
        period = int(fields.get("TimeOtp-Period", "30").strip() or 30)
    except ValueError:
        period = 30  # KeePass: unparsable means 30
    period = period or 30
    algo_text = (fields.get("TimeOtp-Algorithm") or "").strip()
    try:
        algorithm = Algorithm.parse(algo_text) if algo_text else Algorithm.SHA1
    except ValueError:
        raise FieldError(f"'TimeOtp-Algorithm' {_shown(algo_text)} is not HMAC-SHA-1/256/512") from None
    return _account("TimeOtp fields", kind=Kind.TOTP, secret=secret, digits=digits, period=period, algorithm=algorithm, **ctx)


def parse_kp2_hotp(fields: Mapping[str, str], ctx: dict) -> Account:
    secret = _kp2_secret(fields, HOTP_PREFIX)
    counter = _int(fields.get("HmacOtp-Counter"), "'HmacOtp-Counter'", 0)
    return _account("HmacOtp fields", kind=Kind.HOTP, secret=secret, counter=counter, **ctx)


def read_slots(
    fields: Mapping[str, str], *, title: str = "", username: str = "", folder: str = "", mtime: float | None = None
) -> list[Slot]:
    """Every OTP slot of an entry, parsed or with the reason it could not be."""
    title, username = title.strip(), username.strip()
    # A title that only repeats the user name is how an account without issuer is
    # stored (ours and KeePass's importers): it names no issuer.
    ctx = {"issuer": "" if title == username else title, "name": username, "folder": folder, "mtime": mtime}
    slots: list[Slot] = []

    def add(convention: str, names: tuple[str, ...], parse) -> None:
        try:
            slots.append(Slot(convention, names, account=parse()))
        except FieldError as exc:
            slots.append(Slot(convention, names, error=str(exc)))

    if LEGACY_SEED in fields or LEGACY_SETTINGS in fields:
        names = tuple(k for k in (LEGACY_SEED, LEGACY_SETTINGS) if k in fields)
        add(LEGACY, names, lambda: parse_legacy(fields, ctx))
    if OTP in fields:
        add(URI, (OTP,), lambda: parse_otp(fields[OTP], ctx, title, username))
    for prefix, convention, parse in ((TOTP_PREFIX, KP2_TOTP, parse_kp2_totp), (HOTP_PREFIX, KP2_HOTP, parse_kp2_hotp)):
        names = tuple(k for k in fields if k.startswith(prefix))
        if any(k.startswith(prefix + "Secret") for k in names):
            add(convention, names, lambda parse=parse: parse(fields, ctx))
    if OB_HOTP_FIELD in fields:
        add(OB_HOTP, (OB_HOTP_FIELD,), lambda: parse_ob_hotp(fields[OB_HOTP_FIELD], ctx, title))
    return slots


def entry_accounts(slots: list[Slot]) -> list[Account]:
    """The accounts an entry holds: one per kind + secret, the first slot in KeePassXC's
    read order winning (that is the one KeePassXC shows: the other conventions of one
    entry holding the same seed are copies of that one OTP, not accounts of their own);
    a slot holding a *different* secret is listed too, so nothing stays hidden.
    Accounts in *different* entries are never merged (SPEC §3)."""
    out: list[Account] = []
    seen: set[str] = set()
    for slot in slots:
        if slot.account is not None and slot.account.secret_id not in seen:
            seen.add(slot.account.secret_id)
            out.append(slot.account)
    return out


# -- writing -----------------------------------------------------------------------------


def otp_settings(acc: Account) -> tuple:
    """What decides the codes (what a KeePass field set must keep)."""
    return (acc.kind, acc.secret, acc.algorithm, acc.digits, acc.period, acc.counter)


def slot_matches(slot: Slot, acc: Account) -> bool:
    """True when ``slot`` already stores ``acc`` as well as its convention can."""
    old = slot.account
    if old is None or otp_settings(old) != otp_settings(acc):
        return False
    if slot.convention in (URI, OB_HOTP):  # the URI holds issuer and name: keep them exact
        return (old.issuer, old.name) == (acc.issuer, acc.name)
    return True


def can_kp2_totp(acc: Account) -> bool:
    return acc.kind is Kind.TOTP and acc.digits <= KP2_MAX_DIGITS


def can_kp2_hotp(acc: Account) -> bool:
    return acc.kind is Kind.HOTP and acc.digits == 6 and acc.algorithm is Algorithm.SHA1


def can_legacy(acc: Account) -> bool:
    return acc.kind is Kind.STEAM or (acc.kind is Kind.TOTP and acc.algorithm is Algorithm.SHA1 and acc.digits <= 8)


def kp2_totp_fields(acc: Account) -> dict[str, tuple[str, bool]]:
    """``{field: (value, protected)}`` for KeePass's native TOTP fields."""
    return {
        "TimeOtp-Secret-Base32": (b32encode(acc.secret), True),
        "TimeOtp-Length": (str(acc.digits), False),
        "TimeOtp-Period": (str(acc.period), False),
        "TimeOtp-Algorithm": (KP2_ALGORITHMS[acc.algorithm], False),
    }


def kp2_hotp_fields(acc: Account) -> dict[str, tuple[str, bool]]:
    return {
        "HmacOtp-Secret-Base32": (b32encode(acc.secret), True),
        "HmacOtp-Counter": (str(acc.counter), False),
    }


def legacy_fields(acc: Account) -> dict[str, tuple[str, bool]]:
    settings = f"{acc.period};S" if acc.kind is Kind.STEAM else f"{acc.period};{acc.digits}"
    return {LEGACY_SEED: (b32encode(acc.secret), True), LEGACY_SETTINGS: (settings, False)}


def otp_field(acc: Account) -> dict[str, tuple[str, bool]]:
    from otpbridge.core.otpauth import format_uri

    if acc.kind is Kind.HOTP:  # KeePassXC would show TOTP codes for it
        raise ValueError("an HOTP account never goes to 'otp'")
    return {OTP: (format_uri(acc), True)}


def ob_hotp_field(acc: Account) -> dict[str, tuple[str, bool]]:
    """HOTP that ``HmacOtp-*`` cannot hold: the whole account, losslessly, in a protected URI."""
    from otpbridge.core.otpauth import format_uri

    return {OB_HOTP_FIELD: (format_uri(acc), True)}

