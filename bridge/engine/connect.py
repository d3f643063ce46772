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

from otpbridge.core.childenv import note_secret_env
from otpbridge.core.secrets import Secret


def password_envs(specs: Iterable[str]) -> set[str]:
    """The variables that hold store passwords (``?password-env=NAME``)."""
    names = set()
    for spec in specs:
        if "?" in spec:
            names.update(v for k, v in parse_qsl(spec.rpartition("?")[2]) if k == "password-env")
    return names


class TracedBackend:
    """A backend each of whose calls is an activity step (``-v``, the
    status line); everything else is the backend's own."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    def __enter__(self) -> Any:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)

    def list(self, *args: Any, **kwargs: Any) -> Any:
        from otpbridge.core.activity import step

        with step(f"remote: list {self._inner.describe()}") as info:
            out = self._inner.list(*args, **kwargs)
            info["result"] = f"{len(out)} objects"
        return out

    def read(self, name: str, *args: Any, **kwargs: Any) -> Any:
        from otpbridge.core.activity import step

        with step(f"remote: download {name}") as info:
            out = self._inner.read(name, *args, **kwargs)
            info["result"] = f"{len(out)} bytes"
        return out

    def write(self, name: str, data: bytes, *args: Any, **kwargs: Any) -> Any:
        from otpbridge.core.activity import step

        with step(f"remote: upload {name} ({len(data)} bytes)"):
            return self._inner.write(name, data, *args, **kwargs)

    def delete(self, name: str, *args: Any, **kwargs: Any) -> Any:
        from otpbridge.core.activity import step

        with step(f"remote: delete {name}"):
            return self._inner.delete(name, *args, **kwargs)


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
    note_secret_env(*hidden)  # nor gpg, git or a password command (core/childenv.py)
    backend = open_backend(remote or settings["remote"], stats=stats, environ={k: v for k, v in environ.items() if k not in hidden})
    from otpbridge.core.activity import active

    if active():  # -v or a status line: every remote call is a step
        backend = TracedBackend(backend)
    return Session(
        backend=backend,
        state_dir=state_dir,
        device_id=device.get("id", "") or "000000000000",
        device_name=device.get("name", ""),
        stores=[open_store(spec) for spec in settings.get("stores", [])] if stores else [],
        passphrase=passphrase,
        stats=stats,
        **({"retention": _retention(settings["retention"])} if "retention" in settings else {}),
        tombstone_age=_tombstone_age(settings),
        deltas=_deltas(settings),
        **extra,
    )


def _retention(data: Any) -> Any:
    from otpbridge.engine.snapshots import Retention

    return Retention.from_config(data)


PATH_OPTIONS = ("keyfile", "password-file")


def absolute_spec(text: str, known_kinds: Iterable[str], cwd: str | None = None, *, create: bool = False,
                  location: str = "") -> str:
    """``KIND:LOCATION?options`` with a relative LOCATION (and path options) made absolute.

    config.toml is read by cron and systemd from another folder: a path saved as typed
    would name another file there (issue 18). ``~`` stays (it means the same everywhere
    for this user). ``create`` adds ``create=1`` (a missing store may be created).
    ``location``: the place a store without one resolved to (``pass:`` is wherever
    PASSWORD_STORE_DIR points in this shell, which cron does not have).
    """
    import os
    from urllib.parse import quote

    from otpbridge.stores.base import StoreSpec

    spec = StoreSpec.parse(text, known_kinds)
    base = cwd or os.getcwd()

    head, colon, _ = spec.location.partition(":")
    if spec.kind is None and colon and head.isalnum():
        return text  # an unknown KIND: (a typo): open_store names it

    def fix(path: str) -> str:
        if not path or path.startswith("~") or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(base, path))

    location = fix(spec.location or location)
    options = dict(spec.options)
    for name in PATH_OPTIONS:
        if options.get(name):
            options[name] = fix(options[name])
    if create:
        options["create"] = "1"
    if location == spec.location and options == dict(spec.options):
        return text
    out = f"{spec.kind}:{location}" if spec.kind else location
    if options:
        out += "?" + "&".join(f"{quote(k, safe='-_')}={quote(v, safe='/~:.,@+-_ ')}" for k, v in options.items())
    return out


def wants_create(spec: Any) -> bool:
    return str(spec.options.get("create", "")).lower() in ("1", "yes", "true")


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


def _deltas(settings: Mapping[str, Any]) -> str:
    """``[sync] deltas`` of config.toml (docs/SYNC.md "Deltas"): auto, always or never."""
    from otpbridge.core.errors import UsageError

    section = settings.get("sync")
    value = section.get("deltas", "auto") if isinstance(section, dict) else "auto"
    if value not in ("auto", "always", "never"):
        raise UsageError("config.toml: [sync] deltas must be \"auto\", \"always\" or \"never\"")
    return str(value)


def init_settings(
    settings: Mapping[str, Any],
    *,
    remote: str,
    stores: Iterable[str],
    device_name: str | None,
    kdf: str,
    open_store: Callable[[str], Any],
    create: bool = False,
    cwd: str | None = None,
) -> dict[str, Any]:
    """The device's settings after ``init REMOTE``: checked, with a device id and name.

    Store specs are opened once so that an unknown kind fails before anything is written;
    relative paths are made absolute; a database (KeePass, pass) that does not exist is
    refused unless ``create`` (``--create``) or its own ``?create=1`` asks for a new one
    (a typo would become a new, empty database); a missing export file gets ``create=1``
    (the first sync writes it).
    """
    import os
    import socket

    from otpbridge.core.errors import UsageError
    from otpbridge.engine.layout import DEVICE_ID_RE, new_device_id
    from otpbridge.stores.registry import plugin_kinds

    out = dict(settings)
    old_remote = out.get("remote")
    if old_remote and old_remote != remote:
        raise UsageError(
            f"this device already belongs to the vault at {old_remote}",
            hint="use another --home / OTPBRIDGE_HOME for a second vault",
        )
    kinds = plugin_kinds()
    stores = [absolute_spec(spec, kinds, cwd) for spec in stores]
    for i, spec in enumerate(stores):
        store = open_store(spec)
        resolved = getattr(store, "path", None)
        if not store.spec.location and isinstance(resolved, os.PathLike):
            spec = stores[i] = absolute_spec(spec, kinds, cwd, location=os.fspath(resolved))
            store = open_store(spec)
        if store.exists() or wants_create(store.spec):
            continue
        if not create and getattr(store, "is_database", False):
            raise UsageError(
                f"{store.label} does not exist",
                hint="check the path; to start a new, empty store there, add --create "
                f"(or '?create=1': {spec}{'&' if '?' in spec else '?'}create=1)",
            )
        stores[i] = absolute_spec(spec, kinds, cwd, create=True)
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
