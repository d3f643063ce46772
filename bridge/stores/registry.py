"""Which store kinds exist and which one a file is: the registry of store plugins.

Plugins are found through the ``otpbridge.plugins`` entry point group (see
:mod:`otpbridge.core.entrypoints`) and loaded only when used. This module is the one
place that turns a ``KIND:LOCATION?options`` string into a :class:`~otpbridge.stores.base.Store`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otpbridge.core.entrypoints import PLUGIN_GROUP, load, names
from otpbridge.core.errors import MissingDependencyError, UsageError
from otpbridge.stores.base import Context, Store, StoreSpec, looks_like, read_head


def plugin_kinds() -> list[str]:
    return names(PLUGIN_GROUP)


def load_plugin(kind: str) -> Any:
    return load(PLUGIN_GROUP, kind)



def detect_kind(path: Path) -> str:
    """The kind whose ``sniff`` recognises ``path``; a usage error when none does."""

    if not path.exists():
        raise UsageError(f"{str(path)!r} does not exist", hint="to create a new store, name its kind: KIND:PATH")
    head = read_head(path)
    classes = []
    for kind in plugin_kinds():
        try:
            classes.append(load_plugin(kind))
        except (MissingDependencyError, ImportError):
            continue  # a broken third-party plugin must not stop detection of the others
    for cls in sorted(classes, key=lambda c: -c.sniff_priority):
        try:
            if cls.sniff(path, head):
                return cls.kind
        except Exception:  # noqa: BLE001,S112 - a sniffer must never break detection
            continue
    seen = looks_like(head)
    if seen is not None:
        raise UsageError(
            f"cannot tell what kind of file {str(path)!r} is: it looks like {seen[0]}",
            hint=seen[1] or "name it as KIND:PATH; 'otpbridge formats' lists the kinds",
        )
    raise UsageError(
        f"cannot tell what kind of file {str(path)!r} is",
        hint="name it as KIND:PATH; 'otpbridge formats' lists the kinds",
    )


def open_store(text: str | StoreSpec, ctx: Context) -> Store:
    """Parse ``KIND:LOCATION?options`` (detecting the kind if absent) and build the store."""

    spec = text if isinstance(text, StoreSpec) else StoreSpec.parse(text, plugin_kinds())
    if spec.kind is None:
        head, sep, _ = spec.location.partition(":")
        if sep and head.isalnum() and not spec.path.exists():
            raise UsageError(
                f"unknown store kind {head!r}", hint=f"known kinds: {', '.join(plugin_kinds())}"
            )
        kind = detect_kind(spec.path)
        ctx.info(f"detected {kind}: {spec.location}")
        spec = StoreSpec(kind, spec.location, spec.options)
    cls = load_plugin(spec.kind)
    return cls(spec, ctx)
