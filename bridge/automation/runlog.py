"""The run log and the "last unattended failure" record (docs/AUTOMATION.md).

Cron jobs, timers and git hooks run where nobody reads stderr, so every run of an
initialised home leaves one line in ``<state>/otpbridge.log`` (rotating at a small
size, mode 0600): when, which command, and how it ended. A run started unattended
(``OTPBRIDGE_UNATTENDED=<source>``, set by the units, crontab lines and hooks we
install) that fails also writes ``<state>/last-unattended-failure.json``; ``status``
shows it until a later ``sync``/``backup`` succeeds.

What is logged is built from names, exit codes and the one-line error messages the
CLI prints — which by contract (core/errors.py) never hold a secret. Arguments are logged
with store options (``?…``) cut off, and the values of the secret environment
variables are redacted from every line as a second line of defence.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otpbridge.core.config import Config

LOG_NAME = "otpbridge.log"
LOG_MAX_BYTES = 256 * 1024
LOG_BACKUPS = 3
FAILURE_NAME = "last-unattended-failure.json"
UNATTENDED_ENV = "OTPBRIDGE_UNATTENDED"
#: exported to every child of an otpbridge run (git, pass, gpg): our own commits into a
#: pass store must not start the post-commit hook again (hooks.py checks it).
RUNNING_ENV = "OTPBRIDGE_RUNNING"

_SECRET_ENV = (
    "OTPBRIDGE_PASSPHRASE",
    "OTPBRIDGE_NEW_PASSPHRASE",
    "OTPBRIDGE_STORE_PASSWORD",
    "OTPBRIDGE_KEEPASS_PASSWORD",
)
# Global options that take a value (bridge/cli/app.py); needed to find the subcommand.
# The global options that take a value (tests/test_automation.py checks this against the
# CLI's own list: a missing one made the log name a command after a file path).
_VALUE_OPTIONS = {"--home", "--passphrase-file", "--passphrase-fd", "--new-passphrase-file", "--new-passphrase-fd",
                  "--recovery-key-file", "--recovery-key-fd", "--identity"}
# Commands whose success means the vault is in step again, so an old failure is over.
_CLEARS_FAILURE = {"sync", "backup"}

EXIT_MEANING = {
    0: "ok",
    1: "error",
    2: "usage",
    3: "wrong passphrase or password",
    4: "integrity failure",
    5: "unreachable",
    6: "refused (would lose data)",
    7: "partial",
    130: "interrupted",
}


def log_path(state_dir: Path) -> Path:
    return state_dir / LOG_NAME


def failure_path(state_dir: Path) -> Path:
    return state_dir / FAILURE_NAME


def _secret_values(environ: Mapping[str, str]) -> list[str]:
    return [environ[n] for n in _SECRET_ENV if n in environ and len(environ[n]) >= 4]


def _redact(text: str, values: Sequence[str]) -> str:
    for value in values:
        text = text.replace(value, "***")
    return text


class _SizeRotatingFile(logging.FileHandler):
    """A FileHandler that rotates by size like ``logging.handlers.RotatingFileHandler``.

    Not that class: ``logging.handlers`` pulls in socket, pickle and queue (~12 ms here on
    every run, measured with ``-X importtime`` beside the modules a sync imports anyway),
    while ``logging`` itself costs ~4.5 ms of a no-change sync's ~120 ms. The file is
    opened per record (``delay``) so a rotation by another process (a hook and a timer
    share the log) is seen at once, and created 0600.
    """

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # fail early if unwritable
        os.close(fd)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)  # a file made by an older version or by hand
        super().__init__(path, mode="a", encoding="utf-8", delay=True)

    def _rotate(self) -> None:
        for i in range(LOG_BACKUPS - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.baseFilename}.{i}", f"{self.baseFilename}.{i + 1}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.baseFilename, f"{self.baseFilename}.1")

    def emit(self, record: logging.LogRecord) -> None:
        line = (self.format(record) + self.terminator).encode("utf-8", "replace")
        try:
            size = os.stat(self.baseFilename).st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > LOG_MAX_BYTES:
            self._rotate()
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class _Redact(logging.Filter):
    """Known secret values become ``***`` on every record: a second line of defence."""

    def __init__(self, values: Sequence[str]) -> None:
        super().__init__()
        self.values = list(values)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact(record.getMessage(), self.values)
        record.args = None
        return True


class RunLog:
    """The home's run log on the standard ``logging`` module: ``time [pid] LEVEL message``
    lines in ``<state>/otpbridge.log`` (mode 0600), rotated by size keeping
    ``LOG_BACKUPS`` old files.

    Each RunLog owns a :class:`logging.Logger` made directly, not through
    ``logging.getLogger``: no process-wide logger state, so two homes in one process
    (the API) never write into each other's log, and the root logger's configuration
    (an application embedding otpbridge) neither receives nor changes these lines.
    """

    def __init__(self, state_dir: Path, environ: Mapping[str, str]) -> None:
        from otpbridge.core.fileio import private_dir

        private_dir(state_dir)
        self.path = log_path(state_dir)
        handler = _SizeRotatingFile(self.path)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(message)s",
                                               datefmt="%Y-%m-%dT%H:%M:%S%z"))
        handler.addFilter(_Redact(_secret_values(environ)))
        self.logger = logging.Logger(f"otpbridge.run:{state_dir}", logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(handler)

    def write(self, level: str, message: str) -> None:
        self.logger.log(logging.getLevelName(level), "%s", message)

    def info(self, message: str) -> None:
        self.logger.info("%s", message)

    def warning(self, message: str) -> None:
        self.logger.warning("%s", message)

    def error(self, message: str) -> None:
        self.logger.error("%s", message)


def open_log(state_dir: Path, environ: Mapping[str, str]) -> RunLog | None:
    try:
        return RunLog(state_dir, environ)
    except OSError:
        return None


# -- the command line, as far as the log needs it --------------------------------------


def split_command(args: Sequence[str]) -> tuple[str | None, str | None]:
    """(the --home value or None, the subcommand name or None) of a command line."""
    home = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return home, (args[i + 1] if i + 1 < len(args) else None)
        name, eq, value = arg.partition("=")
        if name in _VALUE_OPTIONS:
            if not eq:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            if name == "--home":
                home = value
        elif not arg.startswith("-"):
            return home, arg
        i += 1
    return home, None


def describe_args(args: Sequence[str]) -> str:
    """The command line as logged: store options (``?…``) removed, long values cut."""
    from otpbridge.core.remotes import redact_remote

    shown = []
    for arg in args:
        head, sep, _ = arg.partition("?")
        text = redact_remote(head) + ("?…" if sep else "")  # an rclone connection string's credentials masked
        shown.append(text if len(text) <= 200 else text[:200] + "…")
    return " ".join(shown)


# -- what the user saw on stderr ----------------------------------------------------


class _StderrTap(io.TextIOBase):
    """Forwards everything to the real stderr and keeps the error/hint/warning lines.

    The CLI's error boundary prints exactly one ``otpbridge: error:`` line plus a hint;
    keeping those is how the log and the failure record say *why* a run failed without
    the error classes having to know about logging. Stdout (which may carry secrets with
    ``--show-secrets``) is never touched.
    """

    _KEEP = ("otpbridge: error:", "hint:", "warning:", "Error:", "otpbridge: ")

    def __init__(self, real: Any) -> None:
        super().__init__()
        self._real = real
        self._partial = ""
        self.lines: list[str] = []

    def write(self, text: str) -> int:  # type: ignore[override]
        written = self._real.write(text)  # raises for bytes, as click's probe expects
        self._partial = (self._partial + text)[-8192:]  # progress redraws ("\r") never end a line
        if "\n" in self._partial:
            *done, self._partial = self._partial.split("\n")
            for line in done:
                if line.startswith(self._KEEP) and len(self.lines) < 50:
                    self.lines.append(line[:500])
        return written if written is not None else len(text)

    def flush(self) -> None:
        self._real.flush()

    def isatty(self) -> bool:
        return self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8") or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._real, "errors", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _message_and_hint(lines: Sequence[str]) -> tuple[str | None, str | None]:
    message = hint = None
    for line in lines:
        if message is None and line.startswith(("otpbridge: error:", "Error:")):
            message = line.split(":", 2)[-1].strip() if line.startswith("otpbridge") else line[6:].strip()
        elif message is not None and hint is None and line.startswith("hint:"):
            hint = line[5:].strip()
    if message is None:
        for line in lines:
            if line.startswith("otpbridge: "):
                message = line[len("otpbridge: ") :].strip()
                break
    return message, hint


# -- the failure record -------------------------------------------------------------


def write_failure(state_dir: Path, record: Mapping[str, Any]) -> None:
    import json

    from otpbridge.core.fileio import atomic_write, private_dir

    private_dir(state_dir)
    atomic_write(failure_path(state_dir), json.dumps(dict(record), indent=2).encode("utf-8"), mode=0o600, backup=False)


def read_failure(state_dir: Path) -> dict[str, Any] | None:
    """The last unattended failure not yet followed by a good sync, or None."""
    import json

    try:
        data = json.loads(failure_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def clear_failure(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        failure_path(state_dir).unlink()


def describe_failure(record: Mapping[str, Any]) -> str:
    """One line for ``status``: when, from where, what failed and why."""
    when = record.get("time", "?")
    source = record.get("source", "unattended run")
    command = record.get("command") or "?"
    code = record.get("exit_code", "?")
    text = f"last unattended run failed: '{command}' from {source} at {when}, exit {code}"
    if record.get("message"):
        text += f": {record['message']}"
    return text


# -- the wrapper around one CLI run ---------------------------------------------------


def logged(args: Sequence[str], runner: Callable[[list[str]], int], environ: Mapping[str, str] | None = None) -> int:
    """Run ``runner(args)`` (the CLI), logging its start and outcome to the home's log.

    Logging never changes the outcome: if the log cannot be written the run goes on.
    """
    import sys

    env = os.environ if environ is None else environ
    home, command = split_command(args)
    config = _config(home, env)
    state_dir = config.state_dir if config is not None else None
    log: RunLog | None = None
    if config is not None and config.config_dir.is_dir() and command not in (None, "help"):
        log = open_log(state_dir, env)
    unattended = env.get(UNATTENDED_ENV) or None
    if log is not None:
        log.info(f"start: otpbridge {describe_args(args)}" + (f" (unattended: {unattended})" if unattended else ""))
    started = time.monotonic()
    tap = _StderrTap(sys.stderr)
    previous_running = os.environ.get(RUNNING_ENV)
    os.environ[RUNNING_ENV] = "1"
    code: int | None = None
    real_stderr = sys.stderr
    sys.stderr = tap
    try:
        code = runner(list(args))
        return code
    except SystemExit as exc:  # click's shell completion exits directly
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    finally:
        sys.stderr = real_stderr
        if previous_running is None:
            os.environ.pop(RUNNING_ENV, None)
        else:
            os.environ[RUNNING_ENV] = previous_running
        try:
            _finish(log, config, env, args, command, code, tap.lines, time.monotonic() - started, unattended)
        except Exception:  # noqa: BLE001,S110 - logging must never change the outcome
            pass


def _config(home: str | None, env: Mapping[str, str]) -> Config | None:
    try:
        from otpbridge.core.config import Config

        return Config.resolve(home, env)
    except Exception:  # noqa: BLE001 - no home, no log
        return None


def _finish(
    log: RunLog | None,
    config: Config | None,
    env: Mapping[str, str],
    args: Sequence[str],
    command: str | None,
    code: int | None,
    lines: Sequence[str],
    seconds: float,
    unattended: str | None,
) -> None:
    if config is None:
        return
    state_dir = config.state_dir
    home_exists = config.config_dir.is_dir()
    if log is None and home_exists and command not in (None, "help"):
        log = open_log(state_dir, env)  # `init` may have just created the home
        if log is not None:
            log.info(f"start: otpbridge {describe_args(args)}")
    message, hint = _message_and_hint(lines)
    if log is not None:
        if code is None:
            log.error(f"{command}: crashed after {seconds:.1f}s (a bug: see the traceback on stderr)")
        else:
            outcome = EXIT_MEANING.get(code, "error")
            extra = f": {message}" if message and code else ""
            level = "INFO" if code == 0 else "ERROR"
            log.write(level, f"{command}: exit {code} ({outcome}) in {seconds:.1f}s{extra}")
            if hint and code:
                log.write(level, f"{command}: hint: {hint}")
            for line in lines:
                if line.startswith("warning:"):
                    log.warning(f"{command}: {line}")
    if code == 0 and command in _CLEARS_FAILURE:
        clear_failure(state_dir)
    elif code != 0 and unattended and home_exists:
        secrets = _secret_values(env)

        def clean(text: str | None) -> str | None:
            return None if text is None else _redact(text, secrets)

        write_failure(
            state_dir,
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "timestamp": time.time(),
                "source": unattended,
                "command": command,
                "args": clean(describe_args(args)),
                "exit_code": code if code is not None else 1,
                "outcome": EXIT_MEANING.get(code, "error") if code is not None else "crashed",
                "message": clean(message) if code is not None else "crashed (a bug; see the log)",
                "hint": clean(hint),
                "log": str(log_path(state_dir)),
            },
        )


__all__ = [
    "LOG_NAME",
    "RUNNING_ENV",
    "UNATTENDED_ENV",
    "clear_failure",
    "describe_failure",
    "log_path",
    "logged",
    "read_failure",
    "write_failure",
]
