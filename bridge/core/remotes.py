"""rclone remote strings as they may be shown: every credential masked (SPEC §7).

A connection string such as ``:webdav,url='https://h/dav',user=me,pass=OBSCURED:otp``
carries its credentials in the clear (rclone's "obscured" form is undone by ``rclone
reveal``). Wherever a remote string is shown or logged (``describe()``, ``status``,
``--json``, the run log, error messages), the value of every option that rclone itself
marks as a password or as sensitive is replaced by ``***``. Those option names come from
``rclone config providers`` through ``bridge/data/rclone-sensitive.json`` (made by
``scripts/gen_rclone_sensitive.py``; a test checks it against the installed rclone), so
showing a remote never runs rclone.

For a backend the file does not know (a named remote with overrides, ``nas,pass=x:``),
the union over all backends applies. ``user:pass@`` in a URL is removed as well.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources

_MASK = "***"


@functools.cache
def _table() -> dict[str, frozenset[str]]:
    try:
        raw = json.loads(resources.files("otpbridge").joinpath("data/rclone-sensitive.json").read_text(encoding="utf-8"))
        table = {name: frozenset(opts) for name, opts in raw["backends"].items()}
    except (OSError, ValueError, KeyError, TypeError):  # a broken install: mask harder, never less
        table = {}
    return table


@functools.cache
def all_sensitive() -> frozenset[str]:
    """Every option name any rclone backend marks as a password or sensitive, plus a
    few generic ones (a file made by an old rclone must not unmask new options)."""
    names = set().union(*_table().values()) if _table() else set()
    return frozenset(names | {"pass", "password", "secret", "token", "key", "client_secret", "bearer_token"})


def sensitive_for(backend: str) -> frozenset[str]:
    """The sensitive option names of ``backend`` (``webdav``, ``s3``…); all of them when unknown."""
    known = _table().get(backend.lower())
    return all_sensitive() if known is None else known


def _norm(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def parse_remote(location: str) -> tuple[str, list[tuple[str, str]], str] | None:
    """Split ``[:]name[,key=value…]:path`` as rclone does (values may be quoted, quotes doubled)."""
    i, n = 0, len(location)
    if location.startswith(":"):
        i = 1
    while i < n and location[i] not in ",:":
        i += 1
    name = location[:i]
    params: list[tuple[str, str]] = []
    while i < n and location[i] == ",":
        i += 1
        eq = location.find("=", i)
        if eq < 0:
            return None
        key = location[i:eq]
        i = eq + 1
        if i < n and location[i] in "'\"":
            quote, value = location[i], []
            i += 1
            while True:
                if i >= n:
                    return None
                if location[i] == quote:
                    if i + 1 < n and location[i + 1] == quote:
                        value.append(quote)
                        i += 2
                        continue
                    i += 1
                    break
                value.append(location[i])
                i += 1
            params.append((key, "".join(value)))
        else:
            start = i
            while i < n and location[i] not in ",:":
                i += 1
            params.append((key, location[start:i]))
    if i >= n or location[i] != ":":
        return None
    return name, params, location[i + 1 :]


@functools.cache
def _param_re() -> re.Pattern[str]:
    names = sorted(all_sensitive(), key=len, reverse=True)
    alternatives = "|".join(re.escape(n).replace("_", "[_-]") for n in names)
    # the name, or anything starting like a password (pass_word, secret_key, token_url…)
    return re.compile(
        rf"(?<![\w-])((?:{alternatives})|(?:pass|password|secret|token|key)[a-z_-]*)=('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[^,:\s]*)",
        re.IGNORECASE,
    )


@functools.cache
def _url_userinfo() -> re.Pattern[str]:
    return re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Mask ``name=value`` for every sensitive option name, and URL ``user:pass@``, in free text."""
    if "=" in text:
        text = _param_re().sub(lambda m: f"{m.group(1)}={_MASK}", text)
    if "@" in text:
        text = _url_userinfo().sub(lambda m: m.group("scheme") + _MASK + "@", text)
    return text


def path_has_credentials(location: str) -> bool:
    """True when the *path* of a connection string holds ``,name=value`` with a sensitive name:
    an unquoted value with ``:`` (``url=http://h:9,pass=x``) cut the string there, as rclone
    cuts it, so what follows would be taken as a path and shown or sent as one."""
    parsed = parse_remote(location)
    return parsed is not None and bool(parsed[1]) and redact_text(parsed[2]) != parsed[2]


def redact_remote(location: str, safe: frozenset[str] | None = None) -> str:
    """``location`` with the value of every sensitive option masked.

    ``safe``: when given, only these option names are shown at all (all others masked),
    and a name in it is still masked when rclone marks it sensitive for this backend."""
    if not isinstance(location, str):
        return location
    parsed = parse_remote(location)
    if parsed is None or not parsed[1]:
        return redact_text(location)
    name, params, path = parsed
    secret = sensitive_for(name[1:]) if name.startswith(":") else all_sensitive()
    shown = []
    for key, value in params:
        k = _norm(key)
        if k in secret or (safe is not None and k not in safe):
            shown.append(f"{key}={_MASK}")
            continue
        if "@" in value:  # the only way a user:pass@ can be in it
            value = _url_userinfo().sub(lambda m: m.group("scheme"), value)
        shown.append(f"{key}={value}")
    return ",".join([name, *shown]) + ":" + redact_text(path)
