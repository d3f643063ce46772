"""otpbridge: keep 2FA accounts safe and in step across stores, devices and clouds.

The public API is the handful of names below; everything else is internal. The API
functions (``open_store``, ``read_accounts``, ``convert``, ``Device``, ``backup``,
``sync``, ``restore`` …; see ``otpbridge.api``) load on first use, so ``import
otpbridge`` and ``otpbridge --version`` stay cheap.
"""

from __future__ import annotations

__version__ = "0.2.0"

_API = ("Device", "backup", "codes", "convert", "init", "open_store", "read", "read_accounts", "restore", "sync")
# Loaded on first use too: even errors/model cost ~20 ms (dataclasses pulls in inspect),
# which `otpbridge --version` does not need (docs/PERFORMANCE.md).
_LAZY = {"OtpBridgeError": "core.errors", "Account": "core.model", "Algorithm": "core.model", "Kind": "core.model",
         "RecoveryKey": "core.secrets", "IdentityKey": "core.secrets"}

__all__ = ["Account", "Algorithm", "IdentityKey", "Kind", "OtpBridgeError", "RecoveryKey", "__version__", *_API]


def __dir__() -> list[str]:  # dir(otpbridge): the public names, loaded or not
    return sorted(set(__all__) | {"__version__", "__doc__", "__name__"})


def __getattr__(name: str):  # PEP 562: modules are imported only when used
    from importlib import import_module

    if name in _API:
        return getattr(import_module(".api", __name__), name)
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'otpbridge' has no attribute {name!r}")
