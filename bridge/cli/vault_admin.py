"""passphrase, status, verify, devices, snapshots: looking after a vault.

Thin like :mod:`.vault_cmds`: a Session from :mod:`.vault_common`, one engine call,
printing. JSON schemas are documented in docs/CLI.md.
"""

from __future__ import annotations

import re
import time

import click

from otpbridge.cli.common import State, counted
from otpbridge.cli.completion import lazy
from otpbridge.cli.vault_common import (
    ask_new_passphrase,
    kdf_params,
    run_recorded,
    session_of,
    settings_of,
)
from otpbridge.core.errors import UsageError


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
@click.option("--allow-deletions", is_flag=True,
              help="Let the first step delete more accounts than the mass-deletion guard allows.")
@click.option("--kdf", metavar="default|strong", default=None,
              help="Key-derivation cost of the new epoch (default: as configured).")
@click.option("--accept-weak-passphrase", is_flag=True,
              help="Use the new passphrase even if zxcvbn scores it below 3 of 4.")
@click.option("--key", "slot", metavar="ID|NAME", default="",
              help="Which passphrase of a vault with several (default: the one given, or this device's).")
@click.option("--dry-run", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--accept-rollback", is_flag=True)
@click.pass_obj
def passphrase_change_cmd(state: State, discard_remote_only: bool, allow_deletions: bool, kdf: str | None,
                          accept_weak_passphrase: bool, slot: str, dry_run: bool, as_json: bool,
                          accept_rollback: bool) -> None:
    """Re-key the vault: afterwards the old passphrase opens nothing on the remote.

    The current passphrase comes from the usual sources, the new one from
    OTPBRIDGE_NEW_PASSPHRASE, OTPBRIDGE_NEW_PASSCOMMAND, --new-passphrase-file/-fd or a
    prompt. Interrupted? Run the same command again: it finishes the job. Forgot the
    passphrase? Open with the recovery code instead (--recovery-key-file, or
    --use-recovery-key for a prompt) and set a new one.

    \b
    Examples:
      otpbridge passphrase change
      otpbridge passphrase change --discard-remote-only --dry-run
      otpbridge --recovery-key-file code.txt passphrase change
    """
    from otpbridge.engine.rotation import change_passphrase

    settings = settings_of(state)
    s = session_of(state, settings)
    s.params = kdf_params(state, kdf or settings.get("kdf", "default"))
    rep = run_recorded(state, s, dry_run, lambda: change_passphrase(
        s, lambda: ask_new_passphrase(state, state.new_passphrase_source(), accept_weak=accept_weak_passphrase),
        discard_remote_only=discard_remote_only, dry_run=dry_run, accept_rollback=accept_rollback,
        allow_deletions=allow_deletions, slot=slot))
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
@click.option("--recovery", is_flag=True,
              help="Check the recovery code instead (from --recovery-key-file/-fd, else asked at a prompt).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def passphrase_check_cmd(state: State, recovery: bool, as_json: bool) -> None:
    """Prove you still know the passphrase, recovery code or key file (nothing changes).

    \b
    Examples:
      otpbridge passphrase check
      otpbridge passphrase check --recovery
      otpbridge --identity ~/.config/otpbridge/age.key passphrase check
    """
    if recovery and state.recovery_key_file is None and state.recovery_key_fd is None:
        state.recovery_key = True
    from otpbridge.engine.layout import Listing
    from otpbridge.engine.remote import open_key
    from otpbridge.engine.state import SyncState

    settings = settings_of(state)
    s = session_of(state, settings, stores=False)
    with s.backend:
        listing = Listing.parse(s.backend.list())
        credential = s.get_passphrase()  # once: a file descriptor reads only once
        key, _ref = open_key(s, listing, SyncState.load(state.config.state_dir), credential)
    what = {"recovery": "recovery code", "identity": "key file"}.get(credential.kind, "passphrase")
    if recovery and what != "recovery code":
        raise UsageError("--recovery checks a recovery code; a key file was given (--identity)")
    if as_json:
        state.emit_json({"ok": True, "epoch": key.epoch, "vault_id": key.vault_id.hex(), "key": key.slot or None,
                         "checked": what})
    else:
        state.echo(f"the {what} is correct (vault {key.vault_id.hex()}, epoch {key.epoch}"
                   + (f", key {key.slot})" if key.slot else ")"))


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
    from otpbridge.core.remotes import redact_remote
    from otpbridge.engine.state import SyncState

    limit = parse_duration(max_age) if max_age else None
    settings = settings_of(state)
    st = SyncState.load(state.config.state_dir)
    now = time.time()
    last = st.last_verified_backup
    too_old = limit is not None and (last is None or now - last > limit)
    device = settings.get("device", {})
    out = {
        "remote": redact_remote(settings.get("remote")),  # a connection string's credentials masked
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
    # automation (bridge/automation/runlog.py): the last failed timer/cron/git-hook run, until a sync succeeds
    from otpbridge.automation.runlog import describe_failure, read_failure

    out["last_unattended_failure"] = unattended = read_failure(state.config.state_dir)
    if as_json:
        state.emit_json(out)
    else:
        state.echo(f"vault:    {st.vault_id or '(not joined)'} at {out['remote']} (epoch {st.epoch})")
        state.echo(f"device:   {device.get('name')} ({device.get('id')})")
        state.echo(f"stores:   {', '.join(out['stores']) or '(none)'}")
        state.echo(f"accounts: {st.accounts}")
        state.echo(f"last verified backup: {_ago(last, now)}")
        state.echo(f"last sync: {_ago(st.last_sync, now)}")
        if st.last_error:
            e = st.last_error
            state.echo(f"last error: {_ago(e.get('time'), now)}: {e.get('message')} (exit {e.get('exit')})")
        if unattended:  # automation (bridge/automation/runlog.py)
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
    from otpbridge.core.errors import IntegrityError
    from otpbridge.engine.state import SyncState
    from otpbridge.engine.verify import verify

    settings = settings_of(state)
    s = session_of(state, settings, stores=False)
    with s.backend:
        rep = verify(s, SyncState.load(state.config.state_dir))
    if as_json:
        state.emit_json(rep.to_json(state.stats))
    else:
        state.echo(f"epoch {rep.epoch}: {rep.headers} header(s), {rep.views} object(s) decrypted, "
                   f"{counted(rep.accounts, 'account')}")
        for name in rep.other_epochs:
            state.warn(f"not of the current epoch {rep.epoch}: {name} (left over from an earlier epoch, or a "
                       "passphrase change in flight)")
        for name in rep.unknown:
            state.warn(f"not an otpbridge object name, so no device reads it: {name} (docs/SYNC.md 'Quarantine')")
        for f in rep.failures:
            click.echo(f"FAILED {f}", err=True)
    if rep.failures:
        raise IntegrityError(f"verification failed: {len(rep.failures)} problem(s)", hint="see above; docs/SYNC.md "
                             "'Quarantine' says how to move aside an object no device wrote")


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
    from otpbridge.engine.devices import devices
    from otpbridge.engine.state import SyncState

    settings = settings_of(state)
    s = session_of(state, settings, stores=False)
    with s.backend:
        rows = devices(s, SyncState.load(state.config.state_dir))
    if as_json:
        state.emit_json(rows)
        return
    keys = any(r["key"] for r in rows)  # a vault with key slots: whose is each device
    state.table(["name", "id", "last seen", "accounts", "snapshots"] + (["key"] if keys else []) + ["note"],
                [(r["name"] or "?", r["id"], _ts(r["last_seen"]) if r["last_seen"] else "never (no upload yet)",
                  "?" if r["accounts"] is None else r["accounts"], r["views"], *([r["key"] or "?"] if keys else []),
                  "this device" if r["this_device"] else ("removed" if r["removed"] else ""))
                 for r in rows])


@devices_grp.command("remove")
@click.argument("device", shell_complete=lazy("device_names"))
@click.option("--dry-run", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def devices_remove_cmd(state: State, device: str, dry_run: bool, as_json: bool) -> None:
    """Remove a device (by name or id): its accounts stay (merged first), its objects go,
    it may not sync again.

    \b
    Examples:
      otpbridge devices remove old-laptop --dry-run
      otpbridge devices remove 4a731d133733
    """
    from otpbridge.engine.devices import resolve_device
    from otpbridge.engine.fastpath import sync
    from otpbridge.engine.layout import Listing
    from otpbridge.engine.state import SyncState

    settings = settings_of(state)
    s = session_of(state, settings)
    with s.backend:
        ids = {v.device for v in Listing.parse(s.backend.list()).views}
    device_id = resolve_device(SyncState.load(state.config.state_dir), ids, device)
    name = SyncState.load(state.config.state_dir).device_names.get(device_id, "")
    if device_id == s.device_id:
        raise UsageError("this device cannot remove itself", hint="remove it from another device")
    with s.backend:
        report = sync(s, mode="sync", dry_run=dry_run, remove_devices=[device_id])
    if as_json:
        state.emit_json(dict(report.to_json(state.stats), removed_device={"id": device_id, "name": name or None}))
    else:
        state.echo(f"{'would remove' if dry_run else 'removed'} device {name + ' ' if name else ''}({device_id}) "
                   f"({len(report.cleaned)} object(s) {'to delete' if dry_run else 'deleted'})")


@click.group("snapshots", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON.")
@click.pass_context
def snapshots_cmd(ctx: click.Context, as_json: bool) -> None:
    """List snapshots (each device's retained copies); restore one with 'restore --snapshot ID'.

    \b
    Examples:
      otpbridge snapshots
      otpbridge snapshots diff 195b02700242-3 latest
      otpbridge restore --snapshot ID --into uris:check.txt --dry-run
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(snapshots_list_cmd, as_json=as_json)


@snapshots_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON.")
@click.pass_obj
def snapshots_list_cmd(state: State, as_json: bool) -> None:
    """List snapshots (no passphrase).

    \b
    Examples:
      otpbridge snapshots list --json
    """
    from otpbridge.engine.devices import snapshots
    from otpbridge.engine.state import SyncState

    settings = settings_of(state)
    s = session_of(state, settings, stores=False)
    with s.backend:
        rows = snapshots(s, SyncState.load(state.config.state_dir))
    if as_json:
        state.emit_json(rows)
        return
    state.table(["id", "time (UTC)", "device", "latest"],
                [(r["id"], _ts(r["time"]), r["device_name"] or r["device"], "yes" if r["latest"] else "")
                 for r in rows])


@snapshots_cmd.command("diff")
@click.argument("first", shell_complete=lazy("snapshot_ids"))
@click.argument("second", default="latest", shell_complete=lazy("snapshot_ids"))
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.pass_obj
def snapshots_diff_cmd(state: State, first: str, second: str, as_json: bool) -> None:
    """What changed between two snapshots (SECOND defaults to 'latest', the vault now).

    Account labels only, never secrets. Needs the passphrase.

    \b
    Examples:
      otpbridge snapshots diff 195b02700242-3 195b02700242-7
      otpbridge snapshots diff laptop-3 --json
    """
    from otpbridge.cli.vault_common import snapshot_id
    from otpbridge.engine.restore import diff_snapshots
    from otpbridge.engine.state import SyncState

    settings = settings_of(state)
    s = session_of(state, settings, stores=False)
    first, second = (x if x == "latest" else snapshot_id(state, x) for x in (first, second))
    with s.backend:
        out = diff_snapshots(s, SyncState.load(state.config.state_dir), first, second)
    if as_json:
        state.emit_json(out)
        return
    for key, sign in (("added", "+"), ("removed", "-"), ("changed", "~"), ("counters", "#")):
        for label in out[key]:
            state.echo(f"{sign} {label}")
    if not any(out[k] for k in ("added", "removed", "changed", "counters")):
        state.echo(f"no difference between {first} and {second}")


def _forget_options(fn):
    for opt in reversed([
        click.option("--keep-last", type=int, help="Keep the newest N snapshots."),
        click.option("--keep-daily", type=int, help="Keep the newest snapshot of each of the last N days."),
        click.option("--keep-weekly", type=int, help="Keep the newest snapshot of each of the last N ISO weeks."),
        click.option("--keep-monthly", type=int, help="Keep the newest snapshot of each of the last N months."),
        click.option("--save", is_flag=True, help="Also make this the retention policy of every later sync (config.toml)."),
        click.option("--dry-run", is_flag=True, help="List what would be forgotten; delete nothing."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]):
        fn = opt(fn)
    return fn


def _forget(state: State, keep_last, keep_daily, keep_weekly, keep_monthly, save: bool, dry_run: bool,
            as_json: bool) -> None:
    from dataclasses import replace

    from otpbridge.engine.devices import forget
    from otpbridge.engine.snapshots import Retention

    settings = settings_of(state)
    policy = Retention.from_config(settings.get("retention"))
    given = {k: v for k, v in (("recent", keep_last), ("daily", keep_daily), ("weekly", keep_weekly),
                               ("monthly", keep_monthly)) if v is not None}
    if any(v < 0 for v in given.values()):
        raise UsageError("--keep-* must be 0 or more")
    if given:
        # Like restic: a --keep-* given alone is the whole policy (the others are 0).
        policy = replace(Retention(recent=0, daily=0, weekly=0, monthly=0), **given)
    s = session_of(state, settings, stores=False)
    with s.backend:
        out = forget(s, policy, dry_run=dry_run)
    if save and not dry_run:
        state.config.write({**settings, "retention": policy.to_config()})
    if as_json:
        state.emit_json({**out, "saved": bool(save and not dry_run)})
        return
    verb = "would forget" if dry_run else "forgot"
    for sid in out["forgotten"]:
        state.echo(f"{verb}: {sid}")
    p = out["policy"]
    state.echo(f"{verb} {len(out['forgotten'])} of this device's snapshots, kept {len(out['kept'])} "
               f"(last {p['last']}, daily {p['daily']}, weekly {p['weekly']}, monthly {p['monthly']}; "
               "the newest is always kept; other devices' snapshots are theirs to forget)")
    if save and not dry_run:
        state.note("saved as this vault's retention policy for every later sync (config.toml [retention])")


@click.command("forget")
@_forget_options
@click.pass_obj
def forget_cmd(state: State, keep_last, keep_daily, keep_weekly, keep_monthly, save, dry_run, as_json) -> None:
    """Forget (delete) this device's older snapshots by a restic-like policy.

    Without --keep-* the configured policy (config.toml [retention]; default last 10,
    daily 7, weekly 8) is applied now. The newest snapshot is always kept; other
    devices' snapshots are never touched. No passphrase needed.

    \b
    Examples:
      otpbridge forget --keep-last 3 --keep-monthly 6 --dry-run
      otpbridge forget --keep-daily 14 --save
    """
    _forget(state, keep_last, keep_daily, keep_weekly, keep_monthly, save, dry_run, as_json)


@click.command("prune")
@_forget_options
@click.pass_obj
def prune_cmd(state: State, keep_last, keep_daily, keep_weekly, keep_monthly, save, dry_run, as_json) -> None:
    """The same as 'forget' (a snapshot is one object, so forgetting it frees its space).

    \b
    Examples:
      otpbridge prune --keep-last 5 --dry-run
    """
    _forget(state, keep_last, keep_daily, keep_weekly, keep_monthly, save, dry_run, as_json)


__all__ = ["devices_grp", "forget_cmd", "passphrase_grp", "prune_cmd", "snapshots_cmd", "status_cmd", "verify_cmd"]
