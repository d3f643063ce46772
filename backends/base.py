"""The backend interface: a flat namespace of small immutable-ish objects under one root.

Modelled on borgstore's ``BackendBase``, trimmed to what the sync engine needs. Every
backend counts its remote operations in the caller's ``stats`` Counter (``listings``,
``downloads``, ``uploads``, ``verifications``, ``deletes``) so the engine and its tests
can prove that a no-change sync costs one listing and nothing else.

Names are validated here, once, for every backend ("no crap in, no crap out"): a
relative, '/'-separated path over ``[A-Za-z0-9._-]``. That keeps hostile or accidental
names (``..``, ``$(…)``, newlines, option-looking ``-x``) away from file systems, rclone
filters and URLs alike. No segment starts with '-' (an option to some tool) or '.';
segments starting with '.' and names ending in ``.partial`` are reserved for in-flight
temporary files, which listings hide.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from otpbridge.core.entrypoints import load_backend
from otpbridge.core.errors import IntegrityError, UsageError

__all__ = ["Backend", "ObjectInfo", "ObjectNotFound", "is_temporary", "open_backend", "validate_name", "validate_prefix"]

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # no leading "." (temp files) or "-" (options)
_MAX_NAME = 1024
_MAX_SEGMENT = 200
# rclone's in-flight upload name (``NAME.<8 hex>.partial``) and our own temp files
# (``.NAME.<random>.tmp``, made by fileio.atomic_write) must never look like objects.
_PARTIAL = re.compile(r"\.[0-9a-f]{8}\.partial$")


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    mtime: float | None = None
    hash: str | None = None


# The largest object an otpbridge remote legitimately holds: a view padded to 256 MiB
# (FORMAT.md §6) plus its 114 bytes of overhead. A backend that can bound a read does.
MAX_OBJECT_BYTES = 2**28 + 114


class ObjectNotFound(IntegrityError):
    """An object the caller expected is not on the remote (exit 4: something removed it)."""


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe relative object name, else raise UsageError."""
    if not isinstance(name, str) or not name:
        raise UsageError("an empty object name was given")
    if len(name) > _MAX_NAME:
        raise UsageError(f"object name is too long ({len(name)} characters)")
    for segment in name.split("/"):
        if not segment:
            raise UsageError(f"object name {name!r} has an empty segment or a leading/trailing '/'")
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment) or len(segment) > _MAX_SEGMENT:
            raise UsageError(
                f"object name {name!r} is not allowed",
                hint="object names are relative paths of letters, digits, '.', '_', '-' (no segment starts with '.' or '-')",
            )
    if name.endswith(".partial"):
        raise UsageError(f"object name {name!r} is reserved for unfinished uploads")
    return name


def validate_prefix(prefix: str) -> str:
    """A folder to list under: '' (everything) or a valid name; a trailing '/' is allowed."""
    stripped = prefix.rstrip("/") if isinstance(prefix, str) else prefix
    if stripped == "":
        return ""
    return validate_name(stripped)


def is_temporary(name: str) -> bool:
    """True for leftovers of interrupted writes, which listings must not report as objects."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") or bool(_PARTIAL.search(base)) or base.endswith(".partial")


def is_listable(name: str) -> bool:
    """A listed name the engine may see: valid and not a temporary file."""
    if is_temporary(name):
        return False
    try:
        validate_name(name)
    except UsageError:
        return False
    return True


class Backend(ABC):
    """Where encrypted objects live. Subclasses talk to one root folder or remote path."""

    name: ClassVar[str]

    def __init__(
        self,
        location: str,
        *,
        stats: Counter | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = 15.0,
    ) -> None:
        if not isinstance(location, str) or not location.strip():
            raise UsageError("no remote was given", hint="use an rclone path (remote:folder) or a local folder")
        if any(ch in location for ch in "\0\r\n"):
            raise UsageError("the remote contains a control character (newline or NUL)")
        self.location = location
        self.stats: Counter = stats if stats is not None else Counter()
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.timeout = float(timeout)

    def check_present(self) -> None:
        """Raise UnreachableError when the remote's root is plainly absent (a drive that is
        not mounted): an empty listing alone cannot tell that from an emptied vault, and the
        two need different answers (exit 5, try again later; exit 4, look at the remote).
        Called only when a known vault lists empty; a remote that cannot tell does nothing."""
        return None

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under ``prefix`` (recursive), in one remote listing; a missing root is empty."""

    @abstractmethod
    def read(self, name: str) -> bytes:
        """The object's bytes; ObjectNotFound when it is absent."""

    @abstractmethod
    def write(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (replacing it), then verify it before returning."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object; an absent object is not an error."""

    @abstractmethod
    def describe(self) -> str:
        """Human text naming the remote for messages; never contains a secret."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release processes or connections; the backend may not be used afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def _is_local_location(location: str) -> bool:
    if location.startswith(("file:", "/", "./", "../", "~")) or location in (".", ".."):
        return True
    if os.path.isdir(os.path.expanduser(location)):
        return True
    # Without a colon rclone would treat it as a local path anyway; keep it ours.
    return ":" not in location


def local_path(location: str) -> Path:
    """The folder a local location names (``file:`` / ``file://`` prefixes removed, ``~`` expanded)."""
    if location.startswith("file://"):
        location = location[len("file://") :]
    elif location.startswith("file:"):
        location = location[len("file:") :]
    if not location:
        raise UsageError("file: names no folder")
    return Path(os.path.expanduser(location))


def open_backend(
    location: str,
    *,
    stats: Counter | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 15.0,
) -> Backend:
    """Pick the backend a remote string names: a local folder, else an rclone path.

    ``rclone:REMOTE:PATH`` forces rclone (borgstore's URL form); ``rclone:PATH`` without a
    second colon stays the remote named ``rclone``.
    """
    if not isinstance(location, str) or not location.strip():
        raise UsageError("no remote was given", hint="use an rclone path (remote:folder) or a local folder")
    if location.startswith("rclone:") and ":" in location[len("rclone:") :]:
        kind, location = "rclone", location[len("rclone:") :]
    else:
        kind = "local" if _is_local_location(location) else "rclone"
    cls = load_backend(kind)
    return cls(location, stats=stats, environ=environ, timeout=timeout)
