"""What the vault commands share: the Session built from the global options and
config.toml, progress on a terminal, KDF presets, the new-passphrase prompt and its
strength rating."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from otpbridge.cli.common import State
from otpbridge.core.errors import OtpBridgeError, UsageError

CONFIG_KEYS = ("remote", "stores", "kdf")


# --- building a session -----------------------------------------------------------------
def settings_of(state: State, *, need: bool = True) -> dict[str, Any]:
    data = state.config.read()
    if need and not data.get("remote"):
        raise UsageError(
            f"this device has no vault configured ({state.config.config_file})",
            hint="run 'otpbridge init REMOTE --store STORE' first",
        )
    return data


def progress(state: State):
    if not state.progress_enabled:
        return None

    def tick(what: str, done: int, total: int) -> None:
        if total:
            end = "\n" if done >= total else ""
            click.echo(f"\r{what} {done}/{total}", err=True, nl=False)
            if end:
                click.echo("", err=True)

    return tick


def session_of(state: State, settings: dict[str, Any], *, remote: str | None = None, stores: bool = True,
             also: tuple[str, ...] = ()):
    from otpbridge.engine.connect import make_session

    return make_session(
        settings,
        state_dir=state.config.state_dir,
        environ=state.environ,
        stats=state.stats,
        open_store=state.open_store,
        passphrase=state.passphrase_source().get,
        remote=remote,
        stores=stores,
        also=also,
        note=state.note,
        warn=state.warn,
        progress=progress(state),
    )


def kdf_params(state: State, preset: str):
    from otpbridge.vault.format import choose_params

    return choose_params(preset, state.environ)


def record_failure(state: State, err: OtpBridgeError) -> None:
    from otpbridge.engine.session import record_error

    record_error(state.config.state_dir, err, time.time())


# --- passphrase strength ------------------------------------------------------------------
def strength(passphrase: str) -> tuple[int, str]:
    """A rough entropy estimate in bits (length x log2 of the character classes used).

    Deliberately simple and pessimistic about words: it only decides whether to warn.
    """
    import math

    pool = 0
    for pattern, size in ((r"[a-z]", 26), (r"[A-Z]", 26), (r"[0-9]", 10), (r"[^a-zA-Z0-9]", 33)):
        if re.search(pattern, passphrase):
            pool += size
    distinct = len(set(passphrase))
    bits = int(len(passphrase) * math.log2(pool)) if pool else 0
    bits = min(bits, int(distinct * math.log2(max(pool, 2)) * 1.5)) if passphrase else 0
    verdict = "weak" if bits < 50 else ("fair" if bits < 70 else "strong")
    return bits, verdict


def ask_new_passphrase(state: State, source) -> Any:
    from otpbridge.core.secrets import has_tty

    secret = source.get(confirm=True)
    bits, verdict = strength(secret.reveal())
    if verdict == "weak":
        state.warn(
            f"this passphrase is weak (about {bits} bits): anyone who gets the remote's files can try to guess it "
            "offline; four or more random words are much stronger"
        )
        if has_tty() and not source.configured() and not click.confirm("Use it anyway?", default=False, err=True):
            raise UsageError("no passphrase was set")
    else:
        state.note(f"passphrase strength: {verdict} (about {bits} bits)")
    return secret
