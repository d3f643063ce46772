"""What the vault commands share: the Session built from the global options and
config.toml, progress on a terminal, KDF presets, the new-passphrase prompt and its
strength rating."""

from __future__ import annotations

import time
from collections.abc import Callable
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
        passphrase=state.credential,
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


def run_recorded(state: State, s: Any, dry_run: bool, operation: Callable[[], Any]) -> Any:
    """Run one engine operation with the remote open; a failure of a real run (not a dry
    run) is recorded for ``status`` (a silent cron failure shows up) and re-raised."""
    try:
        with s.backend:
            return operation()
    except OtpBridgeError as err:
        if not dry_run:
            record_failure(state, err)
        raise


def snapshot_id(state: State, snapshot: str | None) -> str | None:
    """``NAME-SEQ`` (a device name instead of its id) → ``ID-SEQ``, from the names seen."""
    if not snapshot or "-" not in snapshot:
        return snapshot
    from otpbridge.engine.state import SyncState

    who, _, seq = snapshot.rpartition("-")
    try:
        names = SyncState.load(state.config.state_dir).device_names
    except OtpBridgeError:
        return snapshot
    ids = [dev for dev, name in names.items() if name == who and dev != who]
    return f"{ids[0]}-{seq}" if len(ids) == 1 else snapshot


# --- a failed init/restore leaves no half-made home -------------------------------------------
class CleanHome:
    """Around ``init`` and ``restore``: the home folders this run created (the lock, the
    run log, a state) are removed again when the run fails, so a failed first command
    leaves nothing that looks like a set-up device (issue 18). Folders that existed
    before are never touched."""

    def __init__(self, state: State, *, always: bool = False) -> None:
        self.always = always  # a one-off run with no home (restore REMOTE): leave none, also on success
        cfg = state.config
        candidates = [cfg.config_dir, cfg.state_dir]
        if cfg.state_dir.parent != cfg.config_dir:
            candidates.insert(1, cfg.state_dir.parent)
        self.fresh = [p for p in candidates if not p.exists()]

    def __enter__(self) -> CleanHome:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if (exc_type is None and not self.always) or not self.fresh:
            return
        import shutil

        for path in self.fresh:
            shutil.rmtree(path, ignore_errors=True)


def clean_home_on_failure(fn=None, *, one_off_remote: bool = False):
    """Decorator form of :class:`CleanHome` for a command taking the State first.

    ``one_off_remote`` (restore): a run given a REMOTE without a configured home is a
    one-off on a new machine; it leaves the restored store and no half-made home (a lock
    and a state, no config), also when it succeeds."""
    import functools

    if fn is None:
        return functools.partial(clean_home_on_failure, one_off_remote=one_off_remote)

    @functools.wraps(fn)
    def wrapper(state: State, *args: Any, **kwargs: Any) -> Any:
        always = one_off_remote and bool(kwargs.get("remote")) and not state.config.exists()
        with CleanHome(state, always=always):
            return fn(state, *args, **kwargs)

    return wrapper


# --- passphrase strength ------------------------------------------------------------------
#: the lowest zxcvbn score (0-4) a new vault passphrase may have without --accept-weak-passphrase
MIN_SCORE = 3
SCORE_WORDS = ("very weak", "weak", "fair", "strong", "very strong")


def strength(passphrase: str) -> dict[str, Any]:
    """zxcvbn's estimate (a maintained estimator: dictionaries, keyboard walks, dates,
    l33t): ``score`` 0-4, ``verdict``, ``crack_time`` (offline, slow hash, 10^4 guesses
    per second: what someone holding the remote's files faces), ``warning`` and
    ``suggestions``. zxcvbn is imported only here (init, passphrase change)."""
    from zxcvbn import zxcvbn

    result = zxcvbn(passphrase[:100])  # zxcvbn is quadratic in the length; 100 is plenty
    feedback = result.get("feedback") or {}
    score = int(result["score"])
    return {
        "score": score,
        "verdict": SCORE_WORDS[score],
        "crack_time": str(result["crack_times_display"]["offline_slow_hashing_1e4_per_second"]),
        "warning": feedback.get("warning") or "",
        "suggestions": list(feedback.get("suggestions") or []),
    }


def ask_new_passphrase(state: State, source, *, accept_weak: bool = False) -> Any:
    secret = source.get(confirm=True)
    rating = strength(secret.reveal())
    text = (f"passphrase strength: {rating['verdict']} (zxcvbn score {rating['score']}/4; "
            f"an offline attacker would need about {rating['crack_time']})")
    if rating["score"] >= MIN_SCORE:
        state.note(text)
        return secret
    advice = " ".join(x for x in (rating["warning"], *rating["suggestions"]) if x)
    if accept_weak:
        state.warn(f"{text}; accepted because of --accept-weak-passphrase" + (f". {advice}" if advice else ""))
        return secret
    raise UsageError(
        f"the new passphrase is too weak: {text}; anyone who gets the remote's files can guess it offline",
        hint=(advice + " " if advice else "") + "four or more random words are much stronger; "
        "to use it anyway, add --accept-weak-passphrase",
    )
