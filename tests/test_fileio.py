from __future__ import annotations

import os
import stat

from otpbridge.core.fileio import atomic_write


def test_new_file_is_private_and_old_one_is_kept(tmp_path):
    target = tmp_path / "sub" / "store.txt"
    assert atomic_write(target, b"one") is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    backup = atomic_write(target, b"two")
    assert target.read_bytes() == b"two" and backup is not None and backup.read_bytes() == b"one"
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_symlinked_store_is_written_through_the_link(tmp_path):
    real = tmp_path / "synced" / "db.kdbx"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "db.kdbx"
    link.symlink_to(real)
    atomic_write(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"
    assert (real.parent / "db.kdbx.bak").read_bytes() == b"old"


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "store.txt"
    target.write_bytes(b"keep me")

    def boom(*_a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    try:
        atomic_write(target, b"new", backup=False)
    except OSError:
        pass
    assert target.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["store.txt"]
