"""Scaffolding the app-format tests (``tests/test_fmt_*.py``) share.

A store opened the way each format test opens it (password in a named variable, warnings
kept), the byte- and JSON-level mutators their hostile-input properties draw from, the
hypothesis account strategy their round trips use, and the few assertions every format
repeats (wrong password is exit 3, a written plaintext file is 0600 and warned about).
Kept here so that a fix to the scaffolding reaches every format at once.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from otpbridge.core.errors import AuthenticationError, OtpBridgeError
from otpbridge.core.model import Account, Kind
from otpbridge.stores.base import Context, ReadResult, StoreSpec
from tests.support.paths import FIXTURES


def store_opener(cls, kind: str, password_env: str | None = None) -> Callable:
    """``open(path, password=None, **options)`` for one plugin class.

    The password goes in ``password_env`` (named by the ``password-env`` option) so the
    tests exercise that option; the store gets ``warnings`` and ``infos`` lists holding
    what the plugin told the user.
    """

    def open_store(path, password=None, **options):
        env: dict[str, str] = {}
        if password is not None:
            assert password_env is not None, f"{kind}: this opener takes no password"
            env[password_env] = password
            options.setdefault("password-env", password_env)
        warnings: list[str] = []
        infos: list[str] = []
        s = cls(StoreSpec(kind, str(path), options), Context(environ=env, warn=warnings.append, info=infos.append))
        s.warnings, s.infos = warnings, infos
        return s

    return open_store


def b32decode_unpadded(text: str) -> bytes:
    """Base32 as the apps write it (no ``=`` padding), decoded strictly by the standard library."""
    return base64.b32decode(text + "=" * (-len(text) % 8))


def by_secret(accounts: Iterable[Account]) -> dict[bytes, Account]:
    return {a.secret: a for a in accounts}


def examples(n: int):
    """Hypothesis settings for a format property: ``n`` examples, no deadline (KDFs, files), tmp_path allowed.

    OTPBRIDGE_EXAMPLES_SCALE multiplies ``n`` for a longer exploring run by hand (conftest)."""
    n *= max(1, int(os.environ.get("OTPBRIDGE_EXAMPLES_SCALE", "1")))
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def accounts_of(*stores) -> list[Account]:
    """The accounts of every store, read in order, one list."""
    return [a for s in stores for a in s.read().accounts]


# -- assertions ------------------------------------------------------------------------------
def assert_wrong_password(read: Callable[[], object], match: str | None = None) -> AuthenticationError:
    """``read()`` refuses with an AuthenticationError whose exit code is 3."""
    with pytest.raises(AuthenticationError, match=match) as err:
        read()
    assert err.value.exit_code == 3
    return err.value


def assert_raises_exactly(error: type[Exception], read: Callable[[], object]) -> None:
    """``read()`` raises ``error`` itself, not a subclass or a sibling caught by a base class."""
    with pytest.raises(error) as err:
        read()
    assert type(err.value) is error


def assert_round_trips(open_store: Callable, path: Path, accounts: list[Account]) -> None:
    """What ``open_store(path)`` writes, a fresh ``open_store(path)`` reads back unchanged, in order."""
    open_store(path).write_all(accounts)
    assert open_store(path).read().accounts == accounts


def assert_private_and_warned(path: Path, store) -> None:
    """A plaintext file we wrote is owner-only and the user was told it is in clear text."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and any("clear text" in w for w in store.warnings)


def other_fixtures(*own: Path) -> list[Path]:
    """Every fixture file outside the given folders and their subfolders (and outside the top level)."""

    def inside(path: Path) -> bool:
        return path.parent == FIXTURES or any(path.is_relative_to(folder) for folder in own)

    return [p for p in FIXTURES.rglob("*") if p.is_file() and not inside(p)]


# -- hostile input ---------------------------------------------------------------------------
def tampered_json(source: Path, dest: Path, change: Callable[[object], object]) -> Path:
    """``source`` parsed, passed to ``change`` (which edits it in place), written to ``dest``."""
    doc = json.loads(source.read_text())
    change(doc)
    dest.write_text(json.dumps(doc))
    return dest


def mutate_bytes(
    data, original: bytes, *, max_ops: int = 8, max_delete: int = 40, max_insert: int = 6, truncate: bool = False
) -> bytes:
    """``original`` with 1..max_ops random flips, deletions, insertions (and truncations)."""
    raw = bytearray(original)
    ops = ["flip", "delete", "insert", "truncate"] if truncate else ["flip", "delete", "insert"]
    for _ in range(data.draw(st.integers(1, max_ops))):
        if not raw:
            break
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(ops))
        if op == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "delete":
            del raw[pos : pos + data.draw(st.integers(1, max_delete))]
        elif op == "truncate":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=max_insert))
    return bytes(raw)


@st.composite
def flipped_and_cut(draw, original: bytes, max_flips: int = 4) -> bytes:
    """``original`` cut at a random length after up to ``max_flips`` random bytes were XORed."""
    cut = draw(st.integers(0, len(original)))
    flips = draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(1, 255)), max_size=max_flips))
    buf = bytearray(original)
    for pos, xor in flips:
        buf[pos] ^= xor
    return bytes(buf[:cut])


def read_or_refuse(store) -> ReadResult | None:
    """The read result, or None when the store refused with one of our errors (anything else raises)."""
    try:
        return store.read()
    except OtpBridgeError:
        return None


def json_values(*, text_size: int = 10, max_leaves: int = 5):
    """Any JSON value, small: what a hostile file may put where a field was expected."""
    return st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=text_size),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=max_leaves,
    )


# -- accounts --------------------------------------------------------------------------------
TEXT = st.text(st.characters(min_codepoint=32, exclude_categories=("Cs",)), max_size=12)

_ACCOUNT_FIELDS = {
    "kind": st.sampled_from(list(Kind)),
    # a small pool too, so lists hold accounts sharing a secret (SPEC §3: still distinct)
    "secret": st.sampled_from([b"shared-seed-1", b"Hello!\xde\xad\xbe\xef"]) | st.binary(min_size=1, max_size=40),
    "issuer": TEXT,
    "name": TEXT,
    "algorithm": st.sampled_from(["SHA1", "SHA256", "SHA512"]),
    "digits": st.integers(5, 10),
    "period": st.integers(1, 86400),
    "counter": st.integers(0, 2**53),
    "folder": TEXT,
}


def account_lists(*, max_size: int = 6, **fields):
    """Lists of distinct accounts (SPEC §3: distinct identities — several may share a secret);
    ``fields`` override a field's strategy, None leaves it at its default."""
    chosen = {**_ACCOUNT_FIELDS, **fields}
    return st.lists(
        st.builds(Account, **{k: v for k, v in chosen.items() if v is not None}),
        max_size=max_size,
        unique_by=lambda a: a.identity,
    )
