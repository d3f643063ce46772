"""key list|add|remove: the keys that open the vault (engine/keys.py, docs/SYNC.md "Keys")."""

from __future__ import annotations

import time

import click

from otpbridge.cli.common import State
from otpbridge.cli.vault_common import ask_new_passphrase, kdf_params, run_recorded, session_of, settings_of
from otpbridge.core.errors import UsageError

REVOKE_NOTE = ("if the remote keeps file versions or a trash (Google Drive, Dropbox, OneDrive, S3 versioning, "
               "Nextcloud), old copies there still open with the removed key: empty them (e.g. 'rclone cleanup REMOTE')")


@click.group("key")
def key_grp() -> None:
    """List, add or remove the keys that open the vault.

    A vault opens with any of its keys: passphrases (one per person of a shared vault),
    a recovery code, age or ssh key files for servers. Adding or removing a key re-keys
    the vault (a new epoch, like 'passphrase change'): afterwards a removed key opens
    nothing on the remote. Interrupted? Run the same command again.

    \b
    Examples:
      otpbridge key list
      otpbridge key add --recovery                      # prints a recovery code once
      otpbridge key add --name alice                    # a second person's passphrase
      otpbridge key add --name backup-server --age-recipient age1...
      otpbridge key add --name nas --ssh-recipient "$(cat ~/.ssh/id_ed25519.pub)"
      otpbridge key remove alice
      OTPBRIDGE_IDENTITY=~/.config/otpbridge/age.key otpbridge sync   # no passphrase
    """


def _time(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts)) if ts else "-"


@key_grp.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def key_list_cmd(state: State, as_json: bool) -> None:
    """Show the vault's keys: id, type, name, the device that added it, and the key in use.

    \b
    Examples:
      otpbridge key list
      otpbridge --recovery-key-file code.txt key list --json
    """
    from otpbridge.engine.keys import list_keys

    settings = settings_of(state)
    s = session_of(state, settings, stores=False)
    with s.backend:
        rep = list_keys(s)
    if as_json:
        state.emit_json(rep.to_json())
        return
    if not rep.slots:
        state.echo("one key: the passphrase (no key slots yet; 'otpbridge key add' adds a recovery code, "
                   "a key file or another passphrase)")
        return
    rows = [[("* " if k.in_use else "  ") + k.id, k.type, k.name or "-", k.device or "-", _time(k.created),
             k.public[:40] + ("…" if len(k.public) > 40 else "")] for k in rep.keys]
    from otpbridge.cli.common import render_table

    for line in render_table(["ID", "TYPE", "NAME", "ADDED BY", "ADDED", "RECIPIENT"], rows):
        state.echo(line)
    state.echo(f"{len(rep.keys)} keys (epoch {rep.epoch}); * = the key this run opened with")


@key_grp.command("add")
@click.option("--name", default="", help="A name for the key (a person, a server); shown by 'key list'.")
@click.option("--recovery", is_flag=True, help="Add a recovery code (printed once: write it down, keep it offline).")
@click.option("--age-recipient", metavar="PUBKEY", help="Add an age X25519 public key (age1...).")
@click.option("--ssh-recipient", metavar="PUBKEY", help="Add an OpenSSH ed25519 public key (ssh-ed25519 AAAA...).")
@click.option("--kdf", metavar="default|strong", default=None, help="Key-derivation cost of a new passphrase slot.")
@click.option("--accept-weak-passphrase", is_flag=True, help="Use the new passphrase even if zxcvbn scores it low.")
@click.option("--dry-run", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def key_add_cmd(state: State, name: str, recovery: bool, age_recipient: str | None, ssh_recipient: str | None,
                kdf: str | None, accept_weak_passphrase: bool, dry_run: bool, as_json: bool) -> None:
    """Add a key: another passphrase (default; from OTPBRIDGE_NEW_PASSPHRASE,
    --new-passphrase-file/-fd or a prompt), a recovery code, or a key file's public key.

    \b
    Examples:
      otpbridge key add --recovery
      otpbridge key add --name alice
      otpbridge key add --name server --age-recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    """
    from otpbridge.engine.keys import add_key
    from otpbridge.vault.keyring import NewSlot, parse_recipient

    if sum(map(bool, (recovery, age_recipient, ssh_recipient))) > 1:
        raise UsageError("give one of --recovery, --age-recipient, --ssh-recipient")
    settings = settings_of(state)
    s = session_of(state, settings)
    s.params = kdf_params(state, kdf or settings.get("kdf", "default"))
    if recovery:
        spec = NewSlot("recovery", name)
    elif age_recipient or ssh_recipient:
        kind = "age" if age_recipient else "ssh"
        text = (age_recipient or ssh_recipient or "").strip()
        parse_recipient(kind, text)  # a typo fails here, before any work
        spec = NewSlot(kind, name, recipient=text)
    else:
        spec = NewSlot("passphrase", name, params=s.params)
        if not dry_run:
            spec.secret = ask_new_passphrase(state, state.new_passphrase_source(), accept_weak=accept_weak_passphrase)
    rep = run_recorded(state, s, dry_run, lambda: add_key(s, spec, dry_run=dry_run))
    if as_json:
        out = rep.to_json(state.stats)
        out.pop("recovery_key", None)
        if rep.recovery_key:
            out["recovery_key"] = rep.recovery_key
        state.emit_json(out)
        return
    if dry_run:
        what = {"age": "an age key", "ssh": "an ssh key", "recovery": "a recovery code"}.get(spec.type, f"a {spec.type}")
        state.echo(f"would add {what}: re-key epoch {rep.old_epoch} into epoch {rep.new_epoch}")
        return
    if rep.resumed:
        state.echo(f"finished an interrupted change of keys (epoch {rep.new_epoch}); run the command again to add the key")
        state.warn("if the interrupted run was a 'key add --recovery', its code was never shown: 'otpbridge key list' "
                   "shows the recovery slot; remove it and add a new one")
        return
    state.echo(f"added {spec.type} key {rep.key}{f' ({name})' if name else ''}: epoch {rep.new_epoch}, "
               f"{rep.reencrypted} object(s) re-encrypted")
    if rep.recovery_key:
        click.echo("\nRecovery code (shown once; write it down and keep it offline, like a spare house key):\n\n"
                   f"    {rep.recovery_key}\n\n"
                   "It opens the vault without the passphrase: otpbridge --use-recovery-key restore REMOTE --into ...")


@key_grp.command("remove")
@click.argument("key_ref", metavar="ID|NAME")
@click.option("--dry-run", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def key_remove_cmd(state: State, key_ref: str, dry_run: bool, as_json: bool) -> None:
    """Remove a key: the vault is re-keyed without it, so it opens nothing on the remote.

    Removing a person from a shared vault: 'key remove NAME' and 'devices remove' for
    their devices. What they downloaded before stays theirs (docs/SYNC.md "Shared vaults").

    \b
    Examples:
      otpbridge key remove alice
      otpbridge key remove 3f2a9c
    """
    from otpbridge.engine.keys import remove_key

    settings = settings_of(state)
    s = session_of(state, settings)
    s.params = kdf_params(state, settings.get("kdf", "default"))
    rep = run_recorded(state, s, dry_run, lambda: remove_key(s, key_ref, dry_run=dry_run))
    if as_json:
        out = rep.to_json(state.stats)
        out.pop("recovery_key", None)
        state.emit_json(out)
        return
    if dry_run:
        state.echo(f"would remove key {rep.key}: re-key epoch {rep.old_epoch} into epoch {rep.new_epoch}")
        return
    if rep.resumed:
        state.echo(f"finished an interrupted change of keys (epoch {rep.new_epoch}); run the command again to remove "
                   "the key")
        return
    state.echo(f"removed key {rep.key}: epoch {rep.new_epoch}, {rep.reencrypted} object(s) re-encrypted, "
               f"{rep.deleted} old object(s) deleted; the removed key opens nothing on the remote")
    state.warn(REVOKE_NOTE)


__all__ = ["key_grp"]
