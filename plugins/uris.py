"""``uris:`` — one otpauth:// URI per line; ``#`` comments and blank lines allowed.

The lingua franca every app can import. Bad lines are reported with their line number
and reason and the rest is imported (the CLI then exits 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from otpbridge.core.errors import EntryError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account
from otpbridge.core.otpauth import UriError, format_uri, parse_uri
from otpbridge.stores.base import ReadResult, Store, not_text_error


class UrisStore(Store):
    kind = "uris"
    title = "otpauth:// URI list"
    reads = "one otpauth:// URI per line (totp, hotp, steam); # comments"
    writes = "canonical otpauth:// URIs, one per line (plain text, mode 0600)"
    drops = frozenset({"folder", "note"})
    loses = "folders and notes"
    source = (
        "any app's export as otpauth:// text (Aegis: Export → plain text; Stratum: Back up → URI list; "
        "Ente: Export codes → plain text), or URIs decoded from QR codes"
    )
    sniff_priority = 10
    keeps_unreadable = True  # lines it cannot read (motp://, damaged) are written back as they were

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._comments: list[str] = []
        self._unread: list[str] = []

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
            raise not_text_error(self.label, data) from None
        result = ReadResult()
        self._comments, self._unread = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                self._comments.append(line)
                continue
            try:
                result.accounts.append(parse_uri(line))
            except UriError as exc:
                self._unread.append(line)
                result.errors.append(EntryError(f"line {number}", str(exc)))
        return result

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        self.ctx.warn(f"{self.label} holds your 2FA secrets in clear text; keep it safe and delete it when done")
        lines = [*self._comments, *(format_uri(a) for a in accounts), *self._unread]
        body = "".join(line + "\n" for line in lines)
        return atomic_write(self.path, body.encode("utf-8"), mode=0o600)


