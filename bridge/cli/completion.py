"""Shell completion beyond click's defaults (issue 18): store specs complete their
``KIND:`` prefix and then the path after it; device names/ids and snapshot ids come from
this home's sync state (no network, no passphrase: what the last sync saw)."""

from __future__ import annotations

import os
from typing import Any

import click


def lazy(name: str):
    """A ``shell_complete`` callback that imports this module's function ``name`` only
    when the shell asks (commands stay light to import)."""

    def callback(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
        return globals()[name](ctx, param, incomplete)

    return callback


def _item(value: str, **kw: Any) -> Any:
    from click.shell_completion import CompletionItem

    return CompletionItem(value, **kw)


def _state(ctx: click.Context) -> Any:
    from otpbridge.core.config import Config
    from otpbridge.engine.state import SyncState

    root = ctx.find_root()
    try:
        return SyncState.load(Config.resolve(root.params.get("home"), os.environ).state_dir)
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return None


def store_specs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """``kee`` → ``keepass:``; ``keepass:~/Do`` → ``keepass:~/Documents/``…"""
    try:
        from otpbridge.stores.registry import plugin_kinds

        kinds = list(plugin_kinds())
    except Exception:  # noqa: BLE001
        kinds = []
    head, sep, rest = incomplete.partition(":")
    if not sep or head not in kinds:
        return [_item(f"{k}:", type="plain") for k in kinds if k.startswith(incomplete)]
    folder, _, stem = rest.rpartition("/")
    base = os.path.expanduser(folder) if folder else "."
    out = []
    try:
        for entry in sorted(os.scandir(base or "/"), key=lambda e: e.name):
            if entry.name.startswith(stem) and (stem.startswith(".") or not entry.name.startswith(".")):
                shown = f"{folder}/{entry.name}" if folder else entry.name
                if folder == "" and rest.startswith("/"):
                    shown = "/" + entry.name
                out.append(_item(f"{head}:{shown}{'/' if entry.is_dir() else ''}", type="plain"))
    except OSError:
        pass
    return out


def device_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    state = _state(ctx)
    if state is None:
        return []
    out = []
    for dev, name in sorted(state.device_names.items()):
        if dev == state.device or dev in state.removed:
            continue
        for word in (name, dev):
            if word and word.startswith(incomplete):
                out.append(_item(word, help=dev if word == name else name))
    return out


def snapshot_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    import re

    state = _state(ctx)
    if state is None or not state.listing:
        return []
    out = [_item("latest")] if "latest".startswith(incomplete) and param.name != "snapshot" else []
    view = re.compile(r"devices/([0-9a-f]{12})/\d+-(\d+)-(\d+)\.view$")
    for entry in state.listing:
        m = view.match(str(entry[0]))
        if m:
            sid = f"{m.group(1)}-{int(m.group(2))}"
            if sid.startswith(incomplete):
                out.append(_item(sid, help=state.device_names.get(m.group(1), "")))
    return out
