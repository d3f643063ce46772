"""``code --clip``: copy a code to the clipboard and clear it after a while, like
``pass -c`` and ``keepassxc-cli clip``.

The platform's own tools are used (wl-copy/wl-paste on Wayland, xclip or xsel on X11,
pbcopy/pbpaste on macOS), else pyperclip when installed (``otpbridge[clip]``). The code
reaches them on stdin, never argv. Clearing is done by a detached child that sleeps,
then empties the clipboard only if it still holds our code (like ``pass``).
``OTPBRIDGE_CLIPBOARD="COPY-CMD|PASTE-CMD"`` overrides the tools (tests, odd desktops).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping

from otpbridge.core.errors import OtpBridgeError

CLEAR_AFTER = 45


def tools(environ: Mapping[str, str]) -> tuple[list[str], list[str]] | None:
    """(copy argv, paste argv) for this desktop, or None."""
    override = environ.get("OTPBRIDGE_CLIPBOARD")
    if override:
        copy, _, paste = override.partition("|")
        return shlex.split(copy), shlex.split(paste)
    path = environ.get("PATH")
    if environ.get("WAYLAND_DISPLAY") and shutil.which("wl-copy", path=path) and shutil.which("wl-paste", path=path):
        return ["wl-copy"], ["wl-paste", "--no-newline"]
    if environ.get("DISPLAY"):
        if shutil.which("xclip", path=path):
            return ["xclip", "-selection", "clipboard", "-in"], ["xclip", "-selection", "clipboard", "-out"]
        if shutil.which("xsel", path=path):
            return ["xsel", "--clipboard", "--input"], ["xsel", "--clipboard", "--output"]
    if sys.platform == "darwin" and shutil.which("pbcopy", path=path):
        return ["pbcopy"], ["pbpaste"]
    return None


def _pyperclip():
    try:
        import pyperclip
    except ImportError:
        return None
    try:
        pyperclip.paste()
    except Exception:  # noqa: BLE001 - pyperclip raises its own error type when it has no backend
        return None
    return pyperclip


def copy(text: str, environ: Mapping[str, str], *, clear_after: int = CLEAR_AFTER) -> None:
    """Copy ``text``; a detached child clears it after ``clear_after`` seconds."""
    found = tools(environ)
    if found is None:
        clip = _pyperclip()
        if clip is None:
            raise OtpBridgeError(
                "there is no clipboard here (no Wayland or X11 display with wl-copy/xclip/xsel, no pbcopy)",
                hint="print the code instead: otpbridge code SOURCE QUERY; on a desktop install xclip, "
                "wl-clipboard, or pip install 'otpbridge[clip]'",
            )
        clip.copy(text)
        found = ([sys.executable, "-c", "import sys, pyperclip; pyperclip.copy(sys.stdin.read())"],
                 [sys.executable, "-c", "import sys, pyperclip; sys.stdout.write(pyperclip.paste())"])
    else:
        _run(found[0], text, environ)
    _clear_later(found, text, environ, clear_after)


def _run(argv: list[str], text: str, environ: Mapping[str, str]) -> None:
    try:
        proc = subprocess.run(argv, input=text, text=True, capture_output=True, timeout=10, env=dict(environ),
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OtpBridgeError(f"the clipboard tool {argv[0]} could not run: {exc}") from None
    if proc.returncode != 0:
        raise OtpBridgeError(f"the clipboard tool {argv[0]} failed: {proc.stderr.strip() or proc.returncode}")


_CLEARER = """
import subprocess, sys, time, json
copy, paste, wait = json.loads(sys.argv[1])
code = sys.stdin.read()
time.sleep(wait)
try:
    now = subprocess.run(paste, capture_output=True, text=True, timeout=10).stdout
except Exception:
    now = code
if now.strip() == code:
    subprocess.run(copy, input="", text=True, timeout=10)
"""


def _clear_later(found: tuple[list[str], list[str]], text: str, environ: Mapping[str, str], wait: int) -> None:
    import json

    proc = subprocess.Popen(
        [sys.executable, "-c", _CLEARER, json.dumps([found[0], found[1], wait])],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(environ),
        start_new_session=True, close_fds=True, cwd=os.path.expanduser("~") if os.path.isdir(os.path.expanduser("~")) else "/",
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(text)
    proc.stdin.close()
