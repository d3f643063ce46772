"""One ``rclone rcd`` per backend, spoken to over a private unix socket.

Why: starting rclone costs ~50 ms per call, an rc call ~1 ms (docs/BACKENDS.md has the
numbers), and rcd keeps the remote's connections and Fs objects warm between calls.

Safety: the socket lives in a fresh 0700 folder, and the rc API additionally needs a
random user/password that reaches rcd only through its environment (never argv, which
every local user can read in /proc). RCLONE_RC_* from the caller's environment is dropped
so a stray ``RCLONE_RC_NO_AUTH=true`` cannot open the daemon. rcd gets the same fast-fail
flags as a CLI call; a socket timeout kills the daemon (it may be stuck on a frozen
server) and the next call starts a fresh one.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from otpbridge.backends.rclone_exec import FAST_FAIL, RcdFailure, RcdTimeout, RcdUnavailable, check_version

__all__ = ["RcdFailure", "RcdTimeout", "RcdTransport", "RcdUnavailable"]

_SOCKET_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


_prctl = None


def _die_with_parent() -> None:  # runs in the forked child before exec
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphaned rcd if we are killed


def _load_prctl() -> None:
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            _prctl = ctypes.CDLL(None, use_errno=True).prctl


def _stop(proc: subprocess.Popen | None, folder: str | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()  # rcd holds nothing worth a graceful shutdown once our calls returned
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=2)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


class RcdTransport:
    def __init__(self, binary: str, env: Mapping[str, str], timeout: float) -> None:
        if not hasattr(socket, "AF_UNIX"):
            raise RcdUnavailable("no unix sockets on this platform")
        self.binary = binary
        self.env = dict(env)
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._folder: str | None = None
        self._conn: _UnixHTTPConnection | None = None
        self._auth = ""
        self._finalizer: weakref.finalize | None = None
        self.starts = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def folder(self) -> str:
        self._ensure()
        assert self._folder is not None
        return self._folder

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.close()
        self._start()

    def _start(self) -> None:
        folder = tempfile.mkdtemp(prefix="otpbridge-rcd-")
        sock_path = os.path.join(folder, "rc.sock")
        if len(os.fsencode(sock_path)) > _SOCKET_PATH_MAX:
            shutil.rmtree(folder, ignore_errors=True)
            raise RcdUnavailable("the temporary folder's path is too long for a unix socket")
        user, password = "otpbridge", secrets.token_urlsafe(32)
        env = dict(self.env, RCLONE_RC_USER=user, RCLONE_RC_PASS=password)
        argv = [self.binary, "rcd", "--rc-addr", f"unix://{sock_path}", "--rc-serve", *FAST_FAIL]
        _load_prctl()
        log_fd = os.open(os.path.join(folder, "rcd.log"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_fd,
                env=env,
                preexec_fn=_die_with_parent if _prctl is not None else None,  # noqa: PLW1509
                close_fds=True,
            )
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise RcdUnavailable(f"cannot start rclone rcd: {exc}") from None
        finally:
            os.close(log_fd)
        self._proc, self._folder = proc, folder
        self._finalizer = weakref.finalize(self, _stop, proc, folder)
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.starts += 1
        deadline = time.monotonic() + max(self.timeout, 5.0)
        delay = 0.002
        while True:
            if proc.poll() is not None:
                tail = self._log_tail()
                self.close()
                raise RcdUnavailable(f"rclone rcd exited at start: {tail}")
            try:
                conn = _UnixHTTPConnection(sock_path, self.timeout)
                conn.connect()
                self._conn = conn
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RcdUnavailable("rclone rcd did not open its socket in time") from None
                time.sleep(delay)
                delay = min(delay * 1.5, 0.05)
        try:
            info = self._decode(*self._exchange("POST", "/core/version", b"{}", {"Content-Type": "application/json"}))
            check_version(self.binary, str(info.get("version", "")))
        except BaseException:
            self.close()
            raise

    def _log_tail(self) -> str:
        if not self._folder:
            return ""
        try:
            with open(os.path.join(self._folder, "rcd.log"), "rb") as fh:
                return fh.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._finalizer is not None:
            self._finalizer()  # stops the process, removes the folder; runs at most once
            self._finalizer = None
        self._proc = None
        self._folder = None

    # ------------------------------------------------------------------ requests
    def _request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """One HTTP exchange; a dead daemon or a dropped keep-alive connection gets one restart."""
        with self._lock:
            for attempt in (1, 2):
                self._ensure()
                try:
                    return self._exchange(method, path, body, headers)
                except RcdFailure:
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        if self._conn is None:
            assert self._folder is not None
            self._conn = _UnixHTTPConnection(os.path.join(self._folder, "rc.sock"), self.timeout)
        try:
            self._conn.request(method, path, body=body, headers={"Authorization": self._auth, **headers})
            response = self._conn.getresponse()
            return response.status, response.read()
        except TimeoutError:
            self.close()  # rcd may be stuck on a frozen server: never reuse it
            raise RcdTimeout(f"no answer within {self.timeout:g} s") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            self._conn.close()
            self._conn = None
            raise RcdFailure(0, f"lost contact with rclone rcd: {exc}") from None

    def call(self, command: str, params: dict[str, Any]) -> dict[str, Any]:
        status, data = self._request(
            "POST", "/" + command, json.dumps(params).encode(), {"Content-Type": "application/json"}
        )
        return self._decode(status, data)

    @staticmethod
    def _decode(status: int, data: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(data or b"{}")
        except ValueError:
            payload = {"error": data[:300].decode("utf-8", "replace")}
        if status != 200:
            raise RcdFailure(status, str(payload.get("error", f"HTTP {status}")))
        return payload

    def get(self, fs: str, remote: str) -> bytes:
        """Download through ``--rc-serve``: ``GET /[fs]/remote`` (binary-safe, no temp file)."""
        path = "/[" + quote(fs, safe="") + "]/" + quote(remote, safe="/")
        status, data = self._request("GET", path, None, {})
        if status != 200:
            self._decode(status, data)
        return data
