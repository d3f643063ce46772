"""The content and naming rules of pass entries that hold an OTP account (pass-otp's conventions).

Everything here is pure (bytes and strings in, bytes and strings out), so the rules
can be tested without gpg. What a pass entry is to pass-otp (its ``otp.bash`` 1.1.1,
read for this module):

* the account is the first line that starts with ``otpauth://``; ``read`` strips
  leading blanks, so an indented URI counts too. Every other line (the password
  first) belongs to the user and is kept byte for byte.
* ``pass otp insert`` names the entry ``[<issuer>/]<accountname>``.
* HOTP: the stored ``counter`` is the *last used* value; ``pass otp`` makes its code
  with ``counter+1`` and stores that. The model's counter is the *next* one, so
  model = stored + 1 on read and stored = model - 1 on write.
* Its increment, ``${uri/&counter=N/&counter=M}``, turns into ``&counter=Ncounter=M``
  under bash ≥ 5.2 (``patsub_replacement``; pass-otp #170/#171). The intent — M was
  used — is unambiguous, so it is read as M and the entry rewritten cleanly on the
  next update.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otpbridge.core.model import Account, Kind
from otpbridge.core.otpauth import UriError, format_uri, parse_uri

_PREFIX = b"otpauth://"
_COUNTER_PARAM = re.compile(r"(?<=[?&])counter=([^&#]*)", re.IGNORECASE)
_DAMAGED_COUNTER = re.compile(r"\d+(?:counter=\d+)+", re.IGNORECASE)
_MAX_COMPONENT_BYTES = 200


@dataclass(frozen=True)
class OtpLine:
    """Where the OTP line sits in a plaintext: ``start:end`` excludes the line break."""

    start: int
    end: int
    text: str


def find_otp_line(plaintext: bytes) -> OtpLine | None:
    """The first line that starts (after blanks) with ``otpauth://``, as pass-otp reads it."""
    pos = 0
    size = len(plaintext)
    while pos <= size:
        nl = plaintext.find(b"\n", pos)
        end = size if nl < 0 else nl
        line = plaintext[pos:end]
        if line.lstrip(b" \t")[: len(_PREFIX)].lower() == _PREFIX:
            if line.endswith(b"\r"):
                end -= 1
            return OtpLine(pos, end, plaintext[pos:end].decode("utf-8", "replace").strip())
        if nl < 0:
            break
        pos = nl + 1
    return None


def replace_otp_line(plaintext: bytes, where: OtpLine, uri: str) -> bytes:
    """Swap the OTP line for ``uri``; every other byte (line ends, trailing newline) stays."""
    return plaintext[: where.start] + uri.encode("utf-8") + plaintext[where.end :]


def append_otp_line(plaintext: bytes, uri: str) -> bytes:
    """Add ``uri`` as a new last line, as ``pass otp append`` does."""
    if not plaintext:
        return uri.encode("utf-8") + b"\n"
    sep = b"" if plaintext.endswith(b"\n") else b"\n"
    return plaintext + sep + uri.encode("utf-8") + b"\n"


def remove_otp_line(plaintext: bytes, where: OtpLine) -> bytes | None:
    """The plaintext without the OTP line (and its line break); None when nothing else is left."""
    end = where.end
    if plaintext[end : end + 1] == b"\r":
        end += 1
    if plaintext[end : end + 1] == b"\n":
        end += 1
    elif where.start > 0 and plaintext[where.start - 1 : where.start] == b"\n":
        # the URI was the last line without a newline: drop the break before it instead
        start = where.start - 1
        if start > 0 and plaintext[start - 1 : start] == b"\r":
            start -= 1
        rest = plaintext[:start]
        return rest if rest.strip() else None
    rest = plaintext[: where.start] + plaintext[end:]
    return rest if rest.strip() else None


# -- HOTP counters -----------------------------------------------------------------
def repair_counter(line: str) -> tuple[str, str | None]:
    """Undo pass-otp's ``counter=5counter=6`` damage; return the line and what was done."""
    match = _COUNTER_PARAM.search(line)
    if not match or not _DAMAGED_COUNTER.fullmatch(match.group(1)):
        return line, None
    numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
    best = max(numbers)
    fixed = line[: match.start(1)] + str(best) + line[match.end(1) :]
    note = (
        f"HOTP counter damaged by pass-otp ('counter={match.group(1)}', pass-otp issue #171); "
        f"read as last used counter {best}. 'pass otp' cannot use this entry until it is rewritten"
    )
    return fixed, note


def has_counter(line: str) -> bool:
    return _COUNTER_PARAM.search(line) is not None


def stored_to_next(stored: int) -> int:
    return stored + 1


def next_to_stored(next_counter: int) -> int:
    # pass-otp cannot say "nothing used yet" (its counter must be a number ≥ 0 and the
    # next code uses counter+1), so next=0 is stored as 0: the first code uses 1.
    # HOTP servers accept codes ahead of their counter, never behind, so skipping
    # one value is safe where going back would not be.
    return max(next_counter - 1, 0)


def uri_for(account: Account, rel: str = "") -> str:
    """The line otpbridge writes into entry ``rel``: canonical, with pass-otp's counter
    convention.

    ``counter`` is the last parameter, preceded by ``&``: pass-otp's increment only
    matches ``&counter=``, so a URI with ``?counter=`` first would never advance.
    An account without an issuer in a folder gets an explicit empty ``issuer=``: without
    it, the ``<issuer>/<account>`` rule would read the folder back as its issuer (another
    account, SPEC §3, sent as new at every sync).
    """
    if account.kind is Kind.HOTP:
        account = account.replace(counter=next_to_stored(account.counter))
    uri = format_uri(account)
    if not account.issuer and "/" in rel:
        uri = uri.replace("?", "?" + _NO_ISSUER + "&", 1)
    return uri


_NO_ISSUER = "issuer="
_EMPTY_ISSUER = re.compile(r"[?&]issuer=(?:&|$)")
_TAKEN_SUFFIX = re.compile(r"-[0-9]+$")  # what the writer appends when a path is taken


# -- names ---------------------------------------------------------------------------
def _component(text: str) -> str:
    """One path component that cannot escape the store or hide from ``pass ls``."""
    text = text.replace("/", "-").replace("\\", "-").strip()
    if text in ("", ".", ".."):
        return "_"
    if text.startswith("."):
        text = "_" + text[1:]
    raw = text.encode("utf-8")
    if len(raw) > _MAX_COMPONENT_BYTES:
        text = raw[:_MAX_COMPONENT_BYTES].decode("utf-8", "ignore")
    return text


def entry_name(account: Account) -> str:
    """Where a new account goes: ``[folder/]<issuer>/<account>`` like ``pass otp insert``.

    pass-otp would turn a ``/`` inside an issuer or name into directories; an
    account from an untrusted export must not choose paths, so it becomes ``-``.
    """
    parts = [_component(p) for p in account.folder.split("/") if p.strip()]
    if account.issuer and account.name:
        parts += [_component(account.issuer), _component(account.name)]
    elif account.issuer or account.name:
        parts.append(_component(account.issuer or account.name))
    else:
        parts.append(f"otp-{account.identity[:8]}")
    return "/".join(parts)


def _unnamed_leaf(acc: Account, folder: str) -> str:
    """The file name :func:`entry_name` gives an account with neither issuer nor name:
    read back, it is not a name (the account had none)."""
    try:
        return f"otp-{acc.replace(issuer='', name='', folder=folder).identity[:8]}"
    except ValueError:
        return ""


def account_from_entry(line: str, rel: str) -> tuple[Account, list[str]]:
    """The account of entry ``rel`` (path without ``.gpg``) whose OTP line is ``line``.

    Raises :class:`UriError`. Returns notes about repairs/assumptions (no secrets).
    """
    notes: list[str] = []
    line, repaired = repair_counter(line)
    if repaired:
        notes.append(repaired)
    acc = parse_uri(line)
    parent, _, leaf = rel.rpartition("/")
    parent_last = parent.rpartition("/")[2]
    issuer, name, folder = acc.issuer, acc.name, parent
    if not issuer and parent and not _EMPTY_ISSUER.search(line):
        issuer = parent_last  # pass-otp's <issuer>/<account> layout (an empty issuer= says: none)
    # entry_name's file names for an account without a name (its issuer, or otp-<id>, with
    # "-N" when taken) are not names
    unnamed = {_component(issuer)} if issuer else {_unnamed_leaf(acc, parent)}
    if not name and not {leaf, _TAKEN_SUFFIX.sub("", leaf)} & unnamed:
        name = leaf
    if parent and issuer and parent_last.casefold() == _component(issuer).casefold():
        # the issuer's own directory is part of the name, not a folder of the user's
        folder = parent.rpartition("/")[0]
    counter = acc.counter
    if acc.kind is Kind.HOTP:
        if has_counter(line):
            counter = stored_to_next(acc.counter)
        else:
            notes.append("HOTP URI without a counter ('pass otp' refuses it); assuming no code was used yet")
            counter = 0
    try:
        acc = acc.replace(issuer=issuer, name=name, folder=folder, counter=counter)
    except ValueError as exc:  # a path component the model refuses (control characters)
        raise UriError(str(exc)) from None
    return acc, notes
