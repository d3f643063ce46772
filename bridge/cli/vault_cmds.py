"""init, backup, sync, restore, passphrase, status, verify, devices, snapshots.

Thin: builds an :class:`engine.Session` from the global options and config.toml, calls
the engine, prints. JSON schemas are documented in docs/SYNC.md.
"""

from __future__ import annotations

import re
import time
from typing import Any

import click

from ..errors import OtpBridgeError, UsageError
from .common import State, errors_json, finish_partial

CONFIG_KEYS = ("remote", "stores", "kdf")


# --- building a session -----------------------------------------------------------------
def _settings(state: State, *, need: bool = True) -> dict[str, Any]:
    data = state.config.read()
    if need and not data.get("remote"):
        raise UsageError(
            f"this device has no vault configured ({state.config.config_file})",
            hint="run 'otpbridge init REMOTE --store STORE' first",
        )
    return data


def _progress(state: State):
    if not state.progress_enabled:
        return None

    def tick(what: str, done: int, total: int) -> None:
        if total:
            end = "\n" if done >= total else ""
            click.echo(f"\r{what} {done}/{total}", err=True, nl=False)
            if end:
                click.echo("", err=True)

    return tick


def _session(state: State, settings: dict[str, Any], *, remote: str | None = None, stores: bool = True,
             also: tuple[str, ...] = ()):
    from ..session import make_session

    return make_session(
        settings,
        state_dir=state.config.state_dir,
        environ=state.environ,
        stats=state.stats,
        open_store=state.open_store,
        passphrase=state.passphrase_source().get,
        remote=remote,
        stores=stores,
        also=also,
        note=state.note,
        warn=state.warn,
        progress=_progress(state),
    )


def _params(state: State, preset: str):
    from ..vault import choose_params

    return choose_params(preset, state.environ)


def _record_failure(state: State, err: OtpBridgeError) -> None:
    from ..engine import record_error

    record_error(state.config.state_dir, err, time.time())


# --- passphrase strength ------------------------------------------------------------------
def strength(passphrase: str) -> tuple[int, str]:
    """A rough entropy estimate in bits (length x log2 of the character classes used).

    Deliberately simple and pessimistic about words: it only decides whether to warn.
    """
    import math

    pool = 0
    for pattern, size in ((r"[a-z]", 26), (r"[A-Z]", 26), (r"[0-9]", 10), (r"[^a-zA-Z0-9]", 33)):
        if re.search(pattern, passphrase):
            pool += size
    distinct = len(set(passphrase))
    bits = int(len(passphrase) * math.log2(pool)) if pool else 0
    bits = min(bits, int(distinct * math.log2(max(pool, 2)) * 1.5)) if passphrase else 0
    verdict = "weak" if bits < 50 else ("fair" if bits < 70 else "strong")
    return bits, verdict


def _ask_new(state: State, source) -> Any:
    from ..secrets import has_tty

    secret = source.get(confirm=True)
    bits, verdict = strength(secret.reveal())
    if verdict == "weak":
        state.warn(
            f"this passphrase is weak (about {bits} bits): anyone who gets the remote's files can try to guess it "
            "offline; four or more random words are much stronger"
        )
        if has_tty() and not source.configured() and not click.confirm("Use it anyway?", default=False, err=True):
            raise UsageError("no passphrase was set")
    else:
        state.note(f"passphrase strength: {verdict} (about {bits} bits)")
    return secret


# --- init ----------------------------------------------------------------------------------
@click.command("init")
@click.argument("remote")
@click.option("--store", "stores", multiple=True, help="A local store to sync (repeatable); the first is the primary.")
@click.option("--device", "device_name", help="A name for this device (default: the host name).")
@click.option("--kdf", metavar="default|strong", default="default", show_default=True,
              help="Key-derivation cost of a NEW vault: default (256 MiB Argon2id) or strong (1 GiB).")
@click.option("--dry-run", is_flag=True, help="Say what would be done; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def init_cmd(state: State, remote: str, stores: tuple[str, ...], device_name: str | None, kdf: str,
             dry_run: bool, as_json: bool) -> None:
    """Create an encrypted vault on REMOTE (an rclone path or a folder), or join it.

    On an empty REMOTE a new vault is created and the passphrase is asked twice; on a
    vault this device joins (the passphrase is checked). A folder with other files is
    refused (exit 2).

    \b
    Examples:
      otpbridge init mydrive:otp --store keepass:~/otp.kdbx --device laptop
      otpbridge init /media/usb/otp --store pass: --kdf strong
    """
    from ..engine import init_vault
    from ..remote import Listing
    from ..session import check_state_owner, init_settings
    from ..syncstate import SyncState

    settings = init_settings(_settings(state, need=False), remote=remote, stores=stores,
                             device_name=device_name, kdf=kdf, open_store=state.open_store)
    device = settings["device"]
    params = _params(state, kdf)
    s = _session(state, settings)
    s.params = params
    if getattr(s.backend, "name", "") == "local":  # a relative folder must mean the same from cron
        settings["remote"] = str(s.backend.root)
    if dry_run:
        listing = Listing.parse(s.backend.list())
        action = "join" if listing.is_vault else ("create" if listing.empty else "refuse")
        if as_json:
            state.emit_json({"dry_run": True, "would": action, "device": device, "remote": settings["remote"],
                             "stores": settings["stores"]})
            return
        what = {"join": "join the vault", "create": "create a vault", "refuse": "refuse (not empty)"}[action]
        state.echo(f"would {what} at {s.backend.describe()} as device {device['name']!r}")
        return
    local_state = SyncState.load(state.config.state_dir)
    check_state_owner(local_state, device["id"])
    result = init_vault(s, local_state, new_passphrase=lambda: _ask_new(state, state.passphrase_source()))
    if result.device_id:  # the configured id is already in use on the remote: joined under a new one
        device = settings["device"] = {**device, "id": result.device_id}
    state.config.write(settings)
    if as_json:
        state.emit_json({"created": result.created, "vault_id": result.vault_id, "epoch": result.epoch,
                         "device": device, "remote": settings["remote"], "stores": settings["stores"],
                         "dry_run": False})
        return
    verb = "created a new vault" if result.created else "joined the vault"
    state.echo(f"{verb} {result.vault_id} at {s.backend.describe()} as device {device['name']!r} ({device['id']})")
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
    ]):
        fn = opt(fn)
    return fn


def _run_sync(state: State, mode: str, dry_run: bool, as_json: bool, allow_deletions: bool,
              accept_rollback: bool, adopt_device: bool = False) -> None:
    from ..engine import sync

    settings = _settings(state)
    try:
        s = _session(state, settings)
        if not s.stores:
            raise UsageError("no store is configured", hint="add one: otpbridge init REMOTE --store KIND:PATH")
        with s.backend:
            report = sync(s, mode=mode, dry_run=dry_run, allow_deletions=allow_deletions,
                          accept_rollback=accept_rollback, adopt_device=adopt_device)
    except OtpBridgeError as err:
        if not dry_run:
            _record_failure(state, err)
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
    for what, items in (("send new", r.added), ("send edited", r.edited), ("send deleted", r.deleted),
                        ("send HOTP counter of", r.counters), ("add here", r.received_added),
                        ("update here", r.received_updated), ("remove here", r.received_removed)):
        for label in items:
            state.echo(f"{pre}{what}: {label}")
    for c in r.conflicts:
        kept = "this device's" if c.winner == "local" else f"device {c.other_device}'s"
        state.warn(f"conflict: {c.label} was {c.local} here and {c.remote} on device {c.other_device}; kept {kept}")
    if r.uploaded and not r.dry_run:
        state.echo(f"uploaded and verified {r.uploaded}")
    if not r.changed and not r.conflicts:
        state.echo(f"{pre}nothing to do ({r.accounts} accounts in step)" if not r.dry_run else "nothing would change")
    elif not r.dry_run:
        state.echo(f"{r.accounts} accounts in the vault")


@click.command("backup")
@_sync_options
@click.pass_obj
def backup_cmd(state: State, dry_run: bool, as_json: bool, allow_deletions: bool, accept_rollback: bool,
               adopt_device: bool) -> None:
    """Back up the local stores to the vault (one way; nothing local changes).

    \b
    Examples:
      otpbridge backup
      otpbridge backup --dry-run --json
    """
    _run_sync(state, "backup", dry_run, as_json, allow_deletions, accept_rollback, adopt_device)


@click.command("sync")
@_sync_options
@click.pass_obj
def sync_cmd(state: State, dry_run: bool, as_json: bool, allow_deletions: bool, accept_rollback: bool,
             adopt_device: bool) -> None:
    """Two-way sync: local changes to the vault, other devices' changes into the primary store.

    \b
    Examples:
      otpbridge sync
      OTPBRIDGE_PASSCOMMAND='pass show backup/otpbridge' otpbridge --quiet sync
      otpbridge sync --dry-run --json
    """
    _run_sync(state, "sync", dry_run, as_json, allow_deletions, accept_rollback, adopt_device)


# --- restore -----------------------------------------------------------------------------------
@click.command("restore")
@click.argument("remote", required=False)
@click.option("--into", "into", help="The store to restore into (default: the primary store).")
@click.option("--snapshot", help="A snapshot id from 'otpbridge snapshots' (default: the latest state).")
@click.option("--dry-run", is_flag=True, help="Show what would be restored; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--accept-rollback", is_flag=True, help="Accept a remote older than the one seen before.")
@click.pass_obj
def restore_cmd(state: State, remote: str | None, into: str | None, snapshot: str | None, dry_run: bool,
                as_json: bool, accept_rollback: bool) -> None:
    """Restore every account of the vault into a store (adds and updates; never removes).

    On a new machine: 'otpbridge restore REMOTE --into keepass:new.kdbx' needs nothing but
    the passphrase; or 'otpbridge init REMOTE' first and then 'otpbridge restore --into …'.

    \b
    Examples:
      otpbridge restore mydrive:otp --into keepass:~/new.kdbx
      otpbridge restore --snapshot 195b02700242-3 --into uris:check.txt --dry-run
    """
    from ..engine import restore
    from ..syncstate import SyncState

    settings = _settings(state, need=remote is None)
    if not into and not settings.get("stores"):
        raise UsageError("where to? no --into was given and no store is configured",
                         hint="name the target store: otpbridge restore [REMOTE] --into KIND:PATH")
    target_spec = into or settings["stores"][0]
    s = _session(state, settings if remote is None else {"remote": remote}, remote=remote, stores=False,
                 also=(target_spec,))
    local_state = SyncState.load(state.config.state_dir) if remote is None else SyncState()
    target = state.open_store(target_spec)
    with s.backend:
        rep = restore(s, local_state, target, snapshot=snapshot, dry_run=dry_run, accept_rollback=accept_rollback)
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
        state.echo(f"{'would restore' if dry_run else 'restored'} {rep.accounts} accounts into {rep.target} "
                   f"({len(rep.added)} new, {len(rep.updated)} updated, {rep.unchanged} unchanged)")
    finish_partial(rep.errors, "entries")


# --- passphrase ----------------------------------------------------------------------------------
@click.group("passphrase")
def passphrase_grp() -> None:
    """Change or check the backup passphrase.

    \b
    Examples:
      otpbridge passphrase check
      OTPBRIDGE_NEW_PASSCOMMAND='pass show backup/new' otpbridge passphrase change
    """


@passphrase_grp.command("change")
@click.option("--discard-remote-only", is_flag=True,
              help="Drop accounts that only other devices hold (lists them first), as OneAuth does.")
@click.option("--kdf", metavar="default|strong", default=None,
              help="Key-derivation cost of the new epoch (default: as configured).")
@click.option("--dry-run", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--accept-rollback", is_flag=True)
@click.pass_obj
def passphrase_change_cmd(state: State, discard_remote_only: bool, kdf: str | None, dry_run: bool,
                          as_json: bool, accept_rollback: bool) -> None:
    """Re-key the vault: afterwards the old passphrase opens nothing on the remote.

    The current passphrase comes from the usual sources, the new one from
    OTPBRIDGE_NEW_PASSPHRASE, OTPBRIDGE_NEW_PASSCOMMAND, --new-passphrase-file/-fd or a
    prompt. Interrupted? Run the same command again: it finishes the job.

    \b
    Examples:
      otpbridge passphrase change
      otpbridge passphrase change --discard-remote-only --dry-run
    """
    from ..engine import change_passphrase

    settings = _settings(state)
    s = _session(state, settings)
    s.params = _params(state, kdf or settings.get("kdf", "default"))
    try:
        with s.backend:
            rep = change_passphrase(s, lambda: _ask_new(state, state.new_passphrase_source()),
                                    discard_remote_only=discard_remote_only, dry_run=dry_run,
                                    accept_rollback=accept_rollback)
    except OtpBridgeError as err:
        if not dry_run:
            _record_failure(state, err)
        raise
    if as_json:
        state.emit_json(rep.to_json(state.stats))
        return
    if rep.lost:
        state.warn(f"{'would drop' if dry_run else 'dropped'} {len(rep.lost)} account(s) only other devices held: "
                   + ", ".join(rep.lost))
    if dry_run:
        state.echo(f"would re-key epoch {rep.old_epoch} into epoch {rep.new_epoch}")
        return
    if rep.already_done:
        state.echo(f"the passphrase change to epoch {rep.new_epoch} was already complete")
        return
    state.echo(f"{'finished the interrupted' if rep.resumed else 'done:'} passphrase change: epoch {rep.new_epoch}, "
               f"{rep.reencrypted} object(s) re-encrypted, {rep.deleted} old object(s) deleted")
    state.warn("if the remote keeps file versions or a trash (Google Drive, Dropbox, OneDrive, S3 versioning, "
               "Nextcloud), old copies there still open with the OLD passphrase: empty them "
               "(e.g. 'rclone cleanup REMOTE') to finish revoking it")


@passphrase_grp.command("check")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def passphrase_check_cmd(state: State, as_json: bool) -> None:
    """Prove you still know the passphrase (nothing changes).

    \b
    Examples:
      otpbridge passphrase check
    """
    from ..engine import open_key
    from ..remote import Listing
    from ..syncstate import SyncState

    settings = _settings(state)
    s = _session(state, settings, stores=False)
    with s.backend:
        listing = Listing.parse(s.backend.list())
        key, _ref = open_key(s, listing, SyncState.load(state.config.state_dir), s.get_passphrase())
    if as_json:
        state.emit_json({"ok": True, "epoch": key.epoch, "vault_id": key.vault_id.hex()})
    else:
        state.echo(f"the passphrase is correct (vault {key.vault_id.hex()}, epoch {key.epoch})")


# --- status / verify ------------------------------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")


def parse_duration(text: str) -> float:
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 90m, 36h, 2d or 1w")
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]]
    return float(m[1]) * factor


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    delta = max(0, now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(ts))} ({delta / size:.1f}{unit} ago)"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(ts))} ({int(delta)}s ago)"


@click.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--max-age", help="Exit 1 when the last verified backup is older than this (e.g. 2d, 36h).")
@click.pass_obj
def status_cmd(state: State, as_json: bool, max_age: str | None) -> int:
    """Show the last verified backup, the last error and this device's vault (no passphrase).

    \b
    Examples:
      otpbridge status
      otpbridge status --max-age 2d   # exit 1 when older (monitoring)
      otpbridge status --json
    """
    from ..syncstate import SyncState

    limit = parse_duration(max_age) if max_age else None
    settings = _settings(state)
    st = SyncState.load(state.config.state_dir)
    now = time.time()
    last = st.last_verified_backup
    too_old = limit is not None and (last is None or now - last > limit)
    device = settings.get("device", {})
    out = {
        "remote": settings.get("remote"),
        "stores": settings.get("stores", []),
        "device": {"id": device.get("id"), "name": device.get("name")},
        "vault_id": st.vault_id,
        "epoch": st.epoch,
        "accounts": st.accounts,
        "last_verified_backup": last,
        "last_sync": st.last_sync,
        "last_error": st.last_error,
        "max_age": limit,
        "ok": not too_old,
    }
    # automation (bridge/logfile.py): the last failed timer/cron/git-hook run, until a sync succeeds
    from ..logfile import describe_failure, read_failure

    out["last_unattended_failure"] = unattended = read_failure(state.config.state_dir)
    if as_json:
        state.emit_json(out)
    else:
        state.echo(f"vault:    {st.vault_id or '(not joined)'} at {out['remote']} (epoch {st.epoch})")
        state.echo(f"device:   {device.get('name')} ({device.get('id')})")
        state.echo(f"stores:   {', '.join(out['stores']) or '(none)'}")
        state.echo(f"accounts: {st.accounts}")
        state.echo(f"last verified backup: {_ago(last, now)}")
        if st.last_error:
            e = st.last_error
            state.echo(f"last error: {_ago(e.get('time'), now)}: {e.get('message')} (exit {e.get('exit')})")
        if unattended:  # automation (bridge/logfile.py)
            state.echo(describe_failure(unattended))
    if too_old:
        if not as_json:
            click.echo(f"otpbridge: the last verified backup is {'missing' if last is None else 'older than ' + max_age}",
                       err=True)
        return 1
    return 0


@click.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def verify_cmd(state: State, as_json: bool) -> None:
    """Download and decrypt every object of the vault (a restore drill; changes nothing).

    \b
    Examples:
      otpbridge verify
      otpbridge verify --json
    """
    from ..engine import verify
    from ..errors import IntegrityError
    from ..syncstate import SyncState

    settings = _settings(state)
    s = _session(state, settings, stores=False)
    with s.backend:
        rep = verify(s, SyncState.load(state.config.state_dir))
    if as_json:
        state.emit_json(rep.to_json(state.stats))
    else:
        state.echo(f"epoch {rep.epoch}: {rep.headers} header(s), {rep.views} object(s) decrypted, "
                   f"{rep.accounts} accounts")
        for name in rep.other_epochs:
            state.warn(f"left over from an older epoch: {name}")
        for f in rep.failures:
            click.echo(f"FAILED {f}", err=True)
    if rep.failures:
        raise IntegrityError(f"{len(rep.failures)} object(s) failed verification", hint="see above")


# --- devices / snapshots -----------------------------------------------------------------------------
def _ts(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


@click.group("devices", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def devices_grp(ctx: click.Context, as_json: bool) -> None:
    """List the vault's devices (default), or remove one.

    \b
    Examples:
      otpbridge devices
      otpbridge devices remove 4a731d133733   # an id from 'otpbridge devices'
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(devices_list_cmd, as_json=as_json)


@devices_grp.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def devices_list_cmd(state: State, as_json: bool) -> None:
    """List devices (no passphrase: names are those seen at the last sync).

    \b
    Examples:
      otpbridge devices list --json
    """
    from ..engine import devices
    from ..syncstate import SyncState

    settings = _settings(state)
    s = _session(state, settings, stores=False)
    with s.backend:
        rows = devices(s, SyncState.load(state.config.state_dir))
    if as_json:
        state.emit_json(rows)
        return
    state.table(["id", "name", "last write", "seq", "snapshots", ""],
                [(r["id"], r["name"], _ts(r["last_write"]), r["seq"], r["views"],
                  "this device" if r["this_device"] else ("removed" if r["removed"] else ""))
                 for r in rows])


@devices_grp.command("remove")
@click.argument("device_id")
@click.option("--dry-run", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def devices_remove_cmd(state: State, device_id: str, dry_run: bool, as_json: bool) -> None:
    """Remove a device: its accounts stay (merged first), its objects go, it may not sync again.

    \b
    Examples:
      otpbridge devices remove 4a731d133733 --dry-run
    """
    from ..engine import sync
    from ..remote import DEVICE_ID_RE

    settings = _settings(state)
    s = _session(state, settings)
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise UsageError(f"{device_id!r} is not a device id", hint="'otpbridge devices' lists them")
    if device_id == s.device_id:
        raise UsageError("this device cannot remove itself", hint="remove it from another device")
    with s.backend:
        report = sync(s, mode="sync", dry_run=dry_run, remove_devices=[device_id])
    if as_json:
        state.emit_json(report.to_json(state.stats))
    else:
        state.echo(f"{'would remove' if dry_run else 'removed'} device {device_id} "
                   f"({len(report.cleaned)} object(s) deleted)")


@click.command("snapshots")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def snapshots_cmd(state: State, as_json: bool) -> None:
    """List snapshots (each device's retained copies); restore one with 'restore --snapshot ID'.

    \b
    Examples:
      otpbridge snapshots
      otpbridge restore --snapshot ID --into uris:check.txt --dry-run
    """
    from ..engine import snapshots
    from ..syncstate import SyncState

    settings = _settings(state)
    s = _session(state, settings, stores=False)
    with s.backend:
        rows = snapshots(s, SyncState.load(state.config.state_dir))
    if as_json:
        state.emit_json(rows)
        return
    state.table(["id", "time (UTC)", "device", ""],
                [(r["id"], _ts(r["time"]), r["device_name"] or r["device"], "latest" if r["latest"] else "")
                 for r in rows])


__all__ = ["backup_cmd", "devices_grp", "init_cmd", "passphrase_grp", "restore_cmd", "snapshots_cmd",
           "status_cmd", "sync_cmd", "verify_cmd"]
