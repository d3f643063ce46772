"""``andotp-gpg:`` — andOTP's OpenPGP backups (``otp_accounts.json.gpg``).

Format (andOTP ``BackupActivity.java``, ``PGPBackupTask``/``PGPRestoreTask``; shared notes
app-formats-2 §1): andOTP hands its plain JSON backup to OpenKeychain, which encrypts it
to the user's public key(s) as an ASCII-armoured OpenPGP message. There is no password:
decrypting needs the recipient's secret key, so this plugin drives the user's own ``gpg``
exactly as the pass store does (:class:`otpbridge.plugins.pass_gpg.Gpg`: argv lists,
``--status-fd`` keywords, plaintext only through pipes). The plaintext is andOTP's plain
backup and is read by the ``andotp`` plugin's entry converter.

- no usable secret key (the file is for another key, or the key is locked and no
  passphrase could be asked) → :class:`AuthenticationError`, exit 3;
- not OpenPGP, damaged or tampered (a bad signature included) → exit 4;
- decompression is capped (``--max-output``), so a compression bomb cannot fill memory.

Writing: andOTP restores armoured messages, so we write one, encrypted to ``?recipient=``
(comma-separated key ids or e-mail addresses) or, when rewriting a backup read here, to
the keys it was encrypted to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otpbridge.core.errors import AuthenticationError, FormatError, IntegrityError, UsageError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account
from otpbridge.plugins import andotp
from otpbridge.plugins import appcrypto as ac
from otpbridge.plugins.appkit import PGP_ARMOR as _ARMOR
from otpbridge.plugins.appkit import PKESK, first_packet_tag
from otpbridge.stores.base import ReadResult, Store

MAX_OUTPUT = ac.MAX_FILE_BYTES


class AndOtpGpgStore(Store):
    kind = "andotp-gpg"
    title = "andOTP OpenPGP backup (.json.gpg)"
    reads = "andOTP backups encrypted with OpenPGP (OpenKeychain), decrypted by your gpg keyring: TOTP, HOTP, Steam"
    writes = "an armoured OpenPGP andOTP backup, encrypted to ?recipient=KEY[,KEY] (or to the keys the file was read with)"
    loses = "notes; all but the first tag; thumbnails"
    drops = frozenset({"note"})
    carries = {"folders": "partly"}
    options = ("recipient",)
    source = "andOTP: ☰ → Backups → Backup (OpenPGP), after choosing an OpenPGP provider and key in Settings → Backup"
    sniff_priority = 35
    keeps_unreadable = True

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._recipients: list[str] = []
        self._unread: list[Any] = []
        self._gpg_runner: Any = None

    @property
    def _gpg(self):
        if self._gpg_runner is None:
            from otpbridge.plugins.pass_gpg import Gpg

            self._gpg_runner = Gpg(self.ctx.environ, self.ctx.stats)
        return self._gpg_runner

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if head.lstrip().startswith(_ARMOR):
            return first_packet_tag(head) == PKESK
        return path.name.lower().endswith(".json.gpg") and first_packet_tag(head) == PKESK

    def read(self) -> ReadResult:
        plain = self._decrypt()
        entries = ac.parse_json(plain, self.label, what="decrypted backup")
        if not isinstance(entries, list):
            raise FormatError(f"{self.label}: the decrypted content is not an andOTP backup (expected a JSON list)")
        result = ReadResult()
        self._unread = []
        for i, raw in enumerate(entries):
            names = (raw.get("issuer"), raw.get("label")) if isinstance(raw, dict) else ()
            if ac.collect(result, ac.entry_where(i, *names), lambda raw=raw: andotp.entry_account(raw)) is None:
                self._unread.append(raw)
        return result

    def _decrypt(self) -> bytes:
        from otpbridge.plugins.pass_gpg import Gpg

        ac.read_file(self.path, self.label)  # missing, a folder, too large: one clear FormatError
        res = self._gpg.run(["--max-output", str(MAX_OUTPUT), "--decrypt", "--", str(self.path)], quiet=False)
        self._recipients = list(dict.fromkeys(v.split()[0] for v in res.values("ENC_TO") if v))
        if res.has("BADSIG"):
            raise IntegrityError(f"{self.label}: the backup's signature is bad (altered after it was signed)")
        if res.has("DECRYPTION_OKAY") and not res.has("DECRYPTION_FAILED") and res.stdout:
            if res.has("ERRSIG") or res.has("NO_PUBKEY"):
                self.ctx.warn(f"{self.label}: its signature could not be checked (the signer's key is not in your keyring)")
            return res.stdout
        reason = Gpg.decrypt_reason(res)
        if "no secret key" in reason:
            raise AuthenticationError(
                f"{self.label}: {reason}",
                hint="import the secret key of the OpenPGP key andOTP encrypted to (gpg --import), or unlock it",
            )
        raise FormatError(f"{self.label}: {reason}")

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        option = self.spec.options.get("recipient", "")
        recipients = [r.strip() for r in re.split(r"[,\s]+", option) if r.strip()] or self._recipients
        if not recipients:
            raise UsageError(
                f"{self.label}: say which OpenPGP key to encrypt to",
                hint="add ?recipient=KEYID (or an e-mail address) to the store",
            )
        body = ac.dump_json([andotp.account_entry(a) for a in accounts] + list(self._unread))
        args = ["--yes", "--armor", "--no-encrypt-to", "--auto-key-locate", "local", "--encrypt"]
        for r in recipients:
            args += ["--recipient", r]
        res = self._gpg.run([*args, "--output", "-"], stdin=body)
        if res.returncode != 0 or not res.has("END_ENCRYPTION") or not res.stdout.startswith(_ARMOR):
            hint = res.hint()
            raise UsageError(
                f"{self.label}: gpg could not encrypt to {', '.join(recipients)}" + (f": {hint}" if hint else ""),
                hint="check the key ids (gpg --list-keys); nothing was written",
            )
        return atomic_write(self.path, res.stdout, mode=0o600)
