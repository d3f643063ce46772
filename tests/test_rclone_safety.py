"""Hostile remote strings and object names run nothing; secrets never reach argv or messages."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otpbridge.backends import rclone_exec as rx
from otpbridge.backends.base import validate_name
from otpbridge.backends.rclone import RcloneBackend
from otpbridge.core.errors import OtpBridgeError, UnreachableError, UsageError
from tests.support.servers import base_environ

BACKENDS_DIR = Path(__file__).resolve().parents[1] / "backends"


def hostile_parts(marker: Path) -> list[str]:
    return [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"a\"; touch {marker}; echo \"",
        f"a'; touch {marker}; echo '",
        f"x;touch {marker}",
        f"x|touch {marker}",
        f"x && touch {marker}",
        "$HOME",
    ]


@pytest.mark.parametrize("transport", ["rcd", "cli"])
def test_hostile_remote_paths_are_taken_literally(tmp_path, transport):
    marker = tmp_path / "pwned"
    for i, part in enumerate(hostile_parts(marker)):
        folder = tmp_path / f"case{i}"
        location = f":local:{folder}/{part}/vault"
        with RcloneBackend(location, environ=base_environ(), transport=transport) as b:
            b.write("obj", b"data")
            assert b.read("obj") == b"data"
            assert [i.name for i in b.list()] == ["obj"]
        assert (folder / part / "vault" / "obj").read_bytes() == b"data"  # the literal folder name
        assert not marker.exists(), f"{part!r} ran a command"


@pytest.mark.parametrize(
    "location",
    ["remote:otp\n--config=/tmp/x", "remote:otp\r", "remote:\0x", "-remote:otp", "--config=/etc/passwd"],
)
def test_control_characters_and_options_are_refused(location):
    with pytest.raises(UsageError):
        RcloneBackend(location, environ=base_environ())


@pytest.mark.parametrize("transport", ["rcd", "cli"])
def test_hostile_object_names_are_refused_before_rclone_runs(tmp_path, transport):
    marker = tmp_path / "pwned"
    names = [*hostile_parts(marker), "a\nb", "-x/../../etc/passwd", "--config", "a/../../b", "[x]", "*", "a{b}"]
    with RcloneBackend(f":local:{tmp_path}/vault", environ=base_environ(), transport=transport) as b:
        for name in names:
            for op in (b.read, b.exists, b.delete, lambda n: b.write(n, b"x"), b.list):
                with pytest.raises(UsageError):
                    op(name)
        assert b.stats["rclone_calls"] == 0
    assert not marker.exists()
    assert not (tmp_path / "vault").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=40))
def test_validate_name_accepts_only_the_safe_charset(name):
    try:
        validate_name(name)
    except UsageError:
        return
    assert re.fullmatch(r"[A-Za-z0-9._/-]+", name)
    assert not name.startswith(("/", ".", "-"))
    assert ".." not in name.split("/") and "" not in name.split("/")
    assert all(not seg.startswith((".", "-")) for seg in name.split("/"))


def test_connection_string_secrets_stay_out_of_messages():
    secret = "S3cr3tValue"
    location = f":webdav,url='http://user:{secret}@127.0.0.1:9/',pass={secret},bearer_token={secret}:otp"
    with RcloneBackend(location, environ=base_environ()) as b:
        assert secret not in b.describe()
        assert "127.0.0.1:9" in b.describe()
        with pytest.raises(OtpBridgeError) as err:
            b.list()
    assert secret not in str(err.value) and secret not in repr(err.value)
    assert "127.0.0.1:9" in str(err.value)


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


@pytest.mark.parametrize("transport", ["rcd", "cli"])
def test_no_secret_in_any_argv(webdav_server, monkeypatch, transport):
    seen = _argv_spy(monkeypatch)
    env = webdav_server.environ()
    env["OTPBRIDGE_PASSPHRASE"] = "backup-passphrase-never-for-rclone"
    with RcloneBackend(webdav_server.location("argv"), environ=env, transport=transport) as b:
        b.write("obj", b"x")
        b.read("obj")
        if transport == "rcd":
            pid = b._ops.rcd.pid
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            child_env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            rc_pass = [e for e in child_env if e.startswith(b"RCLONE_RC_PASS=")]
            assert len(rc_pass) == 1 and len(rc_pass[0]) > 30
            assert rc_pass[0].split(b"=", 1)[1] not in cmdline
            assert not any(e.startswith(b"OTPBRIDGE_") for e in child_env)  # our secrets stay ours
    assert seen
    flat = "\0".join("\0".join(argv) for argv in seen)
    for secret in (webdav_server.password, env["RCLONE_WEBDAV_PASS"], env["OTPBRIDGE_PASSPHRASE"]):
        assert secret not in flat
    assert all("--" in argv for argv in seen if argv[1] not in ("version", "rcd", "obscure"))


def test_child_environment_drops_risky_settings():
    env = rx.child_environ(
        {
            "PATH": "/bin",
            "RCLONE_CONFIG": "/c.conf",
            "RCLONE_CONFIG_PASS": "cfgpass",
            "RCLONE_CONFIG_NAS_TYPE": "sftp",
            "RCLONE_RC_NO_AUTH": "true",
            "RCLONE_DRY_RUN": "true",
            "RCLONE_PROGRESS": "true",
            "OTPBRIDGE_PASSPHRASE": "x",
            "OTPBRIDGE_STORE_PASSWORD": "y",
        }
    )
    assert env == {"PATH": "/bin", "RCLONE_CONFIG": "/c.conf", "RCLONE_CONFIG_PASS": "cfgpass", "RCLONE_CONFIG_NAS_TYPE": "sftp"}


def test_dry_run_in_environment_cannot_fake_a_write(tmp_path):
    env = dict(base_environ(), RCLONE_DRY_RUN="true", RCLONE_IGNORE_EXISTING="true")
    with RcloneBackend(f":local:{tmp_path}", environ=env, transport="cli") as b:
        b.write("obj", b"1")
        b.write("obj", b"2")
    assert (tmp_path / "obj").read_bytes() == b"2"


def test_rclone_python_and_shells_are_not_used():
    for path in BACKENDS_DIR.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"[(,]\s*shell\s*=\s*True", text), path
        assert "import rclone_python" not in text and "from rclone_python" not in text, path
        assert "os.system" not in text and "os.popen" not in text, path


def test_redaction():
    # user is one of the options rclone marks sensitive (rclone config providers)
    assert rx.redact("x pass=abc,user=u key='a,b' http://u:p@h/ max-keys=5") == "x pass=***,user=*** key=*** http://***@h/ max-keys=5"
    assert rx.describe_location(":s3,provider=AWS,access_key_id=AK,secret_access_key=SK:bucket/p") == (
        ":s3,provider=AWS,access_key_id=***,secret_access_key=***:bucket/p"
    )
    assert rx.describe_location("nas:backups/otp") == "nas:backups/otp"


def test_unreachable_message_names_the_remote(tmp_path):
    with RcloneBackend(":sftp,host=127.0.0.1,port=9,shell_type=none:otp", environ=base_environ()) as b:
        # rclone marks sftp's host as sensitive, so it is masked; the port and the rest are shown
        with pytest.raises(UnreachableError, match=r"rclone remote :sftp,host=\*\*\*,port=9,shell_type=none:otp"):
            b.read("x")
    assert os.path.isdir(tmp_path)
