"""``freeotp+:`` — the FreeOTP+ JSON backup (``{"tokens": [...], "tokenOrder": [...]}``).

Written by Gson from FreeOTP+'s legacy ``Token`` class, so it carries that class's
quirks, which this module undoes on read and redoes on write:

* ``secret`` is a JSON array of *signed* Java bytes (-128…127);
* the HOTP ``counter`` is stored as (next counter − 1): FreeOTP's URI parser subtracts
  one and its URI writer adds it back (Aegis's importer tests confirm it: the fixture
  stores 0/49/10299 for the reference counters 1/50/10300);
* Steam is not a type but a TOTP token whose issuer is exactly ``Steam``;
* FreeOTP+ imports only the tokens whose id (``issuerInt:label``, ``issuerExt:label``
  or ``label``) is listed in ``tokenOrder``, and keeps the last of equal ids — so the
  writer lists every token and makes each id unique.

No encryption exists in this format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from otpbridge.core.errors import EntryError, FormatError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Algorithm, Kind
from otpbridge.stores.base import ReadResult, Store, WriteReport

_MAX_FILE = 64 * 1024 * 1024
STEAM_ISSUER = "Steam"
# FreeOTP+ computes ``binary % 10**digits`` in a Java int: more than 8 digits overflows.
_DIGITS_OK = range(5, 9)




def _text(value: object, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field} is not text")
    return value


def _int(value: object, field: str) -> int:
    # bool is an int subclass in Python; a JSON true is not a number here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} is not a whole number")
    return value


def secret_from_java_bytes(values: object) -> bytes:
    """Java's signed bytes (as Gson writes ``byte[]``) to Python bytes."""
    if not isinstance(values, list) or not values:
        raise ValueError("the secret is missing or not a list of bytes")
    out = bytearray()
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not -128 <= v <= 255:
            raise ValueError("the secret holds a value that is not a byte")
        out.append(v & 0xFF)
    return bytes(out)


def secret_to_java_bytes(secret: bytes) -> list[int]:
    return [b - 256 if b > 127 else b for b in secret]


def token_to_account(token: object) -> Account:
    """One Gson ``Token`` object to an account; raises ValueError with a secret-free reason."""
    if not isinstance(token, dict):
        raise ValueError("the token is not a JSON object")
    secret = secret_from_java_bytes(token.get("secret"))
    type_ = _text(token.get("type"), "type").upper()
    # FreeOTP's getIssuer(): issuerAlt, then issuerExt, then issuerInt; getLabel(): labelAlt, then label.
    issuer = ""
    for key in ("issuerAlt", "issuerExt", "issuerInt"):
        issuer = _text(token.get(key), key)
        if issuer:
            break
    name = _text(token.get("labelAlt"), "labelAlt") or _text(token.get("label"), "label")
    algo = _text(token.get("algo"), "algo") or "SHA1"
    algorithm = Algorithm.parse(algo)
    digits = _int(token.get("digits", 6), "digits")
    period = _int(token.get("period", 30), "period")
    if type_ == "HOTP":
        stored = _int(token.get("counter", 0), "counter")
        if stored < -1:
            raise ValueError("the HOTP counter is negative")
        return Account(Kind.HOTP, secret, issuer, name, algorithm, digits, counter=stored + 1)
    if type_ != "TOTP":
        raise ValueError(f"unsupported token type {type_[:20]!r} (expected TOTP or HOTP)")
    if issuer == STEAM_ISSUER:
        # FreeOTP+ shows Steam codes for any TOTP token with this exact issuer (TokenCodeUtil).
        return Account(Kind.STEAM, secret, issuer, name, period=period if period > 0 else 30)
    return Account(Kind.TOTP, secret, issuer, name, algorithm, digits, period)


def unsupported_reason(account: Account) -> str | None:
    """Why FreeOTP+ cannot hold ``account`` without changing its codes (None if it can)."""
    if account.kind is Kind.STEAM:
        return None
    if account.digits not in _DIGITS_OK:
        return f"FreeOTP+ supports 5 to 8 digits, not {account.digits}"
    if account.kind is Kind.TOTP and account.issuer == STEAM_ISSUER:
        return "a TOTP account with the issuer 'Steam' would show Steam codes in FreeOTP+"
    return None


def account_to_token(account: Account, label: str) -> dict[str, object]:
    issuer = STEAM_ISSUER if account.kind is Kind.STEAM else account.issuer
    return {
        "algo": account.algorithm.value,
        "counter": account.counter - 1 if account.kind is Kind.HOTP else 0,
        "digits": account.digits,
        "issuerExt": issuer,
        "issuerInt": issuer,
        "label": label,
        "period": account.period,
        "secret": secret_to_java_bytes(account.secret),
        "type": "HOTP" if account.kind is Kind.HOTP else "TOTP",
    }


def token_id(issuer: str, label: str) -> str:
    return f"{issuer}:{label}" if issuer else label


class FreeOtpPlusStore(Store):
    kind = "freeotp+"
    title = "FreeOTP+ JSON backup"
    reads = "FreeOTP+ JSON backups (tokens + tokenOrder): TOTP, HOTP, Steam"
    writes = "FreeOTP+ JSON backup (restore it in FreeOTP+; plain text, mode 0600)"
    drops = frozenset({"folder", "note"})
    loses = (
        "folders and notes; a Steam account's issuer becomes 'Steam'; accounts with more than 8 "
        "digits are skipped (listed); equal issuer:name pairs get a ' (2)' suffix"
    )
    carries = {"Steam": "partly"}
    source = "FreeOTP+: ⋮ → Export → Export JSON format"
    sniff_priority = 60
    keeps_unreadable = True

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._unread: list[object] = []

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        return text.startswith(b"{") and b'"tokens"' in head and b'"tokenOrder"' in head

    def read(self) -> ReadResult:
        data = self.read_bytes(max_bytes=_MAX_FILE)
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise FormatError(f"{self.label}: not a FreeOTP+ backup (not valid UTF-8 JSON)") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
            raise FormatError(f"{self.label}: not a FreeOTP+ backup (no 'tokens' list)")
        result = ReadResult()
        self._unread = []
        for index, token in enumerate(doc["tokens"], start=1):
            where = f"token {index}"
            if isinstance(token, dict):
                label = token.get("label")
                issuer = token.get("issuerExt") or token.get("issuerInt")
                if isinstance(label, str) and isinstance(issuer, str | None):
                    where += f" ({token_id(issuer or '', label)})"
            try:
                result.accounts.append(token_to_account(token))
            except (ValueError, TypeError, OverflowError) as exc:
                result.errors.append(EntryError(where, str(exc) or "unreadable token"))
                self._unread.append(token)  # written back untouched (SPEC §3)
        return result

    def apply(self, upserts: Sequence[Account] = (), removals: Sequence[Account] = (), *, dry_run: bool = False) -> WriteReport:
        keep, errors = [], []
        for acc in upserts:
            reason = unsupported_reason(acc)
            if reason:
                errors.append(EntryError(acc.label, reason))
            else:
                keep.append(acc)
        report = super().apply(keep, removals, dry_run=dry_run)
        report.errors.extend(errors)
        return report

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        tokens, order, used = [], [], set()
        for raw in self._unread:  # tokens we could not read keep their place in tokenOrder
            tokens.append(raw)
            if isinstance(raw, dict) and isinstance(raw.get("label"), str):
                issuer = raw.get("issuerInt") or raw.get("issuerExt") or ""
                tid = token_id(issuer if isinstance(issuer, str) else "", raw["label"])
                used.add(tid)
                order.append(tid)
        for acc in accounts:
            reason = unsupported_reason(acc)
            if reason:
                self.ctx.warn(f"{acc.label}: not written to {self.label}: {reason}")
                continue
            issuer = STEAM_ISSUER if acc.kind is Kind.STEAM else acc.issuer
            label, n = acc.name, 1
            while token_id(issuer, label) in used:
                # FreeOTP+ keeps only the last token of an id: a unique label keeps them all.
                n += 1
                label = f"{acc.name} ({n})"
            if n > 1:
                self.ctx.warn(f"{acc.label}: renamed to {label!r} in {self.label} (FreeOTP+ needs unique names)")
            used.add(token_id(issuer, label))
            tokens.append(account_to_token(acc, label))
            order.append(token_id(issuer, label))
        self.ctx.warn(f"{self.label} holds your 2FA secrets in clear text; keep it safe and delete it when done")
        body = json.dumps({"tokenOrder": order, "tokens": tokens}, ensure_ascii=False, separators=(",", ":"))
        return atomic_write(self.path, body.encode("utf-8"), mode=0o600)
