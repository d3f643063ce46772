"""Atomic, backed-up writes to a user's files.

A user's store is replaced only by a complete, fsynced file in the same folder
(rename is atomic there), and what was there before is kept as ``NAME.bak`` — so a
crash or a full disk leaves either the old file or the new one, never half of each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
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
    """Make ``folder`` and every missing parent 0700 (a home, its state, its caches).

    ``folder`` itself is otpbridge's own (callers pass only a home, its ``state/`` and
    caches), so an existing one that others may enter is tightened to 0700 too: otpbridge
    0.1.0 made them 0755, and a later ``chmod`` or a restored backup can loosen them. Only
    a real folder owned by this user is touched; existing parents (the user's own home,
    ``~/.config``) are left as they are."""
    folder = Path(folder)
    _tighten(folder)
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


def _tighten(folder: Path) -> None:
    try:
        st = os.lstat(folder)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077:
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)


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
