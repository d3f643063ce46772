"""``uris:`` — one otpauth:// URI per line; ``#`` comments and blank lines allowed.

The lingua franca every app can import. Bad lines are reported with their line number
and reason and the rest is imported (the CLI then exits 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from otpbridge.errors import EntryError, FormatError
from otpbridge.fileio import atomic_write
from otpbridge.model import Account
from otpbridge.otpauth import UriError, format_uri, parse_uri
from otpbridge.store import ReadResult, Store


class UrisStore(Store):
    kind = "uris"
    title = "otpauth:// URI list"
    reads = "one otpauth:// URI per line (totp, hotp, steam); # comments"
    writes = "canonical otpauth:// URIs, one per line (plain text, mode 0600)"
    loses = "folders and notes"
    sniff_priority = 10

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        for line in head.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            return line.lower().startswith("otpauth://")
        return False

    def read(self) -> ReadResult:
        data = self.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FormatError(f"{self.label}: not a UTF-8 text file") from None
        result = ReadResult()
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                result.accounts.append(parse_uri(line))
            except UriError as exc:
                result.errors.append(EntryError(f"line {number}", str(exc)))
        return result

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        self.ctx.warn(f"{self.label} holds your 2FA secrets in clear text; keep it safe and delete it when done")
        body = "".join(format_uri(a) + "\n" for a in accounts)
        return atomic_write(self.path, body.encode("utf-8"), mode=0o600)
