"""Secret sources (SPEC §5): exactly one of file, fd, env, command, keyring or a TTY.

The console-script tests run ``otpbridge`` the way cron or a git hook does: stdin is
/dev/null and the process has no controlling terminal (``start_new_session=True``), with
a timeout so that a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otpbridge.core import secrets as secrets_mod
from otpbridge.core.errors import UsageError
from otpbridge.core.secrets import Secret, SecretSource, store_password
from tests.support.cli import run_console
from tests.support.paths import FIXTURES

EXE = str(Path(sys.executable).parent / "otpbridge")
AEGIS_ENC = FIXTURES / "aegis" / "aegis_encrypted.json"  # password "test", 7 accounts
TIMEOUT = 120


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTPBRIDGE_")}
    env.update(extra)
    return env


def run_cli(args, *, env, pass_fds=(), timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return run_console(args, env=env, pass_fds=pass_fds, timeout=timeout)


def source(**kw) -> SecretSource:
    kw.setdefault("environ", {})
    return SecretSource(what="backup passphrase", env_var="OTPBRIDGE_PASSPHRASE", command_var="OTPBRIDGE_PASSCOMMAND", **kw)


# -- the Secret type ----------------------------------------------------------------


def test_secret_never_prints_or_pickles():
    s = Secret("hunter2-xyz")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and "hunter2" not in f"{s}"
    assert s.reveal() == "hunter2-xyz" and s.encode() == b"hunter2-xyz"
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


# -- each source, in process ----------------------------------------------------------


def test_file_source_reads_first_line(tmp_path):
    f = tmp_path / "pp"
    f.write_text("correct horse\r\nsecond line\n")
    assert source(file=str(f)).get().reveal() == "correct horse"


def test_missing_file_is_usage_error(tmp_path):
    with pytest.raises(UsageError) as info:
        source(file=str(tmp_path / "nope")).get()
    assert info.value.exit_code == 2 and "nope" in str(info.value)


def test_fd_source():
    r, w = os.pipe()
    os.write(w, b"from a pipe\n")
    os.close(w)
    assert source(fd=r).get().reveal() == "from a pipe"
    with pytest.raises(OSError):
        os.fstat(r)  # the descriptor is consumed and closed


def test_bad_fd_is_usage_error():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(UsageError):
        source(fd=r).get()


def test_env_source():
    assert source(environ={"OTPBRIDGE_PASSPHRASE": "from env"}).get().reveal() == "from env"


def test_command_source_uses_argv_not_a_shell():
    # A shell would expand $HOME and run the $(…); shlex + argv must print them verbatim.
    cmd = "printf '%s\\n' 'a b;$HOME $(false)'"
    got = source(environ={"OTPBRIDGE_PASSCOMMAND": cmd}).get().reveal()
    assert got == "a b;$HOME $(false)"


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ("false", "exit code 1"),
        ("/nonexistent/otp-helper", "could not run"),
        ("true", "printed nothing"),
        ("", "empty"),
    ],
)
def test_command_failures_are_usage_errors(command, needle):
    with pytest.raises(UsageError) as info:
        source(environ={"OTPBRIDGE_PASSCOMMAND": command}).get()
    assert needle in str(info.value)


def test_more_than_one_source_is_refused(tmp_path):
    f = tmp_path / "pp"
    f.write_text("x\n")
    with pytest.raises(UsageError) as info:
        source(file=str(f), environ={"OTPBRIDGE_PASSPHRASE": "y"}).get()
    assert info.value.exit_code == 2
    assert "more than one" in str(info.value) and "OTPBRIDGE_PASSPHRASE" in str(info.value)
    with pytest.raises(UsageError):
        source(environ={"OTPBRIDGE_PASSPHRASE": "y", "OTPBRIDGE_PASSCOMMAND": "echo z"}).get()


def test_no_source_and_no_tty_says_how(monkeypatch):
    monkeypatch.setattr(secrets_mod, "has_tty", lambda: False)
    with pytest.raises(UsageError) as info:
        source().get()
    assert info.value.exit_code == 2
    assert "OTPBRIDGE_PASSPHRASE" in info.value.hint and "--passphrase-file" in info.value.hint
    new = SecretSource(what="new backup passphrase", env_var="OTPBRIDGE_NEW_PASSPHRASE", command_var="OTPBRIDGE_NEW_PASSCOMMAND", environ={})
    with pytest.raises(UsageError) as info:
        new.get()
    assert "--new-passphrase-file" in info.value.hint and "OTPBRIDGE_NEW_PASSPHRASE" in info.value.hint


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), min_size=1, max_size=64))
def test_any_passphrase_survives_file_fd_and_env(tmp_path_factory, value):
    f = tmp_path_factory.mktemp("pp") / "pp"
    f.write_text(value + "\n", encoding="utf-8")
    assert source(file=str(f)).get().reveal() == value
    r, w = os.pipe()
    os.write(w, (value + "\n").encode())
    os.close(w)
    assert source(fd=r).get().reveal() == value
    assert source(environ={"OTPBRIDGE_PASSPHRASE": value}).get().reveal() == value


# -- store passwords, in process -------------------------------------------------------


def test_store_password_order(tmp_path, monkeypatch):
    monkeypatch.setattr(secrets_mod, "has_tty", lambda: False)
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    env = {"OTPBRIDGE_STORE_PASSWORD": "generic", "OTPBRIDGE_KEEPASS_PASSWORD": "kp", "MINE": "named"}
    assert store_password({"password-file": str(f)}, store_label="x", kind="aegis", environ=env).reveal() == "from-file"
    assert store_password({"password-env": "MINE"}, store_label="x", kind="aegis", environ=env).reveal() == "named"
    assert store_password({}, store_label="x", kind="keepass", environ=env).reveal() == "kp"
    assert store_password({}, store_label="x", kind="aegis", environ=env).reveal() == "generic"
    assert store_password({}, store_label="x", kind="aegis", environ={}, required=False) is None
    with pytest.raises(UsageError):
        store_password({"password-env": "UNSET"}, store_label="x", kind="aegis", environ={})
    with pytest.raises(UsageError) as info:
        store_password({"password-file": str(f), "password-env": "MINE"}, store_label="x", kind="aegis", environ=env)
    assert "more than one" in str(info.value)
    with pytest.raises(UsageError) as info:
        store_password({}, store_label="aegis:x.json", kind="aegis", environ={})
    assert "password-env" in info.value.hint and "OTPBRIDGE_STORE_PASSWORD" in info.value.hint


# -- the console script without a terminal: store passwords -----------------------------


def _spec(query: str = "") -> str:
    return f"aegis:{AEGIS_ENC}" + (f"?{query}" if query else "")


def test_cli_store_password_file(tmp_path):
    f = tmp_path / "pw"
    f.write_text("test\n")
    proc = run_cli(["list", _spec(f"password-file={f}"), "--json"], env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"kind"') == 7


def test_cli_store_password_env():
    proc = run_cli(["list", _spec("password-env=AEGIS_PW"), "--json"], env=clean_env(AEGIS_PW="test"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"kind"') == 7


def test_cli_store_password_generic_env():
    proc = run_cli(["list", _spec(), "--json"], env=clean_env(OTPBRIDGE_STORE_PASSWORD="test"))
    assert proc.returncode == 0, proc.stderr


def test_cli_store_password_wrong_is_exit_3():
    proc = run_cli(["list", _spec()], env=clean_env(OTPBRIDGE_STORE_PASSWORD="test1"))
    assert proc.returncode == 3, proc.stderr
    assert "test1" not in proc.stderr


def test_cli_store_password_two_options_is_exit_2(tmp_path):
    f = tmp_path / "pw"
    f.write_text("test\n")
    proc = run_cli(["list", _spec(f"password-file={f}&password-env=AEGIS_PW")], env=clean_env(AEGIS_PW="test"))
    assert proc.returncode == 2 and "more than one" in proc.stderr


def test_cli_store_password_none_and_no_tty_fails_fast():
    started = time.monotonic()
    proc = run_cli(["list", _spec()], env=clean_env(), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "no terminal" in proc.stderr and "password-env" in proc.stderr and "OTPBRIDGE_STORE_PASSWORD" in proc.stderr
    assert time.monotonic() - started < 30
    assert "Traceback" not in proc.stderr


# -- the console script without a terminal: the backup passphrase ------------------------
PASSPHRASE = "tr0ub4dor&3 staple"


@pytest.fixture
def vault_home(tmp_path):
    """An initialised home (insecure test KDF) with one account in a uris: store."""
    from tests.test_automation import init_vault

    return init_vault(tmp_path, PASSPHRASE)


def test_cli_passphrase_file(vault_home, tmp_path):
    f = tmp_path / "pp"
    f.write_text(PASSPHRASE + "\n")
    proc = run_cli(["--passphrase-file", str(f), "passphrase", "check"], env=vault_home.env())
    assert proc.returncode == 0, proc.stderr


def test_cli_passphrase_fd(vault_home):
    r, w = os.pipe()
    os.write(w, (PASSPHRASE + "\n").encode())
    os.close(w)
    try:
        proc = run_cli(["--passphrase-fd", str(r), "passphrase", "check"], env=vault_home.env(), pass_fds=(r,))
    finally:
        os.close(r)
    assert proc.returncode == 0, proc.stderr


def test_cli_passphrase_env(vault_home):
    proc = run_cli(["passphrase", "check"], env=vault_home.env(OTPBRIDGE_PASSPHRASE=PASSPHRASE))
    assert proc.returncode == 0, proc.stderr


def test_cli_passphrase_command(vault_home, tmp_path):
    helper = tmp_path / "print-pp"
    helper.write_text(f"#!{sys.executable}\nprint({PASSPHRASE!r})\n")
    helper.chmod(0o700)
    proc = run_cli(["passphrase", "check"], env=vault_home.env(OTPBRIDGE_PASSCOMMAND=str(helper)))
    assert proc.returncode == 0, proc.stderr


def test_cli_passphrase_wrong_is_exit_3(vault_home):
    proc = run_cli(["passphrase", "check"], env=vault_home.env(OTPBRIDGE_PASSPHRASE="not it"))
    assert proc.returncode == 3, proc.stderr


def test_cli_passphrase_two_sources_is_exit_2(vault_home, tmp_path):
    f = tmp_path / "pp"
    f.write_text(PASSPHRASE + "\n")
    proc = run_cli(["--passphrase-file", str(f), "passphrase", "check"], env=vault_home.env(OTPBRIDGE_PASSPHRASE=PASSPHRASE))
    assert proc.returncode == 2 and "more than one" in proc.stderr


def test_cli_passphrase_none_and_no_tty_fails_fast(vault_home):
    started = time.monotonic()
    proc = run_cli(["passphrase", "check"], env=vault_home.env(), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "OTPBRIDGE_PASSPHRASE" in proc.stderr and "OTPBRIDGE_PASSCOMMAND" in proc.stderr
    assert time.monotonic() - started < 30
    assert "Traceback" not in proc.stderr
