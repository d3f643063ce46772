"""Real loopback servers for backend tests: ``rclone serve webdav|sftp|s3`` on 127.0.0.1.

Each server binds port 0 and we read the port from its log line; restarting after a kill
re-binds the same port, so a remote string handed to a backend stays valid. Servers are
children with PR_SET_PDEATHSIG, so a crashed pytest cannot leak them, and are always
stopped by PID. Credentials are throw-away and reach both sides through the environment
(``RCLONE_USER``/``RCLONE_PASS`` for the server, ``RCLONE_WEBDAV_PASS`` etc. — obscured —
for clients), never argv.

Use from tests::

    def test_x(webdav_server):                 # session-scoped, shared
        loc = webdav_server.location("some/folder")
        backend = RcloneBackend(loc, environ=webdav_server.environ())

    def test_y(server_factory):                # private: free to kill/freeze it
        srv = server_factory("webdav")
        srv.kill(); srv.restart(); srv.freeze(); srv.thaw()
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from otpbridge.backends.rclone_exec import find_rclone

KINDS = ("webdav", "sftp", "s3")
_PORT_LINE = re.compile(r"(?:listening on|started on|server on) \[?(?:https?://)?127\.0\.0\.1:(\d+)")
_USER = "otpuser"


def rclone_binary() -> str:
    return find_rclone(os.environ)


def base_environ() -> dict[str, str]:
    """A client environment that ignores the developer's own rclone.conf."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "OTPBRIDGE_"))}
    env["RCLONE_CONFIG"] = "/dev/null"
    return env


def obscure(secret: str) -> str:
    """rclone's reversible config obscuring; the secret goes in on stdin, not argv."""
    proc = subprocess.run(
        [rclone_binary(), "obscure", "-"], input=secret.encode(), capture_output=True, check=True, timeout=10
    )
    return proc.stdout.decode().strip()


def _die_with_parent() -> None:
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


class RcloneServer:
    """One ``rclone serve KIND`` over ``root`` (for s3: ``root/bucket`` is the bucket)."""

    def __init__(self, kind: str, root: Path, workdir: Path) -> None:
        assert kind in KINDS
        self.kind = kind
        self.root = root
        self.workdir = workdir
        self.password = secrets.token_urlsafe(12)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._obscured: str | None = None
        self.served = root / "bucket" if kind == "s3" else root
        self.served.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self, port: int = 0, *, timeout: float = 15.0) -> RcloneServer:
        env = base_environ()
        env["RCLONE_CACHE_DIR"] = str(self.workdir / "cache")  # serve sftp puts its host keys here
        argv = [rclone_binary(), "serve", self.kind, str(self.root), "--addr", f"127.0.0.1:{port}"]
        if self.kind == "s3":
            env["RCLONE_AUTH_KEY"] = f'"{_USER},{self.password}"'  # a CSV cell: one key pair
        else:
            env["RCLONE_USER"] = _USER
            env["RCLONE_PASS"] = self.password
        if self.kind == "sftp":
            argv += ["--authorized-keys", os.devnull]
        log = self.workdir / f"{self.kind}-{uuid.uuid4().hex[:8]}.log"
        deadline = time.monotonic() + timeout
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fh, env=env, preexec_fn=_die_with_parent
            )
        while True:
            text = log.read_text(errors="replace")
            match = _PORT_LINE.search(text)
            if match:
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None:
                if port and "address already in use" in text and time.monotonic() < deadline:
                    time.sleep(0.1)  # the old socket is still closing: try the same port again
                    return self.start(port, timeout=max(deadline - time.monotonic(), 0.1))
                raise RuntimeError(f"rclone serve {self.kind} failed to start:\n{text[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rclone serve {self.kind} did not report its port:\n{text[-2000:]}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL: clients get 'connection refused' from now on."""
        assert self.proc is not None
        self.thaw()
        self.proc.kill()
        self.proc.wait(timeout=5)

    def restart(self) -> RcloneServer:
        """Start again on the same port (after kill/stop), so existing remote strings work."""
        self.stop()
        return self.start(self.port)

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections but nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ clients
    def location(self, path: str = "") -> str:
        """An on-the-fly rclone remote for ``path`` on this server (no secret in it)."""
        if self.kind == "webdav":
            return f":webdav,url='http://127.0.0.1:{self.port}/',vendor=rclone:{path}"
        if self.kind == "sftp":
            return f":sftp,host=127.0.0.1,port={self.port},shell_type=none:{path}"
        return f":s3,provider=Rclone,endpoint='http://127.0.0.1:{self.port}':bucket/{path}"

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Client environment holding this server's credentials (obscured where rclone wants it)."""
        env = dict(base_environ() if base is None else base)
        if self._obscured is None:
            self._obscured = obscure(self.password)
        if self.kind == "webdav":
            env.update(RCLONE_WEBDAV_USER=_USER, RCLONE_WEBDAV_PASS=self._obscured)
        elif self.kind == "sftp":
            env.update(RCLONE_SFTP_USER=_USER, RCLONE_SFTP_PASS=self._obscured)
        else:
            env.update(RCLONE_S3_ACCESS_KEY_ID=_USER, RCLONE_S3_SECRET_ACCESS_KEY=self.password)
        return env

    def disk_path(self, path: str = "") -> Path:
        """Where ``location(path)`` lands on the server's disk."""
        return self.served / path if path else self.served


@contextlib.contextmanager
def running_server(kind: str, workdir: Path) -> Iterator[RcloneServer]:
    root = workdir / f"{kind}-root"
    root.mkdir(parents=True, exist_ok=True)
    server = RcloneServer(kind, root, workdir).start()
    try:
        yield server
    finally:
        server.stop()


def _session_server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneServer]:
    with running_server(kind, tmp_path_factory.mktemp(f"srv-{kind}")) as server:
        yield server


@pytest.fixture(scope="session")
def webdav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneServer]:
    yield from _session_server("webdav", tmp_path_factory)


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneServer]:
    yield from _session_server("sftp", tmp_path_factory)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneServer]:
    yield from _session_server("s3", tmp_path_factory)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Start private servers a test may kill, freeze or restart; all stopped afterwards."""
    started: list[RcloneServer] = []

    def make(kind: str) -> RcloneServer:
        root = tmp_path / f"{kind}-{len(started)}"
        root.mkdir()
        server = RcloneServer(kind, root, tmp_path).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
