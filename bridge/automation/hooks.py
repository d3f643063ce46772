"""A git ``post-commit`` hook and a pass extension for pass stores (docs/AUTOMATION.md).

The hook is a few lines of POSIX sh that start ``otpbridge hook run`` and always exit
0: git ignores a post-commit hook's status, but a user would still see a slow or noisy
one, so the sync runs detached in the background, its outcome goes to the log, and a
failure is recorded for ``otpbridge status`` (runlog.py). Bursts of commits (``pass
otp insert`` of many entries) coalesce into one or two syncs through a lock file.

Our own writes into a pass store commit too; every otpbridge process exports
``OTPBRIDGE_RUNNING=1`` (runlog.py) and the hook's sync runs with
``OTPBRIDGE_IN_HOOK=1``, and the hook does nothing when either is set, so it never
recurses.

An existing post-commit hook is kept: it is renamed to ``post-commit.pre-otpbridge``
and called first, with the same arguments. ``--no-chain`` refuses instead.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from otpbridge.core.childenv import child_env
from otpbridge.core.errors import OtpBridgeError, UsageError

HOOK_NAME = "post-commit"
CHAINED_SUFFIX = ".pre-otpbridge"
MARKER = "# otpbridge post-commit hook"
IN_HOOK_ENV = "OTPBRIDGE_IN_HOOK"
UNATTENDED_VALUE = "git-hook"
EXTENSION_NAME = "otpbridge.bash"
EXTENSION_MARKER = "# otpbridge pass extension"
LOCK_NAME = "hook.lock"
PENDING_NAME = "hook.pending"
MAX_ROUNDS = 5
SYNC_TIMEOUT = 15 * 60
# Variables git exports to hooks that point at *this* repository; a sync that writes to
# a store must locate its repository itself (pass unsets the same list).
GIT_LOCATION_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_INDEX_VERSION",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


def pass_store_dir(spec: str, environ: Mapping[str, str] | None = None) -> Path:
    """The folder of ``pass:`` / ``pass:PATH`` (pass's own default rules)."""
    env = os.environ if environ is None else environ
    kind, sep, location = spec.partition(":")
    if not sep or kind.lower() != "pass":
        raise UsageError(f"{spec!r} is not a pass store", hint="name it pass: (the default store) or pass:PATH")
    location = location.split("?", 1)[0]
    if not location:
        location = env.get("PASSWORD_STORE_DIR") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".password-store")
    return Path(os.path.expanduser(location)).absolute()


def _git(store: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in child_env(os.environ).items() if k not in GIT_LOCATION_ENV}
    try:
        return subprocess.run(
            ["git", "-C", str(store), *args], capture_output=True, text=True, timeout=30, check=False, env=env
        )
    except FileNotFoundError:
        raise OtpBridgeError("git is not installed", hint="install git, or sync from a timer instead") from None


@dataclass(frozen=True)
class Repo:
    store: Path
    toplevel: Path
    hooks_dir: Path

    @property
    def hook(self) -> Path:
        return self.hooks_dir / HOOK_NAME

    @property
    def chained(self) -> Path:
        return self.hooks_dir / (HOOK_NAME + CHAINED_SUFFIX)


def find_repo(store: Path) -> Repo:
    if not store.is_dir():
        raise UsageError(f"the pass store {store} does not exist")
    top = _git(store, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise UsageError(
            f"the pass store {store} is not a git repository",
            hint="run 'pass git init' first, or use 'otpbridge schedule' for a timer",
        )
    configured = _git(store, "config", "--get", "core.hooksPath")
    if configured.returncode == 0 and configured.stdout.strip():
        raise UsageError(
            f"{store} uses core.hooksPath={configured.stdout.strip()}, which may be shared by other repositories",
            hint="add 'otpbridge hook run --store pass:STORE' to that hook yourself (docs/AUTOMATION.md)",
        )
    hooks = _git(store, "rev-parse", "--git-path", "hooks")
    if hooks.returncode != 0:
        raise OtpBridgeError(f"git cannot tell where the hooks of {store} live: {hooks.stderr.strip()}")
    toplevel = Path(top.stdout.strip())
    hooks_dir = Path(hooks.stdout.strip())
    if not hooks_dir.is_absolute():
        hooks_dir = (store / hooks_dir).resolve()
    return Repo(store=store, toplevel=toplevel, hooks_dir=hooks_dir)


def is_ours(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return MARKER in fh.read(4096)
    except OSError:
        return False


def render_hook(*, command: Sequence[str], home: str | None, store: Path, chained: Path | None, extra_env: Mapping[str, str]) -> str:
    q = shlex.quote
    env = ({"OTPBRIDGE_HOME": home} if home else {}) | dict(extra_env)
    exports = [f"    export {k}={q(_one_line(v))}" for k, v in env.items()]
    if "OTPBRIDGE_PASSCOMMAND" in env:
        # The hook's own passphrase source wins over one the committing shell exports:
        # two sources are refused (exit 2), and the background sync would fail unseen.
        exports.append("    unset OTPBRIDGE_PASSPHRASE")
    lines = [
        "#!/bin/sh",
        f"{MARKER} (installed by 'otpbridge hook install'; remove with 'otpbridge hook uninstall')",
        "# Starts 'otpbridge sync' in the background after each commit. It never fails or",
        "# blocks the commit: the outcome goes to the otpbridge log and 'otpbridge status'.",
    ]
    if chained is not None:
        lines += [
            "# The hook that was here before is kept and runs first:",
            f'if [ -x {q(str(chained))} ]; then {q(str(chained))} "$@"; fi',
        ]
    lines += [
        'if [ -z "${OTPBRIDGE_IN_HOOK:-}" ] && [ -z "${OTPBRIDGE_RUNNING:-}" ]; then',
        "  (",
        *exports,
        f"    exec {' '.join(q(w) for w in command)} hook run --store {q('pass:' + str(store))} </dev/null >/dev/null 2>&1",
        "  ) || :",
        "fi",
        "exit 0",
        "",
    ]
    return "\n".join(lines)


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value or "\x00" in value:
        raise UsageError("a value for the hook contains a line break")
    return value


@dataclass
class HookReport:
    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    text: str = ""


def install_hook(
    store: Path,
    *,
    command: Sequence[str],
    home: str | None,
    chain: bool = True,
    extra_env: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> HookReport:
    from otpbridge.core.fileio import atomic_write

    repo = find_repo(store)
    report = HookReport()
    if repo.toplevel.resolve() != store.resolve():
        report.notes.append(f"{store} is inside the git repository {repo.toplevel}: every commit there starts a sync")
    hook, chained = repo.hook, repo.chained
    keep_chain: Path | None = chained if chained.exists() else None
    move_old = False
    if hook.exists() or hook.is_symlink():
        if is_ours(hook):
            report.notes.append("the otpbridge hook was already installed; it is rewritten")
        elif not chain:
            raise UsageError(
                f"{hook} already exists and is not otpbridge's",
                hint="leave out --no-chain to keep it and run it before the sync",
            )
        elif chained.exists() or chained.is_symlink():
            raise UsageError(
                f"both {hook} and {chained} exist; otpbridge will not guess which to keep",
                hint=f"merge them by hand, or remove {chained.name}, then install again",
            )
        else:
            move_old = True
            keep_chain = chained
    text = render_hook(command=command, home=home, store=store, chained=keep_chain, extra_env=extra_env or {})
    report.text = text
    if move_old:
        report.done.append(f"kept the existing hook as {chained} (it runs first)")
    report.done.append(f"wrote {hook}")
    if dry_run:
        return report
    repo.hooks_dir.mkdir(parents=True, exist_ok=True)
    if move_old:
        os.rename(hook, chained)
    atomic_write(hook, text.encode("utf-8"), mode=0o755, backup=False)
    return report


def uninstall_hook(store: Path, *, dry_run: bool = False) -> HookReport:
    repo = find_repo(store)
    report = HookReport()
    hook, chained = repo.hook, repo.chained
    if not hook.exists():
        report.notes.append(f"no post-commit hook in {repo.hooks_dir}")
        return report
    if not is_ours(hook):
        raise UsageError(f"{hook} is not otpbridge's hook; it is left alone")
    report.done.append(f"removed {hook}")
    if chained.exists():
        report.done.append(f"put the previous hook back ({chained.name} -> {HOOK_NAME})")
    if not dry_run:
        hook.unlink()
        if chained.exists():
            os.rename(chained, hook)
    return report


def hook_status(store: Path) -> dict[str, object]:
    repo = find_repo(store)
    ext = extension_path(store)
    return {
        "store": str(store),
        "hook": str(repo.hook),
        "installed": is_ours(repo.hook),
        "other_hook": repo.hook.exists() and not is_ours(repo.hook),
        "chained": str(repo.chained) if repo.chained.exists() else None,
        "extension": str(ext) if ext.exists() else None,
        "extension_is_ours": _extension_is_ours(ext),
    }


# -- the pass extension ------------------------------------------------------------------


def extension_path(store: Path, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    folder = env.get("PASSWORD_STORE_EXTENSIONS_DIR") or str(store / ".extensions")
    return Path(folder) / EXTENSION_NAME


def _extension_is_ours(path: Path) -> bool:
    try:
        return EXTENSION_MARKER in path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False


def render_extension(*, command: Sequence[str], home: str | None) -> str:
    template = resources.files("otpbridge").joinpath("data", EXTENSION_NAME).read_text(encoding="utf-8")
    q = shlex.quote
    array = " ".join(q(w) for w in command)
    return template.replace("@OTPBRIDGE_COMMAND@", array).replace("@OTPBRIDGE_HOME@", q(home or ""))


def install_extension(store: Path, *, command: Sequence[str], home: str | None, dry_run: bool = False) -> HookReport:
    from otpbridge.core.fileio import atomic_write

    path = extension_path(store)
    report = HookReport()
    if path.exists() and not _extension_is_ours(path):
        raise UsageError(f"{path} exists and is not otpbridge's; it is left alone")
    text = render_extension(command=command, home=home)
    report.text = text
    report.done.append(f"wrote {path}")
    report.notes.append("pass runs extensions only with PASSWORD_STORE_ENABLE_EXTENSIONS=true (export it in your shell profile)")
    if dry_run:
        return report
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, text.encode("utf-8"), mode=0o700, backup=False)
    _exclude_from_git(store, path)
    return report


def uninstall_extension(store: Path, *, dry_run: bool = False) -> HookReport:
    path = extension_path(store)
    report = HookReport()
    if not path.exists():
        return report
    if not _extension_is_ours(path):
        raise UsageError(f"{path} is not otpbridge's; it is left alone")
    report.done.append(f"removed {path}")
    if not dry_run:
        path.unlink()
    return report


def _exclude_from_git(store: Path, path: Path) -> None:
    """The extension names this machine's paths: keep it out of the store's history."""
    if not (store / ".git").exists():
        return
    info = _git(store, "rev-parse", "--git-path", "info/exclude")
    if info.returncode != 0:
        return
    exclude = Path(info.stdout.strip())
    if not exclude.is_absolute():
        exclude = store / exclude
    try:
        rel = "/" + path.relative_to(store).as_posix()
    except ValueError:
        return
    with contextlib.suppress(OSError):
        existing = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        if rel not in existing.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with open(exclude, "a", encoding="utf-8") as fh:
                fh.write(("" if existing.endswith("\n") or not existing else "\n") + rel + "\n")


# -- what the hook runs --------------------------------------------------------------------


def hook_environment(environ: Mapping[str, str], store: Path) -> dict[str, str]:
    """The sync's environment: git's repository pointers removed, the store and guards set."""
    env = {k: v for k, v in environ.items() if k not in GIT_LOCATION_ENV}
    env[IN_HOOK_ENV] = "1"
    env["OTPBRIDGE_UNATTENDED"] = UNATTENDED_VALUE
    env["PASSWORD_STORE_DIR"] = str(store)
    env.pop("OTPBRIDGE_RUNNING", None)  # the sync is its own run; it sets it for its children
    return env


def detach(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Start ``argv`` in its own session with no terminal; return its pid at once."""
    proc = subprocess.Popen(  # noqa: S603 - argv list, our own console script
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        env=dict(environ),
    )
    return proc.pid


@contextlib.contextmanager
def _try_lock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@dataclass
class RunResult:
    ran: int = 0
    exit_codes: list[int] = field(default_factory=list)
    deferred: bool = False


def run_syncs(
    *,
    state_dir: Path,
    command: Sequence[str],
    store: Path,
    environ: Mapping[str, str],
    log=None,
    timeout: float = SYNC_TIMEOUT,
) -> RunResult:
    """Run ``otpbridge --quiet sync`` until no further commit asked for one.

    One runner at a time per home: a hook that finds the lock taken leaves a "pending"
    mark and returns; the runner sees it and syncs once more, so a burst of commits
    costs one or two syncs and the last commit is always included.
    """
    result = RunResult()
    pending = state_dir / PENDING_NAME
    lock = state_dir / LOCK_NAME
    env = hook_environment(environ, store)
    # Mark first, then try the lock: a runner that holds the lock looks for the mark
    # again after releasing it, so a mark made before a failed lock attempt is never
    # missed. (Marking only after the failed attempt left a window in which the runner
    # had already looked and gone, and the last commit was not synced.)
    pending.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pending.touch(mode=0o600)
    rounds = 0
    while rounds < MAX_ROUNDS:
        with _try_lock(lock) as got:
            if not got:  # a runner holds the lock; it sees the mark and syncs once more
                result.deferred = True
                return result
            while pending.exists() and rounds < MAX_ROUNDS:
                with contextlib.suppress(FileNotFoundError):
                    pending.unlink()
                result.exit_codes.append(_sync_once(command, env, timeout, state_dir, log))
                result.ran += 1
                rounds += 1
        if not pending.exists():  # marked between our last look and the unlock?
            break
    return result


def _sync_once(command: Sequence[str], env: Mapping[str, str], timeout: float, state_dir: Path, log) -> int:
    argv = [*command, "--quiet", "sync"]
    try:
        proc = subprocess.run(  # noqa: S603 - argv list, our own console script
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            timeout=timeout,
            check=False,
        )
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = 5
        _record_own_failure(state_dir, f"the sync did not finish within {int(timeout)} s and was stopped", code)
    except OSError as exc:
        code = 1
        _record_own_failure(state_dir, f"the sync could not start: {exc.strerror}", code)
    if log is not None:
        log(f"hook: sync exited {code}")
    return code


def _record_own_failure(state_dir: Path, message: str, code: int) -> None:
    from otpbridge.automation.runlog import write_failure

    with contextlib.suppress(OSError):
        write_failure(
            state_dir,
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "timestamp": time.time(),
                "source": UNATTENDED_VALUE,
                "command": "sync",
                "exit_code": code,
                "message": message,
                "hint": None,
            },
        )
