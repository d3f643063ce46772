"""Secrets: a value type that never prints, and the sources it may come from (SPEC §5).

Sources, as borg does it: a file, an inherited fd, an environment variable, a command
(argv split with shlex, never a shell), the OS keyring (opt-in), or a TTY prompt. Never
argv. Exactly one source may be configured; none and no TTY is an immediate usage error
that says how to provide one, never a hang waiting on stdin.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from otpbridge.core.childenv import child_env, note_secret_env
from otpbridge.core.errors import UsageError


class Secret:
    """A passphrase or password. ``repr``/``str`` are hidden; call :meth:`reveal` to use it."""

    __slots__ = ("_value",)
    kind = "passphrase"  # which kind of vault key slot it opens (docs/FORMAT.md §12)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wants text")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def encode(self) -> bytes:
        return self._value.encode("utf-8")

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        import hmac

        return (isinstance(other, Secret) and self.kind == other.kind
                and hmac.compare_digest(self.encode(), other.encode()))

    def __hash__(self) -> int:  # pragma: no cover - secrets are not dict keys
        raise TypeError("Secret is not hashable")

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # never pickle a secret by accident
        raise TypeError("Secret cannot be pickled")


class RecoveryKey(Secret):
    """A recovery code (``init --recovery-key``): opens the vault's recovery slot."""

    __slots__ = ()
    kind = "recovery"

    def __repr__(self) -> str:
        return "RecoveryKey('***')"

    __str__ = __repr__


class IdentityKey(Secret):
    """The text of an age identity file or an OpenSSH ed25519 private key (``--identity``)."""

    __slots__ = ("path",)
    kind = "identity"

    def __init__(self, value: str, path: str = "") -> None:
        super().__init__(value)
        self.path = path  # named in messages; never the key

    def __repr__(self) -> str:
        return f"IdentityKey({self.path!r}, '***')"

    __str__ = __repr__


def read_identity_file(path: str | os.PathLike[str]) -> IdentityKey:
    """An age identity or OpenSSH private key file for a key slot (``--identity``).

    Refused when others may read it (as ssh refuses such keys): the file alone opens the
    vault, so it must be as private as the passphrase it replaces."""
    import stat

    where = os.fspath(path)
    try:
        info = os.stat(where)
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(f"the identity file {where} can be read by other users (mode {stat.S_IMODE(info.st_mode):o})",
                             hint=f"chmod 600 {where}")
        with open(where, encoding="utf-8") as fh:
            text = fh.read(64 * 1024)
    except OSError as exc:
        raise UsageError(f"cannot read the identity file {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the identity file {where} is not text (an age identity or OpenSSH private key)") from None
    return IdentityKey(text, where)


def _strip_newline(text: str) -> str:
    # Files and commands end with one newline; the secret is the first line.
    return text.split("\n", 1)[0].rstrip("\r")


def read_secret_file(path: str | os.PathLike[str], what: str) -> Secret:
    try:
        data = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {str(path)!r}: {exc.strerror}") from None
    return Secret(_strip_newline(data))


def read_secret_fd(fd: int, what: str) -> Secret:
    try:
        with os.fdopen(fd, "r", encoding="utf-8", closefd=True) as fh:
            return Secret(_strip_newline(fh.read()))
    except OSError as exc:
        raise UsageError(f"cannot read the {what} from file descriptor {fd}: {exc.strerror}") from None


def run_secret_command(command: str, what: str, env_name: str, environ: Mapping[str, str] | None = None) -> Secret:
    """Run a password command (argv, no shell) in the minimal child environment: it never
    sees our passphrases or another store's password variable (core/childenv.py)."""
    argv = shlex.split(command)
    if not argv:
        raise UsageError(f"{env_name} is empty")
    env = child_env(os.environ if environ is None else environ)
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"the {what} command {argv[0]!r} could not run: {exc}") from None
    if proc.returncode != 0:
        raise UsageError(
            f"the {what} command {argv[0]!r} failed with exit code {proc.returncode}",
            hint="check the command named in " + env_name,
        )
    value = _strip_newline(proc.stdout.decode("utf-8", "replace"))
    if not value:  # e.g. an empty pass entry: deriving a key from "" helps nobody
        raise UsageError(f"the {what} command {argv[0]!r} printed nothing", hint="check the command named in " + env_name)
    return Secret(value)


def prompt_secret(prompt: str, *, confirm: bool = False) -> Secret:
    import getpass

    first = getpass.getpass(prompt + ": ")
    if confirm:
        second = getpass.getpass("Repeat " + prompt[0].lower() + prompt[1:] + ": ")
        if first != second:
            raise UsageError("the two entries differ")
    return Secret(first)


def has_tty() -> bool:
    try:
        return sys.stdin.isatty() and os.path.exists("/dev/tty")
    except (ValueError, OSError):
        return False


@dataclass(frozen=True)
class SecretSource:
    """Where one kind of secret may come from; built by the CLI from flags and environment.

    ``env_prefix`` names the variables: ``OTPBRIDGE_PASSPHRASE`` / ``OTPBRIDGE_PASSCOMMAND``
    for the backup passphrase, ``OTPBRIDGE_NEW_PASSPHRASE`` / ``OTPBRIDGE_NEW_PASSCOMMAND``
    for the new one.
    """

    what: str  # "backup passphrase", "new backup passphrase"
    env_var: str
    command_var: str
    file: str | None = None
    fd: int | None = None
    keyring: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)

    def configured(self) -> list[str]:
        found = []
        if self.file is not None:
            found.append("file")
        if self.fd is not None:
            found.append("fd")
        if self.env_var in self.environ:
            found.append(self.env_var)
        if self.command_var in self.environ:
            found.append(self.command_var)
        if self.keyring:
            found.append("keyring")
        return found

    def available(self) -> bool:
        return bool(self.configured()) or has_tty()

    def get(self, *, confirm: bool = False) -> Secret:
        found = self.configured()
        if len(found) > 1:
            raise UsageError(
                f"more than one source for the {self.what} is configured ({', '.join(found)})",
                hint="keep exactly one",
            )
        if self.file is not None:
            return read_secret_file(self.file, self.what)
        if self.fd is not None:
            return read_secret_fd(self.fd, self.what)
        if self.env_var in self.environ:
            return Secret(self.environ[self.env_var])
        if self.command_var in self.environ:
            return run_secret_command(self.environ[self.command_var], self.what, self.command_var, self.environ)
        if self.keyring:
            return _from_keyring(self.what)
        if has_tty():
            return prompt_secret(self.what[0].upper() + self.what[1:], confirm=confirm)
        # The new passphrase has its own flags; naming the old ones would mislead.
        flag = "--new-passphrase" if self.env_var.startswith("OTPBRIDGE_NEW_") else "--passphrase"
        raise UsageError(
            f"the {self.what} is needed but no source is configured and there is no terminal to ask",
            hint=f"set {self.env_var} or {self.command_var} (e.g. 'pass show backup/otpbridge'), "
            f"or pass {flag}-file / {flag}-fd",
        )


KEYRING_SERVICE = "otpbridge"


def _from_keyring(what: str) -> Secret:
    try:
        import keyring
    except ImportError:
        from otpbridge.core.errors import MissingDependencyError

        raise MissingDependencyError(
            "the OS keyring support is not installed", hint="pip install 'otpbridge[keyring]'"
        ) from None
    value = keyring.get_password(KEYRING_SERVICE, what)
    if value is None:
        raise UsageError(f"the OS keyring holds no {what} for service {KEYRING_SERVICE!r}")
    return Secret(value)


def store_password(
    options: Mapping[str, str],
    *,
    store_label: str,
    kind: str,
    environ: Mapping[str, str] | None = None,
    required: bool = True,
) -> Secret | None:
    """A store's own password (SPEC §5): ``?password-file=``, ``?password-env=``,
    ``OTPBRIDGE_STORE_PASSWORD`` (``OTPBRIDGE_KEEPASS_PASSWORD`` for KeePass), else a prompt."""
    env = os.environ if environ is None else environ
    given = [name for name in ("password-file", "password-env", "password-command") if name in options]
    if len(given) > 1:  # which one would win is a guess; say so instead (as for the passphrase)
        raise UsageError(f"{store_label} names more than one password source ({', '.join(given)})", hint="keep exactly one")
    if "password-file" in options:
        return read_secret_file(options["password-file"], f"password for {store_label}")
    if "password-env" in options:
        name = options["password-env"]
        note_secret_env(name)
        if name not in env:
            raise UsageError(f"the environment variable {name} (password for {store_label}) is not set")
        return Secret(env[name])
    if "password-command" in options:
        return run_secret_command(options["password-command"], f"password for {store_label}", "password-command", env)
    if kind == "keepass" and "OTPBRIDGE_KEEPASS_PASSWORD" in env:
        return Secret(env["OTPBRIDGE_KEEPASS_PASSWORD"])
    if "OTPBRIDGE_STORE_PASSWORD" in env:
        return Secret(env["OTPBRIDGE_STORE_PASSWORD"])
    if has_tty():
        return prompt_secret(f"Password for {store_label}")
    if not required:
        return None
    raise UsageError(
        f"{store_label} needs a password and there is no terminal to ask",
        hint="add ?password-env=NAME or ?password-file=PATH to the store, or set OTPBRIDGE_STORE_PASSWORD",
    )
