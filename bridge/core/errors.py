"""One error root whose classes carry their exit code (SPEC §5).

The CLI catches only :class:`OtpBridgeError` and prints ``str(err)`` plus the hint on
one line each; anything else reaching the top is a bug and keeps its traceback. So a
message must never contain a secret: build messages from names, paths and counts only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class OtpBridgeError(Exception):
    """Base of every error a user can cause or meet."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(OtpBridgeError):
    """Bad command line, missing secret source, unknown format (exit 2)."""

    exit_code = 2


class AuthenticationError(OtpBridgeError):
    """Wrong backup passphrase or store password (exit 3)."""

    exit_code = 3


class IntegrityError(OtpBridgeError):
    """Tampered, truncated, corrupt or rolled-back data (exit 4)."""

    exit_code = 4


class FormatError(IntegrityError):
    """A file that is not what it claims to be, or is damaged (exit 4)."""


class UnsafeObject(IntegrityError):
    """A remote name that is no plain object: a symlink, a FIFO, a device, or more bytes
    than any valid object (exit 4; never skipped as "still being written")."""


class UnreachableError(OtpBridgeError):
    """A remote or store could not be reached in time (exit 5)."""

    exit_code = 5


class DataLossRefused(OtpBridgeError):
    """The operation would lose data and needs an explicit flag (exit 6)."""

    exit_code = 6


class MissingDependencyError(OtpBridgeError):
    """An optional dependency of a plugin or backend is not installed (exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class EntryError:
    """One entry of a store that could not be read or written, and why.

    ``where`` names the entry (a path, a title, a line number) — never its secret.
    """

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class PartialError(OtpBridgeError):
    """Some entries were skipped; the rest was done (exit 7)."""

    exit_code = 7

    def __init__(self, message: str, entries: Sequence[EntryError], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.entries = list(entries)
