"""Any rclone remote as a backend (S3, WebDAV/Nextcloud, SFTP, Drive, Dropbox, …).

Two ways to drive the same binary (measured in docs/BACKENDS.md):

* ``cli``: one rclone process per call (~50 ms each).
* ``rcd``: one ``rclone rcd`` per backend on a private unix socket; ~50-150 ms to start
  (process, socket, ``core/version``), then ~1 ms per call (webdav ~10-20 ms: its pacer).

``auto`` (the default) uses both: the *first* call of a backend is a plain process,
because the no-change sync makes exactly one call (a listing) and a daemon's start costs
more than that whole call; the *second* call starts rcd, which then serves every later
call (a typical sync: 1 listing, 3 reads, 2 verified writes). Where rcd cannot run (no
unix sockets, an over-long temp path) the backend stays with processes.
``OTPBRIDGE_RCLONE_TRANSPORT=cli|rcd`` (or ``transport=``) forces one of them.

Traps handled here, not by callers:
* uploads go ``copyto``/``copyfile`` from a 0600 file of ciphertext with ``--ignore-times``:
  rclone skips an upload whose size and mtime match (webdav: size alone), and only the
  copy path (not ``rcat``) writes local/sftp objects as ``NAME.<hex>.partial`` + rename;
* ``cat`` of a missing object exits 0 with no output on s3: ``--error-on-no-transfer``;
* exit code 1 means anything from "unknown remote" to "connection refused": the message
  decides (``rclone_exec.classify``);
* every write is read back and compared before ``write`` returns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from otpbridge.backends import rclone_exec as rx
from otpbridge.backends.base import (
    Backend,
    ObjectInfo,
    ObjectNotFound,
    is_listable,
    validate_name,
    validate_prefix,
)
from otpbridge.backends.rclone_exec import RcdFailure, RcdTimeout, RcdUnavailable
from otpbridge.core.errors import AuthenticationError, IntegrityError, UnreachableError, UsageError

TRANSPORTS = ("auto", "rcd", "cli")


class _Failure(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _mtime(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class _CliOps:
    """One rclone process per operation."""

    def __init__(self, backend: RcloneBackend) -> None:
        self.b = backend

    def _run(self, op: str, flags: list[str], paths: list[str], *, extra_time: float = 0.0) -> subprocess.CompletedProcess:
        b = self.b
        rx.ensure_usable(b.binary, b.cli_env, b.timeout)
        if b.cli_location is None:
            raise _Failure(
                rx.USAGE,
                "rclone rcd cannot run here and this remote string cannot be given to rclone without putting "
                "its credentials on a command line; configure it as a named remote (rclone config) instead",
            )
        argv = [b.binary, op, *flags, *rx.FAST_FAIL, "--", *paths]
        b.stats["rclone_calls"] += 1
        try:
            return rx.run(argv, env=b.cli_env, timeout=b.timeout + extra_time)
        except subprocess.TimeoutExpired:
            raise _Failure(rx.UNREACHABLE, f"no answer within {b.timeout + extra_time:g} s") from None
        except OSError as exc:
            raise _Failure(rx.UNREACHABLE, f"cannot run rclone: {exc}") from None

    def _fail(self, proc: subprocess.CompletedProcess) -> _Failure:
        text = proc.stderr.decode("utf-8", "replace")
        b = self.b
        return _Failure(rx.classify(text, proc.returncode), rx.reason_from(text, b.location, b.shown, (b.cli_location or "",)))

    def list(self, prefix: str) -> list[dict] | None:
        proc = self._run("lsjson", ["-R", "--files-only", "--no-mimetype"], [rx.join(self.b.cli_location or "", prefix)])
        if proc.returncode != 0:
            failure = self._fail(proc)
            if failure.kind == rx.NOT_FOUND or proc.returncode == 3:
                return None
            raise failure
        items = rx.lsjson_items(proc.stdout)
        for item in items:
            if prefix:
                item["Path"] = f"{prefix}/{item.get('Path', '')}"
        return items

    def cat(self, name: str) -> bytes | None:
        proc = self._run("cat", ["--error-on-no-transfer"], [rx.join(self.b.cli_location or "", name)])
        if proc.returncode == 0:
            return proc.stdout
        failure = self._fail(proc)
        if proc.returncode in (3, 9) or failure.kind == rx.NOT_FOUND:
            return None
        raise failure

    def stat(self, name: str) -> dict | None:
        proc = self._run("lsjson", ["--stat", "--files-only", "--no-mimetype"], [rx.join(self.b.cli_location or "", name)])
        if proc.returncode != 0:
            failure = self._fail(proc)
            if failure.kind == rx.NOT_FOUND or proc.returncode == 3:
                return None
            raise failure
        items = rx.lsjson_items(proc.stdout)
        return items[0] if items and not items[0].get("IsDir") else None

    def put(self, name: str, data: bytes) -> None:
        folder = rx.private_tempdir()
        try:
            src = _write_private(folder, data)
            proc = self._run(
                "copyto", ["--ignore-times"], [src, rx.join(self.b.cli_location or "", name)], extra_time=len(data) / 250_000
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if proc.returncode != 0:
            failure = self._fail(proc)
            raise _Failure(rx.UNREACHABLE if failure.kind == rx.NOT_FOUND else failure.kind, failure.reason)

    def delete(self, name: str) -> None:
        proc = self._run("deletefile", [], [rx.join(self.b.cli_location or "", name)])
        if proc.returncode in (0, 4, 3):
            return
        failure = self._fail(proc)
        if failure.kind != rx.NOT_FOUND:
            raise failure

    def close(self) -> None:
        pass


class _RcdOps:
    """The same operations through one long-lived ``rclone rcd``."""

    def __init__(self, backend: RcloneBackend) -> None:
        from otpbridge.backends.rclone_rcd import (
            RcdTransport,  # http.client & co.: only for runs that use rcd
        )

        self.b = backend
        self.rcd = RcdTransport(backend.binary, backend.env, backend.timeout)

    def _count(self) -> None:
        """One rc request; started first, so a daemon that cannot start counts as no call."""
        _ = self.rcd.folder  # raises RcdUnavailable when rcd cannot run here
        self.b.stats["rclone_calls"] += 1

    def _call(self, command: str, params: dict[str, Any]) -> dict[str, Any]:
        self._count()
        try:
            return self.rcd.call(command, params)
        except RcdFailure as exc:
            raise self._failure(exc) from None
        except RcdTimeout as exc:
            raise _Failure(rx.UNREACHABLE, str(exc)) from None

    def _failure(self, exc: RcdFailure) -> _Failure:
        # The message decides, not the status: a 404 must never turn an outage into "empty".
        kind = rx.classify(exc.message)
        return _Failure(kind, rx.reason_from(exc.message, self.b.location, self.b.shown))

    def list(self, prefix: str) -> list[dict] | None:
        opt = {"recurse": True, "filesOnly": True, "noMimeType": True}
        try:
            reply = self._call("operations/list", {"fs": self.b.location, "remote": prefix, "opt": opt})
        except _Failure as failure:
            if failure.kind == rx.NOT_FOUND:
                return None
            raise
        return list(reply.get("list") or [])

    def cat(self, name: str) -> bytes | None:
        if "]" in self.b.location:  # cannot be put in GET /[fs]/…: copy to our private folder instead
            return self._cat_by_copy(name)
        self._count()
        try:
            return self.rcd.get(self.b.location, name)
        except RcdFailure as exc:
            failure = self._failure(exc)
            if failure.kind == rx.NOT_FOUND:
                return None
            raise failure from None
        except RcdTimeout as exc:
            raise _Failure(rx.UNREACHABLE, str(exc)) from None

    def _cat_by_copy(self, name: str) -> bytes | None:
        folder = self.rcd.folder
        target = "download-" + os.urandom(8).hex()
        params = {"srcFs": self.b.location, "srcRemote": name, "dstFs": folder, "dstRemote": target}
        try:
            self._call("operations/copyfile", {**params, "_config": {"IgnoreTimes": True}})
        except _Failure as failure:
            if failure.kind == rx.NOT_FOUND:
                return None
            raise
        path = os.path.join(folder, target)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def stat(self, name: str) -> dict | None:
        try:
            reply = self._call("operations/stat", {"fs": self.b.location, "remote": name, "opt": {"noMimeType": True}})
        except _Failure as failure:
            if failure.kind == rx.NOT_FOUND:
                return None
            raise
        item = reply.get("item")
        return item if isinstance(item, dict) and not item.get("IsDir") else None

    def put(self, name: str, data: bytes) -> None:
        folder = self.rcd.folder
        src = _write_private(folder, data)
        params = {
            "srcFs": folder,
            "srcRemote": os.path.basename(src),
            "dstFs": self.b.location,
            "dstRemote": name,
            "_config": {"IgnoreTimes": True},
        }
        try:
            self._call("operations/copyfile", params)
        except _Failure as failure:
            raise _Failure(rx.UNREACHABLE if failure.kind == rx.NOT_FOUND else failure.kind, failure.reason) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(src)

    def delete(self, name: str) -> None:
        try:
            self._call("operations/deletefile", {"fs": self.b.location, "remote": name})
        except _Failure as failure:
            if failure.kind != rx.NOT_FOUND:
                raise

    def close(self) -> None:
        self.rcd.close()


def _write_private(folder: str, data: bytes) -> str:
    """Ciphertext on its way to rclone: a fresh 0600 file in a 0700 folder."""
    path = os.path.join(folder, "upload-" + os.urandom(8).hex())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


class RcloneBackend(Backend):
    name = "rclone"

    def __init__(
        self,
        location: str,
        *,
        stats: Counter | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = 15.0,
        transport: str | None = None,
    ) -> None:
        super().__init__(location, stats=stats, environ=environ, timeout=timeout)
        rx.check_location(location)
        self.shown = rx.describe_location(location)
        mode = (transport or self.environ.get("OTPBRIDGE_RCLONE_TRANSPORT") or "auto").lower()
        if mode not in TRANSPORTS:
            raise UsageError(f"unknown rclone transport {mode!r}", hint=f"use one of: {', '.join(TRANSPORTS)}")
        self.binary = rx.find_rclone(self.environ)
        self.env = rx.child_environ(self.environ)
        self.cli_env = rx.one_shot_environ(self.env)  # per-call processes: Go's GC tuned for a short life
        # Per-call processes never get a credential on argv (readable by every local user
        # in /proc): a connection string's parameters go into their environment as an
        # env-config remote instead. None: not expressible so; such a remote needs rcd.
        self.cli_location: str | None = location
        if rx.carries_credentials(location):
            form = rx.argv_form(location)
            self.cli_location = None if form is None else form[0]
            if form is not None:
                self.cli_env = {**self.cli_env, **form[1]}
        self.mode = mode
        self._ops: _CliOps | _RcdOps | None = None
        self._rcd_unusable = False  # auto: rcd failed to start here once; processes from now on

    def describe(self) -> str:
        return f"rclone remote {self.shown}"

    @property
    def transport(self) -> str:
        """``rcd`` or ``cli``: what the latest call used (the mode until the first call).

        In ``auto`` mode this is ``cli`` after the first call and ``rcd`` from the second
        on (``cli`` for good where rcd cannot run)."""
        if self._ops is None:
            return self.mode
        return "rcd" if isinstance(self._ops, _RcdOps) else "cli"

    # ------------------------------------------------------------------ plumbing
    def _ops_for_next_call(self) -> _CliOps | _RcdOps:
        """The lazy hand-over of ``auto``: first call a process, then one daemon.

        Callers cannot tell: both transports give the same results, errors, and stats
        (``rclone_calls`` counts one per process or rc request either way)."""
        ops = self._ops
        if ops is None:
            # A remote string that carries a credential never goes on argv: rcd gets it
            # in the request body over its private socket instead.
            first_rcd = self.mode == "rcd" or (self.mode == "auto" and rx.carries_credentials(self.location))
            ops = _RcdOps(self) if first_rcd else _CliOps(self)
        elif self.mode == "auto" and isinstance(ops, _CliOps) and not self._rcd_unusable:
            ops = _RcdOps(self)  # starts the daemon on its first request, i.e. right now
        self._ops = ops
        return ops

    def _do(self, action: str, op: str, *args: Any) -> Any:
        """Run one operation, turning rclone's failures into our exit-coded errors."""
        try:
            return getattr(self._ops_for_next_call(), op)(*args)
        except RcdUnavailable as exc:
            if self.mode == "rcd" or rx.classify(str(exc)) in (rx.CONFIG_LOCKED, rx.USAGE):
                raise self._error(action, _Failure(rx.classify(str(exc)), rx.reason_from(str(exc), self.location, self.shown))) from None
            if self._ops is not None:
                self._ops.close()
            self._rcd_unusable = True
            self._ops = _CliOps(self)  # rcd cannot run here: per-call processes still work
            return self._do(action, op, *args)
        except _Failure as failure:
            raise self._error(action, failure) from None

    def _error(self, action: str, failure: _Failure) -> Exception:
        where = self.describe()
        if failure.kind == rx.USAGE:
            return UsageError(
                f"rclone cannot use {where}: {failure.reason}",
                hint="check the name with `rclone listremotes` (RCLONE_CONFIG and RCLONE_CONFIG_<NAME>_* are honoured)",
            )
        if failure.kind == rx.CONFIG_LOCKED:
            return AuthenticationError(
                f"cannot open the rclone configuration for {where}: {failure.reason}",
                hint="set RCLONE_CONFIG_PASS to the password of the rclone configuration",
            )
        if failure.kind == rx.REFUSED:
            return AuthenticationError(
                f"{where} refused the credentials ({action}): {failure.reason}",
                hint="check the user name and password (or token, key) of this remote: `rclone config`, or "
                "RCLONE_CONFIG_<NAME>_* / RCLONE_<BACKEND>_* variables; the network is fine",
            )
        return UnreachableError(f"{where} is unreachable ({action}): {failure.reason}")

    def _object(self, item: dict) -> ObjectInfo | None:
        name = str(item.get("Path", ""))
        if item.get("IsDir") or not is_listable(name):
            return None
        size = item.get("Size")
        return ObjectInfo(name, int(size) if isinstance(size, int) and size >= 0 else -1, _mtime(item.get("ModTime")))

    # ------------------------------------------------------------------ the interface
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = validate_prefix(prefix)
        self.stats["listings"] += 1
        items = self._do("list", "list", prefix) or []
        found = [info for info in map(self._object, items) if info is not None]
        found.sort(key=lambda info: info.name)
        return found

    def read(self, name: str) -> bytes:
        validate_name(name)
        self.stats["downloads"] += 1
        data = self._do(f"read {name}", "cat", name)
        if data is None:
            raise ObjectNotFound(f"{name} is not in {self.describe()}")
        return data

    def write(self, name: str, data: bytes) -> None:
        validate_name(name)
        data = bytes(data)
        self.stats["uploads"] += 1
        self._do(f"write {name}", "put", name, data)
        self.stats["verifications"] += 1
        back = self._do(f"verify {name}", "cat", name)
        if back != data:
            with contextlib.suppress(UnreachableError):
                self._do(f"remove unverified {name}", "delete", name)
            got = "nothing" if back is None else f"{len(back)} bytes"
            raise IntegrityError(
                f"{name} did not read back as written on {self.describe()} (wrote {len(data)} bytes, read {got})"
            )

    def exists(self, name: str) -> bool:
        validate_name(name)
        return self._do(f"check {name}", "stat", name) is not None

    def delete(self, name: str) -> None:
        validate_name(name)
        self.stats["deletes"] += 1
        self._do(f"delete {name}", "delete", name)

    def close(self) -> None:
        if self._ops is not None:
            self._ops.close()
