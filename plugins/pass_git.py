"""Commit otpbridge's changes to a pass store's git repository the way ``pass`` does.

pass runs ``git add FILE`` then ``git commit -m MSG`` (``-S`` when
``pass.signcommits`` is true) in the innermost work tree holding the file, with
``GIT_CEILING_DIRECTORIES`` set to the store's parent so a repository *around* the
store (a dotfiles repo in $HOME) is never used. Files are already written when this
runs, so a failing git only warns: the store is correct, its history is behind.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from otpbridge.core.childenv import child_env

_GIT_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_NAMESPACE", "GIT_INDEX_FILE", "GIT_INDEX_VERSION", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")


def _env(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in child_env(environ).items() if k not in _GIT_VARS}
    env["GIT_CEILING_DIRECTORIES"] = str(root.resolve().parent)
    # Entry names are file names, not patterns: an issuer "*" must not make
    # 'git add/commit -- */alice.gpg' sweep in every user's half-done edit.
    env["GIT_LITERAL_PATHSPECS"] = "1"
    env["OTPBRIDGE_RUNNING"] = "1"  # our own commit: the post-commit hook (bridge/automation/hooks.py) must not sync again
    return env


def _git(argv: Sequence[str], env: Mapping[str, str], stats) -> subprocess.CompletedProcess[str]:
    if stats is not None:
        stats["git"] += 1
    return subprocess.run(list(argv), capture_output=True, text=True, env=dict(env), check=False, stdin=subprocess.DEVNULL)


def work_tree(folder: Path, root: Path, env: Mapping[str, str], git: str, stats=None) -> Path | None:
    """The top of the git work tree that holds ``folder`` (inside the store), or None."""
    cur = folder
    while not cur.is_dir() and cur != root and root in cur.parents:
        cur = cur.parent
    proc = _git([git, "-C", str(cur), "rev-parse", "--show-toplevel"], env, stats)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return Path(proc.stdout.strip())


def commit_changes(root: Path, files: Sequence[Path], message: str, environ: Mapping[str, str], ctx) -> None:
    """``git add`` + ``git commit`` of ``files`` (written or deleted), grouped per work tree."""
    if not files:
        return
    candidates = [f for f in files if _has_git(f.parent, root)]
    if not candidates:
        return  # a store without git costs no process at all
    git = shutil.which("git", path=environ.get("PATH"))
    if git is None:
        ctx.warn(f"{root} is a git repository but git is not installed: the change was not committed")
        return
    env = _env(root, environ)
    stats = getattr(ctx, "stats", None)
    trees: dict[Path, list[Path]] = {}
    seen_dirs: dict[Path, Path | None] = {}
    for f in candidates:
        if f.parent not in seen_dirs:
            seen_dirs[f.parent] = work_tree(f.parent, root, env, git, stats)
        top = seen_dirs[f.parent]
        if top is not None:
            trees.setdefault(top, []).append(f)
    for top, members in trees.items():
        rels = [str(f.resolve().relative_to(top.resolve())) if f.exists() else str(_rel_missing(f, top)) for f in members]
        gone = [r for r, f in zip(rels, members, strict=True) if not f.exists() and not f.is_symlink()]
        if gone:
            # a deleted file git never tracked makes 'git add -- it' fail for all the others
            known = _git([git, "-C", str(top), "ls-files", "-z", "--", *gone], env, stats).stdout.split("\0")
            rels = [r for r in rels if r not in gone or r in known]
            if not rels:
                continue
        add = _git([git, "-C", str(top), "add", "-A", "--", *rels], env, stats)
        if add.returncode != 0:
            ctx.warn(f"git add failed in {top}: {_last_line(add.stderr)}; the change was written but not committed")
            continue
        status = _git([git, "-C", str(top), "status", "--porcelain", "--", *rels], env, stats)
        if not status.stdout.strip():
            continue
        sign = _git([git, "-C", str(top), "config", "--bool", "--get", "pass.signcommits"], env, stats)
        argv = [git, "-C", str(top), "commit", "-q"]
        if sign.stdout.strip() == "true":
            argv.append("-S")
        argv += ["-m", message, "--", *rels]
        done = _git(argv, env, stats)
        if done.returncode != 0:
            ctx.warn(f"git commit failed in {top}: {_last_line(done.stderr)}; the change was written but not committed")


def _has_git(folder: Path, root: Path) -> bool:
    """Is there a ``.git`` between ``folder`` and the store root (the only places git may look)?"""
    cur = folder
    while True:
        if (cur / ".git").exists():
            return True
        if cur == root or root not in cur.parents:
            return False
        cur = cur.parent


def _rel_missing(f: Path, top: Path) -> Path:
    """The path of a deleted file relative to ``top`` (its folders may be gone too)."""
    parent = f.parent
    tail = [f.name]
    while not parent.exists():
        tail.append(parent.name)
        parent = parent.parent
    return parent.resolve().relative_to(top.resolve()).joinpath(*reversed(tail))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown error"
