"""``otpbridge restore``: every account of the vault (or of one snapshot) into a store;
never removes anything from it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from otpbridge.core.errors import (
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
    open_view,
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
            data = open_view(s, remote.key, ref)
            return alive(data["_records"]), remote
    raise UsageError(f"no snapshot {snapshot!r} on the remote", hint="'otpbridge snapshots' lists them")


@exclusive
def restore(
    s: Session,
    state: SyncState,
    target: Any,
    *,
    snapshot: str | None = None,
    dry_run: bool = False,
    accept_rollback: bool = False,
) -> RestoreReport:
    """Add every account of the vault to ``target``; never removes anything from it.

    An account the target already holds keeps its HOTP counter when that is higher: the
    codes below it were used (SPEC §6, counters never go backwards), maybe after the
    vault's copy (an old snapshot, a device that did not sync since).
    """
    from otpbridge.core.model import Kind

    by_record, remote = remote_accounts(s, state, snapshot=snapshot, accept_rollback=accept_rollback)
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
        warnings=remote.warnings,
        errors=list(wr.errors),
    )
