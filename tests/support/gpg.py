"""Real gpg and pass for tests: throw-away GnuPG homes with generated keys, and pass stores.

Use from any test module (or a conftest) by importing the fixtures::

    from tests.support.gpg import gpg_keys, gnupghome, pass_dir  # noqa: F401 (pytest fixtures)

    def test_something(pass_dir):
        pass_dir.write("Acme/alice", b"otpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP\\n")
        store = pass_dir.store()              # a PassStore on it, with a counting Context
        assert store.read().accounts

Fixtures
--------
``gpg_keys`` (session)
    :class:`GpgKeys`: two identities, *alice* and *bob* (ed25519 signing + cv25519
    encryption subkeys, no passphrase — generated once per session, ~0.1 s), in three
    template homes: ``alice`` (alice's secret key, bob's public key), ``bob`` (the
    reverse) and ``both``. Both keys are ultimately trusted everywhere, so encrypting
    to either works in ``--batch`` as it does for a real pass user.
``gnupghome`` (function)
    :class:`GpgHome`: a private copy of the ``alice`` template, exported as
    ``GNUPGHOME`` (monkeypatch). Its gpg-agent is killed at teardown. Make more with
    ``gpg_keys.home("bob")``-style copies via :func:`copy_home` (kill them with
    :meth:`GpgHome.close`, or use :meth:`GpgHome.temporary` as a context manager).
``pass_dir`` (function)
    :class:`PassDir`: an empty store initialised for alice (``.gpg-id`` written
    directly, so it works without ``pass`` installed), with ``PASSWORD_STORE_DIR``
    and git identity variables exported. Helpers write entries exactly as pass does,
    decrypt them with any home, run the real ``pass`` (``pass_dir.pass_(...)``), and
    build a :class:`~otpbridge.stores.base.Context` whose ``stats["gpg"]`` counts gpg calls.

Sockets live in the home, so homes are created under a short ``/tmp/gN…`` path (the
Unix socket path limit is 107 bytes; pytest's ``tmp_path`` can exceed it).
``pinentry-program /bin/false`` makes any passphrase prompt fail at once instead
of hanging a test run.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

GPG = shutil.which("gpg")
GPGCONF = shutil.which("gpgconf")
PASS = shutil.which("pass")
PASS_OTP = next(
    (p for p in ("/usr/lib/password-store/extensions/otp.bash", "/usr/local/lib/password-store/extensions/otp.bash") if os.path.exists(p)),
    None,
)
needs_gpg = pytest.mark.skipif(GPG is None, reason="gpg is not installed")
needs_pass = pytest.mark.skipif(PASS is None, reason="pass is not installed")
needs_pass_otp = pytest.mark.skipif(PASS is None or PASS_OTP is None, reason="pass and pass-otp are not installed")

_AGENT_CONF = "pinentry-program /bin/false\nallow-loopback-pinentry\n"


def gpg(home: Path | str, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run gpg in ``home`` (argv list, batch mode)."""
    assert GPG is not None, "gpg is not installed"
    env = dict(os.environ, GNUPGHOME=str(home))
    proc = subprocess.run(
        [GPG, "--batch", "--quiet", "--no-tty", *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"gpg {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc


def kill_agent(home: Path | str) -> None:
    if GPGCONF:
        subprocess.run([GPGCONF, "--kill", "all"], env=dict(os.environ, GNUPGHOME=str(home)), capture_output=True)


def _new_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    home.chmod(0o700)
    (home / "gpg-agent.conf").write_text(_AGENT_CONF)
    return home


@dataclass
class Identity:
    name: str
    email: str
    fingerprint: str  # primary key
    encryption_keyid: str  # long id of the cv25519 subkey (what NO_SECKEY/ENC_TO report)


def _generate(home: Path, name: str) -> Identity:
    email = f"{name}@example.org"
    gpg(home, "--passphrase", "", "--quick-gen-key", f"{name.title()} <{email}>", "ed25519", "sign,cert", "never")
    out = gpg(home, "--with-colons", "--list-keys", email).stdout.decode()
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    gpg(home, "--passphrase", "", "--quick-add-key", fpr, "cv25519", "encr", "never")
    out = gpg(home, "--with-colons", "--list-keys", email).stdout.decode()
    sub = [line.split(":")[4] for line in out.splitlines() if line.startswith("sub:")]
    return Identity(name, email, fpr, sub[-1])


@dataclass
class GpgKeys:
    """Template homes; copy one with :meth:`copy` (never use a template directly)."""

    base: Path
    alice: Identity
    bob: Identity
    homes: dict[str, Path] = field(default_factory=dict)

    def copy(self, which: str = "alice") -> GpgHome:
        return copy_home(self.homes[which], self)

    def close(self) -> None:
        for home in self.homes.values():
            kill_agent(home)
        shutil.rmtree(self.base, ignore_errors=True)


def generate_keys() -> GpgKeys:
    """Make alice and bob and the three template homes (also used by the benchmark script)."""
    base = Path(tempfile.mkdtemp(prefix="gk", dir="/tmp"))
    both = base / "both"
    both.mkdir(mode=0o700)
    (both / "gpg-agent.conf").write_text(_AGENT_CONF)
    alice = _generate(both, "alice")
    bob = _generate(both, "bob")
    trust = f"{alice.fingerprint}:6:\n{bob.fingerprint}:6:\n".encode()
    keys = GpgKeys(base, alice, bob, {"both": both})
    for who, other in ((alice, bob), (bob, alice)):
        home = base / who.name
        home.mkdir(mode=0o700)
        (home / "gpg-agent.conf").write_text(_AGENT_CONF)
        secret = gpg(both, "--export-secret-keys", who.fingerprint).stdout
        public = gpg(both, "--export", other.fingerprint).stdout
        gpg(home, "--import", input=secret)
        gpg(home, "--import", input=public)
        gpg(home, "--import-ownertrust", input=trust)
        keys.homes[who.name] = home
    gpg(both, "--import-ownertrust", input=trust)
    for home in keys.homes.values():
        kill_agent(home)
    return keys


@dataclass
class GpgHome:
    path: Path
    keys: GpgKeys

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return gpg(self.path, *args, input=input, check=check)

    def decrypt(self, file: Path) -> bytes:
        return self.run("--decrypt", str(file)).stdout

    def close(self) -> None:
        kill_agent(self.path)
        shutil.rmtree(self.path, ignore_errors=True)

    @contextlib.contextmanager
    def temporary(self):
        try:
            yield self
        finally:
            self.close()


def copy_home(template: Path, keys: GpgKeys) -> GpgHome:
    home = _new_home()
    shutil.copytree(template, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
    return GpgHome(home, keys)


class PassDir:
    """A pass store on disk plus the helpers tests need around it."""

    def __init__(self, path: Path, home: GpgHome) -> None:
        self.path = path
        self.home = home
        self.keys = home.keys
        self.warnings: list[str] = []

    # -- set-up, the way pass does it ----------------------------------------------------
    def init(self, *ids: str, subdir: str = "") -> None:
        """Write ``.gpg-id`` (in ``subdir``) like ``pass init [-p subdir] ids…``."""
        folder = self.path / subdir if subdir else self.path
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / ".gpg-id").write_text("".join(f"{i}\n" for i in ids))

    def recipients_for(self, name: str) -> list[str]:
        folder = (self.path / name).parent
        while not (folder / ".gpg-id").is_file():
            folder = folder.parent
        return [line.split("#")[0].strip() for line in (folder / ".gpg-id").read_text().splitlines() if line.split("#")[0].strip()]

    def write(self, name: str, plaintext: bytes, recipients: list[str] | None = None) -> Path:
        """Encrypt ``plaintext`` to ``name.gpg`` exactly as pass does (binary, uncompressed)."""
        file = self.path / f"{name}.gpg"
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        args = ["--yes", "--compress-algo=none", "--no-encrypt-to", "--encrypt"]
        for r in recipients or self.recipients_for(name):
            args += ["-r", r]
        args += ["-o", str(file)]
        self.home.run(*args, input=plaintext)
        return file

    def read(self, name: str, home: GpgHome | None = None) -> bytes:
        return (home or self.home).decrypt(self.path / f"{name}.gpg")

    def git_init(self) -> None:
        """``pass git init``: a repository with everything committed."""
        env = self.env()
        subprocess.run(["git", "-C", str(self.path), "init", "-q"], check=True, env=env)
        (self.path / ".gitattributes").write_text("*.gpg diff=gpg\n")
        subprocess.run(["git", "-C", str(self.path), "add", "-A"], check=True, env=env)
        subprocess.run(["git", "-C", str(self.path), "commit", "-q", "-m", "init"], check=True, env=env)

    def git_log(self) -> list[str]:
        out = subprocess.run(["git", "-C", str(self.path), "log", "--format=%s"], capture_output=True, text=True, check=True, env=self.env())
        return out.stdout.splitlines()

    def git_clean(self) -> bool:
        out = subprocess.run(["git", "-C", str(self.path), "status", "--porcelain"], capture_output=True, text=True, check=True, env=self.env())
        return out.stdout.strip() == ""

    # -- the real pass -----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return dict(os.environ, PASSWORD_STORE_DIR=str(self.path), GNUPGHOME=str(self.home.path))

    def pass_(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert PASS is not None, "pass is not installed"
        proc = subprocess.run([PASS, *args], input=input, capture_output=True, text=True, env=self.env())
        if check and proc.returncode != 0:
            raise AssertionError(f"pass {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    # -- otpbridge ------------------------------------------------------------------------
    def ctx(self, **kw):
        from otpbridge.stores.base import Context

        kw.setdefault("environ", self.env())
        kw.setdefault("stats", Counter())
        kw.setdefault("warn", self.warnings.append)
        kw.setdefault("info", lambda _m: None)
        return Context(**kw)

    def store(self, ctx=None, *, store_cache: dict | None = None):
        from otpbridge.plugins.passstore import PassStore
        from otpbridge.stores.base import StoreSpec

        ctx = ctx or self.ctx()
        if store_cache is not None:
            ctx.store_cache = store_cache
        return PassStore(StoreSpec("pass", str(self.path)), ctx)


# -- pytest fixtures ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def gpg_keys():
    if GPG is None:
        pytest.skip("gpg is not installed")
    keys = generate_keys()
    yield keys
    keys.close()


@pytest.fixture
def gnupghome(gpg_keys, monkeypatch):
    home = gpg_keys.copy("alice")
    monkeypatch.setenv("GNUPGHOME", str(home.path))
    yield home
    home.close()


@pytest.fixture
def pass_dir(gnupghome, tmp_path, monkeypatch):
    path = tmp_path / "store"
    store = PassDir(path, gnupghome)
    store.init(gnupghome.keys.alice.fingerprint)
    monkeypatch.setenv("PASSWORD_STORE_DIR", str(path))
    for var, value in (
        ("GIT_AUTHOR_NAME", "Test"),
        ("GIT_AUTHOR_EMAIL", "test@example.org"),
        ("GIT_COMMITTER_NAME", "Test"),
        ("GIT_COMMITTER_EMAIL", "test@example.org"),
    ):
        monkeypatch.setenv(var, value)
    for var in ("PASSWORD_STORE_KEY", "PASSWORD_STORE_SIGNING_KEY", "PASSWORD_STORE_GPG_OPTS"):
        monkeypatch.delenv(var, raising=False)
    return store
