"""The crash-injection matrix shared by tests/test_crash.py and tests/test_keys.py: a
fault at every backend call of one operation, each from the same starting state."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from otpbridge.backends.faults import FaultyBackend, SimulatedCrash
from otpbridge.backends.local import LocalBackend
from otpbridge.core.errors import OtpBridgeError

MATRIX_OPS = ("list", "read", "write", "exists", "delete")
MATRIX_MODES = ("crash_on", "crash_after", "fail_on", "fail_after", "truncate_on")


def run_faulty(fn: Callable[[], object], faulty: FaultyBackend) -> bool:
    """Run ``fn`` over ``faulty``; whether a fault was injected (the failure it caused is
    expected: the checks come after)."""
    try:
        fn()
    except (SimulatedCrash, OtpBridgeError):
        pass
    return any(e[3] != "ok" for e in faulty.events)


def fault_matrix(root: Path, template: Path, remote: Path,
                 attempt: Callable[[FaultyBackend, tuple], bool]) -> dict[tuple[str, str], int]:
    """For each call kind and fault mode, fault the k-th call for k = 1, 2, … until the
    operation makes no k-th call of that kind. Before each attempt ``root`` is restored
    from ``template``. ``attempt(faulty, (op, mode, k))`` runs the operation over the
    faulty backend and checks the outcome; it returns whether a fault was injected.
    Returns the number of faults injected per (call kind, mode)."""
    cases: dict[tuple[str, str], int] = {}
    for op in MATRIX_OPS:
        for mode in MATRIX_MODES:
            if mode == "truncate_on" and op != "write":
                continue
            for k in range(1, 60):
                shutil.rmtree(root)
                shutil.copytree(template, root, symlinks=True)
                faulty = FaultyBackend(LocalBackend(str(remote)), **{mode: {op: [k]}})
                if not attempt(faulty, (op, mode, k)):
                    break  # there is no k-th call of this kind
                cases[(op, mode)] = k
    return cases


def matrix_summary(cases: dict[tuple[str, str], int]) -> tuple[int, str]:
    """The total of injected faults and "list N, read N, …" for the figures."""
    by_op = ", ".join(f"{op} {sum(k for (o, _m), k in cases.items() if o == op)}" for op in MATRIX_OPS)
    return sum(cases.values()), by_op
