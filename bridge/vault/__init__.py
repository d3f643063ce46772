"""The encrypted vault format's cryptography, and nothing else (docs/FORMAT.md).

Owns key derivation with bounded parameters, epoch headers, sealed objects with key
commitment and padding (:mod:`.format`). It knows nothing of remotes, stores, devices or
merging: it turns bytes and a passphrase into bytes.

May use: :mod:`otpbridge.core`. Used by :mod:`otpbridge.engine` (and the API/CLI).
"""
