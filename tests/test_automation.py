"""Unattended use: no-TTY sync, the run log, schedule (systemd / cron), the git hook and the
pass extension, shell completion and --help examples.

Everything runs the installed console script as cron or a hook would: stdin is /dev/null,
no controlling terminal (``start_new_session=True``), and a timeout instead of a hang.
systemctl and crontab are replaced by recording scripts (OTPBRIDGE_SYSTEMCTL /
OTPBRIDGE_CRONTAB) so no test touches the user's real timers; the units and crontab lines
themselves are executed for real.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import run_console
from tests.support.gpg import needs_pass

EXE = str(Path(sys.executable).parent / "otpbridge")
TIMEOUT = 120
PASSPHRASE = "Zebra-Passphrase-91! staple"
SECRET_B32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits
URI_A = f"otpauth://totp/Acme:alice@example.org?secret={SECRET_B32}&issuer=Acme"
URI_B = "otpauth://totp/Beta:bob?secret=KRUGS4ZANFZSAYJAORSXG5BAONSWG4TF&issuer=Beta"
URI_C = "otpauth://totp/Gamma:carol?secret=MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U&issuer=Gamma"



# -- helpers ---------------------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTPBRIDGE_", "_OTPBRIDGE"))}
    env["OTPBRIDGE_ALLOW_INSECURE_KDF"] = "1"
    env.update(extra)
    return env


def cli(args, *, env, timeout=TIMEOUT, pass_fds=()) -> subprocess.CompletedProcess:
    return run_console(args, env=env, timeout=timeout, pass_fds=pass_fds)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


@dataclass
class Home:
    """One device: an OTPBRIDGE_HOME, a store, and the shared remote folder."""

    root: Path
    remote: Path
    store: str
    name: str = "dev1"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def log(self) -> Path:
        return self.state_dir / "otpbridge.log"

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(OTPBRIDGE_HOME=str(self.home), **extra)

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return cli(list(args), env=self.env(**extra))

    def log_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.state_dir.glob("otpbridge.log*")))


def init_vault(root: Path, passphrase: str, *, remote: Path | None = None, store: str | None = None, name: str = "dev1", uris: str = URI_A) -> Home:
    """An initialised home (insecure test KDF) whose store holds ``uris``; synced once."""
    root.mkdir(parents=True, exist_ok=True)
    remote = remote or (root / "remote")
    remote.mkdir(parents=True, exist_ok=True)
    if store is None:
        codes = root / "codes.txt"
        codes.write_text(uris + "\n" if uris else "")
        store = f"uris:{codes}"
    h = Home(root=root, remote=remote, store=store, name=name)
    ok(h.run("init", str(remote), "--store", store, "--device", name, "--kdf", "insecure-test", OTPBRIDGE_PASSPHRASE=passphrase))
    ok(h.run("sync", OTPBRIDGE_PASSPHRASE=passphrase))
    return h


def passcommand_helper(folder: Path, passphrase: str) -> str:
    helper = folder / "print-passphrase"
    helper.write_text(f"#!{sys.executable}\nprint({passphrase!r})\n")
    helper.chmod(0o700)
    return str(helper)


# -- the console script without a terminal (SPEC §5) ------------------------------------------------


def test_sync_without_tty_needs_a_passphrase_only_for_changes(tmp_path):
    h = init_vault(tmp_path / "a", PASSPHRASE)
    started = time.monotonic()
    proc = h.run("sync")  # no source at all, nothing changed: the fast path needs no key
    assert proc.returncode == 0, proc.stderr
    codes = Path(h.store.split(":", 1)[1])
    codes.write_text(codes.read_text() + URI_B + "\n")
    proc = h.run("sync")
    assert proc.returncode == 2, proc.stderr
    assert "no terminal" in proc.stderr and "OTPBRIDGE_PASSCOMMAND" in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60  # never a hang waiting for a prompt
    proc = h.run("sync", "--json", OTPBRIDGE_PASSCOMMAND=passcommand_helper(tmp_path, PASSPHRASE))
    ok(proc)
    assert json.loads(proc.stdout)["uploaded"]


# -- the run log --------------------------------------------------------------------------------------


def test_log_records_runs_and_never_secrets(tmp_path):
    h = init_vault(tmp_path / "a", PASSPHRASE)
    store_pw = "Store-Password-77#x"
    ok(h.run("list", h.store, "--show-secrets"))
    ok(h.run("code", h.store, "--json"))
    ok(h.run("--quiet", "sync", OTPBRIDGE_PASSPHRASE=PASSPHRASE))
    assert h.run("passphrase", "check", OTPBRIDGE_PASSPHRASE="wrong " + PASSPHRASE).returncode == 3
    assert h.run("sync", "--dry-run", OTPBRIDGE_PASSPHRASE=PASSPHRASE, OTPBRIDGE_STORE_PASSWORD=store_pw).returncode == 0
    assert h.run("list", f"aegis:{tmp_path}/missing.json?password-env=STOREPW", STOREPW=store_pw).returncode != 0
    log = h.log
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = h.log_text()
    for needle in (PASSPHRASE, store_pw, SECRET_B32, SECRET_B32.lower(), "otpauth://"):
        assert needle not in text, f"{needle!r} leaked into the log"
    # timestamp, pid, command and outcome on every end line
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[\d+\] INFO sync: exit 0 \(ok\)", text, re.M)
    assert re.search(r"ERROR passphrase: exit 3 \(wrong passphrase or password\)", text)
    assert "password-env" not in text  # store options are cut from logged arguments


def test_log_rotates_small_and_private(tmp_path, monkeypatch):
    from otpbridge.automation import runlog as logfile

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(logfile, "LOG_MAX_BYTES", 1500)
    for _ in range(40):
        assert logfile.logged(["--home", str(home), "formats"], lambda _a: 0, environ={}) == 0
    files = sorted((home / "state").glob("otpbridge.log*"))
    assert len(files) == 1 + logfile.LOG_BACKUPS
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert f.stat().st_size <= 1500 + 400


def test_log_redacts_secret_environment_values(tmp_path):
    from otpbridge.automation import runlog as logfile

    home = tmp_path / "home"
    home.mkdir()
    env = {"OTPBRIDGE_PASSPHRASE": "leaky-value-123"}

    def runner(_args):
        print("warning: engine says leaky-value-123", file=sys.stderr)
        print("otpbridge: error: oops leaky-value-123", file=sys.stderr)
        return 1

    assert logfile.logged(["--home", str(home), "sync"], runner, environ={**env, "OTPBRIDGE_UNATTENDED": "cron"}) == 1
    text = (home / "state" / "otpbridge.log").read_text()
    record = (home / "state" / logfile.FAILURE_NAME).read_text()
    assert "leaky-value-123" not in text and "leaky-value-123" not in record
    assert "engine says ***" in text and "oops ***" in text


def test_no_log_without_a_home(tmp_path):
    from otpbridge.automation import runlog as logfile

    assert logfile.logged(["--home", str(tmp_path / "nothing"), "formats"], lambda _a: 0, environ={}) == 0
    assert not (tmp_path / "nothing").exists()  # a log never creates a home


def test_split_command_finds_home_and_subcommand():
    from otpbridge.automation.runlog import describe_args, split_command

    assert split_command(["--home", "/h", "-q", "sync", "--json"]) == ("/h", "sync")
    assert split_command(["--home=/h", "--passphrase-fd", "3", "passphrase", "check"]) == ("/h", "passphrase")
    assert split_command(["--verbose"]) == (None, None)
    assert describe_args(["list", "aegis:x.json?password-env=A"]) == "list aegis:x.json?…"
    assert split_command(["--identity", "/k/age.key", "sync"]) == (None, "sync")
    assert split_command(["--recovery-key-file", "code.txt", "restore"]) == (None, "restore")


def test_the_log_knows_every_global_option_that_takes_a_value():
    from otpbridge.automation.runlog import _VALUE_OPTIONS
    from otpbridge.cli.app import cli

    takes_value = {name for p in cli.params if not getattr(p, "is_flag", False) and not getattr(p, "count", False)
                   for name in p.opts if name.startswith("--")}
    assert takes_value == _VALUE_OPTIONS


def test_unattended_failure_is_recorded_shown_and_cleared(tmp_path):
    h = init_vault(tmp_path / "a", PASSPHRASE)
    codes = Path(h.store.split(":", 1)[1])
    codes.write_text(codes.read_text() + URI_B + "\n")
    proc = h.run("--quiet", "sync", OTPBRIDGE_UNATTENDED="cron")
    assert proc.returncode == 2
    record = json.loads((h.state_dir / "last-unattended-failure.json").read_text())
    assert record["source"] == "cron" and record["exit_code"] == 2 and record["command"] == "sync"
    assert "no terminal" in record["message"]
    assert stat.S_IMODE((h.state_dir / "last-unattended-failure.json").stat().st_mode) == 0o600
    status = ok(h.run("status"))
    assert "last unattended run failed" in status.stdout and "cron" in status.stdout
    data = json.loads(ok(h.run("status", "--json")).stdout)
    assert data["last_unattended_failure"]["exit_code"] == 2
    ok(h.run("sync", OTPBRIDGE_PASSPHRASE=PASSPHRASE))
    assert not (h.state_dir / "last-unattended-failure.json").exists()
    assert "last unattended" not in ok(h.run("status")).stdout


# -- schedule ------------------------------------------------------------------------------------------


def test_parse_every_and_cron_fields():
    from otpbridge.automation.schedule import cron_schedule, parse_every
    from otpbridge.core.errors import UsageError

    assert parse_every("1h") == 3600 and parse_every("90m") == 5400 and parse_every("1h30m") == 5400
    assert parse_every("1d") == 86400 and parse_every("900") == 900 and parse_every("15min") == 900
    for bad in ("", "soon", "10s", "1x"):
        with pytest.raises(UsageError):
            parse_every(bad)
    assert cron_schedule(900, "x") == "*/15 * * * *"
    assert re.fullmatch(r"\d+ \* \* \* \*", cron_schedule(3600, "x"))
    assert re.fullmatch(r"\d+ \*/6 \* \* \*", cron_schedule(6 * 3600, "x"))
    assert re.fullmatch(r"\d+ \d+ \* \* \*", cron_schedule(86400, "x"))
    with pytest.raises(UsageError):
        cron_schedule(7 * 60, "x")


def _recorder(folder: Path, name: str, body: str = "") -> Path:
    """A stand-in for systemctl/crontab that records its argv (one line per call)."""
    script = folder / name
    calls = folder / f"{name}.calls"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, pathlib\n"
        f"pathlib.Path({str(calls)!r}).open('a').write(' '.join(sys.argv[1:]) + '\\n')\n" + body
    )
    script.chmod(0o755)
    return script


def parse_unit(text: str) -> tuple[dict[str, str], list[str]]:
    """Environment= and ExecStart= of a service, undoing systemd's quoting and % / $ escapes."""
    env: dict[str, str] = {}
    argv: list[str] = []
    for line in text.splitlines():
        if line.startswith("Environment="):
            (assignment,) = shlex.split(line[len("Environment=") :].replace("%%", "%"))
            k, v = assignment.split("=", 1)
            env[k] = v
        elif line.startswith("ExecStart="):
            argv = [w.replace("$$", "$") for w in shlex.split(line[len("ExecStart=") :].replace("%%", "%"))]
    return env, argv


def test_schedule_without_install_only_prints(tmp_path):
    xdg = tmp_path / "xdg"
    env = base_env(OTPBRIDGE_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(xdg))
    proc = ok(cli(["schedule", "--method", "systemd", "--every", "2h"], env=env))
    assert "[Timer]" in proc.stdout and "OnUnitActiveSec=7200s" in proc.stdout and "ExecStart=" in proc.stdout
    assert not xdg.exists()
    proc = ok(cli(["schedule", "--method", "cron", "--every", "15m"], env=env))
    assert "*/15 * * * *" in proc.stdout and "--quiet sync" in proc.stdout


def test_schedule_systemd_units_install_run_and_uninstall(tmp_path):
    h = init_vault(tmp_path / "dev a%b", PASSPHRASE)  # a space and a % in every path
    xdg = tmp_path / "xdg"
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    systemctl = _recorder(fakes, "systemctl")
    helper = passcommand_helper(tmp_path, PASSPHRASE)
    env = h.env(XDG_CONFIG_HOME=str(xdg), OTPBRIDGE_SYSTEMCTL=str(systemctl), OTPBRIDGE_PASSPHRASE=PASSPHRASE)
    proc = ok(cli(["schedule", "--method", "systemd", "--every", "30m", "--install", "--passcommand", helper], env=env))
    assert "OTPBRIDGE_PASSPHRASE is set here but is not copied" in proc.stderr
    unit_dir = xdg / "systemd" / "user"
    service = (unit_dir / "otpbridge-sync.service").read_text()
    timer = (unit_dir / "otpbridge-sync.timer").read_text()
    assert PASSPHRASE not in service and PASSPHRASE not in timer
    assert "OnUnitActiveSec=1800s" in timer and "Unit=otpbridge-sync.service" in timer and "WantedBy=timers.target" in timer
    calls = (fakes / "systemctl.calls").read_text().splitlines()
    assert calls == ["--user daemon-reload", "--user enable --now otpbridge-sync.timer"]
    unit_env, argv = parse_unit(service)
    assert unit_env["OTPBRIDGE_HOME"] == str(h.home) and unit_env["OTPBRIDGE_PASSCOMMAND"] == helper
    assert unit_env["OTPBRIDGE_UNATTENDED"] == "systemd-timer"
    assert Path(argv[0]).is_absolute() and os.access(argv[0], os.X_OK) and argv[1:] == ["--quiet", "sync"]
    # What systemd would run, with only the unit's environment (plus a bare PATH/HOME):
    codes = Path(h.store.split(":", 1)[1])
    codes.write_text(codes.read_text() + URI_B + "\n")
    bare = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), "OTPBRIDGE_ALLOW_INSECURE_KDF": "1", **unit_env}
    run = subprocess.run(argv, env=bare, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT, start_new_session=True)
    assert run.returncode == 0 and run.stdout == "", run.stderr
    assert "sync: exit 0" in h.log_text() and "(unattended: systemd-timer)" in h.log_text()
    proc = ok(cli(["schedule", "--uninstall"], env=env))
    assert not (unit_dir / "otpbridge-sync.service").exists() and not (unit_dir / "otpbridge-sync.timer").exists()
    assert "--user disable --now otpbridge-sync.timer" in (fakes / "systemctl.calls").read_text()


def test_schedule_cron_fallback_line_runs_under_sh(tmp_path):
    h = init_vault(tmp_path / "dev a%b", PASSPHRASE)
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    table = fakes / "table"
    table.write_text("MAILTO=me@example.org\n0 0 * * * /usr/bin/true\n")
    crontab = _recorder(
        fakes,
        "crontab",
        "import shutil\n"
        f"t = pathlib.Path({str(table)!r})\n"
        "if sys.argv[1:] == ['-l']:\n    sys.stdout.write(t.read_text())\n"
        "else:\n    t.write_text(sys.stdin.read())\n",
    )
    helper = passcommand_helper(tmp_path, PASSPHRASE)
    env = h.env(OTPBRIDGE_CRONTAB=str(crontab), OTPBRIDGE_PASSCOMMAND=helper)
    for _ in range(2):  # installing twice keeps one entry
        ok(cli(["schedule", "--method", "cron", "--every", "1h", "--install"], env=env))
    text = table.read_text()
    assert text.startswith("MAILTO=me@example.org\n0 0 * * * /usr/bin/true\n")
    assert text.count("otpbridge-sync (managed") == 1
    (line,) = [ln for ln in text.splitlines() if "--quiet sync" in ln]
    command = line.split(" ", 5)[5]
    assert helper in command.replace("\\%", "%")
    codes = Path(h.store.split(":", 1)[1])
    codes.write_text(codes.read_text() + URI_B + "\n")
    # cron: '\%' becomes '%', then /bin/sh runs the rest with a minimal environment
    run = subprocess.run(
        ["/bin/sh", "-c", command.replace("\\%", "%")],
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), "OTPBRIDGE_ALLOW_INSECURE_KDF": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        start_new_session=True,
    )
    assert run.returncode == 0 and run.stdout == "", run.stderr
    assert "(unattended: cron)" in h.log_text()
    ok(cli(["schedule", "--uninstall", "--method", "cron"], env=env))
    assert table.read_text() == "MAILTO=me@example.org\n0 0 * * * /usr/bin/true\n"


# -- the git hook and the pass extension --------------------------------------------------------------


def wait_for(predicate, timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def hook_syncs_done(h: Home, n: int) -> bool:
    """``n`` background syncs started by the hook have finished (their end lines are logged)."""
    text = h.log_text() if h.state_dir.exists() else ""
    pids = re.findall(r"\[(\d+)\] INFO start: otpbridge .*sync \(unattended: git-hook\)", text)
    done = [p for p in pids if re.search(rf"\[{p}\] \w+ sync: exit", text)]
    lock_free = not (h.state_dir / "hook.pending").exists()
    return len(done) >= n and lock_free


@pytest.fixture
def pass_home(pass_dir, tmp_path):
    """A pass store in git (real pass) as device 1's primary store, plus the env to drive it."""
    pass_dir.git_init()
    h = init_vault(tmp_path / "dev1", PASSPHRASE, store=f"pass:{pass_dir.path}")
    return h, pass_dir


def pass_env(h: Home, pd, **extra: str) -> dict[str, str]:
    return {**h.env(**extra), **{k: v for k, v in pd.env().items() if not k.startswith("OTPBRIDGE_")}}


@needs_pass
def test_hook_commit_reaches_second_device_and_does_not_recurse(pass_home, tmp_path):
    h, pd = pass_home
    helper = passcommand_helper(tmp_path, PASSPHRASE)
    env = pass_env(h, pd)
    ok(cli(["hook", "install", f"pass:{pd.path}", "--passcommand", helper], env=env))
    hook = pd.path / ".git" / "hooks" / "post-commit"
    assert os.access(hook, os.X_OK) and PASSPHRASE not in hook.read_text()
    # the user adds an account with pass itself; git commits; the hook syncs in the background
    # (with the hook's own passphrase source, also when the shell exports another one)
    started = time.monotonic()
    shell = {**env, "OTPBRIDGE_PASSPHRASE": "what this shell exports for something else"}
    proc = subprocess.run(["pass", "insert", "-m", "Acme/alice"], input=f"hunter2\n{URI_A}\n", env=shell,
                          capture_output=True, text=True, timeout=TIMEOUT, start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 30  # the commit is not held up by the sync
    wait_for(lambda: hook_syncs_done(h, 1), what="the hook's background sync")
    assert "ERROR" not in h.log_text() and not (h.state_dir / "last-unattended-failure.json").exists(), h.log_text()
    # device 2 joins the same remote and receives the account
    d2 = Home(root=tmp_path / "dev2", remote=h.remote, store=f"uris:{tmp_path / 'dev2' / 'codes.txt'}", name="dev2")
    d2.root.mkdir()
    Path(d2.store[5:]).write_text("")
    ok(d2.run("init", str(h.remote), "--store", d2.store, "--device", "dev2", OTPBRIDGE_PASSPHRASE=PASSPHRASE))
    ok(d2.run("sync", OTPBRIDGE_PASSPHRASE=PASSPHRASE))
    assert SECRET_B32 in Path(d2.store[5:]).read_text()
    # device 2 adds one; the next commit on device 1 pulls it into the pass store, whose own
    # commit must not start the hook again
    Path(d2.store[5:]).write_text(Path(d2.store[5:]).read_text() + URI_B + "\n")
    ok(d2.run("sync", OTPBRIDGE_PASSPHRASE=PASSPHRASE))
    commits_before = len(pd.git_log())
    proc = subprocess.run(["pass", "insert", "-m", "Gamma/carol"], input=f"pw\n{URI_C}\n", env=env,
                          capture_output=True, text=True, timeout=TIMEOUT, start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: hook_syncs_done(h, 2), what="the second background sync")
    time.sleep(1.0)  # a recursive hook would start within this time
    log = h.log_text()
    assert log.count("hook: started the background sync") == 2, log
    assert len(re.findall(r"start: otpbridge .*sync \(unattended: git-hook\)", log)) == 2, log
    assert len(pd.git_log()) >= commits_before + 2  # the user's commit and otpbridge's own
    listing = json.loads(ok(cli(["list", f"pass:{pd.path}", "--json"], env=env)).stdout)
    assert {a["issuer"] for a in listing["accounts"]} == {"Acme", "Beta", "Gamma"}
    assert not (h.state_dir / "last-unattended-failure.json").exists()
    # the pass extension: `pass otpbridge …` with the store filled in
    ext_env = {**env, "PASSWORD_STORE_ENABLE_EXTENSIONS": "true"}
    ext_env.pop("OTPBRIDGE_HOME")  # recorded in the extension at install time
    status = subprocess.run(["pass", "otpbridge", "status"], env=ext_env, capture_output=True, text=True,
                            timeout=TIMEOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    assert status.returncode == 0 and "vault:" in status.stdout, status.stderr
    lst = subprocess.run(["pass", "otpbridge", "list", "--json"], env=ext_env, capture_output=True, text=True,
                         timeout=TIMEOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    assert lst.returncode == 0 and json.loads(lst.stdout)["source"] == f"pass:{pd.path}", lst.stderr
    bad = subprocess.run(["pass", "otpbridge", "frobnicate"], env=ext_env, capture_output=True, text=True,
                         timeout=TIMEOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def _git_repo(path: Path) -> dict[str, str]:
    env = base_env(GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="T", GIT_COMMITTER_EMAIL="t@example.org")
    path.mkdir(parents=True)
    subprocess.run(["git", "-C", str(path), "init", "-q"], check=True, env=env)
    return env


def test_hook_chains_an_existing_hook_and_never_fails_the_commit(tmp_path):
    store = tmp_path / "store"
    env = _git_repo(store)
    env["OTPBRIDGE_HOME"] = str(tmp_path / "home-without-vault")  # every sync fails
    os.makedirs(env["OTPBRIDGE_HOME"])
    marker = tmp_path / "old-hook-ran"
    old = store / ".git" / "hooks" / "post-commit"
    old_text = f"#!/bin/sh\necho \"$@\" > {shlex.quote(str(marker))}\nexit 3\n"
    old.write_text(old_text)
    old.chmod(0o755)
    proc = ok(cli(["hook", "install", f"pass:{store}", "--no-extension"], env=env))
    assert "kept the existing hook" in proc.stdout
    assert (store / ".git" / "hooks" / "post-commit.pre-otpbridge").read_text() == old_text
    commit = subprocess.run(["git", "-C", str(store), "commit", "-q", "--allow-empty", "-m", "x"], env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert commit.returncode == 0, commit.stderr
    assert marker.exists()  # the old hook ran
    state = Path(env["OTPBRIDGE_HOME"]) / "state"
    wait_for(lambda: (state / "last-unattended-failure.json").exists(), what="the failure record")
    record = json.loads((state / "last-unattended-failure.json").read_text())
    assert record["source"] == "git-hook" and record["exit_code"] == 2
    status = json.loads(ok(cli(["hook", "status", f"pass:{store}", "--json"], env=env)).stdout)
    assert status["installed"] and status["chained"] and status["last_unattended_failure"]["exit_code"] == 2
    # reinstalling keeps the chain as it is; uninstalling puts the old hook back
    ok(cli(["hook", "install", f"pass:{store}", "--no-extension"], env=env))
    ok(cli(["hook", "uninstall", f"pass:{store}"], env=env))
    assert old.read_text() == old_text and not (store / ".git" / "hooks" / "post-commit.pre-otpbridge").exists()


def test_hook_refusals(tmp_path):
    store = tmp_path / "store"
    env = _git_repo(store)
    old = store / ".git" / "hooks" / "post-commit"
    old.write_text("#!/bin/sh\nexit 0\n")
    old.chmod(0o755)
    proc = cli(["hook", "install", f"pass:{store}", "--no-chain"], env=env)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert old.read_text() == "#!/bin/sh\nexit 0\n"
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = cli(["hook", "install", f"pass:{plain}"], env=env)
    assert proc.returncode == 2 and "not a git repository" in proc.stderr and "pass git init" in proc.stderr
    proc = cli(["hook", "install", "aegis:x.json"], env=env)
    assert proc.returncode == 2
    proc = cli(["hook", "uninstall", f"pass:{store}"], env=env)
    assert proc.returncode == 2 and "not otpbridge's" in proc.stderr


def test_hook_guard_variables_stop_it(tmp_path):
    store = tmp_path / "store"
    env = _git_repo(store)
    home = tmp_path / "home"
    home.mkdir()
    env["OTPBRIDGE_HOME"] = str(home)
    ok(cli(["hook", "install", f"pass:{store}", "--no-extension"], env=env))
    hook = str(store / ".git" / "hooks" / "post-commit")
    for guard in ("OTPBRIDGE_IN_HOOK", "OTPBRIDGE_RUNNING"):
        proc = subprocess.run([hook], env={**env, guard: "1"}, capture_output=True, timeout=TIMEOUT, cwd=store)
        assert proc.returncode == 0
    time.sleep(0.5)
    assert "hook: started" not in ((home / "state" / "otpbridge.log").read_text() if (home / "state" / "otpbridge.log").exists() else "")
    proc = subprocess.run([hook], env=env, capture_output=True, timeout=TIMEOUT, cwd=store)
    assert proc.returncode == 0
    wait_for(lambda: "hook: started the background sync" in (home / "state" / "otpbridge.log").read_text(), what="hook log")


def test_extension_text_is_valid_bash_and_names_the_command(tmp_path):
    from otpbridge.automation.hooks import render_extension

    text = render_extension(command=["/opt/my env/bin/otpbridge"], home="/h o/me")
    assert "otpbridge_cmd=( '/opt/my env/bin/otpbridge' )" in text and "otpbridge_home='/h o/me'" in text
    script = tmp_path / "otpbridge.bash"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


# -- shell completion and help -------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_scripts(shell, tmp_path):
    proc = cli([], env=base_env(_OTPBRIDGE_COMPLETE=f"{shell}_source", OTPBRIDGE_HOME=str(tmp_path)))
    assert proc.returncode == 0 and "_OTPBRIDGE_COMPLETE" in proc.stdout
    assert not (tmp_path / "state").exists()


def test_completion_lists_subcommands(tmp_path):
    env = base_env(_OTPBRIDGE_COMPLETE="bash_complete", COMP_WORDS="otpbridge sch", COMP_CWORD="1")
    proc = cli([], env=env)
    assert proc.returncode == 0 and "schedule" in proc.stdout


def _all_commands():
    import click

    from otpbridge.cli import COMMANDS
    from otpbridge.cli.app import cli as root

    ctx = click.Context(root)
    out = []
    for name in COMMANDS:
        cmd = root.get_command(ctx, name)
        out.append(((name,), cmd))
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                subcmd = cmd.get_command(ctx, sub)
                if not subcmd.hidden:
                    out.append(((name, sub), subcmd))
    return out


@pytest.mark.parametrize(("path", "cmd"), _all_commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_help_has_an_example(path, cmd, capsys):
    from otpbridge.cli import main

    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example" in out, f"'otpbridge {' '.join(path)} --help' shows no example"
