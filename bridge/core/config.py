"""Per-device configuration and state location (SPEC §5: ``OTPBRIDGE_HOME`` / ``--home``).

Passed around as an explicit object: two homes on one machine are two devices, which is
how the tests run several devices side by side.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otpbridge.core.errors import UsageError
from otpbridge.core.fileio import atomic_write, private_dir


@dataclass(frozen=True)
class Config:
    config_dir: Path
    state_dir: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        chosen = home or env.get("OTPBRIDGE_HOME")
        if chosen:
            base = Path(os.path.expanduser(str(chosen))).absolute()
            return cls(config_dir=base, state_dir=base / "state")
        import platformdirs

        return cls(
            config_dir=Path(platformdirs.user_config_dir("otpbridge")),
            state_dir=Path(platformdirs.user_data_dir("otpbridge")) / "state",
        )

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "otpbridge.log"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    def exists(self) -> bool:
        return self.config_file.exists()

    def read(self) -> dict[str, Any]:
        try:
            with open(self.config_file, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            return {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{self.config_file} is not valid TOML: {exc}") from None
        problem = _settings_problem(data)
        if problem:
            raise UsageError(f"{self.config_file}: {problem}", hint="fix it by hand, or move it away and run 'otpbridge init' again")
        return data

    def write(self, data: Mapping[str, Any]) -> None:
        private_dir(self.config_dir)
        atomic_write(self.config_file, dump_toml(data).encode("utf-8"), mode=0o600, backup=True)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = "".join(c if ord(c) >= 32 else f"\\u{ord(c):04x}" for c in escaped)
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: Mapping[str, Any], _prefix: str = "") -> str:
    """A small TOML writer for the config's shapes: scalars, lists and nested tables."""
    lines = []
    tables = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f"{_prefix}.{_toml_key(key)}" if _prefix else _toml_key(key)
        out += f"\n[{name}]\n" + dump_toml(value, name)
    return out


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return _toml_value(key)


def _settings_problem(data: Mapping[str, Any]) -> str | None:
    """What is wrong with the shape of a config.toml (the keys otpbridge reads), or None."""
    for key in ("remote", "kdf"):
        if key in data and not isinstance(data[key], str):
            return f"'{key}' must be a string"
    stores = data.get("stores", [])
    if not isinstance(stores, list) or not all(isinstance(s, str) for s in stores):
        return "'stores' must be a list of strings"
    device = data.get("device", {})
    if not isinstance(device, dict) or not all(isinstance(device.get(k, ""), str) for k in ("id", "name")):
        return "[device] must be a table whose id and name are strings"
    return None
