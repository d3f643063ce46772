"""otpbridge: keep 2FA accounts safe and in step across stores, devices and clouds.

The public API is the handful of names below; everything else is internal.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import OtpBridgeError
from .model import Account, Algorithm, Kind

__all__ = ["Account", "Algorithm", "Kind", "OtpBridgeError", "__version__"]
