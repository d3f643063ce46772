"""``otpbridge restore``: every account of the vault (or of one snapshot) into a store;
never removes anything from it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from otpbridge.core.activity import step
from otpbridge.core.errors import (
    DataLossRefused,
    UsageError,
)
from otpbridge.engine.merge import (
    alive,
)

# Mass-deletion guard (SPEC §6): more than this many, or more than this share of the
# accounts (when at least two), needs --allow-deletions. An unreadable store looks empty.
from otpbridge.engine.remote import (
    Remote,
    load_remote,
    open_state,
)
from otpbridge.engine.session import STAT_KEYS, Session, exclusive
from otpbridge.engine.state import SyncState


# --- restore ------------------------------------------------------------------------------
@dataclass
class RestoreReport:
    target: str
    snapshot: str | None
    accounts: int
    added: list[str]
    updated: list[str]
    unchanged: int
    dry_run: bool
    epoch: int
    sent: list[str] = field(default_factory=list)  # restored accounts sent to the vault as a new change
    uploaded: str | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)

    def to_json(self, stats: Counter) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "errors"}
        out["stats"] = {k: int(stats.get(k, 0)) for k in STAT_KEYS}
        return out


def remote_accounts(
    s: Session, state: SyncState, *, snapshot: str | None = None, accept_rollback: bool = False
) -> tuple[dict[str, Any], Remote]:
    """Every live account on the remote (or in one snapshot), with the HOTP counters merged."""
    passphrase = s.get_passphrase()
    remote = load_remote(s, state, passphrase, accept_rollback=accept_rollback, fallback=True)
    if snapshot is None:
        return alive(remote.records), remote
    for ref in remote.listing.views_of(remote.epoch):
        if snapshot in (ref.snapshot_id, ref.name):
            data = open_state(s, remote.key, remote.listing, ref)  # a delta: its whole chain
            return alive(data["_records"]), remote
    raise UsageError(f"no snapshot {snapshot!r} on the remote", hint="'otpbridge snapshots' lists them")


def account_matches(rid: str, acc: Any, pattern: str) -> bool:
    """``--account PATTERN``: in the issuer, name, folder or label (as ``list QUERY``), or
    the start of the record id (what a conflict's "to get it back" command names; it stays
    the same across renames) or of the account id."""
    q = pattern.casefold()
    return (rid.startswith(q) or acc.identity.startswith(q)
            or any(q in f.casefold() for f in (acc.issuer, acc.name, acc.folder, acc.label)))


@exclusive
def restore(
    s: Session,
    state: SyncState,
    target: Any,
    *,
    snapshot: str | None = None,
    dry_run: bool = False,
    accept_rollback: bool = False,
    account: str | None = None,
    send: bool = False,
) -> RestoreReport:
    """Add every account of the vault to ``target``; never removes anything from it.

    An account the target already holds keeps its HOTP counter when that is higher: the
    codes below it were used (SPEC §6, counters never go backwards), maybe after the
    vault's copy (an old snapshot, a device that did not sync since).

    ``account``: restore only the accounts it matches (``--account PATTERN``, see
    account_matches).
    ``send``: the target is one of this device's stores; the restored accounts are then
    sent to the vault as this device's newest change (a sync run, upload first), so a
    restore wins over an older deletion on every device (docs/SYNC.md "How to undo a
    deletion") instead of being deleted again by the next sync.
    """
    from otpbridge.core.model import Kind

    by_record, remote = remote_accounts(s, state, snapshot=snapshot, accept_rollback=accept_rollback)
    if account:
        by_record = {rid: acc for rid, acc in by_record.items() if account_matches(rid, acc, account)}
        if not by_record:
            raise UsageError("no account of the vault" + (f" (snapshot {snapshot})" if snapshot else "")
                             + " matches --account",
                             hint="'otpbridge restore --into uris:check.txt --dry-run' lists what a restore holds")
    accounts = {a.identity: a for a in by_record.values()}  # exact duplicates once (SPEC §3)
    if target.exists():
        # HOTP: codes below the target's counter were used with this secret, whatever the
        # entry is called there (a renamed copy is another account, SPEC §3, but the same
        # code sequence): the restored account never starts below it.
        used: dict[str, int] = {}
        for have in target.read().accounts:
            if have.kind is Kind.HOTP:
                used[have.secret_id] = max(used.get(have.secret_id, 0), have.counter)
        for ident, acc in list(accounts.items()):
            if acc.kind is Kind.HOTP and used.get(acc.secret_id, 0) > acc.counter:
                accounts[ident] = acc.replace(counter=used[acc.secret_id])
    ordered = sorted(accounts.values(), key=lambda a: (a.folder, a.issuer.lower(), a.name.lower()))
    sent: list[str] = []
    uploaded = None
    if send:
        from otpbridge.engine.sync import sync_changes

        with step(f"read {target.label}"):
            preview = target.apply(ordered, (), dry_run=True)
        # Upload first (the restored records win over the deletion), then the primary
        # store is written by the sync run, then the target (when it is not the primary).
        # A dry run asks the same sync run, so it refuses what the real one would.
        rids = {a.identity: rid for rid, a in by_record.items()}
        try:
            rep = sync_changes(s, mode="sync", dry_run=dry_run, accept_rollback=accept_rollback,
                               resurrect=[(rids.get(a.identity, a.identity), a) for a in ordered])
        except DataLossRefused as exc:
            raise DataLossRefused(
                f"{exc}: the stores lost them since the last sync, and this restore does not bring them back",
                hint="restore them too (otpbridge restore, without --account, brings back every account), or, if "
                "they were deleted on purpose, send the deletions first: otpbridge sync --allow-deletions",
            ) from None
        sent = rep.added + rep.edited
        uploaded = rep.uploaded
        remote.warnings += [w for w in rep.warnings if w not in remote.warnings]
        if dry_run:
            wr = preview
        elif s.stores and s.stores[0].label == target.label:
            wr = preview  # the sync run wrote the primary
        else:
            with step(f"write {len(ordered)} accounts into {target.label}"):
                wr = target.apply(ordered, (), dry_run=False)
        wr.added, wr.updated = preview.added, preview.updated
        wr.unchanged = preview.unchanged
    else:
        with step(f"{'check' if dry_run else 'write'} {len(ordered)} accounts into {target.label}"):
            wr = target.apply(ordered, (), dry_run=dry_run)
    return RestoreReport(
        target=target.label,
        snapshot=snapshot,
        accounts=len(accounts),
        added=[a.label for a in wr.added],
        updated=[a.label for a in wr.updated],
        unchanged=wr.unchanged,
        dry_run=dry_run,
        epoch=remote.epoch,
        sent=sent,
        uploaded=uploaded,
        warnings=remote.warnings,
        errors=list(wr.errors),
    )


def diff_snapshots(s: Session, state: SyncState, first: str, second: str) -> dict[str, Any]:
    """What changed from snapshot ``first`` to ``second`` (``"latest"``: the vault now):
    labels added, removed, changed (fields), and HOTP counters moved."""
    from otpbridge.engine.merge import digest

    a, _r = remote_accounts(s, state, snapshot=None if first == "latest" else first)
    b, _r = remote_accounts(s, state, snapshot=None if second == "latest" else second)
    out: dict[str, Any] = {"from": first, "to": second, "added": [], "removed": [], "changed": [], "counters": []}
    for rid in sorted(set(a) | set(b), key=lambda r: (b.get(r) or a[r]).label.lower()):
        old, new = a.get(rid), b.get(rid)
        if old is None:
            out["added"].append(new.label)
        elif new is None:
            out["removed"].append(old.label)
        elif digest(old) != digest(new):
            out["changed"].append(old.label if old.label == new.label else f"{old.label} -> {new.label}")
        elif old.counter != new.counter:
            out["counters"].append(f"{new.label}: {old.counter} -> {new.counter}")
    return out
