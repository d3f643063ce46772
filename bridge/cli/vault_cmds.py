"""init, backup, sync, restore: the commands that move accounts between the local stores
and the vault.

Thin: builds an :class:`~otpbridge.engine.session.Session` from the global options and
config.toml (:mod:`.vault_common`), calls the engine, prints. JSON schemas are documented
in docs/CLI.md.
"""

from __future__ import annotations

import click

from otpbridge.cli.common import State, counted, errors_json, finish_partial
from otpbridge.cli.completion import lazy
from otpbridge.cli.vault_common import (
    ask_new_passphrase,
    clean_home_on_failure,
    kdf_params,
    record_failure,
    session_of,
    settings_of,
    snapshot_id,
)
from otpbridge.core.errors import OtpBridgeError, UsageError


# --- init ----------------------------------------------------------------------------------
@click.command("init")
@click.argument("remote")
@click.option("--store", "stores", multiple=True, shell_complete=lazy("store_specs"), help="A local store to sync (repeatable); the first is the primary.")
@click.option("--device", "device_name", help="A name for this device (default: the host name).")
@click.option("--kdf", metavar="default|strong", default="default", show_default=True,
              help="Key-derivation cost of a NEW vault: default (256 MiB Argon2id) or strong (1 GiB).")
@click.option("--accept-weak-passphrase", is_flag=True,
              help="Create the vault even if zxcvbn scores the new passphrase below 3 of 4.")
@click.option("--create", is_flag=True,
              help="A --store that does not exist yet is made by the first sync or restore (else refused).")
@click.option("--recovery-key", "recovery", is_flag=True,
              help="A new vault also gets a recovery code, printed once: it opens the vault without the passphrase.")
@click.option("--dry-run", is_flag=True, help="Say what would be done; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
@clean_home_on_failure
def init_cmd(state: State, remote: str, stores: tuple[str, ...], device_name: str | None, kdf: str,
             accept_weak_passphrase: bool, create: bool, recovery: bool, dry_run: bool, as_json: bool) -> None:
    """Create an encrypted vault on REMOTE (an rclone path or a folder), or join it.

    On an empty REMOTE a new vault is created and the passphrase is asked twice (rated
    by zxcvbn; below score 3 of 4 it is refused unless --accept-weak-passphrase); on a
    vault this device joins (the passphrase is checked). A folder with other files is
    refused (exit 2). Store paths are saved absolute (cron and systemd run elsewhere); a
    store that does not exist is refused unless --create (or '?create=1') asks for it.

    \b
    Examples:
      otpbridge init mydrive:otp --store keepass:~/otp.kdbx --device laptop
      otpbridge init mydrive:otp --store keepass:~/new.kdbx --create
      otpbridge init /media/usb/otp --store pass: --kdf strong
    """
    from otpbridge.core.remotes import redact_remote
    from otpbridge.engine.connect import check_state_owner, init_settings
    from otpbridge.engine.init_vault import init_vault
    from otpbridge.engine.layout import Listing
    from otpbridge.engine.state import SyncState

    settings = init_settings(settings_of(state, need=False), remote=remote, stores=stores,
                             device_name=device_name, kdf=kdf, open_store=state.open_store, create=create)
    device = settings["device"]
    params = kdf_params(state, kdf)
    s = session_of(state, settings)
    s.params = params
    if getattr(s.backend, "name", "") == "local":  # a relative folder must mean the same from cron
        settings["remote"] = str(s.backend.root)
    if dry_run:
        listing = Listing.parse(s.backend.list())
        action = "join" if listing.is_vault else ("create" if listing.empty else "refuse")
        if as_json:
            state.emit_json({"dry_run": True, "would": action, "device": device, "remote": redact_remote(settings["remote"]),
                             "stores": settings["stores"]})
            return
        what = {"join": "join the vault", "create": "create a vault", "refuse": "refuse (not empty)"}[action]
        state.echo(f"would {what} at {s.backend.describe()} as device {device['name']!r}")
        return
    local_state = SyncState.load(state.config.state_dir)
    check_state_owner(local_state, device["id"])
    result = init_vault(s, local_state, new_passphrase=lambda: ask_new_passphrase(
        state, state.passphrase_source(), accept_weak=accept_weak_passphrase),
        unique_name=device_name is None and not settings_of(state, need=False).get("device"), recovery=recovery)
    if result.device_id:  # the configured id is already in use on the remote: joined under a new one
        device = settings["device"] = {**device, "id": result.device_id}
    if result.device_name:  # the default name was taken in the vault
        device = settings["device"] = {**device, "name": result.device_name}
    state.config.write(settings)
    if not result.created:
        from otpbridge.engine.sync import announce

        with s.backend:
            announce(s)  # listed by 'devices' everywhere before its first sync
    if as_json:
        out = {"created": result.created, "vault_id": result.vault_id, "epoch": result.epoch,
               "device": device, "remote": redact_remote(settings["remote"]), "stores": settings["stores"],
               "dry_run": False}
        if result.recovery_key:
            out["recovery_key"] = result.recovery_key
        state.emit_json(out)
        return
    verb = "created a new vault" if result.created else "joined the vault"
    state.echo(f"{verb} {result.vault_id} at {s.backend.describe()} as device {device['name']!r} ({device['id']})")
    if result.recovery_key:
        click.echo("\nRecovery code (shown once; write it down and keep it offline, like a spare house key):\n\n"
                   f"    {result.recovery_key}\n\n"
                   "It opens the vault without the passphrase: otpbridge --use-recovery-key restore REMOTE --into ...")
    if not settings["stores"]:
        state.note("no store configured yet: add one with 'otpbridge init REMOTE --store KIND:PATH', "
                   "or use 'otpbridge restore --into KIND:PATH'")
    elif not result.created:
        state.note("run 'otpbridge sync' to merge this device's accounts with the vault")


# --- backup / sync ----------------------------------------------------------------------------
def _sync_options(fn):
    for opt in reversed([
        click.option("--dry-run", is_flag=True, help="Show what would change; change nothing."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stats included)."),
        click.option("--allow-deletions", is_flag=True, help="Send more deletions than the safety limit."),
        click.option("--accept-rollback", is_flag=True, help="Accept a remote older than the one seen before."),
        click.option("--adopt-device", is_flag=True,
                     help="Another copy of this home used its device id: merge everything, then take the id over."),
        click.option("--accept-new-keys", is_flag=True,
                     help="Trust a key-slot header not linked to the vault this device knows (only after key "
                     "changes you know of; docs/SYNC.md 'Keys')."),
        click.option("--full", is_flag=True,
                     help="Read every store and open the vault even when nothing changed (the no-change fast "
                     "path checks neither passwords nor the passphrase); 'schedule --check' uses it."),
    ]):
        fn = opt(fn)
    return fn


def _run_sync(state: State, mode: str, *, dry_run: bool, as_json: bool, allow_deletions: bool,
              accept_rollback: bool, adopt_device: bool, accept_new_keys: bool, full: bool) -> None:
    from otpbridge.engine.fastpath import sync

    settings = settings_of(state)
    try:
        s = session_of(state, settings)
        if not s.stores:
            raise UsageError("no store is configured", hint="add one: otpbridge init REMOTE --store KIND:PATH")
        s.accept_new_keys = accept_new_keys
        with s.backend:
            report = sync(s, mode=mode, dry_run=dry_run, allow_deletions=allow_deletions,
                          accept_rollback=accept_rollback, adopt_device=adopt_device, force=full)
    except OtpBridgeError as err:
        if not dry_run:
            record_failure(state, err)
        raise
    for w in report.warnings:
        state.warn(w)
    if as_json:
        out = report.to_json(state.stats)
        out["store_errors"] = errors_json(report.store_errors)
        state.emit_json(out)
    else:
        _print_sync(state, report)
    finish_partial(report.store_errors, "entries")


def _print_sync(state: State, r) -> None:
    pre = "would " if r.dry_run else ""
    if r.fast_path:
        state.echo("nothing changed")
        return
    for what, items in (("send new", r.added), ("send edited", r.edited), ("send renamed", r.renamed),
                        ("send deleted", r.deleted),
                        ("send HOTP counter of", r.counters), ("add here", r.received_added),
                        ("update here", r.received_updated), ("rename here", r.received_renamed),
                        ("remove here", r.received_removed)):
        for label in items:
            state.echo(f"{pre}{what}: {label}")
    for c in r.conflicts:
        state.warn(conflict_text(c))
    if r.uploaded and not r.dry_run:
        state.echo(f"uploaded and verified {r.uploaded}")
    if not r.changed and not r.conflicts:
        state.echo(f"{pre}nothing to do ({counted(r.accounts, 'account')} in step)" if not r.dry_run
                   else "nothing would change")
    elif not r.dry_run:
        state.echo(f"{counted(r.accounts, 'account')} in the vault")


def _when(t) -> str:
    import time as _time

    return _time.strftime("%Y-%m-%d %H:%M", _time.localtime(t)) if t else "an unknown time"


def conflict_text(c) -> str:
    """Both sides of a conflict, by device name, with both versions' times (issue 18)."""
    name = c.other_name or c.other_device
    kept = "this device's version" if c.winner == "local" else f"{name}'s version"
    lost = f"{name}'s version" if c.winner == "local" else "this device's version"
    text = (f"conflict: {c.label} was {c.local} here ({_when(c.local_time)}) and {c.remote} on {name} "
            f"({_when(c.remote_time)}); kept {kept}")
    if c.restore:
        how = c.restore if not c.restore.startswith("otpbridge ") else f"to get it back: {c.restore}"
        text += f"; {lost} stays restorable: {how}"
    return text


@click.command("backup")
@_sync_options
@click.pass_obj
def backup_cmd(state: State, **options: bool) -> None:
    """Back up the local stores to the vault (one way; nothing local changes).

    \b
    Examples:
      otpbridge backup
      otpbridge backup --dry-run --json
      otpbridge backup --full      # also when nothing changed: proves every password works
    """
    _run_sync(state, "backup", **options)


@click.command("sync")
@_sync_options
@click.pass_obj
def sync_cmd(state: State, **options: bool) -> None:
    """Two-way sync: local changes to the vault, other devices' changes into the primary store.

    \b
    Examples:
      otpbridge sync
      OTPBRIDGE_PASSCOMMAND='pass show backup/otpbridge' otpbridge --quiet sync
      otpbridge sync --dry-run --json
    """
    _run_sync(state, "sync", **options)


# --- restore -----------------------------------------------------------------------------------
@click.command("restore")
@click.argument("remote", required=False)
@click.option("--into", "into", shell_complete=lazy("store_specs"), help="The store to restore into (default: the primary store).")
@click.option("--snapshot", shell_complete=lazy("snapshot_ids"), help="A snapshot id from 'otpbridge snapshots' (default: the latest state).")
@click.option("--account", "pattern", metavar="PATTERN",
              help="Restore only the accounts whose issuer, name or folder contains PATTERN (or whose id starts with it).")
@click.option("--dry-run", is_flag=True, help="Show what would be restored; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--accept-rollback", is_flag=True, help="Accept a remote older than the one seen before.")
@click.pass_obj
@clean_home_on_failure(one_off_remote=True)
def restore_cmd(state: State, remote: str | None, into: str | None, snapshot: str | None, pattern: str | None,
                dry_run: bool, as_json: bool, accept_rollback: bool) -> None:
    """Restore every account of the vault into a store (adds and updates; never removes).

    Restoring into one of this device's stores is a change: the restored accounts are
    sent to the vault, so they come back on every device and win over an older deletion
    (docs/SYNC.md "How to undo a deletion").

    On a new machine: 'otpbridge restore REMOTE --into keepass:new.kdbx' needs nothing but
    the passphrase; or 'otpbridge init REMOTE' first and then 'otpbridge restore --into …'.

    \b
    Examples:
      otpbridge restore mydrive:otp --into keepass:~/new.kdbx
      otpbridge restore --snapshot 195b02700242-3 --into uris:check.txt --dry-run
      otpbridge restore --snapshot laptop-3 --account github
    """
    from otpbridge.engine.restore import restore
    from otpbridge.engine.state import SyncState

    settings = settings_of(state, need=remote is None)
    if not into and not settings.get("stores"):
        raise UsageError("where to? no --into was given and no store is configured",
                         hint="name the target store: otpbridge restore [REMOTE] --into KIND:PATH")
    target_spec = into or settings["stores"][0]
    target = state.open_store(target_spec)
    # A store of this device: the restore is sent to the vault as this device's change.
    own = remote is None and bool(settings.get("stores")) and any(
        state.open_store(spec).label == target.label for spec in settings["stores"])
    s = session_of(state, settings if remote is None else {"remote": remote}, remote=remote, stores=own,
                 also=(target_spec,))
    local_state = SyncState.load(state.config.state_dir) if remote is None else SyncState()
    snapshot = snapshot_id(state, snapshot)
    with s.backend:
        rep = restore(s, local_state, target, snapshot=snapshot, dry_run=dry_run, accept_rollback=accept_rollback,
                      account=pattern, send=own)
    for w in rep.warnings:
        state.warn(w)
    if as_json:
        out = rep.to_json(state.stats)
        out["errors"] = errors_json(rep.errors)
        state.emit_json(out)
    else:
        pre = "would " if dry_run else ""
        for label in rep.added:
            state.echo(f"{pre}add: {label}")
        for label in rep.updated:
            state.echo(f"{pre}update: {label}")
        state.echo(f"{'would restore' if dry_run else 'restored'} {counted(rep.accounts, 'account')} into {rep.target} "
                   f"({len(rep.added)} new, {len(rep.updated)} updated, {rep.unchanged} unchanged)")
        if rep.sent:
            state.echo(f"sent to the vault as this device's change (wins over older deletions on every device): "
                       f"{', '.join(rep.sent)}")
        elif own and dry_run:
            state.echo("would send what differs from the vault as this device's change")
    finish_partial(rep.errors, "entries")


__all__ = ["backup_cmd", "init_cmd", "restore_cmd", "sync_cmd"]
