"""formats, list, code, convert: the commands that work on stores and files directly."""

from __future__ import annotations

import click

from otpbridge.cli.common import State, account_json, errors_json, finish_partial, pass_state
from otpbridge.cli.completion import lazy
from otpbridge.core.errors import DataLossRefused, UsageError
from otpbridge.core.model import Account, Kind, shared_secrets


def _matches(account: Account, query: str | None) -> bool:
    if not query:
        return True
    q = query.casefold()
    return any(q in field.casefold() for field in (account.issuer, account.name, account.folder, account.label))


def _open_source(state: State, text: str):
    """A store to read; a file that is not there is a usage error (exit 2), as when the
    kind is detected, not an integrity failure: nothing is corrupt, the name is wrong."""
    store = state.open_store(text)
    if store.kind != "pass" and store.path.parts and not store.path.exists():
        bak = store.path.with_name(store.path.name + ".bak")
        keep = f"; otpbridge kept a previous version as {bak}" if bak.is_file() else ""
        raise UsageError(f"{store.label}: no such file",
                         hint=f"check the path (a relative path is read from the current folder){keep}")
    return store


def _read(store):
    """Read and deduplicate; a folder read as pass that is no pass store is a usage error.

    pass itself lists any folder; an empty listing of, say, ``pass:~/Documents`` would
    tell the user "no accounts" when the path is simply wrong.
    """
    result = store.read().deduplicated()
    if (store.kind == "pass" and not result.accounts and not result.errors
            and not (store.path / ".gpg-id").exists() and next(store.path.rglob("*.gpg"), None) is None):
        raise UsageError(
            f"{store.path} is not a pass store (it has no .gpg-id and no .gpg entries)",
            hint="check the path or PASSWORD_STORE_DIR; a new store is made with 'pass init GPG-ID'",
        )
    return result


def _same_location(a, b) -> bool:
    import os

    if not a.parts or not b.parts:  # a store without a location
        return False
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


@click.command("formats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def formats_cmd(state: State, as_json: bool) -> None:
    """List store kinds and file formats: what each reads, writes and loses, and where to get it.

    "features" says for folders, notes, icons, HOTP and Steam whether a trip through the
    kind keeps them ("kept"), keeps them with limits given under "loses" ("partly"),
    or not ("lost"); docs/stores/README.md has the same table.

    \b
    Example:
      otpbridge formats
    """
    from otpbridge.core.errors import MissingDependencyError
    from otpbridge.stores import registry

    rows = []
    for kind in registry.plugin_kinds():
        try:
            cls = registry.load_plugin(kind)
        except MissingDependencyError as exc:
            rows.append({"kind": kind, "title": "", "reads": "", "writes": "", "loses": "", "available": False, "hint": exc.hint})
            continue
        except ImportError as exc:  # a broken third-party plugin must not hide the others
            rows.append({"kind": kind, "title": "", "reads": "", "writes": "", "loses": "", "available": False, "hint": f"broken: {exc}"})
            continue
        rows.append({**cls.capabilities(), "kind": kind, "available": True})
    if as_json:
        state.emit_json({"formats": rows})
        return
    # One block per kind: the descriptions are sentences, too long for table columns.
    for r in rows:
        if not r["available"]:
            state.echo(f"{r['kind']}: not installed ({r['hint']})\n")
            continue
        state.echo(f"{r['kind']}" + (f" — {r['title']}" if r["title"] else ""))
        state.echo(f"  reads:  {r['reads'] or '-'}")
        state.echo(f"  writes: {r['writes'] or '(read only)'}")
        state.echo(f"  loses:  {r['loses'] or '-'}")
        state.echo("  features: " + ", ".join(f"{name} {how}" for name, how in r["features"].items()))
        state.echo(f"  get it: {r['source'] or '-'}\n")


@click.command("list")
@click.argument("source", shell_complete=lazy("store_specs"))
@click.argument("query", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (schema in docs/CLI.md).")
@click.option("--show-secrets", is_flag=True, help="Include secrets and otpauth URIs in the output.")
@pass_state
def list_cmd(state: State, source: str, query: str | None, as_json: bool, show_secrets: bool) -> None:
    """List the 2FA accounts in SOURCE, optionally only those matching QUERY.

    \b
    Examples:
      otpbridge list aegis:backup.json
      otpbridge list keepass:~/db.kdbx github --json
    """
    store = _open_source(state, source)
    result = _read(store)
    accounts = [a for a in result.accounts if _matches(a, query)]
    # SPEC §3: accounts sharing a secret are distinct accounts; say so, never collapse them
    shared = shared_secrets(result.accounts)
    if as_json:
        state.emit_json(
            {
                "source": str(store.spec),
                "accounts": [
                    {**account_json(a, secrets=show_secrets),
                     "shares_secret_with": [{"id": o.identity, "label": o.label} for o in shared.get(a.identity, [])]}
                    for a in accounts
                ],
                "duplicates": [account_json(a) for a in result.duplicates],
                "errors": errors_json(result.errors),
            }
        )
    else:
        cols = ["issuer", "name", "kind", "digits", "period/counter", "algorithm", "folder"]
        rows = [
            (a.issuer, a.name, a.kind.value, a.digits, a.counter if a.kind is Kind.HOTP else f"{a.period}s", a.algorithm.value, a.folder)
            for a in accounts
        ]
        if show_secrets:
            from otpbridge.core.otpauth import format_uri

            cols.append("uri")
            rows = [(*r, format_uri(a)) for r, a in zip(rows, accounts, strict=True)]
        state.table(cols, rows)
        for a in accounts:
            if a.identity in shared:
                state.note(f"note: {a.label} shares a secret with {', '.join(o.label for o in shared[a.identity])}")
        _note_duplicates(state, result.duplicates)
        state.note(f"{len(accounts)} account(s) in {store.label}")
    finish_partial(result.errors, "entries")


def _note_duplicates(state: State, duplicates: list[Account]) -> None:
    """An exact duplicate (equal in all seven identity fields) is one account: kept once, said once."""
    if duplicates:
        names = ", ".join(sorted({a.label for a in duplicates}))
        state.note(f"note: {len(duplicates)} exact duplicate entr{'y' if len(duplicates) == 1 else 'ies'} "
                   f"kept once: {names}")


@click.command("code")
@click.argument("source", shell_complete=lazy("store_specs"))
@click.argument("query", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--advance", is_flag=True, help="HOTP: use the code and store the next counter.")
@click.option("--dry-run", is_flag=True, help="With --advance: say which counters would move; write nothing.")
@click.option("-c", "--clip", is_flag=True,
              help="Copy the code (exactly one account must match) to the clipboard; cleared after 45 s.")
@pass_state
def code_cmd(state: State, source: str, query: str | None, as_json: bool, advance: bool, dry_run: bool,
             clip: bool) -> None:
    """Show the current codes of accounts in SOURCE (matching QUERY).

    HOTP codes are shown for the next counter without using it up, unless --advance.
    With --clip, the one matching code goes to the clipboard instead of the screen and is
    cleared after 45 seconds (like 'pass -c' and 'keepassxc-cli clip').

    \b
    Examples:
      otpbridge code keepass:~/db.kdbx github
      otpbridge code keepass:~/db.kdbx github --clip
      otpbridge code uris:codes.txt --json
    """
    import time

    from otpbridge.core.codes import code_at, seconds_left

    store = _open_source(state, source)
    result = _read(store)
    accounts = [a for a in result.accounts if _matches(a, query)]
    if query and not accounts:
        raise UsageError(f"no account matches {query!r}", hint=f"'otpbridge list {source}' shows them all")
    if clip and len(accounts) != 1:
        labels = ", ".join(a.label for a in accounts[:5]) + (" …" if len(accounts) > 5 else "")
        raise UsageError(f"--clip copies one code, but {len(accounts)} accounts match" + (f": {labels}" if accounts else ""),
                         hint="narrow QUERY until one account matches")
    now = time.time()
    out = []
    for acc in accounts:
        out.append((acc, code_at(acc, now), seconds_left(acc, now)))
    if advance:
        used = [acc.replace(counter=acc.counter + 1) for acc in accounts if acc.kind is Kind.HOTP]
        if used and dry_run:
            for acc in used:
                state.note(f"would store the next counter {acc.counter} for {acc.label}")
        elif used:
            store.apply(upserts=used)
    if clip:
        from otpbridge.cli.clipboard import CLEAR_AFTER, copy

        acc, code, left = out[0]
        wait = int(state.environ.get("OTPBRIDGE_CLIP_SECONDS", CLEAR_AFTER))
        copy(code, state.environ, clear_after=wait)
        valid = f", valid {left}s more" if left is not None else f" (counter {acc.counter})"
        if as_json:
            state.emit_json({"source": str(store.spec), "time": int(now), "copied": account_json(acc),
                             "clear_after": wait, **({"seconds_left": left} if left is not None else {})})
        else:
            state.note(f"copied the code of {acc.label} to the clipboard{valid}; it is cleared in {wait} s")
        finish_partial(result.errors, "entries")
        return
    if as_json:
        state.emit_json(
            {
                "source": str(store.spec),
                "time": int(now),
                "codes": [
                    {**account_json(a), "code": c, **({"seconds_left": s} if s is not None else {})} for a, c, s in out
                ],
                "errors": errors_json(result.errors),
            }
        )
    else:
        state.table(
            ["issuer", "name", "code", "valid"],
            [(a.issuer, a.name, c, f"{s}s" if s is not None else f"counter {a.counter}") for a, c, s in out],
        )
    finish_partial(result.errors, "entries")


@click.command("convert")
@click.argument("source", shell_complete=lazy("store_specs"))
@click.argument("dest", shell_complete=lazy("store_specs"))
@click.option("--dry-run", is_flag=True, help="Show what would be written; change nothing.")
@click.option("--merge", is_flag=True, help="Merge into an existing destination file instead of refusing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option(
    "--qr",
    "qr_codes",
    type=click.Choice(["otpauth", "gauth"]),
    default=None,
    help="Write QR codes: DEST qr:FOLDER gets PNG images (a new or empty folder), qr:- draws them "
    "on the terminal. 'otpauth' (the default for qr:): one code per account, for any authenticator "
    "app; 'gauth': Google Authenticator 'Transfer accounts' batches. The images hold your "
    "secrets in clear.",
)
@pass_state
def convert_cmd(state: State, source: str, dest: str, dry_run: bool, merge: bool, as_json: bool, qr_codes: str | None) -> None:
    """Copy every account from SOURCE into DEST (a migration between any two stores).

    An existing destination file is never overwritten: use --merge to add to it.
    Databases (KeePass, pass) are always merged into: matching entries get their OTP
    fields updated, everything else in them is kept.

    SOURCE may be QR code images: a screenshot or photo (PNG, JPEG, WebP, GIF) or a
    folder of them (qr:FOLDER, or detected), e.g. every screen of a Google
    Authenticator export.

    \b
    Examples:
      otpbridge convert aegis:backup.json keepass:~/otp.kdbx
      otpbridge convert gauth:export.txt pass:
      otpbridge convert 'aegis:enc.json?password-env=A' 'keepass:new.kdbx?password-env=B' --dry-run
      otpbridge convert ~/Pictures/ga-export/ 'keepass:~/otp.kdbx'
      otpbridge convert keepass:~/otp.kdbx qr:~/otp-codes --qr otpauth
      otpbridge convert keepass:~/otp.kdbx qr:- --qr gauth
    """
    src = _open_source(state, source)
    from otpbridge.stores import registry
    from otpbridge.stores.base import StoreSpec

    dspec = StoreSpec.parse(dest, registry.plugin_kinds())
    if qr_codes:  # the visible switch for QR output; the qr: store reads it as ?codes=
        if dspec.kind not in (None, "qr"):
            raise UsageError(
                f"--qr writes QR codes, but {dest!r} is a {dspec.kind}: destination",
                hint="give DEST as qr:FOLDER (PNG images) or qr:- (the terminal)",
            )
        dspec = StoreSpec("qr", dspec.location, {**dspec.options, "codes": qr_codes})
    if dspec.kind is None:
        if not dspec.path.exists():
            raise UsageError(
                f"cannot tell which format to write {dest!r} in",
                hint="name it as KIND:PATH, e.g. aegis:out.json ('otpbridge formats' lists the kinds)",
            )
    dst = state.open_store(dspec)
    if _same_location(src.path, dst.path):
        raise UsageError(
            f"{src.label} and {dst.label} are the same {'folder' if src.path.is_dir() else 'file'}",
            hint="name a different destination ('otpbridge list SOURCE' shows what it holds)",
        )
    if not dst.can_write():
        raise UsageError(f"{dst.kind} cannot be written", hint="'otpbridge formats' shows the kinds that can")
    if dst.kind == "qr" and dst.exists():  # --merge cannot help: images are not updated in place
        raise DataLossRefused(
            f"{dst.label} already exists and is not an empty folder; QR code images are written only into a new or empty folder",
            hint="name a new folder (nothing was written)",
        )
    if dst.exists() and not dst.is_database and not merge:
        raise DataLossRefused(
            f"{dst.label} already exists; refusing to overwrite it",
            hint="add --merge to merge into it, or choose a new file",
        )
    result = _read(src)
    report = dst.apply(upserts=result.accounts, dry_run=dry_run)
    warnings = hotp_warning(dst, [*report.added, *report.updated])
    if as_json:
        state.emit_json(
            {
                "source": str(src.spec),
                "dest": str(dst.spec),
                "dry_run": dry_run,
                "added": [account_json(a) for a in report.added],
                "updated": [account_json(a) for a in report.updated],
                "unchanged": report.unchanged,
                "duplicates": [account_json(a) for a in result.duplicates],
                "backup": str(report.backup) if report.backup else None,
                "errors": errors_json(result.errors + report.errors),
                "warnings": warnings,
            }
        )
    else:
        verb = "would add" if dry_run else "added"
        for acc in report.added:
            state.echo(f"{'+ ' if dry_run else ''}{verb}: {acc.label}")
        for acc in report.updated:
            state.echo(f"{'~ ' if dry_run else ''}{'would update' if dry_run else 'updated'}: {acc.label}")
        _note_duplicates(state, result.duplicates)
        summary = f"{len(report.added)} added, {len(report.updated)} updated, {report.unchanged} unchanged"
        state.note(("dry run, nothing written: " if dry_run else "") + summary + f" in {dst.label}")
        if report.backup:
            state.note(f"previous file kept as {report.backup}")
        for w in warnings:
            state.warn(w)
    finish_partial(result.errors + report.errors, "entries")


def hotp_warning(store, accounts) -> list[str]:
    """HOTP accounts that land in a KeePass store: KeePassXC 2.7 and older shows no code
    for them (issue 18); say so where it happens."""
    hotp = [a for a in accounts if a.kind is Kind.HOTP]
    if getattr(store, "kind", "") != "keepass" or not hotp:
        return []
    return [f"{len(hotp)} HOTP account(s) went into {store.label}: KeePassXC 2.7 and older cannot show HOTP "
            "codes (KeePass 2 shows them from HmacOtp-*; 'otpbridge code' always does)"]
