"""The core: what an account is and what every other layer speaks.

Owns the account model (:mod:`.model`), otpauth URIs (:mod:`.otpauth`), code generation
(:mod:`.codes`), secret values and their sources (:mod:`.secrets`), the error root with
exit codes (:mod:`.errors`), atomic file writes (:mod:`.fileio`), the per-home lock
(:mod:`.lock`), a device home's config (:mod:`.config`), entry-point discovery
(:mod:`.entrypoints`), the minimal environment of every child process (:mod:`.childenv`),
rclone remote strings as they may be shown (:mod:`.remotes`) and what a run is doing, for
-v and the status line (:mod:`.activity`).

May use: the standard library and third-party packages only. Everything else in
otpbridge may use it (import-linter's layer contract in pyproject.toml).
"""
