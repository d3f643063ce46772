#!/usr/bin/env python3
"""Run import-linter's ``lint-imports`` (the contracts in pyproject.toml) on this source tree.

Why a wrapper: otpbridge's package is assembled from three folders (``bridge/`` is
``otpbridge``, ``backends/`` and ``plugins/`` are its subpackages; the design card's
layout), but grimp, which import-linter uses, finds a package's modules by walking ONE
folder. So this builds that folder as a tree of symlinks in a temporary directory, puts it
first on PYTHONPATH, and runs ``lint-imports`` from the repository (it reads
pyproject.toml there). Exit status: lint-imports'.

    python scripts/lint_imports.py [lint-imports options…]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"backends": REPO / "backends", "plugins": REPO / "plugins"}


def build_tree(root: Path) -> Path:
    pkg = root / "otpbridge"
    pkg.mkdir()
    for entry in (REPO / "bridge").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, src in SUBPACKAGES.items():
        (pkg / name).symlink_to(src)
    return root


def main(argv: list[str]) -> int:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    with tempfile.TemporaryDirectory(prefix="otpbridge-lint-") as tmp:
        tree = build_tree(Path(tmp))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
        return subprocess.run([exe, "--no-cache", *argv], cwd=REPO, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
