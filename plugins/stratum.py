"""``stratum:`` — Authenticator Pro / Stratum backups (``.authpro``, now ``.stratum``).

Format (Stratum ``doc/BACKUP_FORMAT.md``, ``Backup/Encryption/*.cs``; shared notes
app-formats-2 §6). Plain: Newtonsoft JSON ``{"Authenticators": [{Type, Issuer, Username,
Secret, Algorithm, Digits, Period, Counter, Icon, …}], "Categories": [{Id, Name}],
"AuthenticatorCategories": [{CategoryId, AuthenticatorSecret}], "CustomIcons": […]}``.
``Type``: 1 HOTP, 2 TOTP, 3 mOTP, 4 Steam, 5 Yandex (mOTP and Yandex are listed as
skipped); ``Algorithm``: 0 SHA1, 1 SHA256, 2 SHA512. Categories bind by *secret*; the
first binding becomes the folder.

Encrypted, current ("strong"): ``AUTHENTICATORPRO ‖ salt16 ‖ nonce12 ‖ ct ‖ tag16``,
Argon2id v0x13 (64 MiB, t=3, p=4; fixed in code) → AES-256-GCM, no AAD. Legacy:
``AuthenticatorPro ‖ salt20 ‖ iv16 ‖ ct``, PBKDF2-HMAC-SHA1 (64 000) → AES-256-CBC with
no MAC, so a wrong password shows only as bad padding or bad JSON (exit 3 either way).

We write plain, or strong with a password (Stratum restores both); never legacy.
Rewriting a file this store read keeps each entry's icon, ranking and copy count, the
category list, the custom icons, and the mOTP/Yandex entries it could not read.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otpbridge.core.errors import AuthenticationError, EntryError, FormatError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Algorithm, Kind, b32decode, b32encode
from otpbridge.core.secrets import Secret
from otpbridge.plugins import appcrypto as ac
from otpbridge.plugins.appkit import argon2id
from otpbridge.stores.base import ReadResult, Store, WriteReport

STRONG, LEGACY = b"AUTHENTICATORPRO", b"AuthenticatorPro"
ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES = 64 * 1024, 3, 4
LEGACY_ITERATIONS = 64_000
_TYPES = {1: Kind.HOTP, 2: Kind.TOTP, 4: Kind.STEAM}
_SKIPPED = {3: "mOTP", 5: "Yandex"}
_ALGORITHMS = {0: Algorithm.SHA1, 1: Algorithm.SHA256, 2: Algorithm.SHA512}
#: Stratum keys authenticators and their categories by secret: two entries cannot share one.
_SAME_SECRET = "another account in this backup has the same secret, which Stratum cannot hold twice"
_OWNED = {"Type", "Issuer", "Username", "Secret", "Algorithm", "Digits", "Period", "Counter"}


class StratumStore(Store):
    kind = "stratum"
    title = "Authenticator Pro / Stratum backup (.authpro, .stratum)"
    reads = "plain and encrypted backups (current Argon2id + AES-GCM, and legacy PBKDF2 + AES-CBC); categories"
    writes = (
        "Stratum backup (Settings → Restore in the app reads it): encrypted (Argon2id + AES-GCM) with a "
        "password option, ?encrypt=yes, or when the file was encrypted; else plain JSON"
    )
    loses = (
        "notes; all but the first category of an entry; icons of new entries (kept for entries read "
        "from the same file); an account without issuer gets its name as issuer; mOTP and Yandex "
        "entries, digits Stratum refuses (TOTP 6–10, HOTP 6–8) and a second account with the same "
        "secret are skipped (listed)"
    )
    drops = frozenset({"note"})
    carries = {"folders": "partly", "icons": "partly"}
    source = "Stratum / Authenticator Pro: Settings → Back up → Back up to file (encrypted or not)"
    options = ("encrypt",)
    sniff_priority = 60
    keeps_unreadable = True

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._password: Secret | None = None
        self._was_encrypted = False
        self._extras: dict[str, dict[str, Any]] = {}
        self._unread: list[tuple[Any, list[str]]] = []  # raw entry, its category ids
        self._doc: dict[str, Any] = {}

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if head[:16] in (STRONG, LEGACY):
            return True
        top = ac.json_head(head)
        return isinstance(top, dict) and isinstance(top.get("Authenticators"), list)

    # -- reading -------------------------------------------------------------------------
    def _get_password(self) -> Secret:
        if self._password is None:
            self._password = self.ctx.password(self.spec, label=self.label)
        return self._password

    def read(self) -> ReadResult:
        self._extras, self._unread = {}, []
        data = ac.read_file(self.path, self.label)
        if data[:16] in (STRONG, LEGACY):
            self._was_encrypted = True
            legacy = data[:16] == LEGACY
            doc = _json(self._decrypt(data), self.label, "decrypted backup", wrong_password=legacy)
        else:
            doc = ac.parse_json(data, self.label)
        if not isinstance(doc, dict) or not isinstance(doc.get("Authenticators"), list):
            raise FormatError(f"{self.label}: not a Stratum backup (no 'Authenticators' list)")
        self._doc = doc
        names = {
            c["Id"]: c["Name"]
            for c in doc.get("Categories") or []
            if isinstance(c, dict) and isinstance(c.get("Id"), str) and isinstance(c.get("Name"), str)
        }
        bindings: dict[str, list[str]] = {}
        for b in doc.get("AuthenticatorCategories") or []:
            if isinstance(b, dict) and isinstance(b.get("AuthenticatorSecret"), str) and b.get("CategoryId") in names:
                bindings.setdefault(b["AuthenticatorSecret"], []).append(b["CategoryId"])
        result = ReadResult()
        for i, raw in enumerate(doc["Authenticators"]):
            names_of = (raw.get("Issuer"), raw.get("Username")) if isinstance(raw, dict) else ()
            where = ac.entry_where(i, *names_of)
            secret = raw.get("Secret") if isinstance(raw, dict) else None
            cats = bindings.get(secret, []) if isinstance(secret, str) else []
            folder = names[cats[0]] if cats else ""
            account = ac.collect(result, where, lambda raw=raw, f=folder, w=where: self._entry(raw, f, w))
            if account is None:
                self._unread.append((copy.deepcopy(raw), cats))
            else:
                self._extras[account.identity] = {k: copy.deepcopy(v) for k, v in raw.items() if k not in _OWNED}
        return result

    def _decrypt(self, data: bytes) -> bytes:
        password = self._get_password()
        if not password:
            raise AuthenticationError(f"{self.label}: Stratum backups cannot have an empty password")
        if data[:16] == STRONG:
            if len(data) < 16 + 16 + 12 + 16:
                raise FormatError(f"{self.label}: too short to be an encrypted Stratum backup")
            salt, nonce = data[16:32], data[32:44]
            key = argon2id(
                password.encode(),
                salt,
                memory_kib=ARGON2_MEMORY_KIB,
                iterations=ARGON2_ITERATIONS,
                lanes=ARGON2_LANES,
                label=self.label,
                stats=self.ctx.stats,
            )
            plain = ac.gcm_open(key, nonce, data[44:])
            if plain is None:
                self._password = None
                raise AuthenticationError(f"wrong password for {self.label} (or the file was altered)")
            return plain
        body = data[52:]
        if len(body) < 16 or len(body) % 16:
            raise FormatError(f"{self.label}: the legacy encrypted backup is truncated or damaged")
        key = ac.pbkdf2(
            password.encode(), data[16:36], LEGACY_ITERATIONS, hash_name="sha1", label=self.label, stats=self.ctx.stats
        )
        plain = _cbc_open(key, data[36:52], body)
        if plain is None:
            self._password = None
            raise AuthenticationError(f"wrong password for {self.label} (or the legacy backup is damaged)")
        return plain

    def _entry(self, raw: Any, folder: str, where: str) -> Account:
        if not isinstance(raw, dict):
            raise ac.EntryProblem("not an object")
        otp_type = raw.get("Type")
        if otp_type in _SKIPPED:
            raise ac.skipped(_SKIPPED[otp_type])
        if isinstance(otp_type, bool) or otp_type not in _TYPES:
            raise ac.EntryProblem("unknown authenticator type")
        kind = _TYPES[otp_type]
        algorithm = raw.get("Algorithm", 0)
        if isinstance(algorithm, bool) or algorithm not in _ALGORITHMS:
            raise ac.EntryProblem("unknown algorithm")
        secret = b32decode(ac.entry_text(raw.get("Secret"), "Secret"))  # odd lengths: reported by the read (model.b32decode)
        return Account(
            kind=kind,
            secret=secret,
            issuer=ac.entry_text(raw.get("Issuer"), "Issuer"),
            name=ac.entry_text(raw.get("Username"), "Username"),
            algorithm=_ALGORITHMS[algorithm],
            digits=ac.entry_int(raw.get("Digits"), "Digits", default=6),
            period=ac.entry_int(raw.get("Period"), "Period", default=30) if kind is not Kind.HOTP else 30,
            counter=ac.entry_int(raw.get("Counter"), "Counter", default=0) if kind is Kind.HOTP else 0,
            folder=folder,
        )

    # -- writing -------------------------------------------------------------------------
    def apply(
        self, upserts: Sequence[Account] = (), removals: Sequence[Account] = (), *, dry_run: bool = False
    ) -> WriteReport:
        keep, errors, secrets = [], [], set()
        for acc in upserts:
            reason = unsupported_reason(acc) or (_SAME_SECRET if acc.secret in secrets else "")
            if reason:
                errors.append(EntryError(acc.label, reason))
            else:
                keep.append(acc)
                secrets.add(acc.secret)
        report = super().apply(keep, removals, dry_run=dry_run)
        report.errors.extend(errors)
        return report

    def build(self, accounts: Sequence[Account]) -> dict:
        """The plain backup object for ``accounts``."""
        categories = {
            c["Name"]: copy.deepcopy(c)
            for c in self._doc.get("Categories") or []
            if isinstance(c, dict) and isinstance(c.get("Name"), str) and isinstance(c.get("Id"), str)
        }
        ids = {c["Id"] for c in categories.values()}

        def category_id(name: str) -> str:
            if name not in categories:
                import hashlib

                cid = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]  # noqa: S324 - Stratum's own id rule
                while cid in ids:
                    cid = hashlib.sha1(cid.encode()).hexdigest()[:8]  # noqa: S324
                ids.add(cid)
                categories[name] = {"Id": cid, "Name": name, "Ranking": len(categories)}
            return categories[name]["Id"]

        entries, bindings, secrets = [], [], set()
        for acc in accounts:
            reason = unsupported_reason(acc) or (_SAME_SECRET if acc.secret in secrets else "")
            if reason:
                self.ctx.warn(f"{acc.label}: not written to {self.label}: {reason}")
                continue
            secrets.add(acc.secret)
            entry = copy.deepcopy(self._extras.get(acc.identity, {}))
            entry.setdefault("Icon", None)
            secret = b32encode(acc.secret)
            entry.update(
                {
                    "Type": {Kind.HOTP: 1, Kind.TOTP: 2, Kind.STEAM: 4}[acc.kind],
                    "Issuer": acc.issuer or acc.name or "(unnamed)",  # Stratum requires an issuer
                    "Username": acc.name if acc.issuer else None,
                    "Secret": secret,
                    "Algorithm": {Algorithm.SHA1: 0, Algorithm.SHA256: 1, Algorithm.SHA512: 2}[acc.algorithm],
                    "Digits": acc.digits,
                    "Period": acc.period,
                    "Counter": acc.counter,
                }
            )
            entry.setdefault("Pin", None)
            entry.setdefault("Ranking", 0)
            entry.setdefault("CopyCount", 0)
            entries.append(entry)
            if acc.folder:
                bindings.append({"CategoryId": category_id(acc.folder), "AuthenticatorSecret": secret, "Ranking": 0})
        for raw, cats in self._unread:
            entries.append(copy.deepcopy(raw))
            secret = raw.get("Secret") if isinstance(raw, dict) else None
            if isinstance(secret, str):
                bindings += [{"CategoryId": c, "AuthenticatorSecret": secret, "Ranking": 0} for c in cats]
        return {
            "Authenticators": entries,
            "Categories": list(categories.values()),
            "AuthenticatorCategories": bindings,
            "CustomIcons": copy.deepcopy(self._doc.get("CustomIcons") or []),
        }

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        for acc in accounts:
            if not acc.issuer:
                self.ctx.warn(f"{acc.label}: Stratum needs an issuer; the name is written as the issuer")
        body = ac.dump_json(self.build(accounts))
        if ac.should_encrypt(self, self._was_encrypted, lambda top: False) or _encrypted_file(self.path):
            password = self._get_password()
            if not password:
                raise FormatError(f"{self.label}: Stratum backups cannot have an empty password")
            salt, nonce = ac.random_bytes(16), ac.random_bytes(12)
            key = argon2id(
                password.encode(),
                salt,
                memory_kib=ARGON2_MEMORY_KIB,
                iterations=ARGON2_ITERATIONS,
                lanes=ARGON2_LANES,
                label=self.label,
                stats=self.ctx.stats,
            )
            data = STRONG + salt + nonce + ac.gcm_seal(key, nonce, body)
            return atomic_write(self.path, data, mode=0o600)
        ac.warn_cleartext(self.ctx, self.label)
        return atomic_write(self.path, body, mode=0o600)


def unsupported_reason(acc: Account) -> str:
    """Why Stratum would refuse ``acc`` on restore (its ``Authenticator.Validate``), or ""."""
    low, high = {Kind.HOTP: (6, 8), Kind.TOTP: (6, 10), Kind.STEAM: (5, 5)}[acc.kind]
    if not low <= acc.digits <= high:
        return f"Stratum accepts {low} to {high} digits for {acc.kind.value.upper()}, not {acc.digits}"
    return ""


def _encrypted_file(path: Path) -> bool:
    """An existing encrypted backup is never rewritten in clear text (``?encrypt=no`` aside)."""
    from otpbridge.stores.base import read_head

    return path.is_file() and read_head(path)[:16] in (STRONG, LEGACY)


def _json(data: bytes, label: str, what: str, *, wrong_password: bool) -> Any:
    """Parse decrypted JSON; for the MAC-less legacy form, garbage means a wrong password."""
    try:
        return ac.parse_json(data, label, what=what)
    except FormatError:
        if wrong_password and data.lstrip()[:1] not in (b"{", b"["):
            raise AuthenticationError(f"wrong password for {label} (or the backup is damaged)") from None
        raise


def _cbc_open(key: bytes, iv: bytes, body: bytes) -> bytes | None:
    """AES-256-CBC with PKCS#7; None when the padding is wrong (wrong password or damage)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None
