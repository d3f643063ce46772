"""What every command shares: the per-invocation state, output and error rendering.

Human output goes to stdout; notes, warnings and progress go to stderr, so that
``--json`` output on stdout is always exactly one JSON document.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import click

from otpbridge.core.config import Config
from otpbridge.core.errors import EntryError, OtpBridgeError, PartialError, UsageError
from otpbridge.core.model import Account
from otpbridge.core.secrets import Secret, SecretSource, has_tty
from otpbridge.stores.base import Context, Store
from otpbridge.stores.registry import open_store


def render_error(err: OtpBridgeError) -> None:
    click.echo(f"otpbridge: error: {err}", err=True)
    if isinstance(err, PartialError):
        for entry in err.entries:
            click.echo(f"  skipped {entry}", err=True)
    hint = err.hint or _FALLBACK_HINTS.get(err.exit_code)
    if hint:
        click.echo(f"hint: {hint}", err=True)


# Every error ends with a hint; these cover the errors raised without one of their own.
_FALLBACK_HINTS = {
    3: "check the password; a store's password comes from ?password-env=NAME, ?password-file=PATH "
       "or OTPBRIDGE_STORE_PASSWORD, else a prompt",
    5: "check the path or the remote's name and address, and the network; then run the command again",
}


@dataclass
class State:
    """Global options of one invocation, turned into explicit objects on demand."""

    home: str | None = None
    passphrase_file: str | None = None
    passphrase_fd: int | None = None
    new_passphrase_file: str | None = None
    new_passphrase_fd: int | None = None
    use_keyring: bool = False
    recovery_key_file: str | None = None
    recovery_key_fd: int | None = None
    recovery_key: bool = False
    identity: str | None = None
    quiet: bool = False
    verbose: int = 0  # -v: 1, -vv: 2
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stats: Counter = field(default_factory=Counter)

    @cached_property
    def config(self) -> Config:
        return Config.resolve(self.home, self.environ)

    def passphrase_source(self) -> SecretSource:
        return SecretSource(
            what="backup passphrase",
            env_var="OTPBRIDGE_PASSPHRASE",
            command_var="OTPBRIDGE_PASSCOMMAND",
            file=self.passphrase_file,
            fd=self.passphrase_fd,
            keyring=self.use_keyring,
            environ=self.environ,
        )

    def credential(self) -> Secret:
        """What opens the vault this run: a key file (--identity, OTPBRIDGE_IDENTITY), a
        recovery code (--recovery-key-file/-fd/--recovery-key), else the passphrase."""
        from otpbridge.core.secrets import (
            RecoveryKey,
            prompt_secret,
            read_identity_file,
            read_secret_fd,
            read_secret_file,
        )

        identity = self.identity or self.environ.get("OTPBRIDGE_IDENTITY")
        recovery = [x for x in (self.recovery_key_file is not None, self.recovery_key_fd is not None,
                                self.recovery_key) if x]
        if len(recovery) > 1 or (recovery and identity):
            raise UsageError("more than one key to open the vault was given (identity, recovery code file, fd or prompt)",
                             hint="keep exactly one")
        if identity:
            return read_identity_file(os.path.expanduser(identity))
        if self.recovery_key_file is not None:
            code = RecoveryKey(read_secret_file(self.recovery_key_file, "recovery code").reveal())
        elif self.recovery_key_fd is not None:
            code = RecoveryKey(read_secret_fd(self.recovery_key_fd, "recovery code").reveal())
        elif self.recovery_key:
            if not has_tty():
                raise UsageError("--use-recovery-key asks at a prompt, and there is no terminal",
                                 hint="use --recovery-key-file FILE or --recovery-key-fd N")
            code = RecoveryKey(prompt_secret("Recovery code").reveal())
        else:
            return self.passphrase_source().get()
        from otpbridge.vault.keyring import recovery_bytes

        recovery_bytes(code)  # a typo is exit 2 here, before the remote is even listed
        return code

    def new_passphrase_source(self) -> SecretSource:
        return SecretSource(
            what="new backup passphrase",
            env_var="OTPBRIDGE_NEW_PASSPHRASE",
            command_var="OTPBRIDGE_NEW_PASSCOMMAND",
            file=self.new_passphrase_file,
            fd=self.new_passphrase_fd,
            environ=self.environ,
        )

    @cached_property
    def context(self) -> Context:
        return Context(
            environ=self.environ,
            stats=self.stats,
            progress=self.progress_enabled,
            warn=self.warn,
            info=self.note,
            cache_dir=self.config.cache_dir,
        )

    @property
    def progress_enabled(self) -> bool:
        return not self.quiet and _stderr_is_tty()

    def open_store(self, text: str) -> Store:
        return open_store(text, self.context)

    # -- output -------------------------------------------------------------------
    def echo(self, message: str = "") -> None:
        """Normal output (stdout); suppressed by --quiet."""
        if not self.quiet:
            click.echo(message)

    def note(self, message: str) -> None:
        """Informational text on stderr; suppressed by --quiet."""
        if not self.quiet:
            click.echo(message, err=True)

    def debug(self, message: str) -> None:
        if self.verbose and not self.quiet:
            click.echo(message, err=True)

    def warn(self, message: str) -> None:
        """Warnings always reach stderr, even with --quiet: they are about the user's data."""
        click.echo(f"warning: {message}", err=True)

    def emit_json(self, payload: Any) -> None:
        click.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> None:
        """Aligned plain-text columns on stdout.

        Written by hand rather than with rich: importing rich costs ~50 ms, a third of
        ``otpbridge code``'s start-up (docs/PERFORMANCE.md), and plain columns never wrap,
        so they stay greppable and copy-pasteable. Cell text is printed literally (no
        markup), with control characters replaced so a hostile name cannot drive the
        terminal.
        """
        if self.quiet:
            return
        for line in render_table(columns, rows, title=title, bold_header=_stdout_is_tty()):
            click.echo(line)


def counted(n: int, word: str) -> str:
    """``1 account``, ``3 accounts``: the counts users read in every summary line."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None, bold_header: bool = False) -> list[str]:
    header = [_cell(c) for c in columns]
    body = [[_cell(v) for v in row] for row in rows]
    widths = [_width(h) for h in header]
    for row in body:
        for i, value in enumerate(row[: len(widths)]):
            widths[i] = max(widths[i], _width(value))

    def line(cells: Sequence[str]) -> str:
        padded = [c + " " * (widths[i] - _width(c)) for i, c in enumerate(cells[: len(widths)])]
        return "  ".join(padded).rstrip()

    out = [title] if title else []
    head = line(header)
    out.append(click.style(head, bold=True) if bold_header else head)
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in body)
    return out


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ("?" if ch not in "\t\n" else " ") for ch in text)


def _width(text: str) -> int:
    """Terminal columns: East Asian wide/fullwidth characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(ch) else (2 if unicodedata.east_asian_width(ch) in "WF" else 1) for ch in text)


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (ValueError, AttributeError):
        return False


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (ValueError, AttributeError):
        return False


def account_json(account: Account, *, secrets: bool = False) -> dict[str, Any]:
    """The documented JSON shape of an account (docs/CLI.md)."""
    data: dict[str, Any] = {
        "id": account.identity,
        "kind": account.kind.value,
        "issuer": account.issuer,
        "name": account.name,
        "algorithm": account.algorithm.value,
        "digits": account.digits,
        "folder": account.folder,
    }
    if account.kind.value == "hotp":
        data["counter"] = account.counter
    else:
        data["period"] = account.period
    if secrets:
        from otpbridge.core.otpauth import format_uri

        data["secret"] = account.secret_b32
        data["uri"] = format_uri(account)
    return data


def errors_json(errors: Sequence[EntryError]) -> list[dict[str, str]]:
    return [{"where": e.where, "reason": e.reason} for e in errors]


def finish_partial(errors: Sequence[EntryError], what: str) -> None:
    """Exit 7 listing the skipped entries, after the main output was printed."""
    if errors:
        raise PartialError(f"{len(errors)} {what} skipped", errors, hint="the other entries were processed")


def pass_state(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.pass_obj(fn)


__all__ = ["State", "account_json", "errors_json", "finish_partial", "has_tty", "pass_state", "render_error", "render_table"]
