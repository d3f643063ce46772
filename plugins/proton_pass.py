"""``proton-pass:`` — Proton Pass export zips: the TOTP URIs of the items, read-only.

Format (ProtonMail/WebClients ``packages/pass/lib/export``; proton-pass-common
``parser/pass``; shared notes app-formats-2 §5): a zip holding ``Proton Pass/data.json``
= ``{"version", "userId", "vaults": {shareId: {"name", "items": [ITEM]}}}``. An item's
TOTPs are ``data.content.totpUri`` (logins) and every ``data.extraFields[]`` of type
``totp`` (``data.totpUri``): a full otpauth URI, or only a secret. When the user gave only
a secret, Pass labels the URI with the literal ``Proton Pass``; that placeholder is
replaced by the item's username (and the field's name for extra fields).

The zip is bounded before anything is unpacked (:func:`appkit.open_zip`: member count,
declared sizes, compression ratio, no absolute or ``..`` names) and only ``data.json``
is ever decompressed. Trashed items are listed as skipped. Item notes belong to the
password entry and are not copied (as for Bitwarden); the vault name becomes the folder.

Encrypted exports — an armoured OpenPGP message holding the whole zip (older clients) or
a zip whose ``Proton Pass/data.pgp`` holds the JSON (newer) — are password-encrypted
(SKESK, iterated-salted S2K, AES-256). ``gpg`` decrypts them in a throw-away GnuPG home
with the passphrase on a pipe: a wrong passphrase is exit 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otpbridge.core.errors import AuthenticationError, EntryError, FormatError
from otpbridge.core.model import Account, Kind, b32decode
from otpbridge.core.otpauth import parse_uri
from otpbridge.plugins import appcrypto as ac
from otpbridge.plugins.appkit import PGP_ARMOR, SKESK, first_packet_tag, open_zip, read_member
from otpbridge.stores.base import ReadResult, Store

DATA = "Proton Pass/data.json"
ENCRYPTED_DATA = "Proton Pass/data.pgp"
PLACEHOLDER = "Proton Pass"
TRASHED = 2


class ProtonPassStore(Store):
    kind = "proton-pass"
    title = "Proton Pass export (zip with data.json)"
    reads = (
        "Proton Pass export zips, plain or encrypted with a passphrase (PGP, decrypted by gpg): "
        "every login's TOTP and every TOTP extra field (any item type)"
    )
    writes = ""
    loses = (
        "read-only; item notes are not copied; Proton Pass has no HOTP or Steam; trashed items are "
        "skipped (listed)"
    )
    drops = frozenset({"note"})
    carries = {"HOTP": "lost", "Steam": "lost"}
    source = "Proton Pass (web or desktop): Settings → Export → format 'Proton Pass' (.zip, with or without a passphrase)"
    sniff_priority = 60

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if head.lstrip().startswith(PGP_ARMOR):  # a passphrase-encrypted message (andOTP's are for a key)
            return first_packet_tag(head) == SKESK
        return head.startswith(b"PK\x03\x04") and (b"Proton Pass/data.json" in head or b"Proton Pass/data.pgp" in head)

    def read(self) -> ReadResult:
        data = ac.read_file(self.path, self.label)
        if data.lstrip().startswith(PGP_ARMOR):  # older encrypted exports: the whole zip, PGP-encrypted
            data = self._decrypt_pgp(data)
            if data.lstrip()[:1] == b"{":
                return self._convert(ac.parse_json(data, self.label, what="decrypted export"))
        archive = open_zip(data, self.label, what="Proton Pass export")
        names = set(archive.namelist())
        if DATA in names:
            doc = ac.parse_json(read_member(archive, DATA, self.label), self.label, what=DATA)
        elif ENCRYPTED_DATA in names:  # newer encrypted exports: only data.json is PGP-encrypted
            plain = self._decrypt_pgp(read_member(archive, ENCRYPTED_DATA, self.label))
            doc = ac.parse_json(plain, self.label, what=ENCRYPTED_DATA)
        else:
            raise FormatError(f"{self.label}: not a Proton Pass export (no {DATA!r} in the zip)")
        return self._convert(doc)

    def _decrypt_pgp(self, message: bytes) -> bytes:
        """Decrypt a password-encrypted (SKESK) OpenPGP message with gpg in a throw-away home.

        The passphrase goes through a pipe (``--passphrase-fd 0``), never argv; the
        temporary GnuPG home keeps the user's keyring and agent out of it, and
        ``--no-symkey-cache`` keeps the passphrase out of any agent cache.
        """
        if first_packet_tag(message) != SKESK:
            raise FormatError(f"{self.label}: not a password-encrypted Proton Pass export (an OpenPGP message for a key)")
        password = self.ctx.password(self.spec, label=f"{self.label} (export passphrase)")
        if not password:
            raise AuthenticationError(f"{self.label}: an empty passphrase cannot open an encrypted export")
        import shutil
        import subprocess
        import tempfile

        from otpbridge.plugins.pass_gpg import Gpg

        home = tempfile.mkdtemp(prefix="otpbridge-g")
        try:
            msg = Path(home) / "export.pgp"
            msg.write_bytes(message)
            environ = {k: v for k, v in self.ctx.environ.items() if k != "PASSWORD_STORE_GPG_OPTS"}
            gpg = Gpg({**environ, "GNUPGHOME": home}, self.ctx.stats)
            args = ["--pinentry-mode", "loopback", "--passphrase-fd", "0", "--no-symkey-cache",
                    "--max-output", str(ac.MAX_FILE_BYTES), "--decrypt", "--", str(msg)]  # fmt: skip
            res = gpg.run(args, stdin=password.encode(), quiet=False)
        finally:
            gpgconf = shutil.which("gpgconf", path=self.ctx.environ.get("PATH"))
            if gpgconf:
                subprocess.run([gpgconf, "--homedir", home, "--kill", "all"], capture_output=True, check=False)
            shutil.rmtree(home, ignore_errors=True)
        if res.has("DECRYPTION_OKAY") and not res.has("DECRYPTION_FAILED") and res.stdout:
            return res.stdout
        if any("BAD_PASSPHRASE" in v for v in res.values("ERROR")) or (
            res.has("NEED_PASSPHRASE_SYM") and res.has("DECRYPTION_FAILED") and not res.has("PLAINTEXT")
        ):
            raise AuthenticationError(f"wrong passphrase for {self.label}")
        hint = res.hint()
        raise FormatError(f"{self.label}: the encrypted export does not decrypt (damaged)" + (f": {hint}" if hint else ""))

    def _convert(self, doc: Any) -> ReadResult:
        if not isinstance(doc, dict) or not isinstance(doc.get("vaults"), dict):
            raise FormatError(f"{self.label}: not a Proton Pass export (no 'vaults' object)")
        result = ReadResult()
        index = 0
        for vault in doc["vaults"].values():
            if not isinstance(vault, dict) or not isinstance(vault.get("items"), list):
                result.errors.append(EntryError(f"vault {str(vault.get('name'))[:40] if isinstance(vault, dict) else '?'}",
                                                "the vault has no item list"))
                continue
            folder = vault.get("name") if isinstance(vault.get("name"), str) else ""
            for item in vault["items"]:
                index += 1
                self._item(result, index, item, folder)
        return result

    def _item(self, result: ReadResult, index: int, item: Any, folder: str) -> None:
        data = item.get("data") if isinstance(item, dict) else None
        meta = data.get("metadata") if isinstance(data, dict) else None
        title = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else ""
        where = f"item {index}" + (f" ({title[:80]})" if title.strip() else "")
        if not isinstance(data, dict):
            result.errors.append(EntryError(where, "the item has no data"))
            return
        content = data.get("content") if isinstance(data.get("content"), dict) else {}
        fields = data.get("extraFields") if isinstance(data.get("extraFields"), list) else []
        uris: list[tuple[str, Any]] = []
        if content.get("totpUri"):
            uris.append(("", content["totpUri"]))
        for f in fields:
            if isinstance(f, dict) and f.get("type") == "totp":
                fdata = f.get("data")
                value = fdata.get("totpUri") if isinstance(fdata, dict) else None
                fname = f.get("fieldName") if isinstance(f.get("fieldName"), str) else "TOTP"
                if value:
                    uris.append((fname, value))
        if not uris:
            return  # not a 2FA account (a note, an alias, a login without TOTP)
        if item.get("state") == TRASHED:
            for fname, _ in uris:
                result.errors.append(EntryError(where + (f", field {fname!r}" if fname else ""), "in Proton Pass's trash"))
            return
        username = next(
            (content[k] for k in ("itemUsername", "itemEmail", "username") if isinstance(content.get(k), str) and content[k]),
            "",
        )
        for fname, value in uris:
            place = where + (f", field {fname[:40]!r}" if fname else "")
            ac.collect(result, place, lambda v=value, f=fname: _account(v, title, username, f, folder))


def _account(value: Any, title: str, username: str, field: str, folder: str) -> Account:
    text = ac.entry_text(value, "totpUri").strip()
    shown = f"{username} ({field})" if username and field else username or field
    if not text.lower().startswith("otpauth://"):
        if "://" in text:
            raise ac.EntryProblem("unsupported TOTP value (not an otpauth:// URI)")
        return Account(kind=Kind.TOTP, secret=b32decode(text), issuer=title, name=shown, folder=folder)
    account = parse_uri(text, folder=folder)
    changes: dict[str, str] = {}
    if account.name == PLACEHOLDER or not account.name:
        changes["name"] = shown
    if not account.issuer:
        changes["issuer"] = title
    return account.replace(**changes) if changes else account
