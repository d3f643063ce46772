"""Running the otpbridge CLI from a test: in process (fast, with capsys or without) or as a
real ``python -m otpbridge.cli`` child (exit code and stderr exactly as a user sees them)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

from otpbridge.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``main(args)`` in this process; returns (exit code, stdout, stderr) captured by capsys."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_with_env(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``main(args)`` in this process with ``env`` added to os.environ for the call only.

    For tests that cannot take capsys (module fixtures, helpers); os.environ is restored
    whatever happens.
    """
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


def run_module(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m otpbridge.cli ARGS`` in a child without a terminal; ``env`` adds to os.environ."""
    return subprocess.run(
        [sys.executable, "-m", "otpbridge.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "otpbridge")


def run_console(args, *, env, pass_fds=(), timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed console script as cron would run it: no TTY, no stdin, own session;
    a hang fails the test instead of blocking it."""
    return subprocess.run(
        [CONSOLE_SCRIPT, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        pass_fds=pass_fds,
    )
