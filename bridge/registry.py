"""Entry-point registry for store plugins and remote backends (as keyring/fsspec do).

Built-ins register through the same entry points a third-party package would use.
Nothing is imported until a kind is asked for, so ``otpbridge --version`` stays fast and
a plugin whose optional dependency is missing fails only when used, with the
``pip install`` that fixes it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .errors import MissingDependencyError, UsageError

PLUGIN_GROUP = "otpbridge.plugins"
BACKEND_GROUP = "otpbridge.backends"

# Third-party module -> the extra that installs it.
_EXTRA_FOR_MODULE = {
    "pykeepass": "keepass",
    "gnupg": "pass",
    "google": "gauth",
    "segno": "gauth",
    "nacl": "ente",
    "keyring": "keyring",
}


@cache
def _entry_points(group: str) -> dict[str, Any]:
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
        top = (exc.name or "").split(".")[0]
        extra = _EXTRA_FOR_MODULE.get(top)
        if extra is None:
            raise
        raise MissingDependencyError(
            f"{name!r} needs the Python package {top!r}, which is not installed",
            hint=f"pip install 'otpbridge[{extra}]'",
        ) from None


def plugin_kinds() -> list[str]:
    return names(PLUGIN_GROUP)


def load_plugin(kind: str) -> Any:
    return load(PLUGIN_GROUP, kind)


def load_backend(name: str) -> Any:
    return load(BACKEND_GROUP, name)
