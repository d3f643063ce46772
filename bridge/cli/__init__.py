"""The ``otpbridge`` command.

Subcommands live in small modules and are imported only when invoked (``LazyGroup``),
so ``otpbridge --version`` never pays for crypto, rich or the plugins.

May use: every layer below it (:mod:`otpbridge.engine`, :mod:`otpbridge.automation`,
:mod:`otpbridge.vault`, :mod:`otpbridge.stores`, :mod:`otpbridge.core`) and the backend
interface. It holds no logic of its own beyond parsing options and printing reports.
"""

from __future__ import annotations

import sys

from otpbridge import __version__

# name -> "module:attribute"; help summaries are kept here so `--help` imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "formats": ("otpbridge.cli.basic:formats_cmd", "List store kinds and file formats: what each reads, writes and loses."),
    "list": ("otpbridge.cli.basic:list_cmd", "List the 2FA accounts in a store or file (no secrets)."),
    "code": ("otpbridge.cli.basic:code_cmd", "Show current one-time codes."),
    "convert": ("otpbridge.cli.basic:convert_cmd", "Copy accounts from one store or file into another."),
    "init": ("otpbridge.cli.vault_cmds:init_cmd", "Create an encrypted vault on a remote, or join one."),
    "backup": ("otpbridge.cli.vault_cmds:backup_cmd", "Back up local stores to the vault (one way)."),
    "sync": ("otpbridge.cli.vault_cmds:sync_cmd", "Two-way sync between local stores and the vault."),
    "restore": ("otpbridge.cli.vault_cmds:restore_cmd", "Restore accounts from the vault into a store."),
    "passphrase": ("otpbridge.cli.vault_admin:passphrase_grp", "Change or check the backup passphrase."),
    "key": ("otpbridge.cli.key_cmds:key_grp", "List, add or remove the keys that open the vault (recovery code, key files)."),
    "status": ("otpbridge.cli.vault_admin:status_cmd", "Show the last verified backup and sync state."),
    "verify": ("otpbridge.cli.vault_admin:verify_cmd", "Decrypt and check every object on the remote."),
    "devices": ("otpbridge.cli.vault_admin:devices_grp", "List or remove devices of the vault."),
    "snapshots": ("otpbridge.cli.vault_admin:snapshots_cmd", "List the vault's snapshots, or diff two."),
    "forget": ("otpbridge.cli.vault_admin:forget_cmd", "Forget this device's older snapshots (--keep-last/daily/…)."),
    "prune": ("otpbridge.cli.vault_admin:prune_cmd", "The same as forget."),
    "store": ("otpbridge.cli.store_cmds:store_grp", "List, add or remove this device's stores."),
    "schedule": ("otpbridge.cli.automation:schedule_cmd", "Run sync periodically (systemd timer or cron)."),
    "hook": ("otpbridge.cli.automation:hook_grp", "Install a git hook / pass extension that syncs after changes."),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        print(f"otpbridge {__version__}")
        return 0
    from otpbridge.cli.app import run

    return run(args)


def entry() -> None:
    """The console script: ``main()``, then a quick exit.

    Interpreter shutdown (tearing down every imported module) costs ~20 ms, a visible
    share of a no-change cron sync. Exit handlers still run (they stop ``rclone rcd``
    and remove its private folder), streams are flushed, then the process ends.
    ``main()`` itself stays an ordinary function for in-process callers and tests.
    """
    import atexit
    import os

    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError, ValueError):
        code = code or 1
    atexit._run_exitfuncs()  # noqa: SLF001 - the documented way to run them early
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
