"""otpauth:// Key URIs: tolerant in, strict and canonical out.

Why not ``pyotp.parse_uri``: it refuses secrets under 112 bits (10-byte secrets are
common), exact-case algorithm names only, issuer mismatches, and 5-digit codes. Real
exports break every rule of the Key-URI spec, so this parser accepts what they contain
(see shared notes, keepass-and-pass §4) and the writer emits the one form every app reads.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_plus

from otpbridge.core.model import Account, Algorithm, Kind, b32decode, b32encode


class UriError(ValueError):
    """A URI that cannot be turned into an account. The message never holds the secret."""


_KNOWN_TYPES = {"totp": Kind.TOTP, "hotp": Kind.HOTP, "steam": Kind.STEAM}


def _unquote(text: str) -> str:
    # pass-otp writes '+' for spaces; others write %20. A literal '+' in a name is
    # written as %2B by every careful writer (ours included), so this is safe.
    return unquote_plus(text, errors="strict")


def _split_label(raw: str) -> tuple[str, str]:
    """Split ``issuer:name``: a literal ':' wins over an encoded %3A (so names may hold %3A)."""
    if ":" in raw:
        issuer, _, name = raw.partition(":")
        return _unquote(issuer), _unquote(name)
    label = _unquote(raw)
    if ":" in label:
        issuer, _, name = label.partition(":")
        return issuer, name
    return "", label


def _parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = unquote(key).strip().lower()
        if not sep or not key:
            continue
        params.setdefault(key, value)  # first one wins, like most readers
    return params


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    raw = params.get(key)
    if raw is None or raw.strip() == "":
        return default
    text = unquote(raw).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise UriError(f"{key} is not a whole number")
    return int(text)


def parse_uri(uri: str, *, folder: str = "", note: str = "", base32_rule: str | None = None) -> Account:
    """Parse one otpauth:// URI into an :class:`Account`; raise :class:`UriError` if impossible.

    ``base32_rule`` says how a secret of a length no encoder writes is read (the app that
    wrote the URI; see ``model.BASE32_RULES``). Left out, a URI carrying Ente's
    ``codeDisplay`` parameter is read as Ente reads it, any other as Google Authenticator does.
    """
    try:
        return _parse(uri, folder=folder, note=note, base32_rule=base32_rule)
    except UriError:
        raise
    except (ValueError, TypeError, UnicodeError, OverflowError) as exc:
        # Messages from the model never quote the secret; keep them, drop the traceback.
        raise UriError(str(exc) or "malformed otpauth URI") from None


def label_of(uri: str) -> tuple[str, str]:
    """``(issuer, name)`` from the label of an otpauth:// URI, or ``("", "")``; never raises.

    For formats that keep the URI beside their own fields (2FAS's ``otp.link``): the label
    can be read even when the rest of the URI is not.
    """
    try:
        _, sep, rest = uri.strip().partition("://")
        if not sep:
            return "", ""
        _, slash, after = rest.partition("/")
        if not slash:
            return "", ""
        label_raw = after.partition("?")[0].partition("#")[0]
        issuer, name = _split_label(label_raw)
        return issuer.strip(), name.strip()
    except (ValueError, UnicodeError):
        return "", ""


def _parse(uri: str, *, folder: str, note: str, base32_rule: str | None = None) -> Account:
    text = uri.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() != "otpauth":
        raise UriError("not an otpauth:// URI")
    type_part, slash, after = rest.partition("/")
    if not slash:
        type_part, _, after = rest.partition("?")
        after = "?" + after if after else ""
    kind = _KNOWN_TYPES.get(type_part.strip().lower())
    if kind is None:
        shown = f" {type_part!r}" if type_part.isalpha() and len(type_part) <= 8 else ""  # never echo junk
        raise UriError(f"unsupported OTP type{shown} (expected totp, hotp or steam)")
    label_raw, _, query = after.partition("?")
    query, _, _fragment = query.partition("#")
    params = _parse_query(query)

    label_issuer, name = _split_label(label_raw)
    issuer_param = _unquote(params["issuer"]) if "issuer" in params else ""
    # When both exist and differ, the parameter names the service (the label prefix is
    # often a display variant); the account name stays what followed the colon.
    issuer = issuer_param.strip() or label_issuer.strip()

    if "secret" not in params:
        raise UriError("the URI has no secret parameter")
    if base32_rule is None and "codedisplay" in params:
        base32_rule = "ente"  # only Ente writes codeDisplay
    secret = b32decode(unquote(params["secret"]), rule=base32_rule)

    algorithm = Algorithm.parse(unquote(params["algorithm"])) if params.get("algorithm") else Algorithm.SHA1
    digits_raw = unquote(params.get("digits", "")).strip().lower()
    encoder = unquote(params.get("encoder", "")).strip().lower()
    if encoder == "steam" or digits_raw == "s" or (kind is Kind.TOTP and issuer.lower() == "steam" and digits_raw == "5"):
        kind = Kind.STEAM
    digits = 5 if kind is Kind.STEAM else _int_param(params, "digits", 6)
    period = _int_param(params, "period", 30)
    if period == 0:
        period = 30
    counter = _int_param(params, "counter", 0) if kind is Kind.HOTP else 0
    return Account(
        kind=kind,
        secret=secret,
        issuer=issuer,
        name=name.strip(),
        algorithm=algorithm,
        digits=digits,
        period=period if kind is not Kind.HOTP else 30,
        counter=counter,
        folder=folder,
        note=note,
    )


def _q(text: str) -> str:
    return quote(text, safe="")


def format_uri(account: Account) -> str:
    """The canonical URI: issuer in label and parameter, no padding, everything explicit."""
    if account.issuer:
        label = f"{_q(account.issuer)}:{_q(account.name)}"
    elif ":" in account.name:
        label = f":{_q(account.name)}"  # an empty prefix keeps a colon in the name a name
    else:
        label = _q(account.name)
    params = [f"secret={b32encode(account.secret)}"]
    if account.issuer:
        params.append(f"issuer={_q(account.issuer)}")
    if account.kind is Kind.HOTP:
        params += [f"algorithm={account.algorithm.value}", f"digits={account.digits}", f"counter={account.counter}"]
        kind = "hotp"
    elif account.kind is Kind.STEAM:
        params += ["algorithm=SHA1", "digits=5", f"period={account.period}", "encoder=steam"]
        kind = "totp"
    else:
        params += [f"algorithm={account.algorithm.value}", f"digits={account.digits}", f"period={account.period}"]
        kind = "totp"
    return f"otpauth://{kind}/{label}?{'&'.join(params)}"
