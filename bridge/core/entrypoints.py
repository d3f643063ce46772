"""Entry-point registry for store plugins and remote backends (as keyring/fsspec do).

Built-ins register through the same entry points a third-party package would use.
Nothing is imported until a kind is asked for, so ``otpbridge --version`` stays fast and
a plugin whose optional dependency is missing fails only when used, with the
``pip install`` that fixes it.
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from typing import Any

from otpbridge.core.errors import MissingDependencyError, UsageError

PLUGIN_GROUP = "otpbridge.plugins"
BACKEND_GROUP = "otpbridge.backends"

# Third-party module -> the extra that installs it.
_EXTRA_FOR_MODULE = {
    "pykeepass": "keepass",
    "google": "gauth",
    "segno": "gauth",
    "nacl": "ente",
    "keyring": "keyring",
    "zxingcpp": "qr",
    "PIL": "qr",
}


class _EntryPoint:
    """The part of ``importlib.metadata.EntryPoint`` we use: ``name``, ``value``, ``load()``."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def load(self) -> Any:
        from importlib import import_module

        module, _, attrs = self.value.partition("[")[0].strip().partition(":")
        obj = import_module(module.strip())
        for attr in filter(None, attrs.strip().split(".")):
            obj = getattr(obj, attr)
        return obj


class _Unusual(Exception):
    """Something the fast scan does not handle: let importlib.metadata decide."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _scan(group: str) -> dict[str, Any]:
    """Entry points of ``group`` read straight from the ``*.dist-info``/``*.egg-info`` folders on sys.path.

    Why not ``importlib.metadata.entry_points``: importing it pulls in the email package
    and costs ~30 ms, a fifth of a no-change ``sync`` (docs/PERFORMANCE.md). This reads
    the same files in the same order with the same rule (the first distribution of a
    name on sys.path wins); anything else (a zip on sys.path, another finder that
    provides distributions) raises :class:`_Unusual` and the standard library decides.
    """
    from importlib.machinery import PathFinder

    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        raise _Unusual
    seen: set[str] = set()
    found: dict[str, Any] = {}
    for entry in sys.path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except OSError:
            if os.path.isfile(folder):
                raise _Unusual from None  # a zip/egg file: importlib.metadata reads those
            continue
        for meta in names:
            stem, dot, suffix = meta.rpartition(".")
            if not dot or suffix.lower() not in ("dist-info", "egg-info"):
                continue
            dist = _norm(stem.partition("-")[0])
            path = os.path.join(folder, meta)
            if dist in seen or not os.path.isdir(path):
                continue
            seen.add(dist)
            try:
                with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError):
                raise _Unusual from None
            for name, value in _group_lines(text, group):
                found[name] = _EntryPoint(name, value)
    return found


def _group_lines(text: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` lines of one ``[group]`` section (the entry_points.txt INI subset)."""
    out, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
            continue
        if inside:
            name, sep, value = line.partition("=")
            if not sep:
                raise _Unusual
            out.append((name.strip(), value.strip()))
    return out


@cache
def _entry_points(group: str) -> dict[str, Any]:
    try:
        return _scan(group)
    except _Unusual:
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    return sorted(_entry_points(group))


def load(group: str, name: str) -> Any:
    """Load the class registered as ``name``; explain a missing optional dependency."""
    eps = _entry_points(group)
    if name not in eps:
        what = "store kind" if group == PLUGIN_GROUP else "backend"
        raise UsageError(f"unknown {what} {name!r}", hint=f"known: {', '.join(sorted(eps))}")
    try:
        return eps[name].load()
    except ModuleNotFoundError as exc:
        err = missing_dependency(exc, repr(name))
        if err is None:
            raise
        raise err from None


def missing_dependency(exc: ModuleNotFoundError, who: str = "this command") -> MissingDependencyError | None:
    """The clear error for an optional package that is not installed, or None if ``exc``
    is about anything else (then it is a bug and keeps its traceback). Plugins import
    their optional packages lazily, so this can surface at load time or mid-command."""
    top = (exc.name or "").split(".")[0]
    extra = _EXTRA_FOR_MODULE.get(top)
    if extra is None:
        return None
    return MissingDependencyError(
        f"{who} needs the Python package {top!r}, which is not installed",
        hint=f"pip install 'otpbridge[{extra}]'",
    )


def load_backend(name: str) -> Any:
    return load(BACKEND_GROUP, name)
