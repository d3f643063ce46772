"""What the migration recipes in this folder print and check alike.

The recipes (``import _recipe``) call the public otpbridge API themselves, cell by cell;
this module only keeps their reporting and their final "same codes" check in one place,
so that every recipe says things the same way and checks the same way. Python puts a
script's own folder first on ``sys.path``, so ``python scripts/NAME.py`` finds it from
any directory (for cell-by-cell use, start the kernel in ``scripts/``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable

import otpbridge
from otpbridge.core.codes import code_at


def _kind_and_label(acc) -> str:
    return f"{acc.kind.value:5} {acc.label}"


def show_source(source, spec: str, describe: Callable = _kind_and_label) -> None:
    """List what a source holds, one account a line, then what could not be read."""
    print(f"{len(source.accounts)} account(s) in {spec}")
    for acc in source.accounts:
        print(f"  {describe(acc)}")
    for err in source.errors:
        print(f"  skipped {err}")


def show_plan(plan, *, each: bool = False) -> None:
    """What a dry run would change; with ``each``, the accounts it would add (+) and update (~)."""
    print(f"would add {len(plan.added)}, update {len(plan.updated)}, leave {plan.unchanged} unchanged")
    if each:
        for acc in plan.added:
            print(f"  + {acc.label}")
        for acc in plan.updated:
            print(f"  ~ {acc.label}")


def show_report(report) -> None:
    print(f"added {len(report.added)}, updated {len(report.updated)}, unchanged {report.unchanged}")


def read_back(spec: str) -> dict:
    """The accounts a store holds now, by identity (entries it cannot read are left out)."""
    return {a.identity: a for a in otpbridge.read_accounts(spec, strict=False)}


def check_codes(expected: Iterable, stored: dict) -> None:
    """Stop the recipe unless every expected account is stored and gives the same code now."""
    expected = list(expected)
    now = time.time()
    missing = [a.label for a in expected if a.identity not in stored]
    differ = [a.label for a in expected if a.identity in stored and code_at(a, now) != code_at(stored[a.identity], now)]
    if missing or differ:
        sys.exit(f"check failed: missing {missing}, different codes {differ}")
