"""The Python API: what the CLI does, callable from scripts, notebooks and other tools.

Same code paths as the command line — stores through ``store.open_store`` and the plugin
registry, vault work through ``engine`` — with the CLI's printing replaced by return
values. Secrets follow the CLI's rules: a store's password comes from its spec
(``?password-env=``/``?password-file=``) or ``OTPBRIDGE_STORE_PASSWORD``; the backup
passphrase from the ``passphrase`` argument (a string, a :class:`~otpbridge.core.secrets.Secret`
or a function returning one) or else from ``OTPBRIDGE_PASSPHRASE`` /
``OTPBRIDGE_PASSCOMMAND`` / a terminal prompt.

Example::

    import otpbridge

    accounts = otpbridge.read_accounts("aegis:backup.json?password-env=AEGIS_PW")
    otpbridge.convert("gauth:export.txt", "keepass:otp.kdbx?password-env=KP", dry_run=True)

    dev = otpbridge.Device(home="~/.otpbridge-laptop", passphrase=my_passphrase)
    dev.init("mydrive:otp", stores=["keepass:~/otp.kdbx"], kdf="default")
    report = dev.sync()
    print(report.added, report.received_added)
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otpbridge.core.config import Config
from otpbridge.core.errors import DataLossRefused, OtpBridgeError, PartialError, UsageError
from otpbridge.core.model import Account
from otpbridge.core.secrets import Secret, SecretSource
from otpbridge.stores.base import Context, ReadResult, Store, WriteReport

PassphraseLike = str | Secret | Callable[[], "Secret | str"] | None


def _context(environ: Mapping[str, str] | None, warn: Callable[[str], None] | None, stats: Counter | None = None) -> Context:
    return Context(
        environ=dict(os.environ) if environ is None else dict(environ),
        stats=stats if stats is not None else Counter(),
        progress=False,
        warn=warn or (lambda _msg: None),
        info=lambda _msg: None,
    )


# --- stores and files ------------------------------------------------------------------------


def open_store(spec: str, *, environ: Mapping[str, str] | None = None, warn: Callable[[str], None] | None = None) -> Store:
    """A store or file named ``KIND:LOCATION[?opts]`` (the kind is detected when left out)."""
    from otpbridge.stores.registry import open_store as _open

    return _open(spec, _context(environ, warn))


def read(spec: str, *, environ: Mapping[str, str] | None = None) -> ReadResult:
    """Every account of a store (deduplicated) plus the entries that could not be read."""
    return open_store(spec, environ=environ).read().deduplicated()


def read_accounts(spec: str, *, environ: Mapping[str, str] | None = None, strict: bool = True) -> list[Account]:
    """The accounts of a store or file.

    With ``strict`` (the default), entries that could not be read raise
    :class:`~otpbridge.core.errors.PartialError` (exit 7 in the CLI) listing them; otherwise
    they are dropped silently — use :func:`read` to see them.
    """
    result = read(spec, environ=environ)
    if strict and result.errors:
        raise PartialError(f"{len(result.errors)} entries skipped", result.errors, hint="read() returns the rest and the reasons")
    return list(result.accounts)


def convert(
    source: str,
    dest: str,
    *,
    dry_run: bool = False,
    merge: bool = False,
    environ: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> WriteReport:
    """Copy every account of ``source`` into ``dest`` (as ``otpbridge convert``).

    An existing export file is never overwritten unless ``merge``; databases (KeePass,
    pass) are always merged into. Entries of ``source`` that could not be read are in
    the report's ``errors``.
    """
    from otpbridge.stores import registry
    from otpbridge.stores.base import StoreSpec
    from otpbridge.stores.registry import open_store as _open

    ctx = _context(environ, warn)
    src = _open(source, ctx)
    dspec = StoreSpec.parse(dest, registry.plugin_kinds())
    if dspec.kind is None and not dspec.path.exists():
        raise UsageError(f"cannot tell which format to write {dest!r} in", hint="name it as KIND:PATH")
    dst = _open(dspec, ctx)
    if not dst.can_write():
        raise UsageError(f"{dst.kind} cannot be written")
    if dst.exists() and not dst.is_database and not merge:
        raise DataLossRefused(f"{dst.label} already exists; refusing to overwrite it", hint="pass merge=True to merge into it")
    result = src.read().deduplicated()
    report = dst.apply(upserts=result.accounts, dry_run=dry_run)
    report.errors = list(result.errors) + list(report.errors)
    return report


# --- the vault --------------------------------------------------------------------------------------


def _passphrase_getter(passphrase: PassphraseLike, environ: Mapping[str, str]) -> Callable[[], Secret]:
    if passphrase is None:
        return SecretSource(
            what="backup passphrase", env_var="OTPBRIDGE_PASSPHRASE", command_var="OTPBRIDGE_PASSCOMMAND", environ=environ
        ).get
    if isinstance(passphrase, Secret):
        return lambda: passphrase
    if isinstance(passphrase, str):
        secret = Secret(passphrase)
        return lambda: secret
    if callable(passphrase):

        def call() -> Secret:
            value = passphrase()
            return value if isinstance(value, Secret) else Secret(value)

        return call
    raise TypeError("passphrase must be a str, a Secret, a function returning one, or None")


class Device:
    """One device: an otpbridge home (config + sync state), as ``OTPBRIDGE_HOME`` names it.

    Two ``Device`` objects with different homes are two devices, even in one process.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        passphrase: PassphraseLike = None,
        environ: Mapping[str, str] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.environ: dict[str, str] = dict(os.environ) if environ is None else dict(environ)
        self.config = Config.resolve(os.path.expanduser(str(home)) if home is not None else None, self.environ)
        self._passphrase = _passphrase_getter(passphrase, self.environ)
        self.warnings: list[str] = []
        self._warn = warn or self.warnings.append
        self.stats: Counter = Counter()

    def __repr__(self) -> str:
        return f"<otpbridge.Device {self.config.config_dir}>"

    # -- plumbing (mirrors cli/vault_common.py) --------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return self.config.read()

    def _need(self) -> dict[str, Any]:
        data = self.settings()
        if not data.get("remote"):
            raise UsageError(f"this device has no vault configured ({self.config.config_file})", hint="call init() first")
        return data

    def _session(self, settings: Mapping[str, Any], *, remote: str | None = None, stores: bool = True):
        from otpbridge.engine.connect import make_session
        from otpbridge.stores.registry import open_store as _open

        ctx = _context(self.environ, self._warn, self.stats)
        return make_session(
            settings,
            state_dir=self.config.state_dir,
            environ=self.environ,
            stats=self.stats,
            open_store=lambda spec: _open(spec, ctx),
            passphrase=self._passphrase,
            remote=remote,
            stores=stores,
            warn=self._warn,
        )

    # -- commands ------------------------------------------------------------------------------
    def init(self, remote: str, stores: Sequence[str] = (), *, device_name: str | None = None, kdf: str = "default",
             create: bool = False):
        """Create a vault on ``remote`` or join the one there (``otpbridge init``).

        Store paths are saved absolute; a store that does not exist is refused unless
        ``create=True`` (``--create``).

        ``kdf="insecure-test"`` needs ``OTPBRIDGE_ALLOW_INSECURE_KDF=1`` (tests only).
        Returns the engine's ``InitResult`` (``created``, ``vault_id``, ``epoch``).
        """
        from otpbridge.engine.connect import check_state_owner, init_settings
        from otpbridge.engine.init_vault import init_vault
        from otpbridge.engine.state import SyncState
        from otpbridge.stores.registry import open_store as _open
        from otpbridge.vault.format import choose_params

        ctx = _context(self.environ, self._warn, self.stats)
        settings = init_settings(self.settings(), remote=remote, stores=stores, device_name=device_name, kdf=kdf,
                                 open_store=lambda spec: _open(spec, ctx), create=create)
        s = self._session(settings)
        s.params = choose_params(kdf, self.environ)
        if getattr(s.backend, "name", "") == "local":
            settings["remote"] = str(s.backend.root)
        state = SyncState.load(self.config.state_dir)
        check_state_owner(state, settings["device"]["id"])
        result = init_vault(s, state)
        if result.device_id:  # the configured id was in use on the remote: joined under a new one
            settings["device"] = {**settings["device"], "id": result.device_id}
        self.config.write(settings)
        if not result.created:
            from otpbridge.engine.sync import announce

            announce(s)
        return result

    def _sync(self, mode: str, *, dry_run: bool, allow_deletions: bool, accept_rollback: bool, full: bool):
        from otpbridge.engine.fastpath import sync
        from otpbridge.engine.session import record_error

        settings = self._need()
        try:
            s = self._session(settings)
            if not s.stores:
                raise UsageError("no store is configured")
            with s.backend:
                return sync(s, mode=mode, dry_run=dry_run, allow_deletions=allow_deletions, accept_rollback=accept_rollback,
                            force=full)
        except OtpBridgeError as err:
            if not dry_run:
                record_error(self.config.state_dir, err, time.time())
            raise

    def backup(self, *, dry_run: bool = False, allow_deletions: bool = False, accept_rollback: bool = False,
               full: bool = False):
        """Local stores → vault, one way (``otpbridge backup``); the options as for :meth:`sync`."""
        return self._sync("backup", dry_run=dry_run, allow_deletions=allow_deletions, accept_rollback=accept_rollback,
                          full=full)

    def sync(self, *, dry_run: bool = False, allow_deletions: bool = False, accept_rollback: bool = False,
             full: bool = False):
        """Two-way sync (``otpbridge sync``); returns the engine's SyncReport.

        ``full``: read every store and open the vault even when nothing changed (the
        no-change fast path checks neither), as ``--full`` does."""
        return self._sync("sync", dry_run=dry_run, allow_deletions=allow_deletions, accept_rollback=accept_rollback,
                          full=full)

    def restore(self, into: str | None = None, *, remote: str | None = None, snapshot: str | None = None,
                dry_run: bool = False, account: str | None = None):
        """Every account of the vault (or of ``snapshot``; only those matching ``account``)
        into ``into`` (default: the primary store); never removes.

        Into one of this device's stores the restore is a change sent to the vault (it
        wins over an older deletion on every device), as ``otpbridge restore`` does. With
        ``remote`` and no configured home this is a new machine's first restore.
        Returns the engine's RestoreReport.
        """
        from otpbridge.engine.restore import restore
        from otpbridge.engine.state import SyncState
        from otpbridge.stores.registry import open_store as _open

        settings = self._need() if remote is None else {"remote": remote}
        target_spec = into or (settings.get("stores") or [None])[0]
        if not target_spec:
            raise UsageError("where to? no 'into' was given and no store is configured")
        ctx = _context(self.environ, self._warn, self.stats)
        target = _open(target_spec, ctx)
        own = remote is None and any(_open(spec, ctx).label == target.label for spec in settings.get("stores", []))
        s = self._session(settings, remote=remote, stores=own)
        state = SyncState.load(self.config.state_dir) if remote is None else SyncState()
        with s.backend:
            return restore(s, state, target, snapshot=snapshot, dry_run=dry_run, account=account, send=own)

    def change_passphrase(self, new_passphrase: PassphraseLike, *, kdf: str | None = None,
                          discard_remote_only: bool = False, dry_run: bool = False, accept_weak: bool = False):
        """Re-key the vault (``otpbridge passphrase change``); returns the engine's RotationReport.

        The new passphrase is rated like the CLI does (zxcvbn): below score 3 it raises
        UsageError unless ``accept_weak``. Afterwards this Device uses the new one.
        """
        from otpbridge.engine.rotation import change_passphrase
        from otpbridge.vault.format import choose_params

        getter = _passphrase_getter(new_passphrase, self.environ)

        def rated() -> Secret:
            secret = getter()
            if not accept_weak:
                _check_strength(secret)
            return secret

        settings = self._need()
        s = self._session(settings)
        s.params = choose_params(kdf or settings.get("kdf", "default"), self.environ)
        with s.backend:
            report = change_passphrase(s, rated, discard_remote_only=discard_remote_only, dry_run=dry_run)
        if not dry_run:
            self._passphrase = getter
        return report

    def snapshots(self) -> list[dict[str, Any]]:
        """The vault's snapshots as ``otpbridge snapshots --json`` lists them (no passphrase)."""
        from otpbridge.engine.devices import snapshots
        from otpbridge.engine.state import SyncState

        s = self._session(self._need(), stores=False)
        with s.backend:
            return snapshots(s, SyncState.load(self.config.state_dir))

    def diff(self, first: str, second: str = "latest") -> dict[str, Any]:
        """What changed between two snapshots (``otpbridge snapshots diff``): labels only."""
        from otpbridge.engine.restore import diff_snapshots
        from otpbridge.engine.state import SyncState

        s = self._session(self._need(), stores=False)
        with s.backend:
            return diff_snapshots(s, SyncState.load(self.config.state_dir), first, second)

    def forget(self, *, keep_last: int | None = None, keep_daily: int | None = None, keep_weekly: int | None = None,
               keep_monthly: int | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Delete this device's older snapshots by a policy (``otpbridge forget``); without
        ``keep_*`` the configured one. Never its newest, never another device's."""
        from dataclasses import replace

        from otpbridge.engine.devices import forget
        from otpbridge.engine.snapshots import Retention

        settings = self._need()
        policy = Retention.from_config(settings.get("retention"))
        given = {k: v for k, v in (("recent", keep_last), ("daily", keep_daily), ("weekly", keep_weekly),
                                   ("monthly", keep_monthly)) if v is not None}
        if given:
            policy = replace(Retention(recent=0, daily=0, weekly=0, monthly=0), **given)
        s = self._session(settings, stores=False)
        with s.backend:
            return forget(s, policy, dry_run=dry_run)

    def devices(self) -> list[dict[str, Any]]:
        """Every joined device, as ``otpbridge devices --json`` (no passphrase)."""
        from otpbridge.engine.devices import devices
        from otpbridge.engine.state import SyncState

        s = self._session(self._need(), stores=False)
        with s.backend:
            return devices(s, SyncState.load(self.config.state_dir))

    def remove_device(self, device: str, *, dry_run: bool = False):
        """``otpbridge devices remove NAME|ID``: merges first, then removes the device."""
        from otpbridge.engine.devices import resolve_device
        from otpbridge.engine.fastpath import sync
        from otpbridge.engine.layout import Listing
        from otpbridge.engine.state import SyncState

        s = self._session(self._need())
        with s.backend:
            ids = {v.device for v in Listing.parse(s.backend.list()).views}
            dev = resolve_device(SyncState.load(self.config.state_dir), ids, device)
            if dev == s.device_id:
                raise UsageError("this device cannot remove itself")
            return sync(s, mode="sync", dry_run=dry_run, remove_devices=[dev])

    def keys(self):
        """The vault's keys (``otpbridge key list``): a ``KeyList`` with ``.keys``."""
        from otpbridge.engine.keys import list_keys

        s = self._session(self._need(), stores=False)
        with s.backend:
            return list_keys(s)

    def add_key(self, *, name: str = "", passphrase: PassphraseLike = None, recovery: bool = False,
                age_recipient: str | None = None, ssh_recipient: str | None = None, kdf: str | None = None,
                dry_run: bool = False):
        """``otpbridge key add``: another passphrase, a recovery code (returned once as
        ``.recovery_key``) or an age/ssh public key. A re-key: the vault's new epoch."""
        from otpbridge.engine.keys import add_key
        from otpbridge.vault.format import choose_params
        from otpbridge.vault.keyring import NewSlot, parse_recipient

        if sum(map(bool, (passphrase, recovery, age_recipient, ssh_recipient))) != 1:
            raise UsageError("give exactly one of passphrase, recovery, age_recipient, ssh_recipient")
        settings = self._need()
        s = self._session(settings)
        s.params = choose_params(kdf or settings.get("kdf", "default"), self.environ)
        if recovery:
            spec = NewSlot("recovery", name)
        elif age_recipient or ssh_recipient:
            kind = "age" if age_recipient else "ssh"
            text = str(age_recipient or ssh_recipient)
            parse_recipient(kind, text)
            spec = NewSlot(kind, name, recipient=text)
        else:
            secret = _passphrase_getter(passphrase, self.environ)()
            _check_strength(secret)
            spec = NewSlot("passphrase", name, secret, params=s.params)
        with s.backend:
            return add_key(s, spec, dry_run=dry_run)

    def remove_key(self, key: str, *, dry_run: bool = False):
        """``otpbridge key remove ID|NAME``: re-key without it; it opens nothing afterwards."""
        from otpbridge.engine.keys import remove_key
        from otpbridge.vault.format import choose_params

        settings = self._need()
        s = self._session(settings)
        s.params = choose_params(settings.get("kdf", "default"), self.environ)
        with s.backend:
            return remove_key(s, key, dry_run=dry_run)

    def accounts(self, *, snapshot: str | None = None) -> list[Account]:
        """Every live account in the vault (or in one snapshot), decrypted in memory only."""
        from otpbridge.engine.restore import remote_accounts
        from otpbridge.engine.state import SyncState

        s = self._session(self._need(), stores=False)
        with s.backend:
            found, _remote = remote_accounts(s, SyncState.load(self.config.state_dir), snapshot=snapshot)
        return sorted(found.values(), key=lambda a: (a.issuer.lower(), a.name.lower()))

    def verify(self):
        """Download and decrypt every object of the vault (``otpbridge verify``): a restore drill.

        Returns the engine's VerifyReport; raises IntegrityError (exit 4) when any object fails.
        """
        from otpbridge.core.errors import IntegrityError
        from otpbridge.engine.state import SyncState
        from otpbridge.engine.verify import verify

        s = self._session(self._need(), stores=False)
        with s.backend:
            report = verify(s, SyncState.load(self.config.state_dir))
        if report.failures:
            raise IntegrityError(f"{len(report.failures)} object(s) failed verification: {'; '.join(report.failures[:3])}")
        return report

    def status(self) -> dict[str, Any]:
        """What ``otpbridge status --json`` shows (no passphrase, no network)."""
        from otpbridge.automation.runlog import read_failure
        from otpbridge.core.remotes import redact_remote
        from otpbridge.engine.state import SyncState

        settings = self.settings()
        st = SyncState.load(self.config.state_dir)
        device = settings.get("device", {})
        return {
            "remote": redact_remote(settings.get("remote")),
            "stores": settings.get("stores", []),
            "device": {"id": device.get("id"), "name": device.get("name")},
            "vault_id": st.vault_id,
            "epoch": st.epoch,
            "accounts": st.accounts,
            "last_verified_backup": st.last_verified_backup,
            "last_sync": st.last_sync,
            "last_error": st.last_error,
            "last_unattended_failure": read_failure(self.config.state_dir),
        }


def _check_strength(secret: Secret) -> None:
    from zxcvbn import zxcvbn

    score = int(zxcvbn(secret.reveal()[:100])["score"])
    if score < 3:
        raise UsageError(f"the new passphrase is too weak (zxcvbn score {score}/4)",
                         hint="four or more random words; or pass accept_weak=True")


def codes(spec: str, query: str | None = None, *, at: float | None = None,
          environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The current codes of a store's accounts (``otpbridge code SOURCE QUERY``): one dict
    per account, ``{"account": Account, "code": "123456", "seconds_left": 12}``
    (``seconds_left`` is None for HOTP, whose code is for ``account.counter``)."""
    from otpbridge.core.codes import code_at, seconds_left

    now = time.time() if at is None else at
    q = (query or "").casefold()
    out = []
    for acc in read_accounts(spec, environ=environ, strict=False):
        if q and not any(q in f.casefold() for f in (acc.issuer, acc.name, acc.folder, acc.label)):
            continue
        out.append({"account": acc, "code": code_at(acc, now), "seconds_left": seconds_left(acc, now)})
    return out


# --- one-call shortcuts ------------------------------------------------------------------------


def init(remote: str, stores: Sequence[str] = (), *, home: str | None = None, passphrase: PassphraseLike = None, **kw: Any):
    """``Device(home, passphrase=…).init(remote, stores, …)``."""
    return Device(home, passphrase=passphrase).init(remote, stores, **kw)


def backup(*, home: str | None = None, passphrase: PassphraseLike = None, **kw: Any):
    """``Device(home, passphrase=…).backup(…)``."""
    return Device(home, passphrase=passphrase).backup(**kw)


def sync(*, home: str | None = None, passphrase: PassphraseLike = None, **kw: Any):
    """``Device(home, passphrase=…).sync(…)``."""
    return Device(home, passphrase=passphrase).sync(**kw)


def restore(into: str | None = None, *, home: str | None = None, passphrase: PassphraseLike = None, **kw: Any):
    """``Device(home, passphrase=…).restore(into, …)``."""
    return Device(home, passphrase=passphrase).restore(into, **kw)


__all__ = ["Device", "backup", "convert", "init", "open_store", "read", "read_accounts", "restore", "sync"]
