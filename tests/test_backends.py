"""The backend contract, run against every backend over real storage, plus faults and outages.

Targets: a plain local folder; rclone on a local path (rcd and per-call processes); and
``rclone serve webdav|sftp|s3`` on 127.0.0.1 (session-scoped servers, tests/support/servers.py).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from otpbridge.backends import rclone as rclone_mod
from otpbridge.backends import rclone_exec as rx
from otpbridge.backends.base import Backend, ObjectNotFound, open_backend, validate_name
from otpbridge.backends.faults import FaultyBackend, SimulatedCrash
from otpbridge.backends.local import LocalBackend
from otpbridge.backends.rclone import RcloneBackend
from otpbridge.core.errors import (
    AuthenticationError,
    IntegrityError,
    MissingDependencyError,
    UnreachableError,
    UsageError,
)
from tests.support.servers import RcloneServer, base_environ

ALL_BYTES = bytes(range(256)) * 3 + b"line1\r\nline2\r\n\r\n\x00\xff"


@dataclass
class Target:
    """How to open a fresh backend for one test, and where its objects land on disk."""

    kind: str
    location: str
    environ: dict[str, str]
    disk: Path
    transport: str | None = None

    def open(self, **kw) -> Backend:
        kw.setdefault("stats", Counter())
        if self.kind == "local":
            return LocalBackend(self.location, environ=self.environ, **kw)
        return RcloneBackend(self.location, environ=self.environ, transport=self.transport, **kw)


# rclone-local is the default ``auto`` transport (first call a process, then rcd);
# -cli and -rcd pin one transport from the first call on.
TARGETS = ["local", "rclone-local", "rclone-local-cli", "rclone-local-rcd", "webdav", "sftp", "s3"]


@pytest.fixture(params=TARGETS)
def target(request, tmp_path) -> Target:
    kind = request.param
    env = base_environ()
    if kind == "local":
        return Target("local", str(tmp_path / "vault"), env, tmp_path / "vault")
    if kind.startswith("rclone-local"):
        transport = kind.removeprefix("rclone-local-") if kind.count("-") == 2 else None
        return Target(kind, f":local:{tmp_path}/vault", env, tmp_path / "vault", transport)
    server: RcloneServer = request.getfixturevalue(f"{kind.split('-')[0]}_server")
    sub = f"t{uuid.uuid4().hex[:10]}/vault"
    transport = "cli" if kind.endswith("-cli") else None
    return Target(kind, server.location(sub), server.environ(env), server.disk_path(sub), transport)


@pytest.fixture
def backend(target):
    b = target.open()
    yield b
    b.close()


class TestContract:
    def test_missing_root_lists_empty_with_one_listing(self, backend, target):
        assert backend.list() == []
        assert backend.stats["listings"] == 1
        assert not target.disk.exists()  # listing creates nothing

    def test_binary_round_trip(self, backend, target):
        backend.write("obj.bin", ALL_BYTES)
        assert backend.read("obj.bin") == ALL_BYTES
        assert (target.disk / "obj.bin").read_bytes() == ALL_BYTES
        [info] = backend.list()
        assert (info.name, info.size) == ("obj.bin", len(ALL_BYTES))
        assert info.mtime is None or abs(info.mtime - time.time()) < 600
        assert backend.stats["uploads"] == 1
        assert backend.stats["verifications"] == 1
        assert backend.stats["downloads"] == 1

    def test_empty_object(self, backend):
        backend.write("empty", b"")
        assert backend.read("empty") == b""
        assert [(i.name, i.size) for i in backend.list()] == [("empty", 0)]

    def test_overwrite_same_size_and_shorter(self, backend):
        # Same size within the same second: the size+mtime "skip upload" trap of copyto.
        backend.write("head", b"A" * 64)
        backend.write("head", b"B" * 64)
        assert backend.read("head") == b"B" * 64
        backend.write("head", b"short")
        assert backend.read("head") == b"short"
        assert [(i.name, i.size) for i in backend.list()] == [("head", 5)]

    def test_nested_names_and_prefix(self, backend):
        for name in ("a/b/c.enc", "a/d.enc", "e.enc", "ab/x"):
            backend.write(name, name.encode())
        assert [i.name for i in backend.list()] == ["a/b/c.enc", "a/d.enc", "ab/x", "e.enc"]
        assert [i.name for i in backend.list("a")] == ["a/b/c.enc", "a/d.enc"]
        assert [i.name for i in backend.list("a/")] == ["a/b/c.enc", "a/d.enc"]
        assert backend.list("nothing/here") == []
        assert backend.read("a/b/c.enc") == b"a/b/c.enc"
        assert backend.stats["listings"] == 4

    def test_exists_and_delete(self, backend):
        backend.write("dir/obj", b"x")
        assert backend.exists("dir/obj")
        assert not backend.exists("dir")  # a folder is not an object
        assert not backend.exists("nope")
        backend.delete("dir/obj")
        assert not backend.exists("dir/obj")
        backend.delete("dir/obj")  # absent is fine
        backend.delete("never/existed")
        assert backend.stats["deletes"] == 3
        assert [i.name for i in backend.list()] == []

    def test_missing_read_is_object_not_found(self, backend):
        with pytest.raises(ObjectNotFound) as err:
            backend.read("missing.enc")
        assert err.value.exit_code == 4
        backend.write("present", b"1")
        with pytest.raises(ObjectNotFound):
            backend.read("present/under")
        with pytest.raises(ObjectNotFound):
            backend.read("other/missing")

    def test_one_remote_call_per_listing(self, backend):
        backend.write("x/y", b"1")
        before = Counter(backend.stats)
        backend.list()
        backend.list("x")
        assert backend.stats["listings"] - before["listings"] == 2
        if isinstance(backend, RcloneBackend):
            assert backend.stats["rclone_calls"] - before["rclone_calls"] == 2

    def test_temporary_leftovers_are_not_objects(self, backend, target):
        backend.write("real.enc", b"1")
        (target.disk / ".real.enc.abc123.tmp").write_bytes(b"half")
        (target.disk / "real.enc.0123abcd.partial").write_bytes(b"half")
        (target.disk / "not valid name").write_bytes(b"?")
        assert [i.name for i in backend.list()] == ["real.enc"]

    @pytest.mark.parametrize("name", ["", "/abs", "a//b", "../up", "a/../b", "./a", "a/", ".hidden", "x.partial", "a b", "a;b", "$(x)", "é"])
    def test_invalid_names_refused_before_any_remote_call(self, backend, name):
        for op in (backend.read, backend.exists, backend.delete, lambda n: backend.write(n, b"1")):
            with pytest.raises(UsageError):
                op(name)
        assert backend.stats["rclone_calls"] == 0

    def test_describe_names_the_remote_without_secrets(self, backend, target):
        text = backend.describe()
        assert text and "\n" not in text
        for secret_key in ("RCLONE_WEBDAV_PASS", "RCLONE_SFTP_PASS", "RCLONE_S3_SECRET_ACCESS_KEY"):
            if secret_key in target.environ:
                assert target.environ[secret_key] not in text
        assert repr(backend).startswith(f"<{type(backend).__name__} ")


class TestVerification:
    def test_corrupted_read_back_is_detected_and_removed(self, backend, monkeypatch):
        """Fault injected around the real backend: the verify read sees other bytes."""
        if isinstance(backend, LocalBackend):
            real = LocalBackend._read
            monkeypatch.setattr(LocalBackend, "_read", lambda self, name, path: real(self, name, path)[:-1])
        else:
            for cls in (rclone_mod._CliOps, rclone_mod._RcdOps):
                real_cat = cls.cat
                monkeypatch.setattr(cls, "cat", lambda self, name, _r=real_cat: (_r(self, name) or b"")[:-1])
        with pytest.raises(IntegrityError, match="read back"):
            backend.write("obj", b"payload")
        monkeypatch.undo()
        assert not backend.exists("obj")  # the unverified object is not left behind


class TestLocalBackend:
    def test_modes_and_atomic_replace(self, tmp_path):
        root = tmp_path / "usb" / "otp"
        b = LocalBackend(str(root))
        b.write("v1/objects/x.enc", b"one")
        assert stat.S_IMODE(os.stat(root / "v1/objects/x.enc").st_mode) == 0o600
        for folder in (root, root / "v1", root / "v1/objects"):
            assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert sorted(os.listdir(root / "v1/objects")) == ["x.enc"]  # no temp file, no .bak

    def test_failed_write_keeps_old_object_and_leaves_no_temp(self, tmp_path, monkeypatch):
        b = LocalBackend(str(tmp_path))
        b.write("obj", b"old contents")

        def full_disk(fd):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", full_disk)
        with pytest.raises(UnreachableError, match="No space left"):
            b.write("obj", b"new contents that do not fit")
        monkeypatch.undo()
        assert b.read("obj") == b"old contents"
        assert os.listdir(tmp_path) == ["obj"]

    def test_root_is_a_file(self, tmp_path):
        (tmp_path / "f").write_bytes(b"x")
        with pytest.raises(UnreachableError):
            LocalBackend(str(tmp_path / "f")).list()

    def test_unreadable_object_is_unreachable_not_missing(self, tmp_path):
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        b = LocalBackend(str(tmp_path))
        b.write("obj", b"x")
        os.chmod(tmp_path / "obj", 0)
        with pytest.raises(UnreachableError):
            b.read("obj")


class TestOpenBackend:
    @pytest.mark.parametrize(
        ("location", "cls"),
        [
            ("file:/tmp/otp-x", LocalBackend),
            ("file:///tmp/otp-x", LocalBackend),
            ("/abs/path", LocalBackend),
            ("./rel", LocalBackend),
            ("~/otp", LocalBackend),
            ("plainname", LocalBackend),
            ("myremote:otp", RcloneBackend),
            ("myremote:", RcloneBackend),
            (":local:/tmp/x", RcloneBackend),
            (":webdav,url='http://127.0.0.1:1/':otp", RcloneBackend),
            ("rclone:myremote:otp", RcloneBackend),
        ],
    )
    def test_dispatch(self, location, cls):
        b = open_backend(location, environ=base_environ())
        assert type(b) is cls
        b.close()

    def test_paths(self, tmp_path, monkeypatch):
        assert open_backend("file:///tmp/otp-x").root == Path("/tmp/otp-x")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert open_backend("~/otp").root == tmp_path / "otp"
        assert open_backend("rclone:myremote:otp", environ=base_environ()).location == "myremote:otp"
        monkeypatch.chdir(tmp_path)
        (tmp_path / "odd:name").mkdir()
        assert type(open_backend("odd:name")) is LocalBackend  # an existing folder wins

    @pytest.mark.parametrize("location", ["", "   ", "remote:a\nb", "file:"])
    def test_refused(self, location):
        with pytest.raises(UsageError):
            open_backend(location, environ=base_environ())

    def test_validate_name_accepts_engine_names(self):
        assert validate_name("v1/objects/dev-0a1b-000001.enc") == "v1/objects/dev-0a1b-000001.enc"


class TestFaultyBackend:
    def make(self, tmp_path, **rules):
        return FaultyBackend(LocalBackend(str(tmp_path)), **rules)

    def test_fail_on_kth_write_writes_nothing(self, tmp_path):
        f = self.make(tmp_path, fail_on={"write": [2]})
        f.write("a", b"1")
        with pytest.raises(UnreachableError) as err:
            f.write("b", b"2")
        assert err.value.exit_code == 5
        assert str(tmp_path) in str(err.value)
        f.write("c", b"3")
        assert [i.name for i in f.inner.list()] == ["a", "c"]
        assert f.calls["write"] == 3
        assert [e[3] for e in f.events] == ["ok", "failed", "ok"]

    def test_fail_after_does_the_write(self, tmp_path):
        f = self.make(tmp_path, fail_after={"write": [1]})
        with pytest.raises(UnreachableError):
            f.write("a", b"done")
        assert f.inner.read("a") == b"done"

    def test_truncated_write_leaves_partial_object(self, tmp_path):
        f = self.make(tmp_path, truncate_on={"write": [1]})
        with pytest.raises(UnreachableError, match="mid-upload"):
            f.write("a", b"0123456789")
        assert f.inner.read("a") == b"01234"
        f.write("a", b"0123456789")  # the 2nd call goes through
        assert f.read("a") == b"0123456789"

    def test_timeout_and_rules(self, tmp_path):
        f = self.make(tmp_path, timeout_on={"read": "all"}, fail_on={"list": lambda k, prefix: prefix == "x"}, delay=0.05)
        f.write("a", b"1")
        t0 = time.monotonic()
        with pytest.raises(UnreachableError, match="timed out"):
            f.read("a")
        assert time.monotonic() - t0 >= 0.05
        assert f.list() != []
        with pytest.raises(UnreachableError):
            f.list("x")
        f.heal()
        assert f.read("a") == b"1"
        assert f.list("x") == []

    def test_crash_is_not_an_exception(self, tmp_path):
        f = self.make(tmp_path, crash_after={"write": [1]}, crash_on={"delete": [1]})
        with pytest.raises(SimulatedCrash):
            try:
                f.write("a", b"1")
            except Exception:  # ordinary handlers must not swallow a "kill"
                pytest.fail("SimulatedCrash was caught as an Exception")
        assert f.inner.read("a") == b"1"
        with pytest.raises(SimulatedCrash):
            f.delete("a")
        assert f.inner.exists("a")

    def test_stats_are_the_inner_ones(self, tmp_path):
        stats = Counter()
        f = FaultyBackend(LocalBackend(str(tmp_path), stats=stats))
        f.write("a", b"1")
        f.list()
        assert f.stats is stats and stats["uploads"] == 1 and stats["listings"] == 1
        assert f.describe() == f.inner.describe()

    def test_bad_rules_are_refused(self, tmp_path):
        with pytest.raises(ValueError):
            self.make(tmp_path, fail_on={"upload": [1]})
        with pytest.raises(ValueError):
            self.make(tmp_path, truncate_on={"read": [1]})


# ---------------------------------------------------------------------- outages


@pytest.mark.parametrize("transport", ["rcd", "cli"])
def test_killed_webdav_server_is_unreachable_quickly(server_factory, transport):
    server = server_factory("webdav")
    b = RcloneBackend(server.location("otp"), environ=server.environ(), transport=transport)
    try:
        b.write("obj", b"before")
        server.kill()
        for op in (b.list, lambda: b.read("obj"), lambda: b.write("obj2", b"x"), lambda: b.exists("obj")):
            t0 = time.monotonic()
            with pytest.raises(UnreachableError) as err:
                op()
            elapsed = time.monotonic() - t0
            assert elapsed < 15, f"took {elapsed:.1f} s"  # a bound, not a benchmark
            assert err.value.exit_code == 5
            assert f"127.0.0.1:{server.port}" in str(err.value)
        server.restart()
        assert b.read("obj") == b"before"  # recovers when the server is back
    finally:
        b.close()


@pytest.mark.parametrize("transport", ["rcd", "cli"])
def test_frozen_server_hits_our_hard_timeout(server_factory, transport):
    """A server that accepts but never answers: our own wall-clock cap (3 s here, below
    rclone's 5 s idle timeout) ends the call, kills what hangs, and the next call works."""
    server = server_factory("webdav")
    b = RcloneBackend(server.location("otp"), environ=server.environ(), timeout=3, transport=transport)
    try:
        b.write("obj", b"x")
        server.freeze()
        t0 = time.monotonic()
        with pytest.raises(UnreachableError, match="no answer within 3 s"):
            b.read("obj")
        assert time.monotonic() - t0 < 10
        server.thaw()
        assert b.read("obj") == b"x"
    finally:
        server.thaw()
        b.close()


@pytest.mark.parametrize("kind", ["sftp", "s3"])
def test_refused_port_is_unreachable(server_factory, kind):
    server = server_factory(kind)
    b = RcloneBackend(server.location("otp"), environ=server.environ())
    server.kill()
    t0 = time.monotonic()
    with pytest.raises(UnreachableError):
        b.list() if kind == "s3" else b.read("x")
    assert time.monotonic() - t0 < 15
    b.close()


@pytest.mark.parametrize("transport", ["rcd", "cli"])
def test_wrong_password_is_refused_credentials_not_unreachable(webdav_server, transport):
    # issue 18: an HTTP 401/403 is exit 3 "the remote refused the credentials", not exit 5
    env = webdav_server.environ()
    env["RCLONE_WEBDAV_PASS"] = env["RCLONE_WEBDAV_PASS"][:-4] + "AAAA"
    with RcloneBackend(webdav_server.location("x"), environ=env, transport=transport) as b:
        with pytest.raises(AuthenticationError) as err:
            b.list()
    assert "refused the credentials" in str(err.value) and "401" in str(err.value)


@pytest.mark.parametrize("transport", ["rcd", "cli"])
def test_unknown_remote_is_a_usage_error(transport):
    with RcloneBackend("nosuchremote:otp", environ=base_environ(), transport=transport) as b:
        with pytest.raises(UsageError, match="nosuchremote"):
            b.list()


@pytest.mark.parametrize("transport", ["rcd", "cli"])
def test_encrypted_rclone_config_needs_its_password(tmp_path, transport):
    conf = tmp_path / "rclone.conf"
    env = dict(base_environ(), RCLONE_CONFIG=str(conf))
    rclone = RcloneBackend(":local:/x", environ=env).binary
    subprocess.run([rclone, "config", "create", "usb", "local", "--non-interactive"], env=env, check=True, capture_output=True)
    subprocess.run(
        [rclone, "config", "encryption", "set", "--password-command", "echo throwaway-cfg-pass"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    assert conf.read_text().startswith("# Encrypted rclone configuration")
    for pw in (None, "wrong"):
        bad_env = dict(env, RCLONE_CONFIG_PASS=pw) if pw else env
        with RcloneBackend(f"usb:{tmp_path}/otp", environ=bad_env, transport=transport) as b:
            with pytest.raises(AuthenticationError) as err:  # exit 3, not a hang on a prompt
                b.list()
        assert "RCLONE_CONFIG_PASS" in err.value.hint
    with RcloneBackend(f"usb:{tmp_path}/otp", environ=dict(env, RCLONE_CONFIG_PASS="throwaway-cfg-pass"), transport=transport) as b:
        b.write("x", b"1")
        assert b.read("x") == b"1"


def test_env_remote_is_honoured(tmp_path):
    env = base_environ()
    env["RCLONE_CONFIG_MYUSB_TYPE"] = "local"
    with RcloneBackend(f"myusb:{tmp_path}/otp", environ=env) as b:
        b.write("x", b"1")
        assert [i.name for i in b.list()] == ["x"]
    assert (tmp_path / "otp/x").read_bytes() == b"1"


def test_rcd_restarts_after_it_dies(tmp_path):
    with RcloneBackend(f":local:{tmp_path}", environ=base_environ(), transport="rcd") as b:
        b.write("x", b"1")
        pid = b._ops.rcd.pid
        os.kill(pid, 9)
        b._ops.rcd._proc.wait(timeout=5)
        assert b.read("x") == b"1"
        assert b._ops.rcd.pid != pid and b._ops.rcd.starts == 2
    assert b._ops.rcd.pid is None


def test_auto_falls_back_to_processes_when_rcd_cannot_run(tmp_path, monkeypatch):
    import tempfile

    long_tmp = tmp_path / ("x" * 120)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    with RcloneBackend(f":local:{tmp_path}/vault", environ=base_environ()) as b:
        b.write("x", b"1")
        assert b.transport == "cli"
        assert b.read("x") == b"1"


def test_old_rclone_is_refused(tmp_path):
    fake = tmp_path / "rclone"
    fake.write_text("#!/bin/sh\necho 'rclone v1.50.2'\n")
    fake.chmod(0o755)
    env = dict(base_environ(), OTPBRIDGE_RCLONE=str(fake))
    with RcloneBackend(f":local:{tmp_path}", environ=env, transport="cli") as b:
        with pytest.raises(MissingDependencyError, match="1.50"):
            b.list()
    with pytest.raises(MissingDependencyError):
        RcloneBackend(":local:/x", environ=dict(env, OTPBRIDGE_RCLONE=str(tmp_path / "nope")))


@pytest.mark.parametrize("transport", ["rcd", "cli", "auto"])
def test_nothing_reaches_our_stdout(tmp_path, transport):
    """rclone's logs and errors are captured: a --json CLI's stdout must stay clean."""
    script = textwrap.dedent(
        f"""
        from otpbridge.backends.rclone import RcloneBackend
        from otpbridge.core.errors import OtpBridgeError
        with RcloneBackend(":local:{tmp_path}/v", transport="{transport}") as b:
            b.write("a", b"1"); b.read("a"); b.list(); b.delete("a")
            for bad in ("nosuchremote:x", ":webdav,url='http://127.0.0.1:9/':x"):
                try:
                    RcloneBackend(bad, transport="{transport}").list()
                except OtpBridgeError:
                    pass
        """
    )
    env = dict(base_environ(), RCLONE_CONFIG=str(tmp_path / "missing.conf"))  # makes rclone print a NOTICE
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""
    assert proc.stderr == b""


# ---------------------------------------------------------------------- auto: a process, then rcd


def _spy_cli(monkeypatch) -> list[list[str]]:
    """Every per-call rclone process (``rclone_exec.run``), by argv."""
    seen: list[list[str]] = []
    real = rx.run

    def run(argv, **kw):
        seen.append(list(argv))
        return real(argv, **kw)

    monkeypatch.setattr(rx, "run", run)
    return seen


def test_auto_first_call_is_a_process_then_one_rcd_serves_the_rest(tmp_path, monkeypatch):
    seen = _spy_cli(monkeypatch)
    ops = [
        lambda b: b.list(),
        lambda b: b.write("d/x", b"1"),
        lambda b: b.read("d/x"),
        lambda b: b.exists("d/x"),
        lambda b: b.list("d"),
        lambda b: b.delete("d/x"),
    ]
    with RcloneBackend(f":local:{tmp_path}/auto", environ=base_environ(), stats=Counter()) as auto:
        assert auto.transport == "auto"
        assert auto.list() == []
        assert auto.transport == "cli" and not isinstance(auto._ops, rclone_mod._RcdOps)
        assert [argv[1] for argv in seen if argv[1] != "version"] == ["lsjson"]
        assert auto.stats["rclone_calls"] == 1
        for op in ops[1:]:
            op(auto)
            assert auto.transport == "rcd"
        assert auto._ops.rcd.starts == 1  # one daemon for every call after the first
        assert [argv[1] for argv in seen if argv[1] != "version"] == ["lsjson"]
        pid = auto._ops.rcd.pid
    assert pid is not None and auto._ops.rcd.pid is None  # closed with the backend
    with RcloneBackend(f":local:{tmp_path}/cli", environ=base_environ(), stats=Counter(), transport="cli") as cli:
        assert cli.list() == []
        for op in ops[1:]:
            op(cli)
    # The hand-over is invisible in the counters: same meaning, same numbers.
    assert auto.stats == cli.stats
    assert auto.stats["rclone_calls"] == 7 and auto.stats["listings"] == 2


def test_auto_single_listing_never_loads_the_rcd_transport(tmp_path):
    """The no-change sync's one listing: no daemon, and not even its module (http.client…)."""
    script = textwrap.dedent(
        f"""
        import sys
        from otpbridge.backends.rclone import RcloneBackend
        with RcloneBackend(":local:{tmp_path}") as b:
            assert b.list() == []
            assert b.transport == "cli", b.transport
        assert "otpbridge.backends.rclone_rcd" not in sys.modules
        assert "http.client" not in sys.modules
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=base_environ(), timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()


def test_auto_stays_with_processes_where_rcd_failed_once(tmp_path, monkeypatch):
    starts = []
    from otpbridge.backends import rclone_rcd

    def broken_start(self):
        starts.append(1)
        raise rclone_rcd.RcdUnavailable("no unix sockets on this platform")

    monkeypatch.setattr(rclone_rcd.RcdTransport, "_start", broken_start)
    with RcloneBackend(f":local:{tmp_path}", environ=base_environ()) as b:
        b.write("x", b"1")
        b.read("x")
        b.list()
        assert b.transport == "cli"
    assert starts == [1]  # tried once, not on every call
    assert b.stats["rclone_calls"] == 4  # put, verify, read, list: the failed start is not a call


def test_dead_remote_fails_fast_on_the_first_call_and_on_the_hand_over(server_factory):
    server = server_factory("webdav")
    b = RcloneBackend(server.location("otp"), environ=server.environ())
    try:
        b.list()  # works; a process
        b2 = RcloneBackend(server.location("otp"), environ=server.environ())
        server.kill()
        for backend, op, via in ((b2, b2.list, "cli"), (b2, lambda: b2.read("x"), "rcd"), (b, lambda: b.read("x"), "rcd")):
            t0 = time.monotonic()
            with pytest.raises(UnreachableError) as err:
                op()
            assert time.monotonic() - t0 < 15  # a bound, not a benchmark
            assert err.value.exit_code == 5 and f"127.0.0.1:{server.port}" in str(err.value)
            assert backend.transport == via
        server.restart()
        assert b2.list() == []
        b2.close()
    finally:
        b.close()


def test_dead_webdav_remote_makes_sync_exit_5_quickly(server_factory, tmp_path):
    """End to end through the CLI: the no-change path's single listing is now a plain
    rclone process; against a dead server it must still be exit 5, fast, naming it."""
    from tests.support.engine import Device, base_env, make_account, ok

    server = server_factory("webdav")
    dev = Device(tmp_path / "a", server.location("vault"), "a", env=server.environ(base_env()))
    dev.write_accounts([make_account("1"), make_account("2")])
    ok(dev.init())
    ok(dev.sync())
    assert dev.sync().json()["fast_path"] is True
    server.kill()
    t0 = time.monotonic()
    res = dev.sync()
    assert time.monotonic() - t0 < 15
    assert res.code == 5, res.err
    assert f"127.0.0.1:{server.port}" in res.err
    assert len(dev.accounts()) == 2  # nothing local was touched


# ---------------------------------------------------------------------- the version check's cache


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME rules the cache folder on Linux")
def test_version_check_is_cached_across_runs_and_redone_when_the_binary_changes(tmp_path, monkeypatch):
    real = RcloneBackend(":local:/x", environ=base_environ()).binary
    log = tmp_path / "version-calls"
    fake = tmp_path / "bin" / "rclone"
    fake.parent.mkdir()

    def write_fake(version: str) -> None:
        fake.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = version ]; then echo x >> "{log}"; echo "rclone {version}"; exit 0; fi\n'
            f'exec "{real}" "$@"\n'
        )
        fake.chmod(0o755)

    write_fake("v1.75.2")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env = dict(base_environ(), OTPBRIDGE_RCLONE=str(fake))

    def new_run_lists() -> None:
        monkeypatch.setattr(rx, "_version_ok", {})  # a new otpbridge process
        with RcloneBackend(f":local:{tmp_path}/v", environ=env) as b:
            assert b.list() == []
            assert b.stats["rclone_calls"] == 1  # the version check is not an rclone call

    def version_calls() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    new_run_lists()
    assert version_calls() == 1
    cache = tmp_path / "cache" / "otpbridge" / rx.VERSION_CACHE_NAME
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert str(fake) in cache.read_text()
    new_run_lists()
    new_run_lists()
    assert version_calls() == 1  # later runs trust the cache

    # Same size, same mtime, same inode: only ctime tells the binary was rewritten.
    before = fake.stat()
    time.sleep(0.02)
    write_fake("v1.50.9")
    os.utime(fake, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = fake.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    monkeypatch.setattr(rx, "_version_ok", {})
    with RcloneBackend(f":local:{tmp_path}/v", environ=env) as b:
        with pytest.raises(MissingDependencyError, match="1.50"):
            b.list()
    assert version_calls() == 2
    monkeypatch.setattr(rx, "_version_ok", {})
    with RcloneBackend(f":local:{tmp_path}/v", environ=env) as b:
        with pytest.raises(MissingDependencyError):  # a failed check is never cached
            b.list()
    assert version_calls() == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME rules the cache folder on Linux")
def test_version_cache_location_matches_platformdirs(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.delitem(sys.modules, "platformdirs")  # our own XDG rule is used only then
    for xdg in (str(tmp_path / "xdg"), None, "relative/ignored"):
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        ours = rx.version_cache_file()
        assert ours == Path(platformdirs.user_cache_dir("otpbridge")) / rx.VERSION_CACHE_NAME


def test_unusable_version_cache_costs_a_check_not_a_failure(tmp_path, monkeypatch):
    cache = tmp_path / "cache-is-a-file"
    cache.write_text("not json")
    monkeypatch.setattr(rx, "version_cache_file", lambda: cache / "rclone-version.json")
    monkeypatch.setattr(rx, "_version_ok", {})
    with RcloneBackend(f":local:{tmp_path}/v", environ=base_environ()) as b:
        assert b.list() == []
    monkeypatch.setattr(rx, "version_cache_file", lambda: cache)  # garbage in the file
    monkeypatch.setattr(rx, "_version_ok", {})
    with RcloneBackend(f":local:{tmp_path}/v", environ=base_environ()) as b:
        assert b.list() == []
    assert cache.read_text().startswith("{")  # rewritten with a good entry


def test_one_shot_processes_get_go_gc_tuning_unless_the_user_chose(tmp_path):
    assert rx.one_shot_environ({"PATH": "/bin"}) == {"PATH": "/bin", "GOGC": "off", "GOMEMLIMIT": "128MiB"}
    assert rx.one_shot_environ({"GOGC": "50"}) == {"GOGC": "50"}
    assert rx.one_shot_environ({"GOMEMLIMIT": "1GiB"}) == {"GOMEMLIMIT": "1GiB"}
    with RcloneBackend(f":local:{tmp_path}", environ=base_environ(), transport="rcd") as b:
        b.list()
        child_env = Path(f"/proc/{b._ops.rcd.pid}/environ").read_bytes().split(b"\0") if sys.platform.startswith("linux") else []
    assert b"GOGC=off" not in child_env  # the long-lived daemon keeps Go's defaults


# ---------------------------------------------------------------------- the engine's fast path


def test_fast_path_signature_equals_the_listing_signature(tmp_path):
    """engine.fastpath.listing_signature skips importing engine/layout.py; it must stay equal to
    Listing.parse(...).signature(), or the no-change sync loses its fast path."""
    from otpbridge.backends.base import ObjectInfo
    from otpbridge.engine.fastpath import listing_signature
    from otpbridge.engine.layout import Listing, header_name, view_name

    infos = [
        ObjectInfo(header_name(1, "a" * 12, 1700000000), 900, None),
        ObjectInfo(header_name(2, "b" * 12, 1700000100), 901, 1.0),
        ObjectInfo(view_name("a" * 12, 1, 3, 1700000200), 4096, None),
        ObjectInfo(view_name("b" * 12, 2, 1, 1700000300), 8192, 2.0),
        ObjectInfo("README.txt", 12, None),
        ObjectInfo("devices/zz/odd", 0, None),
    ]
    for order in (infos, infos[::-1]):
        assert listing_signature(order) == Listing.parse(order).signature()
    with LocalBackend(str(tmp_path / "r"), environ=base_environ()) as b:
        b.write("epochs/x", b"12")
        assert listing_signature(b.list()) == Listing.parse(b.list()).signature()


def test_credentials_in_a_connection_string_never_reach_argv(tmp_path, webdav_server):
    """A remote written as ``:webdav,…,pass=…:`` holds a secret: no rclone process may get it
    on argv (readable in /proc by other users); the rcd transport carries it in a request."""
    from tests.support.servers import _USER, obscure, rclone_binary

    real = rclone_binary()
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "rclone"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    obscured = obscure(webdav_server.password)
    location = f":webdav,url='http://127.0.0.1:{webdav_server.port}/',vendor=rclone,user={_USER},pass={obscured}:cred-test"
    env = dict(base_environ(), OTPBRIDGE_RCLONE=str(wrapper))
    b = RcloneBackend(location, environ=env)
    try:
        b.write("obj", b"data")
        assert b.read("obj") == b"data"
        assert [o.name for o in b.list()] == ["obj"]
    finally:
        b.close()
    assert log.exists()  # the wrapper did run (rcd itself, at least)
    assert obscured not in log.read_text()
