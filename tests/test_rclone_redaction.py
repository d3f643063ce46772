"""rclone credentials in connection strings (issue 17, item 5): never shown, logged or on argv.

The option names masked are the ones rclone itself marks as passwords or sensitive
(``rclone config providers``), kept in ``bridge/data/rclone-sensitive.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile

import pytest

from otpbridge.backends import rclone_exec as rx
from otpbridge.backends.rclone import RcloneBackend
from otpbridge.core.remotes import redact_remote, redact_text, sensitive_for
from tests.support.cli import CONSOLE_SCRIPT
from tests.support.engine import base_env
from tests.support.paths import REPO
from tests.support.servers import base_environ, obscure, rclone_binary


def _generator():
    spec = importlib.util.spec_from_file_location("gen_rclone_sensitive", REPO / "scripts" / "gen_rclone_sensitive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sensitive_option_list_is_the_one_rclone_publishes():
    gen = _generator()
    fresh = gen.generate(rclone_binary())
    stored = json.loads(gen.OUT.read_text(encoding="utf-8"))
    if fresh["rclone"] == stored["rclone"]:
        assert stored == fresh, "run python scripts/gen_rclone_sensitive.py"
    else:  # another rclone: every option it marks must still be masked
        missing = {(b, o) for b, opts in fresh["backends"].items() for o in opts if o not in sensitive_for(b)}
        assert not missing, f"rclone {fresh['rclone']} marks more options sensitive: run scripts/gen_rclone_sensitive.py"
    assert {"pass", "bearer_token", "user"} <= sensitive_for("webdav")
    assert {"secret_access_key", "access_key_id", "session_token"} <= sensitive_for("s3")


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (":webdav,url='http://127.0.0.1:9/',user=u,pass=OBSC,vendor=rclone:otp", ":webdav,url=http://127.0.0.1:9/,user=***,pass=***,vendor=rclone:otp"),
        (":sftp,host=h.example,user=u,pass=OBSC,key_pem='-----BEGIN':otp", ":sftp,host=***,user=***,pass=***,key_pem=***:otp"),
        (":s3,provider=AWS,access_key_id=AK,secret_access_key=SK,session_token=T:b/p", ":s3,provider=AWS,access_key_id=***,secret_access_key=***,session_token=***:b/p"),
        (":crypt,remote=nas:x,password=P,password2=Q:otp", ":crypt,remote=nas:x,password=***,password2=***:otp"),
        ("nas,pass=OBSC:otp", "nas,pass=***:otp"),
        ("nas:backups/otp", "nas:backups/otp"),
        (":webdav,url=http://h:9,pass=OBSC:otp", ":webdav,url=http:***"),  # cut where rclone cuts it
    ],
)
def test_remote_strings_are_shown_without_credentials(location, shown):
    got = redact_remote(location)
    for secret in ("OBSC", "AK", "SK", "=T", "P,", "Q:", "BEGIN", "h.example"):
        assert secret not in got.replace("password2=***", ""), got
    if not shown.endswith("***"):
        assert got == shown


def test_free_text_redaction():
    assert redact_text("x pass=abc,bearer_token='a,b' http://u:p@h/ max-keys=5") == "x pass=***,bearer_token=*** http://***@h/ max-keys=5"


def _dav(webdav_server, path: str) -> tuple[str, str]:
    obscured = obscure(webdav_server.password)
    return f":webdav,url='http://127.0.0.1:{webdav_server.port}/',user=otpuser,pass={obscured},vendor=rclone:{path}", obscured


def _argv_spy(monkeypatch) -> list[list[str]]:
    seen: list[list[str]] = []
    real_run, real_popen = rx.run, rx.subprocess.Popen

    def run(argv, **kw):
        seen.append(list(argv))
        return real_run(argv, **kw)

    class Popen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, argv, *a, **kw):
            seen.append(list(argv))
            super().__init__(argv, *a, **kw)

    monkeypatch.setattr(rx, "run", run)
    monkeypatch.setattr("otpbridge.backends.rclone_rcd.subprocess.Popen", Popen)
    return seen


@pytest.mark.parametrize("why", ["long-tmpdir", "forced-cli"])
def test_connection_string_credentials_never_reach_argv_without_rcd(webdav_server, monkeypatch, tmp_path, why):
    """rcd cannot start (a TMPDIR longer than a unix socket path may be) or is not wanted:
    the per-call processes get the parameters as RCLONE_CONFIG_* in their environment."""
    seen = _argv_spy(monkeypatch)
    transport = "cli" if why == "forced-cli" else "auto"
    if why == "long-tmpdir":
        long_tmp = tmp_path / ("t" * 60) / ("u" * 60)
        long_tmp.mkdir(parents=True)
        monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    location, obscured = _dav(webdav_server, f"argv-{why}")
    with RcloneBackend(location, environ=base_environ(), transport=transport) as b:
        b.write("obj", b"x")
        assert b.read("obj") == b"x"
        assert [i.name for i in b.list()] == ["obj"]
        assert b.transport == "cli"
        assert obscured not in b.describe()
    flat = "\0".join("\0".join(argv) for argv in seen)
    assert len(seen) >= 3
    assert obscured not in flat and webdav_server.password not in flat and "pass=" not in flat
    assert (webdav_server.disk_path(f"argv-{why}") / "obj").read_bytes() == b"x"


def test_unquoted_url_is_refused_before_rclone_runs_and_shows_no_password(monkeypatch):
    seen = _argv_spy(monkeypatch)
    with pytest.raises(rx.UsageError) as err:
        RcloneBackend(":webdav,url=http://127.0.0.1:9,pass=UNQUOTEDSECRET:otp", environ=base_environ())
    assert "UNQUOTEDSECRET" not in str(err.value) and "quote" in (err.value.hint or "")
    assert seen == []


def test_status_json_and_the_run_log_never_show_connection_string_credentials(webdav_server, tmp_path):
    location, obscured = _dav(webdav_server, "status")
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"), RCLONE_CONFIG="/dev/null")
    env.update({k: v for k, v in base_environ().items() if k == "PATH"})
    env["OTPBRIDGE_RCLONE"] = rclone_binary()

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CONSOLE_SCRIPT, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)

    uris = tmp_path / "codes.txt"
    uris.write_text("otpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP\n")
    outputs = [cli("init", location, "--store", f"uris:{uris}", "--kdf", "insecure-test", "--json")]
    assert outputs[0].returncode == 0, outputs[0].stderr
    outputs += [cli("sync"), cli("status"), cli("status", "--json"), cli("backup", "--json")]
    webdav_server.freeze()
    try:
        uris.write_text("otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXQ\n")
        env["OTPBRIDGE_UNATTENDED"] = "test"
        failed = cli("sync")  # unreachable: the error, the log and the failure record
        outputs += [failed, cli("status"), cli("status", "--json")]
    finally:
        webdav_server.thaw()
    assert failed.returncode == 5, failed.stderr
    status = json.loads(outputs[-1].stdout)
    assert status["remote"].startswith(":webdav,url=") and "pass=***" in status["remote"]
    texts = [p.stdout + p.stderr for p in outputs]
    state = tmp_path / "home" / "state"
    texts += [p.read_text() for p in state.iterdir() if p.is_file() and p.suffix in (".log", ".json")]
    assert any("pass=***" in t for t in texts)
    for text in texts:
        assert obscured not in text and webdav_server.password not in text
    assert os.path.exists(state / "otpbridge.log")
