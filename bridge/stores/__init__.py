"""Stores: the :class:`~.base.Store` interface every plugin implements, and the registry
that finds plugins and tells which kind a file is.

:mod:`.base` is the interface (StoreSpec, Context, ReadResult, WriteReport, Store) and
the only part of this package a plugin may import; :mod:`.registry` loads plugins from
the ``otpbridge.plugins`` entry points and opens ``KIND:LOCATION`` strings.

May use: :mod:`otpbridge.core`. The plugins themselves live in the top-level
``plugins/`` folder (``otpbridge.plugins``).
"""
