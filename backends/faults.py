"""A backend wrapper that fails on purpose, for crash and outage tests of the sync engine.

API::

    from otpbridge.backends.faults import FaultyBackend, SimulatedCrash

    faulty = FaultyBackend(
        inner,                          # any Backend (a LocalBackend in a tmp dir is typical)
        fail_on={"write": [2]},         # 2nd write raises UnreachableError; nothing is written
        fail_after={"write": [3]},      # 3rd write IS done, then UnreachableError (lost reply)
        truncate_on={"write": [1]},     # 1st write leaves a truncated object under the final
                                        #   name (as a non-atomic server would), then raises
        timeout_on={"read": [1]},       # 1st read waits ``delay`` s, then UnreachableError("timed out")
        crash_on={"delete": [1]},       # 1st delete raises SimulatedCrash before doing anything
        crash_after={"write": [2]},     # 2nd write is done, then SimulatedCrash
        delay=0.0,
    )

Operations are ``list``, ``read``, ``write``, ``exists``, ``delete``; call numbers count
from 1 per operation (``faulty.calls["write"]``). A rule may also be ``"all"`` (every
call) or ``lambda k, name: bool``. ``faulty.events`` records ``(op, k, name, outcome)``
for every call. :class:`SimulatedCrash` derives from BaseException so that ``except
Exception`` in the code under test cannot swallow it — it stands for the process being
killed at that point; the test then opens a fresh engine over ``faulty.inner``.
``heal()`` drops all rules (the outage is over). ``stats`` and ``describe()`` are the
inner backend's, so counts stay truthful.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Union

from otpbridge.backends.base import Backend, ObjectInfo
from otpbridge.core.errors import UnreachableError

OPERATIONS = ("list", "read", "write", "exists", "delete")

Rule = Union[Iterable[int], str, Callable[[int, str], bool]]  # noqa: UP007 - readable in the docs above


class SimulatedCrash(BaseException):
    """The process 'died' here (BaseException: ordinary error handling must not catch it)."""


def _matches(rule: Rule | None, k: int, name: str) -> bool:
    if rule is None:
        return False
    if rule == "all":
        return True
    if callable(rule):
        return bool(rule(k, name))
    return k in set(rule)  # type: ignore[arg-type]


class FaultyBackend(Backend):
    name = "faulty"

    def __init__(
        self,
        inner: Backend,
        *,
        fail_on: Mapping[str, Rule] | None = None,
        fail_after: Mapping[str, Rule] | None = None,
        truncate_on: Mapping[str, Rule] | None = None,
        timeout_on: Mapping[str, Rule] | None = None,
        crash_on: Mapping[str, Rule] | None = None,
        crash_after: Mapping[str, Rule] | None = None,
        delay: float = 0.0,
        truncate_to: float = 0.5,
    ) -> None:
        # Deliberately not calling Backend.__init__: location, stats, environ are the inner's.
        self.inner = inner
        self.rules = {
            "fail_on": dict(fail_on or {}),
            "fail_after": dict(fail_after or {}),
            "truncate_on": dict(truncate_on or {}),
            "timeout_on": dict(timeout_on or {}),
            "crash_on": dict(crash_on or {}),
            "crash_after": dict(crash_after or {}),
        }
        for kind, rules in self.rules.items():
            unknown = set(rules) - set(OPERATIONS)
            if unknown:
                raise ValueError(f"{kind}: unknown operation(s) {sorted(unknown)}; use {OPERATIONS}")
        if set(self.rules["truncate_on"]) - {"write"}:
            raise ValueError("truncate_on only applies to write")
        self.delay = delay
        self.truncate_to = truncate_to
        self.calls: Counter = Counter()
        self.events: list[tuple[str, int, str, str]] = []

    # Backend attributes, delegated
    @property
    def stats(self) -> Counter:  # type: ignore[override]
        return self.inner.stats

    @property
    def location(self) -> str:  # type: ignore[override]
        return self.inner.location

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return self.inner.timeout

    @property
    def environ(self):  # type: ignore[override]
        return self.inner.environ

    def describe(self) -> str:
        return self.inner.describe()

    def heal(self) -> None:
        for rules in self.rules.values():
            rules.clear()

    def _hit(self, kind: str, op: str, k: int, name: str) -> bool:
        return _matches(self.rules[kind].get(op), k, name)

    def _call(self, op: str, name: str, action: Callable[[], object], data: bytes | None = None) -> object:
        self.calls[op] += 1
        k = self.calls[op]
        where = f"{op} {name}".strip()
        if self._hit("crash_on", op, k, name):
            self.events.append((op, k, name, "crash-before"))
            raise SimulatedCrash(f"simulated crash before {where} (call {k})")
        if self._hit("fail_on", op, k, name):
            self.events.append((op, k, name, "failed"))
            raise UnreachableError(f"{self.describe()} is unreachable ({where}): injected failure (call {k})")
        if self._hit("timeout_on", op, k, name):
            self.events.append((op, k, name, "timeout"))
            if self.delay:
                time.sleep(self.delay)
            raise UnreachableError(f"{self.describe()} is unreachable ({where}): timed out (injected, call {k})")
        if data is not None and self._hit("truncate_on", op, k, name):
            cut = data[: int(len(data) * self.truncate_to)]
            if len(cut) == len(data) and data:
                cut = data[:-1]
            self.inner.write(name, cut)
            self.events.append((op, k, name, f"truncated:{len(cut)}"))
            raise UnreachableError(f"{self.describe()} is unreachable ({where}): connection lost mid-upload (injected)")
        result = action()
        if self._hit("crash_after", op, k, name):
            self.events.append((op, k, name, "crash-after"))
            raise SimulatedCrash(f"simulated crash after {where} (call {k})")
        if self._hit("fail_after", op, k, name):
            self.events.append((op, k, name, "done-then-failed"))
            raise UnreachableError(f"{self.describe()} is unreachable ({where}): reply lost (injected, call {k})")
        self.events.append((op, k, name, "ok"))
        return result

    def check_present(self) -> None:
        self.inner.check_present()

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self._call("list", prefix, lambda: self.inner.list(prefix))  # type: ignore[return-value]

    def read(self, name: str) -> bytes:
        return self._call("read", name, lambda: self.inner.read(name))  # type: ignore[return-value]

    def write(self, name: str, data: bytes) -> None:
        self._call("write", name, lambda: self.inner.write(name, data), data=bytes(data))

    def exists(self, name: str) -> bool:
        return self._call("exists", name, lambda: self.inner.exists(name))  # type: ignore[return-value]

    def delete(self, name: str) -> None:
        self._call("delete", name, lambda: self.inner.delete(name))

    def close(self) -> None:
        self.inner.close()
