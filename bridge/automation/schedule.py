"""Periodic unattended sync: a systemd user timer, or a crontab line where there is none.

What gets written names the console script by absolute path (cron and systemd have a
bare PATH), pins the device's home, and marks the run unattended so a failure is
recorded for ``status`` (runlog.py). It never holds a secret: the passphrase comes
from ``OTPBRIDGE_PASSCOMMAND`` (a command such as ``pass show backup/otpbridge``) set in
the unit or crontab line; a passphrase found in the environment is *not* copied.
A sync with nothing to do needs no passphrase at all (SPEC §6), so a timer without one
still runs and records "passphrase needed" only when there is something to upload.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from otpbridge.core.childenv import child_env
from otpbridge.core.errors import MissingDependencyError, OtpBridgeError, UsageError

DEFAULT_NAME = "otpbridge-sync"
UNATTENDED_VALUE_TIMER = "systemd-timer"
UNATTENDED_VALUE_CRON = "cron"
#: copied from the current environment into the unit when set: paths and commands, never secrets
# OTPBRIDGE_IDENTITY names a key file (a path, not a secret): a server's timer opens the
# vault with it and needs no passphrase (docs/SYNC.md "Keys").
PASSTHROUGH_ENV = ("OTPBRIDGE_PASSCOMMAND", "OTPBRIDGE_IDENTITY", "OTPBRIDGE_RCLONE", "RCLONE_CONFIG",
                   "PASSWORD_STORE_DIR", "GNUPGHOME")
#: secrets that must not be written anywhere; their presence earns a warning instead
SECRET_ENV = ("OTPBRIDGE_PASSPHRASE", "OTPBRIDGE_STORE_PASSWORD", "OTPBRIDGE_KEEPASS_PASSWORD")
# Test and packaging seams: which systemctl / crontab binary to run.
SYSTEMCTL_ENV = "OTPBRIDGE_SYSTEMCTL"
CRONTAB_ENV = "OTPBRIDGE_CRONTAB"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DURATION = re.compile(r"(\d+)\s*(min|sec|w|d|h|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "min": 60, "s": 1, "sec": 1, None: 1}


def parse_every(text: str) -> int:
    """``1h``, ``30m``, ``1h30m``, ``1d``, ``900`` (seconds) -> seconds (at least 60)."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0
    while pos < len(compact):
        match = _DURATION.match(compact, pos)
        if not match:
            raise UsageError(f"cannot read the interval {text!r}", hint="use e.g. 15m, 1h, 6h or 1d")
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not compact:
        raise UsageError("an empty interval was given", hint="use e.g. 15m, 1h, 6h or 1d")
    if total < 60:
        raise UsageError(f"the interval {text!r} is shorter than a minute")
    return total


def human_interval(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def console_command(environ: Mapping[str, str] | None = None) -> list[str]:
    """The argv that starts otpbridge from anywhere: the console script by absolute path.

    Preferred: the script beside the running interpreter (a venv's ``bin/``). Without
    one, the interpreter itself with ``-m otpbridge.cli`` works just as well.
    """
    env = os.environ if environ is None else environ
    candidates = [Path(sys.executable).parent / "otpbridge"]
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "otpbridge":
        candidates.insert(0, argv0)
    found = shutil.which("otpbridge", path=env.get("PATH"))
    if found:
        candidates.append(Path(found))
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "otpbridge.cli"]


def systemd_running() -> bool:
    """systemd is the init system here (sd_booted(3)) and systemctl exists."""
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def user_unit_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "systemd" / "user"


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a usable unit name", hint="letters, digits, '.', '_' and '-'")
    return name


# -- systemd unit syntax ------------------------------------------------------------


def _no_newline(value: str, what: str) -> str:
    if "\n" in value or "\r" in value or "\x00" in value:
        raise UsageError(f"the {what} contains a line break, which a unit file cannot hold")
    return value


_UNIT_BARE = re.compile(r"[A-Za-z0-9/_.,:+=@-]+")
#: systemd refuses an executable path holding these ("contains special characters"), quoted or not
_UNIT_UNSAFE_EXE = ("\\", '"', "'")


def unit_quote(word: str, *, executable: bool = False) -> str:
    """One ExecStart word: double-quoted, with systemd's specifier (%) and variable ($) escapes.

    Only words made of plainly safe characters stay bare: systemd treats a quote *inside*
    a bare word as the start of a quoted part. The executable itself gets no ``$$``:
    systemd expands variables in the arguments only, so ``$$`` there would stay doubled.
    """
    _no_newline(word, "command")
    if _UNIT_BARE.fullmatch(word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if not executable:
        escaped = escaped.replace("$", "$$")
    return f'"{escaped}"'


def exec_start(argv: Sequence[str]) -> str:
    """``ExecStart=`` for ``argv``; a path systemd will not run directly goes through env(1).

    A venv under ``/home/o'brien`` is a legitimate place; systemd refuses any executable
    path with a quote or backslash in it, but accepts it as an argument of
    ``/usr/bin/env``, which execs it (argv, no shell).
    """
    words = list(argv)
    if any(c in words[0] for c in _UNIT_UNSAFE_EXE):
        words.insert(0, shutil.which("env", path="/usr/bin:/bin") or "/usr/bin/env")
    return "ExecStart=" + " ".join(unit_quote(w, executable=(i == 0)) for i, w in enumerate(words))


def unit_text(value: str, what: str) -> str:
    """Free text of a unit setting (Description=): one line, specifiers (%) escaped."""
    return _no_newline(value, what).replace("%", "%%")


def unit_environment(name: str, value: str) -> str:
    """An ``Environment=`` line; systemd does not expand $ here, but does expand %."""
    _no_newline(value, f"value of {name}")
    escaped = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{escaped}"'


# -- what gets written -----------------------------------------------------------------


@dataclass
class Plan:
    """Everything ``schedule`` would do, computed without side effects (and printed on --dry-run)."""

    method: str  # "systemd" | "cron"
    name: str
    every: int
    argv: list[str]
    environment: dict[str, str]
    files: dict[Path, str] = field(default_factory=dict)
    cron_block: str = ""
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.method == "systemd":
            parts = [f"# {path}\n{text}" for path, text in self.files.items()]
            return "\n".join(parts)
        return self.cron_block


def make_plan(
    *,
    home: str | None,
    every: int,
    method: str = "auto",
    name: str = DEFAULT_NAME,
    passcommand: str | None = None,
    environ: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    global_args: Sequence[str] = (),
) -> Plan:
    env = os.environ if environ is None else environ
    name = validate_name(name)
    if method == "auto":
        method = "systemd" if systemd_running() else "cron"
    if method not in ("systemd", "cron"):
        raise UsageError(f"unknown scheduling method {method!r}", hint="use auto, systemd or cron")
    command = list(argv) if argv is not None else console_command(env)
    environment: dict[str, str] = {}
    if home:
        environment["OTPBRIDGE_HOME"] = str(Path(os.path.expanduser(home)).absolute())
    for var in PASSTHROUGH_ENV:
        if env.get(var):
            environment[var] = env[var]
    if passcommand is not None:
        environment["OTPBRIDGE_PASSCOMMAND"] = passcommand
    environment["OTPBRIDGE_UNATTENDED"] = UNATTENDED_VALUE_TIMER if method == "systemd" else UNATTENDED_VALUE_CRON
    plan = Plan(method=method, name=name, every=every, argv=[*command, *global_args, "--quiet", "sync"],
                environment=environment)
    present = [v for v in SECRET_ENV if v in env]
    if present:
        plan.warnings.append(
            f"{', '.join(present)} is set here but is not copied into the schedule (it would sit in a file); "
            "use OTPBRIDGE_PASSCOMMAND / ?password-file= instead"
        )
    if "OTPBRIDGE_PASSCOMMAND" not in environment and "OTPBRIDGE_IDENTITY" not in environment and not global_args:
        plan.warnings.append(
            "no OTPBRIDGE_PASSCOMMAND: runs with nothing to do succeed, but a change will fail with "
            "'passphrase needed' (shown by 'otpbridge status'); pass --passcommand 'pass show backup/otpbridge'"
        )
    if method == "systemd":
        unit_dir = user_unit_dir(env)
        plan.files[unit_dir / f"{name}.service"] = render_service(plan)
        plan.files[unit_dir / f"{name}.timer"] = render_timer(plan)
    else:
        plan.cron_block = render_cron_block(plan)
    return plan


def render_service(plan: Plan) -> str:
    home = plan.environment.get("OTPBRIDGE_HOME", "the default home")
    lines = [
        "# Written by 'otpbridge schedule'; remove with 'otpbridge schedule --uninstall'.",
        "# No secret belongs here: the passphrase comes from OTPBRIDGE_PASSCOMMAND.",
        "[Unit]",
        f"Description=otpbridge: sync 2FA accounts ({unit_text(home, 'home')})",
        "",
        "[Service]",
        "Type=oneshot",
        *(unit_environment(k, v) for k, v in plan.environment.items()),
        exec_start(plan.argv),
        "Nice=10",
        "IOSchedulingClass=idle",
        "TimeoutStartSec=15min",
        "",
    ]
    return "\n".join(lines)


def render_timer(plan: Plan) -> str:
    lines = [
        "# Written by 'otpbridge schedule'; remove with 'otpbridge schedule --uninstall'.",
        "[Unit]",
        f"Description=otpbridge: sync 2FA accounts every {human_interval(plan.every)}",
        "",
        "[Timer]",
        "OnBootSec=5min",
        f"OnUnitActiveSec={plan.every}s",
        f"RandomizedDelaySec={min(300, max(30, plan.every // 20))}s",
        f"Unit={plan.name}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ]
    return "\n".join(lines)


def cron_schedule(every: int, seed: str) -> str:
    """The five cron fields for ``every`` seconds; the minute is spread by ``seed``."""
    spread = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    minute = spread % 60
    hour = (spread // 60) % 24
    if every % 86400 == 0:
        days = every // 86400
        return f"{minute} {hour} * * *" if days == 1 else f"{minute} {hour} */{days} * *"
    if every % 3600 == 0 and 24 % (every // 3600) == 0:
        hours = every // 3600
        return f"{minute} * * * *" if hours == 1 else f"{minute} */{hours} * * *"
    if every % 60 == 0 and 60 % (every // 60) == 0:
        mins = every // 60
        return "* * * * *" if mins == 1 else f"*/{mins} * * * *"
    raise UsageError(
        f"cron cannot run every {human_interval(every)}",
        hint="use a divisor of an hour (5m, 10m, 15m, 20m, 30m), of a day (1h, 2h, 3h, 4h, 6h, 8h, 12h) or whole days",
    )


def _cron_quote(word: str) -> str:
    # cron hands the line to /bin/sh, and turns an unescaped % into a newline.
    return shlex.quote(_no_newline(word, "crontab line")).replace("%", "\\%")


def render_cron_line(plan: Plan) -> str:
    seed = plan.environment.get("OTPBRIDGE_HOME", "") + plan.name
    assigns = [f"{k}={_cron_quote(v)}" for k, v in plan.environment.items()]
    return f"{cron_schedule(plan.every, seed)} " + " ".join([*assigns, *(_cron_quote(w) for w in plan.argv)])


def _markers(name: str) -> tuple[str, str]:
    return f"# >>> {name} (managed by 'otpbridge schedule') >>>", f"# <<< {name} <<<"


def render_cron_block(plan: Plan) -> str:
    begin, end = _markers(plan.name)
    return f"{begin}\n{render_cron_line(plan)}\n{end}\n"


def replace_cron_block(crontab: str, name: str, block: str | None) -> str:
    """``crontab`` with our block for ``name`` replaced by ``block`` (removed when None)."""
    begin, end = _markers(name)
    lines = crontab.splitlines()
    if begin in lines and end not in lines[lines.index(begin) :]:
        # Someone edited the block by hand: skipping to an end marker that never comes
        # would silently drop every crontab line after ours.
        raise OtpBridgeError(
            f"your crontab has the start of the '{name}' block but not its end line ({end!r})",
            hint="fix it with 'crontab -e' (remove the otpbridge lines), then run the command again",
        )
    out: list[str] = []
    skipping = False
    for line in lines:
        if line == begin:
            skipping = True
            continue
        if skipping:
            if line == end:
                skipping = False
            continue
        out.append(line)
    text = "\n".join(out).rstrip("\n")
    text = text + "\n" if text else ""
    if block:
        text += block
    return text


# -- doing it ------------------------------------------------------------------------


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _systemctl(environ: Mapping[str, str]) -> str | None:
    return environ.get(SYSTEMCTL_ENV) or (shutil.which("systemctl") if systemd_running() else None)


def _run(argv: list[str], *, input_text: str | None = None) -> subprocess.CompletedProcess:
    try:
        # systemctl/crontab get no passphrase and no store password (SPEC §7)
        return subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=60, check=False, env=child_env(os.environ))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OtpBridgeError(f"{argv[0]} could not run: {exc}") from None


def install(plan: Plan, environ: Mapping[str, str] | None = None) -> Outcome:
    env = os.environ if environ is None else environ
    out = Outcome()
    if plan.method == "systemd":
        from otpbridge.core.fileio import atomic_write

        for path, text in plan.files.items():
            atomic_write(path, text.encode("utf-8"), mode=0o644, backup=False)
            out.done.append(f"wrote {path}")
        systemctl = _systemctl(env)
        timer = f"{plan.name}.timer"
        if systemctl is None:
            out.notes.append(
                f"systemd's user manager is not running here; when it is: systemctl --user daemon-reload && "
                f"systemctl --user enable --now {timer}"
            )
            return out
        for argv in ([systemctl, "--user", "daemon-reload"], [systemctl, "--user", "enable", "--now", timer]):
            proc = _run(argv)
            if proc.returncode != 0:
                raise OtpBridgeError(
                    f"'{' '.join(argv[1:])}' failed: {proc.stderr.strip() or proc.returncode}",
                    hint="the unit files are written; fix the error and run the command again",
                )
            out.done.append("ran systemctl " + " ".join(argv[1:]))
        return out
    crontab = env.get(CRONTAB_ENV) or shutil.which("crontab")
    if crontab is None:
        raise MissingDependencyError(
            "there is neither a running systemd nor a crontab command here",
            hint="add this line to your scheduler by hand:\n" + render_cron_line(plan),
        )
    current = _read_crontab(crontab)
    new = replace_cron_block(current, plan.name, plan.cron_block)
    _write_crontab(crontab, new)
    out.done.append(f"added the '{plan.name}' line to your crontab")
    return out


def uninstall(*, name: str = DEFAULT_NAME, method: str = "auto", environ: Mapping[str, str] | None = None, dry_run: bool = False) -> Outcome:
    """Remove what ``install`` made, from systemd and from cron (whichever holds it)."""
    env = os.environ if environ is None else environ
    name = validate_name(name)
    out = Outcome()
    if method in ("auto", "systemd"):
        unit_dir = user_unit_dir(env)
        files = [unit_dir / f"{name}.timer", unit_dir / f"{name}.service"]
        present = [f for f in files if f.exists()]
        systemctl = _systemctl(env)
        if present and systemctl is not None:
            if not dry_run:
                _run([systemctl, "--user", "disable", "--now", f"{name}.timer"])
            out.done.append(f"systemctl --user disable --now {name}.timer")
        for path in present:
            if not dry_run:
                path.unlink()
            out.done.append(f"removed {path}")
        if present and systemctl is not None and not dry_run:
            _run([systemctl, "--user", "daemon-reload"])
    if method in ("auto", "cron"):
        crontab = env.get(CRONTAB_ENV) or shutil.which("crontab")
        if crontab is not None:
            current = _read_crontab(crontab)
            new = replace_cron_block(current, name, None)
            if new != current and new.strip() != current.strip():
                if not dry_run:
                    _write_crontab(crontab, new)
                out.done.append(f"removed the '{name}' line from your crontab")
    if not out.done:
        out.notes.append(f"nothing named {name!r} is scheduled")
    return out


def _read_crontab(crontab: str) -> str:
    proc = _run([crontab, "-l"])
    if proc.returncode != 0:
        if "no crontab" in (proc.stderr or "").lower():
            return ""
        raise OtpBridgeError(f"'crontab -l' failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def _write_crontab(crontab: str, text: str) -> None:
    proc = _run([crontab, "-"], input_text=text)
    if proc.returncode != 0:
        raise OtpBridgeError(f"'crontab -' failed: {proc.stderr.strip() or proc.returncode}")


# -- are the run's secrets reachable from the unit? -------------------------------------

#: the secrets of stores that only the current shell may hold
STORE_SECRET_ENV = ("OTPBRIDGE_STORE_PASSWORD", "OTPBRIDGE_KEEPASS_PASSWORD")
#: what a scheduled run may find in a bare environment (cron, systemd)
BARE_PATH = "/usr/bin:/bin"


def _store_options(spec: str) -> tuple[str, dict[str, str]]:
    from urllib.parse import parse_qsl

    head = spec.split(":", 1)[0].lower() if ":" in spec else ""
    query = spec.rpartition("?")[2] if "?" in spec else ""
    try:
        return head, dict(parse_qsl(query, keep_blank_values=True))
    except ValueError:
        return head, {}


def _command_found(command: str, environment: Mapping[str, str]) -> bool:
    try:
        first = shlex.split(command)[0]
    except (ValueError, IndexError):
        return False
    if os.sep in first:
        return os.access(os.path.expanduser(first), os.X_OK)
    return shutil.which(first, path=environment.get("PATH", BARE_PATH)) is not None


def unreachable_secrets(
    plan: Plan,
    stores: Sequence[str],
    environ: Mapping[str, str],
    *,
    passphrase_file: str | None = None,
    keyring: bool = False,
) -> list[str]:
    """The secrets a scheduled run needs that the unit cannot reach (issue 18), one line each.

    A secret that lives only in this shell (an environment variable) is never copied
    into a unit or crontab; it must come from a file, a command or the keyring instead.
    Files and commands are checked to exist. Empty: every secret is reachable.
    """
    problems: list[str] = []
    identity = plan.environment.get("OTPBRIDGE_IDENTITY") or next(
        (plan.argv[i + 1] for i, a in enumerate(plan.argv[:-1]) if a == "--identity"), None)
    has_vault_source = (
        "OTPBRIDGE_PASSCOMMAND" in plan.environment or keyring or passphrase_file is not None or identity is not None
    )
    if identity is not None and not os.access(os.path.expanduser(identity), os.R_OK):
        problems.append(f"the identity file {identity} cannot be read")
    if not has_vault_source and environ.get("OTPBRIDGE_PASSPHRASE"):
        problems.append(
            "the backup passphrase comes from OTPBRIDGE_PASSPHRASE, which only this shell has "
            "(hint: --passcommand 'pass show backup/otpbridge', or the global --passphrase-file PATH or --keyring)"
        )
    if passphrase_file is not None and not os.access(os.path.expanduser(passphrase_file), os.R_OK):
        problems.append(f"the passphrase file {passphrase_file} cannot be read")
    command = plan.environment.get("OTPBRIDGE_PASSCOMMAND")
    if command and not _command_found(command, plan.environment):
        problems.append(f"OTPBRIDGE_PASSCOMMAND {command!r}: its program is not found on the unit's PATH "
                        f"({plan.environment.get('PATH', BARE_PATH)}); give it by absolute path")
    for spec in stores:
        kind, options = _store_options(spec)
        label = spec.split("?", 1)[0]
        if options.get("password-env"):
            name = options["password-env"]
            problems.append(
                f"{label}: its password comes from ${name} (?password-env={name}), which only this shell has "
                f"(hint: change the store to ?password-file=PATH (mode 0600) or "
                f"?password-command='secret-tool lookup otpbridge kdbx')"
            )
        if options.get("password-file") and not os.access(os.path.expanduser(options["password-file"]), os.R_OK):
            problems.append(f"{label}: the password file {options['password-file']} cannot be read")
        if options.get("password-command") and not _command_found(options["password-command"], plan.environment):
            problems.append(f"{label}: the password command {options['password-command']!r} is not found on the "
                            "unit's PATH; give its program by absolute path")
        if options.get("keyfile") and not os.access(os.path.expanduser(options["keyfile"]), os.R_OK):
            problems.append(f"{label}: the key file {options['keyfile']} cannot be read")
        if kind == "keepass" and not any(options.get(k) for k in ("password-env", "password-file", "password-command")):
            shell_only = [v for v in STORE_SECRET_ENV if environ.get(v)]
            if shell_only:
                problems.append(
                    f"{label}: its password comes from {shell_only[0]}, which only this shell has "
                    "(hint: add ?password-file=PATH or ?password-command=COMMAND to the store)"
                )
    return problems


def check_run(plan: Plan, environ: Mapping[str, str], *, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the unit's command once, in the unit's own environment: a bare PATH, HOME and
    what the unit sets, no terminal, no inherited variables (``schedule --check``).

    With ``--full`` added: a timer run that finds nothing changed takes the fast path,
    which reads no password and derives no key, so without it a wrong passphrase or a
    store password that no longer works would pass the check and fail at the first
    change, unseen in a cron job."""
    env = {"PATH": BARE_PATH, "HOME": environ.get("HOME", os.path.expanduser("~")), **plan.environment}
    for var in ("LANG", "LC_ALL", "OTPBRIDGE_ALLOW_INSECURE_KDF", SYSTEMCTL_ENV):  # locale; test seams
        if var in environ and var not in env:
            env[var] = environ[var]
    argv = [*plan.argv, "--full"]
    try:
        return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OtpBridgeError(f"the scheduled command could not run: {exc}") from None
