"""Devices for sync tests: each has its own OTPBRIDGE_HOME and a uris: primary store.

``Device.run`` calls the real CLI in-process (``otpbridge.cli.main``) with the device's
environment; ``Device.spawn`` starts it as a subprocess (for parallel runs and kills).
Secrets here are throw-away test values.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from otpbridge.core.model import Account, Kind
from otpbridge.core.otpauth import format_uri, parse_uri

PASS = "correct horse battery staple 42"
NEW_PASS = "a different, longer passphrase 7"


def make_account(tag: str, *, kind: str = "totp", issuer: str | None = None, counter: int = 0) -> Account:
    """A deterministic account per tag (its secret is derived from the tag)."""
    secret = hashlib.sha256(b"test-secret:" + tag.encode()).digest()[:10]
    return Account(kind=Kind(kind), secret=secret, issuer=issuer or f"Svc{tag}", name=f"user-{tag}", counter=counter)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTPBRIDGE_")}
    env.update(OTPBRIDGE_ALLOW_INSECURE_KDF="1", OTPBRIDGE_PASSPHRASE=PASS)
    env.update(extra)
    return env


@contextlib.contextmanager
def patched_environ(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@dataclass
class Device:
    root: Path
    remote: str
    name: str
    env: dict[str, str] = field(default_factory=base_env)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = self.root / "home"
        self.store_path = self.root / "codes.txt"
        self.env = dict(self.env)
        self.env["OTPBRIDGE_HOME"] = str(self.home)

    @property
    def store(self) -> str:
        return f"uris:{self.store_path}"

    # -- the store ---------------------------------------------------------------------
    def write_accounts(self, accounts: list[Account]) -> None:
        body = "".join(format_uri(a) + "\n" for a in accounts)
        self.store_path.write_text(body, encoding="utf-8")

    def accounts(self) -> dict[str, Account]:
        if not self.store_path.exists():
            return {}
        out = {}
        for line in self.store_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                acc = parse_uri(line.strip())
                out[acc.secret_id] = acc  # kind + secret: stable across the renames tests make
        return out

    def add(self, *accounts: Account) -> None:
        cur = self.accounts()
        for acc in accounts:
            cur[acc.secret_id] = acc
        self.write_accounts(list(cur.values()))

    def remove(self, *ids: str) -> None:
        cur = self.accounts()
        self.write_accounts([a for i, a in cur.items() if i not in ids])

    def edit(self, rid: str, **changes) -> None:
        cur = self.accounts()
        cur[rid] = cur[rid].replace(**changes)
        self.write_accounts(list(cur.values()))

    # -- the CLI -------------------------------------------------------------------------
    def run(self, *args: str, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> Result:
        from otpbridge.cli import main

        full = dict(self.env)
        full.update(env or {})
        for key in drop:
            full.pop(key, None)
        out, err = io.StringIO(), io.StringIO()
        with patched_environ(full), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        return Result(code, out.getvalue(), err.getvalue())

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "otpbridge.cli", *args]

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        full = dict(self.env)
        full.update(env or {})
        return subprocess.Popen(self.argv(*args), env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)

    def init(self, *extra: str, env: dict[str, str] | None = None) -> Result:
        if not self.store_path.exists():
            self.write_accounts([])
        res = self.run("init", self.remote, "--store", self.store, "--device", self.name,
                       "--kdf", "insecure-test", *extra, env=env)
        if res.code == 0 and os.environ.get("OTPBRIDGE_TEST_DELTAS"):
            # The whole suite can run with a delta on every upload the chain allows
            # (OTPBRIDGE_TEST_DELTAS=1 pytest): small test vaults never make one on "auto".
            force_deltas(self)
        return res

    def set_deltas(self, mode: str) -> None:
        """``[sync] deltas = MODE`` in this device's config.toml (docs/SYNC.md "Deltas")."""
        from otpbridge.core.config import Config

        cfg = Config.resolve(self.home)
        data = cfg.read()
        data.setdefault("sync", {})["deltas"] = mode
        cfg.write(data)

    def sync(self, *extra: str, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> Result:
        return self.run("sync", "--json", *extra, env=env, drop=drop)


def joined_pair(root: Path, *, accounts: tuple[str, ...] = ("1", "2"), deltas: bool = False,
                ) -> tuple[Device, Device, Path]:
    """Devices a and b joined to one local-folder vault under ``root``; with ``accounts``,
    a holds those (make_account tags) and both have synced; with ``deltas``, every later
    upload is a delta where the chain allows."""
    remote = root / "remote"
    a = Device(root / "a", str(remote), "a")
    b = Device(root / "b", str(remote), "b")
    ok(a.init())
    ok(b.init())
    if deltas:
        force_deltas(a, b)
    if accounts:
        a.add(*(make_account(tag) for tag in accounts))
        ok(a.sync())
        ok(b.sync())
    return a, b, remote


def device_id(dev: Device) -> str:
    """The device id in the home's config (what its objects on the remote are named by)."""
    from otpbridge.core.config import Config

    return Config.resolve(dev.home).read()["device"]["id"]


def force_deltas(*devices: Device) -> None:
    """A delta on every upload the chain allows (test vaults are too small for "auto")."""
    for dev in devices:
        dev.set_deltas("always")


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result


def secret_tag(acc: Account) -> str:
    return base64.b32encode(acc.secret).decode()


def engine_session(dev: Device, backend=None, *, passphrase: str = PASS, stats=None):
    """An engine Session for ``dev`` over ``backend`` (default: its configured remote)."""
    from collections import Counter

    from otpbridge.backends.base import open_backend
    from otpbridge.core.config import Config
    from otpbridge.core.secrets import Secret
    from otpbridge.engine.session import Session
    from otpbridge.stores.base import Context
    from otpbridge.stores.registry import open_store
    from otpbridge.vault.format import choose_params

    cfg = Config.resolve(dev.home)
    data = cfg.read()
    stats = Counter() if stats is None else stats
    ctx = Context(environ=dev.env, stats=stats, warn=lambda m: None, info=lambda m: None)
    if backend is None:
        backend = open_backend(data["remote"], stats=stats, environ=dev.env)
    return Session(
        backend=backend,
        state_dir=cfg.state_dir,
        device_id=data["device"]["id"],
        device_name=data["device"]["name"],
        stores=[open_store(s, ctx) for s in data["stores"]],
        passphrase=lambda: Secret(passphrase),
        stats=stats,
        params=choose_params("insecure-test", {"OTPBRIDGE_ALLOW_INSECURE_KDF": "1"}),
        deltas=str((data.get("sync") or {}).get("deltas", "auto")),
    )


def remote_ids(remote_dir: Path, passphrase: str = PASS) -> set[str]:
    """Every live account id a fresh restore with ``passphrase`` would yield."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        probe = Device(Path(tmp), str(remote_dir), "probe", env=base_env(OTPBRIDGE_PASSPHRASE=passphrase))
        target = Path(tmp) / "restored.txt"
        res = probe.run("restore", str(remote_dir), "--into", f"uris:{target}")
        assert res.code == 0, res.err
        if not target.exists():
            return set()
        return {parse_uri(line).secret_id for line in target.read_text().splitlines() if line.strip()}
