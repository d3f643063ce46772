"""The sync engine: one module per operation over a remote vault (docs/SYNC.md).

- :mod:`.session` — a run's explicit objects (Session, SyncReport) and start-up checks;
- :mod:`.fastpath` — ``sync``/``backup`` up to the no-change fast path (nothing imports it back);
- :mod:`.sync` — the work of a sync/backup run past the fast path;
- :mod:`.init_vault`, :mod:`.restore`, :mod:`.rotation` (passphrase change),
  :mod:`.verify`, :mod:`.devices` (devices, snapshots) — the other operations;
- :mod:`.remote` — opening the vault on the remote, reading/writing views, old epochs;
- :mod:`.local` — reading the local stores of a run (with their sealed cache);
- :mod:`.cache` — the download cache: what this device read from the remote, sealed under
  the vault key, so a sync downloads only new objects; the tombstone purge rule;
- :mod:`.merge`, :mod:`.state` (the device's sync state), :mod:`.snapshots` (retention),
  :mod:`.layout` (object names on the remote), :mod:`.connect` (building a Session from
  a home's config, for the CLI and the API alike).

Named ``engine``, not ``sync``: ``otpbridge.sync`` is a public API function and a
subpackage of that name would shadow it.

May use: :mod:`otpbridge.core`, :mod:`otpbridge.vault`, :mod:`otpbridge.stores` and the
backend interface (:mod:`otpbridge.backends.base`). Used by the CLI and the API.
"""
