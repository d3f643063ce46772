"""store list/add/remove: change this device's stores without running ``init`` again."""

from __future__ import annotations

import click

from otpbridge.cli.common import State
from otpbridge.cli.completion import lazy
from otpbridge.cli.vault_common import settings_of
from otpbridge.core.errors import UsageError


@click.group("store")
def store_grp() -> None:
    """List, add or remove this device's stores (the first is the primary).

    \b
    Examples:
      otpbridge store list
      otpbridge store add 'keepass:~/otp.kdbx?password-file=~/.config/otpbridge/kdbx.pw'
      otpbridge store remove uris:~/old-codes.txt --dry-run
    """


def _same(state: State, a: str, b: str) -> bool:
    try:
        return state.open_store(a).label == state.open_store(b).label
    except UsageError:
        return a == b


@store_grp.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the stores as JSON.")
@click.pass_obj
def store_list_cmd(state: State, as_json: bool) -> None:
    """List this device's stores; the first is the primary (it receives other devices' changes).

    \b
    Examples:
      otpbridge store list --json
    """
    stores = settings_of(state).get("stores", [])
    rows = []
    for i, spec in enumerate(stores):
        try:
            exists = state.open_store(spec).exists()
        except UsageError:
            exists = False
        rows.append({"store": spec, "primary": i == 0, "exists": exists})
    if as_json:
        state.emit_json({"stores": rows})
        return
    if not rows:
        state.echo("no store is configured: otpbridge store add KIND:PATH")
    for r in rows:
        state.echo(f"{r['store']}{'  (primary)' if r['primary'] else ''}{'' if r['exists'] else '  (missing!)'}")


@store_grp.command("add")
@click.argument("spec", shell_complete=lazy("store_specs"))
@click.option("--primary", is_flag=True, help="Make it the primary store (first), receiving other devices' changes.")
@click.option("--create", is_flag=True, help="A database that does not exist yet is made by the next sync.")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the new list of stores as JSON.")
@click.pass_obj
def store_add_cmd(state: State, spec: str, primary: bool, create: bool, dry_run: bool, as_json: bool) -> None:
    """Add a store to this device: its accounts are sent at the next sync.

    The path is saved absolute; a database that does not exist is refused unless
    --create (as in 'init').

    \b
    Examples:
      otpbridge store add pass:
      otpbridge store add keepass:~/new.kdbx?password-env=KPW --create --primary
    """
    from otpbridge.engine.connect import init_settings

    settings = settings_of(state)
    checked = init_settings(settings, remote=settings["remote"], stores=[spec], device_name=None,
                            kdf=settings.get("kdf", "default"), open_store=state.open_store, create=create)
    new = checked["stores"][0]
    old = list(settings.get("stores", []))
    if any(_same(state, new, have) for have in old):
        raise UsageError(f"{new} is already one of this device's stores", hint="'otpbridge store list' shows them")
    stores = [new, *old] if primary else [*old, new]
    _save(state, settings, stores, dry_run, as_json, f"{'would add' if dry_run else 'added'} {new}"
          + (" as the primary store" if primary or not old else "") + "; its accounts are sent at the next sync")


@store_grp.command("remove")
@click.argument("spec", shell_complete=lazy("store_specs"))
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the new list of stores as JSON.")
@click.pass_obj
def store_remove_cmd(state: State, spec: str, dry_run: bool, as_json: bool) -> None:
    """Stop syncing a store. Nothing is deleted: not the file, not its accounts in the vault.

    The next sync treats the remaining stores as freshly joined (no deletion is sent for
    the accounts only the removed store held; the vault keeps them).

    \b
    Examples:
      otpbridge store remove uris:/home/me/old.txt --dry-run
    """
    settings = settings_of(state)
    old = list(settings.get("stores", []))
    keep = [have for have in old if not (have == spec or _same(state, spec, have))]
    if len(keep) == len(old):
        raise UsageError(f"{spec} is not one of this device's stores", hint="'otpbridge store list' shows them")
    _save(state, settings, keep, dry_run, as_json,
          f"{'would remove' if dry_run else 'removed'} {spec} from this device's stores (the file and the vault keep "
          "its accounts)", forget_base=True)


def _save(state: State, settings: dict, stores: list[str], dry_run: bool, as_json: bool, message: str,
          *, forget_base: bool = False) -> None:
    if not dry_run:
        if forget_base:
            from otpbridge.engine.state import SyncState

            # Without the store, its accounts would look deleted here: the next sync is a
            # join instead (nothing deleted, local accounts kept, the vault's fields win).
            st = SyncState.load(state.config.state_dir)
            if st.vault_id:
                st.base = None
                st.fingerprints = {}
                st.save(state.config.state_dir)
        state.config.write({**settings, "stores": stores})
    if as_json:
        state.emit_json({"stores": stores, "dry_run": dry_run})
        return
    state.echo(message)
    if stores:
        state.note(f"primary store: {stores[0]}")


__all__ = ["store_grp"]
