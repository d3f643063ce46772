"""Review of automation and CLI error UX: each test proves a defect found in review
(it failed before the fix) or pins a new user's common mistake to one clear error line,
a hint and the SPEC §5 exit code — never a traceback.

Real parts throughout: the installed console script without a terminal, local-folder and
rclone remotes, systemd's own unit parser (``systemd-analyze verify``), real files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.paths import FIXTURES

EXE = str(Path(sys.executable).parent / "otpbridge")
TIMEOUT = 120
PASSPHRASE = "Review-Passphrase-57! orbit"
URI_A = "otpauth://totp/Acme:alice@example.org?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Acme"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTPBRIDGE_", "_OTPBRIDGE"))}
    env["OTPBRIDGE_ALLOW_INSECURE_KDF"] = "1"
    env.update(extra)
    return env


def cli(args, *, env, cwd=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXE, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, start_new_session=True,
    )


def one_clear_error(proc: subprocess.CompletedProcess, code: int, text: str = "") -> None:
    """Exit ``code``; stderr: exactly one error line (containing ``text``) and a hint."""
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("otpbridge: error:")]
    assert len(errors) == 1, proc.stderr
    assert text in errors[0], proc.stderr
    assert any(ln.startswith("hint: ") for ln in proc.stderr.splitlines()), f"no hint:\n{proc.stderr}"


def vault(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An initialised home with one account, synced once; returns (env, remote)."""
    remote = tmp_path / "remote"
    remote.mkdir()
    codes = tmp_path / "codes.txt"
    codes.write_text(URI_A + "\n")
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"), OTPBRIDGE_PASSPHRASE=PASSPHRASE)
    for args in (["init", str(remote), "--store", f"uris:{codes}", "--kdf", "insecure-test"], ["sync"]):
        proc = cli(args, env=env)
        assert proc.returncode == 0, proc.stderr
    return env, remote


# -- hooks.run_syncs: a commit's sync request must never be lost -----------------------------------


def test_hook_mark_made_while_the_runner_finishes_is_not_lost(tmp_path, monkeypatch):
    """Hook B fails to get the lock while runner R syncs; B is then delayed until R has
    unlocked and looked for a mark one last time. Before the fix B made its mark only
    after that failed attempt: R had already gone, and B's commit was never synced."""
    from otpbridge.automation import hooks

    syncs: list[str] = []
    b_failed_lock = threading.Event()
    r_done = threading.Event()
    b_thread: list[threading.Thread] = []

    def fake_sync(command, env, timeout, state_dir, log):
        syncs.append(threading.current_thread().name)
        if len(syncs) == 1:  # R's first sync runs while B commits
            b_thread[0].start()
            assert b_failed_lock.wait(10)
        return 0

    real_lock = hooks._try_lock

    @contextlib.contextmanager
    def observed_lock(path):
        with real_lock(path) as got:
            if not got and threading.current_thread().name == "B":
                b_failed_lock.set()
                r_done.wait(10)  # the unlucky schedule: B resumes only after R finished
            yield got

    monkeypatch.setattr(hooks, "_sync_once", fake_sync)
    monkeypatch.setattr(hooks, "_try_lock", observed_lock)
    state = tmp_path / "state"
    kw = {"state_dir": state, "command": ["otpbridge"], "store": tmp_path, "environ": {}}
    b_result = []
    b_thread.append(threading.Thread(target=lambda: b_result.append(hooks.run_syncs(**kw)), name="B"))
    r_result = hooks.run_syncs(**kw)
    r_done.set()
    b_thread[0].join(10)
    assert b_result and b_result[0].deferred
    # B's commit happened before B asked; a sync must start after that: R's second one.
    assert r_result.ran == 2, f"runner ran {r_result.ran} sync(s); the last commit was left unsynced"
    assert not (state / hooks.PENDING_NAME).exists()


def test_hook_burst_of_requests_coalesces_and_always_ends_with_a_sync(tmp_path, monkeypatch):
    from otpbridge.automation import hooks

    calls = []

    def fake_sync(command, env, timeout, state_dir, log):
        calls.append(1)
        if len(calls) == 1:  # three commits arrive during the first sync
            for _ in range(3):
                assert hooks.run_syncs(state_dir=state_dir, command=command, store=tmp_path, environ={}).deferred
        return 0

    monkeypatch.setattr(hooks, "_sync_once", fake_sync)
    result = hooks.run_syncs(state_dir=tmp_path / "state", command=["x"], store=tmp_path, environ={})
    assert result.ran == 2 and not result.deferred
    assert not (tmp_path / "state" / hooks.PENDING_NAME).exists()


# -- schedule: what systemd and cron are given ------------------------------------------------------

needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@needs_systemd_analyze
@pytest.mark.parametrize("venv", ["o'brien", "cash $HOME 100%x", 'say "hi" \\ there'])
def test_systemd_units_parse_with_quotes_percent_and_dollar_in_paths(tmp_path, venv):
    """systemd's own parser must accept what we write and find the console script.

    Before the fix: a path with a quote stayed a bare word ("Unbalanced quoting": no
    ExecStart) and systemd refuses quotes in an executable path anyway; a '$' in the
    executable's path was doubled although systemd expands variables only in arguments
    ("not executable"); a '%x' in the home made the Description an invalid specifier.
    """
    from otpbridge.automation import schedule

    bindir = tmp_path / venv / "bin"
    bindir.mkdir(parents=True)
    exe = bindir / "otpbridge"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    home = tmp_path / "home 100%x 'q' $USER"
    environ = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PATH": "/usr/bin:/bin"}
    plan = schedule.make_plan(home=str(home), every=3600, method="systemd", environ=environ, argv=[str(exe), "--quiet", "sync"],
                              passcommand="""sh -c 'printf %s "$X"' \\ "a b\"""")
    units = tmp_path / "units"
    units.mkdir()
    for path, text in plan.files.items():
        (units / path.name).write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(units / "otpbridge-sync.service")],
        capture_output=True, text=True, timeout=60,
    )
    complaints = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "otpbridge-sync.service" in ln]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


def test_unit_quote_keeps_only_plain_words_bare():
    from otpbridge.automation.schedule import unit_quote

    assert unit_quote("/usr/bin/otpbridge") == "/usr/bin/otpbridge"
    assert unit_quote("--quiet") == "--quiet"
    assert unit_quote("/home/o'brien/bin/otpbridge") == "\"/home/o'brien/bin/otpbridge\""
    assert unit_quote("a;b") == '"a;b"'
    assert unit_quote('50% "x" $Y \\') == '"50%% \\"x\\" $$Y \\\\"'


def test_crontab_block_without_its_end_marker_is_not_eaten(tmp_path):
    """Before the fix, 'schedule --uninstall' (and --install) skipped from our start
    marker to an end marker that a hand edit had removed: every later line of the
    user's crontab was silently deleted."""
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    table = fakes / "table"
    original = (
        "MAILTO=me@example.org\n"
        "# >>> otpbridge-sync (managed by 'otpbridge schedule') >>>\n"
        "17 * * * * OTPBRIDGE_UNATTENDED=cron /usr/bin/otpbridge --quiet sync\n"
        "0 3 * * * /usr/local/bin/nightly-backup\n"
        "30 4 * * 1 /usr/local/bin/weekly-report\n"
    )
    table.write_text(original)
    crontab = fakes / "crontab"
    crontab.write_text(
        f"#!{sys.executable}\nimport sys, pathlib\nt = pathlib.Path({str(table)!r})\n"
        "if sys.argv[1:] == ['-l']:\n    sys.stdout.write(t.read_text())\nelse:\n    t.write_text(sys.stdin.read())\n"
    )
    crontab.chmod(0o755)
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"), OTPBRIDGE_CRONTAB=str(crontab), HOME=str(tmp_path))
    for args in (["schedule", "--uninstall", "--method", "cron"], ["schedule", "--install", "--method", "cron"]):
        proc = cli(args, env=env)
        one_clear_error(proc, 1, "end line")
        assert table.read_text() == original


# -- CLI error UX ----------------------------------------------------------------------------------


def test_restore_without_into_and_without_config_is_one_usage_error(tmp_path):
    """Was a KeyError traceback ('stores') for 'restore REMOTE' on a new machine."""
    env, remote = vault(tmp_path)
    fresh = base_env(OTPBRIDGE_HOME=str(tmp_path / "new-machine"), OTPBRIDGE_PASSPHRASE=PASSPHRASE)
    one_clear_error(cli(["restore", str(remote)], env=fresh), 2, "no --into")
    one_clear_error(cli(["restore"], env=fresh), 2, "no vault configured")


def test_convert_onto_itself_is_refused_and_changes_nothing(tmp_path):
    src = tmp_path / "a.json"
    shutil.copy(FIXTURES / "aegis" / "aegis_plain.json", src)
    before = src.read_bytes()
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"))
    for args in ([str(src), str(src)], [f"aegis:{src}", f"aegis:{src}", "--merge"], [f"aegis:{src}", f"uris:{src}", "--merge"]):
        one_clear_error(cli(["convert", *args], env=env), 2, "the same file")
    assert src.read_bytes() == before
    assert not list(tmp_path.glob("a.json*.bak")) and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_missing_file_is_a_usage_error_whether_or_not_the_kind_is_named(tmp_path):
    """Exit 4 means tampered or corrupt (SPEC §5); a typo in a path is neither."""
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"))
    one_clear_error(cli(["list", str(tmp_path / "nope.json")], env=env), 2, "does not exist")
    for args in (["list", f"uris:{tmp_path}/nope.txt"], ["code", f"keepass:{tmp_path}/nope.kdbx"],
                 ["convert", f"aegis:{tmp_path}/nope.json", f"uris:{tmp_path}/out.txt"]):
        one_clear_error(cli(args, env=env), 2, "no such file")
    assert not (tmp_path / "out.txt").exists()


def test_list_of_a_folder_that_is_not_a_pass_store(tmp_path):
    folder = tmp_path / "Documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"))
    one_clear_error(cli(["list", f"pass:{folder}"], env=env), 2, "not a pass store")
    (folder / ".gpg-id").write_text("ABCDEF\n")  # an empty but real store lists nothing, exit 0
    proc = cli(["list", f"pass:{folder}", "--json"], env=env)
    assert proc.returncode == 0 and '"accounts": []' in proc.stdout, proc.stderr


def test_wrong_store_password_has_a_hint(tmp_path):
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"), OTPBRIDGE_STORE_PASSWORD="test1")
    one_clear_error(cli(["list", f"aegis:{FIXTURES}/aegis/aegis.encrypted.json"], env=env), 3, "wrong password")


def test_new_user_mistakes_each_give_one_line_a_hint_and_the_exit_code(tmp_path):
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"), OTPBRIDGE_PASSPHRASE=PASSPHRASE)
    codes = tmp_path / "c.txt"
    codes.write_text(URI_A + "\n")
    one_clear_error(cli(["sync"], env=env), 2, "no vault configured")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    init = ["--store", f"uris:{codes}", "--kdf", "insecure-test"]
    one_clear_error(cli(["init", str(foreign), *init], env=env), 2, "not empty")
    one_clear_error(cli(["init", str(tmp_path / "r"), "--store", f"keepas:{tmp_path}/x.kdbx"], env=env), 2, "unknown store kind")
    rclone_env = {**env, "RCLONE_CONFIG": str(tmp_path / "rclone.conf")}
    one_clear_error(cli(["init", "nosuchremote:otp", *init], env=rclone_env), 2, "nosuchremote")
    started = time.monotonic()
    dead = cli(["init", ":webdav,url='http://127.0.0.1:9':otp", *init], env=rclone_env, timeout=60)
    one_clear_error(dead, 5, "unreachable")
    assert time.monotonic() - started < 30
    assert not list(tmp_path.glob("home/config.toml"))  # nothing was configured by the failures


def test_wrong_backup_passphrase_and_init_json(tmp_path):
    env, remote = vault(tmp_path)
    one_clear_error(cli(["passphrase", "check"], env={**env, "OTPBRIDGE_PASSPHRASE": "not it at all"}), 3, "does not open")
    # a second device joining through a RELATIVE folder: --json shows the absolute path stored
    other = base_env(OTPBRIDGE_HOME=str(tmp_path / "home2"), OTPBRIDGE_PASSPHRASE=PASSPHRASE)
    proc = cli(["init", "remote", "--json", "--dry-run"], env=other, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    planned = json.loads(proc.stdout)
    assert planned["dry_run"] is True and planned["would"] == "join" and planned["remote"] == str(remote)
    proc = cli(["init", "remote", "--json"], env=other, cwd=tmp_path)
    joined = json.loads(proc.stdout)
    assert joined["created"] is False and joined["remote"] == str(remote) and joined["dry_run"] is False


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    env, _remote = vault(tmp_path)
    Path(tmp_path / "codes.txt").write_text(URI_A + "\notpauth://totp/B:b?secret=KRUGS4ZANFZSAYJAORSXG5BAONSWG4TF\n")
    env = {k: v for k, v in env.items() if k != "OTPBRIDGE_PASSPHRASE"}
    env["OTPBRIDGE_PASSCOMMAND"] = f"{sys.executable} -c 'import time; time.sleep(30)'"
    proc = subprocess.Popen([EXE, "sync"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(2.0)  # waiting for the passphrase command
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
