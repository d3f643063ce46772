"""gpg for the ``pass:`` store: one short-lived ``gpg`` process per entry, status-fd driven.

Why not python-gnupg (which the ``pass`` extra still lists): it spends three Python
threads and 1 KiB reads on every call and probes ``gpg --list-config`` on construction.
Measured on 2 cores over 1,000 entries (docs/stores/pass.md), its parallel decrypt was
only 1.55× faster than a shell loop of ``gpg -d``, while plain ``subprocess`` calls in a
thread pool reach about 2× (the hardware ceiling; ``xargs -P4`` gives the same). The gpg
interface used here is the documented, stable machine one: argv options plus
``--status-fd`` keywords (gnupg ``doc/DETAILS``), so nothing is parsed from
human-readable output except one trimmed ``gpg:`` line used as a hint.

Secrets: plaintext travels only through pipes (stdin for encryption, stdout for
decryption), never argv or files; child processes get the caller's environment minus
otpbridge's own secret variables and every store's password variable
(``core.childenv.child_env``). gpg-agent, which gpg starts on first use and which
outlives the run, inherits that same minimal environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from otpbridge.core.childenv import child_env
from otpbridge.core.errors import MissingDependencyError, OtpBridgeError

# INV_RECP reason codes (gnupg doc/DETAILS).
_INV_RECP = {
    "0": "no public key found",
    "1": "no public key found",
    "2": "ambiguous: several keys match",
    "3": "the key cannot encrypt",
    "4": "the key is revoked",
    "5": "the key has expired",
    "9": "not a secret key",
    "10": "the key is not trusted (set its owner trust: gpg --edit-key ID trust)",
    "13": "the key is disabled",
    "14": "not a valid key specification",
}

# gpg-error codes of ERROR pkdecrypt_failed that mean "the key is there but locked":
# BAD_PASSPHRASE, TIMEOUT, NO_PIN_ENTRY, CANCELED (libgpg-error err-codes.h).
_NO_PASSPHRASE = {11, 62, 85, 99}


class GpgError(OtpBridgeError):
    """gpg refused or failed; the message names keys and files, never content."""


@dataclass
class GpgResult:
    returncode: int
    stdout: bytes = field(repr=False)
    status: list[tuple[str, str]]
    stderr_lines: list[str]

    def has(self, keyword: str) -> bool:
        return any(k == keyword for k, _ in self.status)

    def values(self, keyword: str) -> list[str]:
        return [v for k, v in self.status if k == keyword]

    def hint(self) -> str:
        """The last human ``gpg:`` line, trimmed: gpg never puts plaintext there."""
        for line in reversed(self.stderr_lines):
            if line.startswith("gpg: "):
                return line[5:].strip()[:200]
        return ""


def _split_stderr(raw: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    status: list[tuple[str, str]] = []
    other: list[str] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, _, value = line[9:].partition(" ")
            status.append((keyword, value.strip()))
        elif line.strip():
            other.append(line)
    return status, other


def _decrypted(res: GpgResult) -> bool:
    return res.returncode == 0 and res.has("DECRYPTION_OKAY") and not res.has("DECRYPTION_FAILED")


_HAVE_SPAWN = hasattr(os, "posix_spawn") and hasattr(os, "POSIX_SPAWN_DUP2")


def _spawn_read(binary: str, argv: list[str], env: Mapping[str, str]) -> tuple[int, bytes, bytes]:
    """Run ``argv`` with stdin from /dev/null; its exit code, stdout and stderr.

    What ``subprocess.run(capture_output=True)`` does for gpg, with a third less CPU in
    this process (no Popen object, no selector or timeout machinery): one
    ``posix_spawn`` (vfork), two pipes read with ``poll`` until both close, one
    ``waitpid``. No shell, the argv list as given, ``env`` as given (the caller's
    minimal child environment). Our pipe ends are close-on-exec (PEP 446), so no
    other gpg process started meanwhile by another thread inherits them.
    """
    import select

    out_r, out_w = os.pipe()
    try:
        err_r, err_w = os.pipe()
    except OSError:
        os.close(out_r)
        os.close(out_w)
        raise
    try:
        pid = os.posix_spawn(
            binary,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
        )
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    status = None
    try:
        poller = select.poll()
        for fd in chunks:
            poller.register(fd, select.POLLIN)
        open_fds = 2
        while open_fds:
            for fd, _event in poller.poll():
                data = os.read(fd, 1 << 16)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    open_fds -= 1
        _, status = os.waitpid(pid, 0)
    except BaseException:  # interrupted: do not leave a gpg running behind us
        if status is None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        raise
    finally:
        os.close(out_r)
        os.close(err_r)
    return os.waitstatus_to_exitcode(status), b"".join(chunks[out_r]), b"".join(chunks[err_r])


class Gpg:
    """Runs gpg with a fixed environment and counts every call in ``stats['gpg']``."""

    def __init__(self, environ: Mapping[str, str], stats: MutableMapping[str, int] | None = None) -> None:
        # otpbridge's secrets and the stores' password variables: gpg (and the agent it
        # starts, which keeps its environment for hours) has no business seeing them (SPEC §7).
        self.environ = child_env(environ)
        self.stats = stats
        self._lock = threading.Lock()  # Counter += is not atomic across threads
        binary = shutil.which("gpg2", path=self.environ.get("PATH")) or shutil.which("gpg", path=self.environ.get("PATH"))
        self.binary = binary
        # pass adds $PASSWORD_STORE_GPG_OPTS to every call, split on whitespace.
        self.user_opts = self.environ.get("PASSWORD_STORE_GPG_OPTS", "").split()
        # --batch does not stop gpg-agent from starting a pinentry: without a terminal
        # (cron, a sync hook) a GUI pinentry nobody sees would block the run for ever.
        # "error" still uses a passphrase the agent has cached; it only never asks.
        self.interactive = os.isatty(0)

    def _require(self) -> str:
        if not self.binary:
            raise MissingDependencyError(
                "gpg is not installed, so the pass store cannot be read or written",
                hint="install GnuPG (Debian/Ubuntu: apt install gnupg)",
            )
        return self.binary

    def run(self, args: Sequence[str], stdin: bytes | None = None, *, quiet: bool = True) -> GpgResult:
        binary = self._require()
        argv = [binary, *self.user_opts, "--batch", "--no-tty", *(["--quiet"] if quiet else []), "--status-fd", "2"]
        if not self.interactive:
            argv += ["--pinentry-mode", "error"]
        argv += args
        if self.stats is not None:
            with self._lock:
                self.stats["gpg"] += 1
        if stdin is None and _HAVE_SPAWN:
            try:
                returncode, stdout, stderr = _spawn_read(binary, argv, self.environ)
            except OSError as exc:
                raise GpgError(f"cannot run gpg: {exc.strerror}") from None
            status, other = _split_stderr(stderr)
            return GpgResult(returncode, stdout, status, other)
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                env=self.environ,
                # Python's own descriptors are non-inheritable (PEP 446); leaving fds
                # open lets CPython use posix_spawn/vfork, which matters at 1,000 calls.
                close_fds=False,
                check=False,
            )
        except OSError as exc:
            raise GpgError(f"cannot run gpg: {exc.strerror}") from None
        status, other = _split_stderr(proc.stderr)
        return GpgResult(proc.returncode, proc.stdout, status, other)

    # -- decryption ----------------------------------------------------------------
    def decrypt_file(self, path: Path) -> bytes:
        """The plaintext of ``path``; :class:`GpgError` with a reason otherwise.

        Success needs ``DECRYPTION_OKAY``: gpg exits 0 on some packets it never
        decrypted (a lone public-key session packet), so the exit code is not enough.
        """
        args = ["--decrypt", "--", str(path)]
        # --quiet first: without it gpg looks up and prints the key and user ID that each
        # entry is encrypted to, about 0.9 ms of CPU per process (15 % of a decryption).
        res = self.run(args, quiet=True)
        if _decrypted(res):
            return res.stdout
        if res.has("NODATA") and not res.has("ENC_TO"):
            raise GpgError(self.decrypt_reason(res))  # not OpenPGP: nothing more to learn
        # --quiet also hides the ERROR status that tells "needs a passphrase" apart, so a
        # failure is asked again, verbosely, to say why. Never with a pinentry: the first
        # run already asked, if it could.
        loud = self.run([*(["--pinentry-mode", "error"] if self.interactive else []), *args], quiet=False)
        if _decrypted(loud):  # the key became usable in between (gpg-agent): fine
            return loud.stdout
        raise GpgError(self.decrypt_reason(loud))

    @staticmethod
    def decrypt_reason(res: GpgResult) -> str:
        if res.has("NODATA") and not res.has("ENC_TO"):
            return "not an OpenPGP message"
        enc_to = [v.split()[0] for v in res.values("ENC_TO") if v]
        for value in res.values("ERROR"):
            where, _, code = value.partition(" ")
            if where == "pkdecrypt_failed" and code.strip().isdigit() and int(code) & 0xFFFF in _NO_PASSPHRASE:
                return (
                    "no secret key usable: its passphrase was not given (no terminal to ask, "
                    "prompt cancelled or wrong); unlock the key in gpg-agent first, e.g. with 'pass show' on this entry"
                )
        # No usable secret key: gpg names the keys (ENC_TO) but never picks one
        # (DECRYPTION_KEY), whether or not it knows their public halves (NO_SECKEY).
        if enc_to and not res.has("DECRYPTION_KEY") and not res.has("PLAINTEXT") and res.has("DECRYPTION_FAILED"):
            return f"no secret key to decrypt it (encrypted to key id {', '.join(dict.fromkeys(enc_to))})"
        if res.has("BEGIN_DECRYPTION") or res.has("DECRYPTION_FAILED"):
            hint = res.hint()
            return "gpg could not decrypt it (damaged or tampered)" + (f": {hint}" if hint else "")
        hint = res.hint()
        return "gpg could not decrypt it" + (f": {hint}" if hint else " (not an encrypted pass entry)")

    def decrypt_many(
        self,
        paths: Sequence[Path],
        *,
        workers: int | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> list[bytes | GpgError]:
        """Decrypt ``paths`` concurrently; each result is plaintext or the error for that file.

        gpg-agent serves concurrent clients, and a gpg process is mostly start-up
        cost, so a few more workers than cores keeps both cores busy.
        """
        if not paths:
            return []
        self._require()
        n = workers or min(16, max(4, 2 * (os.cpu_count() or 2)))

        def one(path: Path) -> bytes | GpgError:
            try:
                return self.decrypt_file(path)
            except GpgError as exc:
                return exc
            finally:
                if on_done is not None:
                    on_done()

        # The first file goes alone: if the key needs a passphrase, gpg-agent asks once
        # and caches it, where N concurrent first requests could each raise a pinentry.
        first = one(paths[0])
        rest = paths[1:]
        if len(rest) <= 1 or n == 1:
            return [first, *(one(p) for p in rest)]
        with ThreadPoolExecutor(max_workers=min(n, len(rest)), thread_name_prefix="gpg") as pool:
            return [first, *pool.map(one, rest)]

    # -- encryption ----------------------------------------------------------------
    def encrypt(self, plaintext: bytes, recipients: Iterable[str], *, what: str) -> bytes:
        """Encrypt as pass does: binary, uncompressed, to exactly ``recipients``.

        ``--auto-key-locate local``: a recipient missing from the keyring is an error
        to report, not a reason to go to the network (gpg would try WKD for e-mails).
        """
        recips = [r for r in recipients if r]
        if not recips:
            raise GpgError(f"no gpg recipients for {what}", hint="run 'pass init GPG-ID' for the store")
        args = ["--yes", "--compress-algo=none", "--no-encrypt-to", "--auto-key-locate", "local", "--encrypt"]
        for r in recips:
            args += ["--recipient", r]
        args += ["--output", "-"]
        res = self.run(args, stdin=plaintext)
        if res.returncode == 0 and res.has("END_ENCRYPTION") and res.stdout:
            return res.stdout
        bad = []
        for value in res.values("INV_RECP"):
            code, _, who = value.partition(" ")
            bad.append(f"{who or '?'} ({_INV_RECP.get(code, 'unusable key')})")
        if bad:
            raise GpgError(
                f"cannot encrypt {what}: recipient " + "; ".join(bad),
                hint="import the key (gpg --import) or fix the store's .gpg-id; the old file was left in place",
            )
        hint = res.hint()
        raise GpgError(f"cannot encrypt {what}: gpg failed" + (f": {hint}" if hint else ""), hint="the old file was left in place")

    # -- signatures (PASSWORD_STORE_SIGNING_KEY) -------------------------------------
    def signers(self, signature: Path, data: Path) -> set[str]:
        """Fingerprints (key and primary) of good signatures of ``data``, as pass's verify_file reads them."""
        res = self.run(["--verify", "--", str(signature), str(data)])
        found: set[str] = set()
        for value in res.values("VALIDSIG"):
            parts = value.split()
            if parts:
                found.add(parts[0].upper())
                found.add(parts[-1].upper())
        return found
