"""The project stands on its own and builds like a release.

- Nothing refers to a folder beside the repository (the fixtures live in tests/fixtures).
- .ci/run runs exactly the README's set-up and test commands.
- ``python -m build`` (without isolation, from a copy of the tree: offline and quick) makes
  an sdist that carries the tests with their fixtures and licence notices, and a wheel
  that holds the ``otpbridge`` package, its data and its dist-info only; ``twine check``
  accepts both. .ci/run also builds with isolation and runs the installed wheel.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from tests.support.paths import FIXTURES, REPO

# Folders that are not the project's source: VCS, caches, virtual environments, build output.
SKIP_DIRS = {".git", ".hg", "__pycache__", "build", "dist", ".pytest_cache", ".ruff_cache", ".hypothesis", ".tox", ".nox"}
# Top-level folders whose Python files are not part of the installed package.
NOT_PACKAGED = {"tests", "scripts", "docs", ".ci"}


def _skip_dir(path: Path) -> bool:
    name = path.name
    return (
        name in SKIP_DIRS
        or name.endswith(".egg-info")
        or (path / "pyvenv.cfg").exists()
        or (name.startswith(".") and name not in {".ci", ".github"} and path.parent == REPO)
    )


def _source_files(root: Path):
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not _skip_dir(here / d))
        for f in sorted(files):
            yield here / f


# -- the repository stands alone ---------------------------------------------------------
def test_nothing_refers_to_a_folder_beside_the_repository():
    needles = ("../" + "shared", "OTPBRIDGE_" + "SHARED")  # split so this file does not match itself
    hits = []
    for path in _source_files(REPO):
        if path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{path.relative_to(REPO)}: {n}" for n in needles if n in text]
    assert not hits


def _readme_setup_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [line for block in blocks[:2] for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_commands():
    commands = _readme_setup_commands()
    assert commands == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'",
        "python -m pytest -n auto",
    ]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    for command in commands:
        assert command in ci, f".ci/run does not run the README's {command!r}"
    # ... in a fresh clone made in a new temporary folder, not in the checkout
    text = "\n".join(ci)
    clone = re.search(r"^git .*clone .*\"\$checkout\" \"\$tmp/", text, flags=re.M)
    assert "mktemp -d" in text and clone
    assert clone.start() < text.index(commands[0])


# -- release artefacts -------------------------------------------------------------------
@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """sdist + wheel of a copy of this tree, as ``python -m build`` makes them (the wheel
    from the sdist), without build isolation: the test venv has setuptools and build."""
    base = tmp_path_factory.mktemp("dists")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=lambda folder, names: [n for n in names if _skip_dir(Path(folder) / n)])
    out = base / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    (sdist,) = out.glob("otpbridge-*.tar.gz")
    (wheel,) = out.glob("otpbridge-*.whl")
    return sdist, wheel


def _package_py_files() -> collections.Counter:
    """File names of the project's Python modules, wherever the package folders are."""
    files = [
        p for p in _source_files(REPO)
        if p.suffix == ".py" and p.relative_to(REPO).parts[0] not in NOT_PACKAGED and len(p.relative_to(REPO).parts) > 1
    ]  # fmt: skip
    return collections.Counter(p.name for p in files)


def test_wheel_holds_the_package_its_data_and_nothing_else(dists):
    _, wheel = dists
    names = [n for n in zipfile.ZipFile(wheel).namelist() if not n.endswith("/")]
    version = wheel.name.split("-")[1]
    dist_info = f"otpbridge-{version}.dist-info/"
    # The man pages are installed deliberately to <prefix>/share/man/man1 (pyproject's
    # data-files), so `man otpbridge` works in a venv or pipx install.
    man = f"otpbridge-{version}.data/data/share/man/man1/"
    outside = [n for n in names if not (n.startswith(("otpbridge/", dist_info)) or (n.startswith(man) and n.endswith(".1")))]
    assert not outside, f"outside the package: {outside}"
    assert f"{man}otpbridge.1" in names, "the man pages are not installed"
    for part in ("tests", "fixtures", "scripts", "__pycache__", ".ci", "docs"):
        assert not [n for n in names if part in n.split("/")], part
    # every module of the source tree is in the wheel (no subpackage left out of the list)
    packaged = collections.Counter(n.rsplit("/", 1)[-1] for n in names if n.startswith("otpbridge/") and n.endswith(".py"))
    assert packaged == _package_py_files()
    # every package-data file (the pass extension; shell completion comes from click)
    data = resources.files("otpbridge").joinpath("data")
    expected = {f"otpbridge/data/{f.name}" for f in data.iterdir() if f.is_file() and f.name != "__pycache__"}
    expected |= {f"otpbridge/data/man/{f.name}" for f in data.joinpath("man").iterdir() if f.name.endswith(".1")}
    assert expected and expected <= set(names)
    assert {n for n in names if n.startswith("otpbridge/") and not n.endswith(".py")} == expected
    # metadata: licence, console script, plugin entry points
    meta = zipfile.ZipFile(wheel).read(dist_info + "METADATA").decode()
    assert "License-Expression: GPL-3.0-or-later" in meta
    assert f"{dist_info}licenses/LICENSE" in names
    entry_points = zipfile.ZipFile(wheel).read(dist_info + "entry_points.txt").decode()
    assert "otpbridge = otpbridge.cli:entry" in entry_points
    assert "[otpbridge.plugins]" in entry_points and "[otpbridge.backends]" in entry_points


def test_sdist_carries_tests_fixtures_and_licences(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    fixtures = {f"tests/fixtures/{p.relative_to(FIXTURES).as_posix()}" for p in FIXTURES.rglob("*") if p.is_file()}
    missing = fixtures - names
    assert not missing
    for name in ("LICENSE", "README.md", "pyproject.toml", "tests/conftest.py", "tests/support/paths.py", ".ci/run"):
        assert name in names
    junk = [n for n in names if {"__pycache__", ".venv", ".git", ".pytest_cache"} & set(n.split("/"))]
    assert not junk


def test_twine_accepts_both(dists):
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert check.returncode == 0, check.stdout + check.stderr
