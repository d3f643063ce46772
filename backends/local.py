"""A plain folder as a remote (a USB stick, a synced folder, a NAS mount).

No rclone process: one ``os.walk`` is the listing and writes go through
``fileio.atomic_write`` (temp file in the same folder, fsync, rename, fsync of the
folder), so a crash leaves the old object or the new one, never half of one. Folders we
create are 0700 and objects 0600: ciphertext only, but its size and timing are still
nobody else's business.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from otpbridge.backends.base import (
    MAX_OBJECT_BYTES,
    Backend,
    ObjectInfo,
    ObjectNotFound,
    is_listable,
    local_path,
    validate_name,
    validate_prefix,
)
from otpbridge.core.errors import IntegrityError, UnreachableError, UnsafeObject
from otpbridge.core.fileio import atomic_write


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        location: str,
        *,
        stats: Counter | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = 15.0,
    ) -> None:
        super().__init__(location, stats=stats, environ=environ, timeout=timeout)
        self.root = local_path(location).absolute()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*validate_name(name).split("/"))

    def _unreachable(self, action: str, exc: OSError) -> UnreachableError:
        reason = exc.strerror or type(exc).__name__
        return UnreachableError(f"cannot {action} in {self.describe()}: {reason}")

    def check_present(self) -> None:
        if not os.path.lexists(self.root):
            raise UnreachableError(
                f"{self.describe()} does not exist",
                hint="is the drive it is on mounted, or was the folder moved? Then run again",
            )

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = validate_prefix(prefix)
        self.stats["listings"] += 1
        top = self.root.joinpath(*prefix.split("/")) if prefix else self.root
        if not top.exists():
            return []
        if not top.is_dir():
            raise UnreachableError(f"{self.describe()}: {prefix or 'the root'} is not a folder")
        found: list[ObjectInfo] = []

        def fail(exc: OSError) -> None:
            raise self._unreachable("list", exc)

        for folder, dirs, files in os.walk(top, onerror=fail):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel_folder = Path(folder).relative_to(self.root).as_posix()
            for fname in files:
                name = fname if rel_folder == "." else f"{rel_folder}/{fname}"
                if not is_listable(name):
                    continue
                try:
                    # lstat: a symlink is listed as itself (its read is refused), never
                    # as what it points at (/dev/zero, a file outside the remote).
                    st = os.lstat(os.path.join(folder, fname))
                except FileNotFoundError:
                    continue  # deleted while we walked
                except OSError as exc:
                    raise self._unreachable("list", exc) from None
                found.append(ObjectInfo(name, st.st_size, st.st_mtime, None))
        found.sort(key=lambda info: info.name)
        return found

    def read(self, name: str) -> bytes:
        path = self._path(name)
        self.stats["downloads"] += 1
        return self._read(name, path)

    def _read(self, name: str, path: Path) -> bytes:
        """A regular file's bytes, at most MAX_OBJECT_BYTES: no symlink is followed and no
        FIFO or device is waited on or read without end (UnsafeObject, exit 4)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"{name} is not in {self.describe()}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeObject(f"{name} in {self.describe()} is a symbolic link, not an object") from None
            raise self._unreachable(f"read {name}", exc) from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ObjectNotFound(f"{name} is not in {self.describe()}")
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeObject(f"{name} in {self.describe()} is not a regular file ({_file_type(st.st_mode)})")
            os.set_blocking(fd, True)
            chunks, total = [], 0
            while chunk := os.read(fd, min(1 << 20, MAX_OBJECT_BYTES + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > MAX_OBJECT_BYTES:
                    raise UnsafeObject(f"{name} in {self.describe()} is larger than any valid object "
                                       f"({MAX_OBJECT_BYTES} bytes)")
            return b"".join(chunks)
        except OSError as exc:
            raise self._unreachable(f"read {name}", exc) from None
        finally:
            os.close(fd)

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        data = bytes(data)
        self.stats["uploads"] += 1
        if path.is_symlink():
            # atomic_write writes where a link points: a link planted under the name of a
            # future upload would have it overwrite any file of this user.
            raise UnsafeObject(f"{name} in {self.describe()} is a symbolic link, not an object")
        try:
            self._make_folders(path.parent)
            atomic_write(path, data, mode=0o600, backup=False)
        except OSError as exc:
            raise self._unreachable(f"write {name}", exc) from None
        self.stats["verifications"] += 1
        if self._read(name, path) != data:
            with contextlib.suppress(OSError):
                path.unlink()
            raise IntegrityError(f"{name} read back differently from what was written to {self.describe()}")

    def _make_folders(self, folder: Path) -> None:
        missing: list[Path] = []
        probe = folder
        while not probe.exists():
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
        for item in reversed(missing):
            try:
                item.mkdir(mode=0o700)
            except FileExistsError:
                continue
            os.chmod(item, 0o700)  # mkdir's mode is filtered by the umask

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete(self, name: str) -> None:
        path = self._path(name)
        self.stats["deletes"] += 1
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.ENOTDIR):
                return
            raise self._unreachable(f"delete {name}", exc) from None


def _file_type(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "a special file"
