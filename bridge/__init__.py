"""otpbridge: keep 2FA accounts safe and in step across stores, devices and clouds.

The public API is the handful of names below; everything else is internal. The API
functions (``open_store``, ``read_accounts``, ``convert``, ``Device``, ``backup``,
``sync``, ``restore`` …; see ``otpbridge.api``) load on first use, so ``import
otpbridge`` and ``otpbridge --version`` stay cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import OtpBridgeError
from .model import Account, Algorithm, Kind

_API = ("Device", "backup", "convert", "init", "open_store", "read", "read_accounts", "restore", "sync")

__all__ = ["Account", "Algorithm", "Kind", "OtpBridgeError", "__version__", *_API]


def __getattr__(name: str):  # PEP 562: the API module is imported only when used
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'otpbridge' has no attribute {name!r}")
