"""Atomic, backed-up writes to a user's files.

A user's store is replaced only by a complete, fsynced file in the same folder
(rename is atomic there), and what was there before is kept as ``NAME.bak`` — so a
crash or a full disk leaves either the old file or the new one, never half of each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def private_dir(folder: str | os.PathLike[str]) -> Path:
    """Make ``folder`` and every missing parent 0700 (a home, its state, its caches); a
    folder that exists already is left as it is."""
    folder = Path(folder)
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
    return folder


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600, backup: bool = True) -> Path | None:
    """Write ``data`` to ``path`` atomically; return the backup's path if one was made."""
    # A symlinked store (a KeePass file kept in a synced folder, say) is written where the
    # link points: replacing the link itself would leave the real file behind, stale.
    target = Path(os.path.realpath(path))
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    saved: Path | None = None
    if backup and target.exists():
        saved = backup_path(target)
        _copy_atomic(target, saved)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)
    return saved


def _copy_atomic(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
