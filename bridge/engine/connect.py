"""Build an :class:`engine.Session` from a device's settings (config.toml).

The CLI and the Python API both go through here, so they open the same backend with
the same environment rules and the same stores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from otpbridge.core.secrets import Secret


def password_envs(specs: Iterable[str]) -> set[str]:
    """The variables that hold store passwords (``?password-env=NAME``)."""
    names = set()
    for spec in specs:
        if "?" in spec:
            names.update(v for k, v in parse_qsl(spec.rpartition("?")[2]) if k == "password-env")
    return names


def make_session(
    settings: Mapping[str, Any],
    *,
    state_dir: Path,
    environ: Mapping[str, str],
    stats: Counter,
    open_store: Callable[[str], Any],
    passphrase: Callable[[], Secret] | None,
    remote: str | None = None,
    stores: bool = True,
    also: Iterable[str] = (),
    **extra: Any,
):
    """A Session for this device; ``extra`` goes to the Session (note, warn, progress…)."""
    from otpbridge.backends.base import open_backend
    from otpbridge.engine.session import Session

    device = settings.get("device", {}) if isinstance(settings.get("device"), dict) else {}
    # rclone needs none of the stores' passwords (SPEC §7: only the child that needs a secret gets it).
    hidden = password_envs([*settings.get("stores", []), *also])
    child_env = {k: v for k, v in environ.items() if k not in hidden}
    backend = open_backend(remote or settings["remote"], stats=stats, environ=child_env)
    return Session(
        backend=backend,
        state_dir=state_dir,
        device_id=device.get("id", "") or "000000000000",
        device_name=device.get("name", ""),
        stores=[open_store(spec) for spec in settings.get("stores", [])] if stores else [],
        passphrase=passphrase,
        stats=stats,
        tombstone_age=_tombstone_age(settings),
        **extra,
    )


def _tombstone_age(settings: Mapping[str, Any]) -> float | None:
    """``[sync] tombstone_age_days`` of config.toml (docs/SYNC.md "Bounded remote")."""
    from otpbridge.core.errors import UsageError

    section = settings.get("sync")
    if not isinstance(section, dict) or "tombstone_age_days" not in section:
        return None
    days = section["tombstone_age_days"]
    if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
        raise UsageError("config.toml: [sync] tombstone_age_days must be a number of days ≥ 0")
    return float(days) * 86400


def init_settings(
    settings: Mapping[str, Any],
    *,
    remote: str,
    stores: Iterable[str],
    device_name: str | None,
    kdf: str,
    open_store: Callable[[str], Any],
) -> dict[str, Any]:
    """The device's settings after ``init REMOTE``: checked, with a device id and name.

    Store specs are opened once so that an unknown kind fails before anything is written.
    """
    import socket

    from otpbridge.core.errors import UsageError
    from otpbridge.engine.layout import DEVICE_ID_RE, new_device_id

    out = dict(settings)
    old_remote = out.get("remote")
    if old_remote and old_remote != remote:
        raise UsageError(
            f"this device already belongs to the vault at {old_remote}",
            hint="use another --home / OTPBRIDGE_HOME for a second vault",
        )
    stores = list(stores)
    for spec in stores:
        open_store(spec)
    device = dict(out.get("device", {})) if isinstance(out.get("device"), dict) else {}
    if not DEVICE_ID_RE.fullmatch(str(device.get("id", ""))):
        device["id"] = new_device_id()
    device["name"] = device_name or device.get("name") or socket.gethostname().split(".")[0] or "device"
    out.update(remote=remote, kdf=kdf, device=device)
    if stores:
        out["stores"] = stores
    out.setdefault("stores", [])
    return out


def check_state_owner(state: Any, device_id: str) -> None:
    """Refuse a home whose sync state belongs to another device id (a copied home)."""
    from otpbridge.core.errors import UsageError

    if state.vault_id and state.device and state.device != device_id:
        raise UsageError("the sync state of this home belongs to another device")
