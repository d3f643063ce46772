"""Which of this device's older views to keep as snapshots (the retention policy).

Every view is a complete copy of the vault as its device saw it, so keeping old views
*is* keeping snapshots: no extra upload. Retention is restic's "keep last N + one per
day + one per week", so a burst of edits cannot push out older good copies (Aegis#1245).
Each device prunes only its own views and never its newest.

A delta is a snapshot too (docs/SYNC.md "Deltas"): its state is its chain, the checkpoint
view its name points to and every object of the device in between; whatever the policy
keeps, the chains of the kept deltas are kept whole.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from otpbridge.engine.layout import ViewRef


@dataclass(frozen=True)
class Retention:
    recent: int = 10
    daily: int = 7
    weekly: int = 8
    monthly: int = 0

    @classmethod
    def from_config(cls, data: object) -> Retention:
        """``[retention]`` of config.toml (``last``, ``daily``, ``weekly``, ``monthly``)."""
        if not isinstance(data, dict):
            return cls()
        base = cls()
        return cls(
            recent=int(data.get("last", base.recent)),
            daily=int(data.get("daily", base.daily)),
            weekly=int(data.get("weekly", base.weekly)),
            monthly=int(data.get("monthly", base.monthly)),
        )

    def to_config(self) -> dict[str, int]:
        return {"last": self.recent, "daily": self.daily, "weekly": self.weekly, "monthly": self.monthly}


def keep(views: Sequence[ViewRef], policy: Retention = Retention()) -> set[str]:
    """The names among one device's ``views`` to keep (its newest always)."""
    ordered = sorted(views, key=lambda v: v.seq, reverse=True)
    kept: set[str] = {v.name for v in ordered[: max(1, policy.recent)]}
    for span, count in (("%Y-%m-%d", policy.daily), ("%G-W%V", policy.weekly), ("%Y-%m", policy.monthly)):
        buckets: list[str] = []
        for v in ordered:
            bucket = time.strftime(span, time.gmtime(v.time))
            if bucket in buckets:
                continue
            if len(buckets) >= count:
                break
            buckets.append(bucket)
            kept.add(v.name)
    # Never cut a chain: a kept delta keeps everything from its checkpoint up to it.
    for v in ordered:
        if v.name in kept and v.is_delta:
            kept.update(w.name for w in ordered if v.base <= w.seq < v.seq)
    return kept


def prune(views: Sequence[ViewRef], policy: Retention = Retention()) -> list[ViewRef]:
    """The views to delete (never the newest), newest first: deleting them in this order,
    a run that stops half-way never leaves a delta without the objects it builds on."""
    names = keep(views, policy)
    return sorted((v for v in views if v.name not in names), key=lambda v: v.seq, reverse=True)
