"""``2fas:`` — 2FAS Authenticator backups (``.2fas`` JSON), plain or password-encrypted.

Format (twofas/2fas-android ``BackupContent.kt``, ``BackupCipherImpl.kt``; shared notes
app-formats §3): ``services[]`` + ``groups[]`` + ``schemaVersion``. An encrypted backup
empties ``services`` and stores ``servicesEncrypted = b64(ct‖tag):b64(salt):b64(iv)``:
PBKDF2-HMAC-SHA256 (10 000 iterations, 256-byte salt) → AES-256-GCM over the JSON array
of services. ``reference`` encrypts a fixed public string with the same key so the
password can be checked on its own; group names stay in clear, as in the app.

Names: 2FAS shows the service ``name`` (which the user may edit) and keeps the
service's own ``otp.issuer`` beside it. The issuer is ``otp.issuer`` when there is one,
else the service name (as Proton's importer reads it); a service whose name only repeats
the account and has no issuer is read back with an empty issuer, which is how we write
such accounts. When ``otp.account`` is empty the account name comes from the label of
``otp.link`` (the otpauth URI the service was added from).

Secrets of a Base32 length no encoder writes are read as the app that made the backup
reads them (``appOrigin``): 2FAS for iOS and for Android differ for one trailing
character (model.BASE32_RULES).
"""

from __future__ import annotations

import copy
import time
import uuid as uuidlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otpbridge.core.errors import AuthenticationError, FormatError, IntegrityError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Algorithm, Kind, b32decode, b32encode
from otpbridge.core.otpauth import label_of
from otpbridge.core.secrets import Secret
from otpbridge.plugins import appcrypto as ac
from otpbridge.stores.base import ReadResult, Store, carried_keys

PBKDF2_ITERATIONS = 10_000
SALT_BYTES = 256
IV_BYTES = 12
SCHEMA_VERSION = 4
#: ``BackupContent.Reference`` of 2fas-android: a public constant, not a secret.
REFERENCE = (
    "tRViSsLKzd86Hprh4ceC2OP7xazn4rrt4xhfEUbOjxLX8Rc3mkISXE0lWbmnWfggogbBJhtYgpK6fMl1D6m"
    "tsy92R3HkdGfwuXbzLebqVFJsR7IZ2w58t938iymwG4824igYy1wi6n2WDpO1Q1P69zwJGs2F5a1qP4MyIiDSD7NCV2OvidX"
    "QCBnDlGfmz0f1BQySRkkt4ryiJeCjD2o4QsveJ9uDBUn8ELyOrESv5R5DMDkD4iAF8TXU7KyoJujd"
)
# The values 2FAS 5.3.5 (schema 4) writes; importers may check them, so we claim the
# release whose format we reproduce rather than inventing a version.
_APP_VERSION_CODE, _APP_VERSION_NAME = 5000017, "5.3.5"
_DEFAULT_ICON_COLLECTION = "a5b3fb65-4ec5-43e6-8ec1-49e24ca9e7ad"
_TOKEN_KINDS = {"TOTP": Kind.TOTP, "HOTP": Kind.HOTP, "STEAM": Kind.STEAM}
_OWNED = {"name", "secret", "otp", "groupId", "updatedAt", "order"}


class TwoFasStore(Store):
    kind = "2fas"
    title = "2FAS Authenticator backup (.2fas)"
    reads = "plain and password-encrypted backups, schema versions 1–4 (groups)"
    writes = (
        "2FAS backup (schema 4); encrypted as the app does with a password option, "
        "?encrypt=yes, or when the file was encrypted; else plain"
    )
    drops = frozenset({"note"})
    loses = ("notes; icons of new entries (kept for entries read from the same file); each entry's "
             "'updated' time and label field (set anew when the file is written)")
    options = ("encrypt",)
    carries = {"icons": "partly"}
    source = "2FAS: Settings → 2FAS Backup → Export to file (with or without a password)"
    sniff_priority = 60
    keeps_unreadable = True

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._unread: list[Any] = []
        self._password: Secret | None = None
        self._was_encrypted = False
        self._extras: dict[str, dict[str, Any]] = {}
        self._read_accounts: list[Account] = []
        self._group_ids: dict[str, str] = {}
        self._groups_raw: dict[str, dict[str, Any]] = {}
        self._base32_rule = "2fas-android"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        top = ac.json_head(head)
        return (
            isinstance(top, dict)
            and "schemaVersion" in top
            and ("services" in top or "servicesEncrypted" in top)
        )

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> ReadResult:
        self._extras, self._group_ids, self._groups_raw, self._unread = {}, {}, {}, []
        self._read_accounts: list[Account] = []  # what _extras was read for (renames keep them)
        backup = ac.parse_json(ac.read_file(self.path, self.label), self.label)
        if not isinstance(backup, dict) or "schemaVersion" not in backup:
            raise FormatError(f"{self.label}: not a 2FAS backup (no schemaVersion)")
        schema = backup.get("schemaVersion")
        if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
            raise FormatError(f"{self.label}: the schemaVersion {schema!r} is not a version number")
        if schema > SCHEMA_VERSION:
            self.ctx.warn(
                f"{self.label}: 2FAS schema version {schema} is newer than this reader knows ({SCHEMA_VERSION})"
            )
        encrypted = backup.get("servicesEncrypted")
        if encrypted:
            self._was_encrypted = True
            services = ac.parse_json(
                self._decrypt(encrypted, backup.get("reference")), self.label, what="decrypted services"
            )
        else:
            services = backup.get("services")
        if not isinstance(services, list):
            raise FormatError(f"{self.label}: the backup has no service list")
        groups: dict[str, str] = {}
        raw_groups = backup.get("groups")
        for g in raw_groups if isinstance(raw_groups, list) else []:
            if isinstance(g, dict) and isinstance(g.get("id"), str) and isinstance(g.get("name"), str):
                groups[g["id"]] = g["name"]
                self._group_ids.setdefault(g["name"], g["id"])
                self._groups_raw.setdefault(g["name"], copy.deepcopy(g))
        origin = backup.get("appOrigin")
        # Older backups (schema 1–3) name no origin; 2FAS began on Android.
        self._base32_rule = "2fas-ios" if isinstance(origin, str) and origin.lower() == "ios" else "2fas-android"
        result = ReadResult()
        for i, raw in enumerate(services):
            names: tuple = ()
            if isinstance(raw, dict):
                otp = raw.get("otp")
                names = (raw.get("name"), otp.get("account") if isinstance(otp, dict) else None)
            where = ac.entry_where(i, *names)
            if ac.collect(result, where, lambda raw=raw: self._service(raw, groups)) is None:
                self._unread.append(copy.deepcopy(raw))  # written back untouched (SPEC §3)
        return result

    def _get_password(self) -> Secret:
        if self._password is None:
            self._password = self.ctx.password(self.spec, label=self.label)
        return self._password

    def _field(self, text: Any, what: str) -> tuple[bytes, bytes, bytes]:
        if not isinstance(text, str) or text.count(":") != 2:
            raise FormatError(f"{self.label}: {what} is not 'data:salt:iv'")
        data, salt, iv = (ac.b64decode(p, what, self.label) for p in text.split(":"))
        if len(iv) != IV_BYTES or not salt or len(data) < 16:
            raise FormatError(f"{self.label}: {what} has a malformed salt, IV or ciphertext")
        return data, salt, iv

    def _decrypt(self, services_field: Any, reference_field: Any) -> bytes:
        data, salt, iv = self._field(services_field, "servicesEncrypted")
        ref = self._field(reference_field, "reference") if reference_field else None
        password = self._get_password().encode()
        keys: dict[bytes, bytes] = {}

        def key_for(s: bytes) -> bytes:
            if s not in keys:
                keys[s] = ac.pbkdf2(
                    password, s, PBKDF2_ITERATIONS, hash_name="sha256", label=self.label, stats=self.ctx.stats
                )
            return keys[s]

        confirmed = False
        if ref is not None:
            ref_plain = ac.gcm_open(key_for(ref[1]), ref[2], ref[0])
            if ref_plain is None:
                self._password = None
                raise AuthenticationError(f"wrong password for {self.label}")
            confirmed = True
            if ref_plain.decode("utf-8", "replace") != REFERENCE:
                self.ctx.warn(f"{self.label}: the password check value is not 2FAS's; continuing")
        plain = ac.gcm_open(key_for(salt), iv, data)
        if plain is None:
            if confirmed and ref is not None and ref[1] == salt:
                raise IntegrityError(
                    f"{self.label}: the encrypted services fail authentication (corrupt or tampered)"
                )
            self._password = None
            raise AuthenticationError(f"wrong password for {self.label}")
        return plain

    def _service(self, raw: Any, groups: dict[str, str]) -> Account:
        if not isinstance(raw, dict):
            raise ac.EntryProblem("not an object")
        otp = raw.get("otp") or {}
        if not isinstance(otp, dict):
            raise ac.EntryProblem("the otp field is not an object")
        token_type = ac.entry_text(otp.get("tokenType"), "tokenType").upper() or "TOTP"
        if token_type not in _TOKEN_KINDS:
            raise ac.skipped(token_type[:20])
        kind = _TOKEN_KINDS[token_type]
        secret = b32decode(ac.entry_text(raw.get("secret"), "secret"), rule=self._base32_rule)
        service_name = ac.entry_text(raw.get("name"), "name").strip()
        otp_issuer = ac.entry_text(otp.get("issuer"), "issuer").strip()
        account_name = ac.entry_text(otp.get("account"), "account").strip()
        link = otp.get("link")
        if not account_name and isinstance(link, str):
            account_name = label_of(link)[1]
        issuer = otp_issuer or service_name
        if not otp_issuer and service_name and service_name == account_name:
            issuer = ""
        group_id = raw.get("groupId")
        account = Account(
            kind=kind,
            secret=secret,
            issuer=issuer,
            name=account_name,
            algorithm=Algorithm.parse(ac.entry_text(otp.get("algorithm"), "algorithm") or "SHA1"),
            digits=ac.entry_int(otp.get("digits"), "digits", default=6),
            period=ac.entry_int(otp.get("period"), "period", default=30) or 30,
            counter=ac.entry_int(otp.get("counter"), "counter", default=0) if kind is Kind.HOTP else 0,
            folder=groups.get(group_id, "") if isinstance(group_id, str) else "",
        )
        self._extras[account.identity] = {k: copy.deepcopy(v) for k, v in raw.items() if k not in _OWNED}
        self._read_accounts.append(account)
        return account

    # -- writing ---------------------------------------------------------------------------
    def _should_encrypt(self) -> bool:
        return ac.should_encrypt(self, self._was_encrypted, lambda top: bool(top.get("servicesEncrypted")))

    def build_backup(self, accounts: Sequence[Account], *, now_ms: int | None = None) -> tuple[dict, list]:
        """The backup object (``services`` still in it) and the services list."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        # Groups read from this backup stay, even when no service uses them any more.
        used: dict[str, dict[str, Any]] = {n: copy.deepcopy(g) for n, g in self._groups_raw.items()}
        services = []
        keys = carried_keys(self._read_accounts, accounts)
        for position, (acc, key) in enumerate(zip(accounts, keys, strict=True)):
            entry = copy.deepcopy(self._extras.get(key, {}) if key else {})
            otp: dict[str, Any] = {
                "label": acc.name,
                "account": acc.name,
                "issuer": acc.issuer,
                "digits": acc.digits,
                "algorithm": acc.algorithm.value,
                "tokenType": acc.kind.value.upper(),
                "source": "Link",
            }
            if acc.kind is Kind.HOTP:
                otp["counter"] = acc.counter
            else:
                otp["period"] = acc.period
            service: dict[str, Any] = {
                "name": acc.issuer or acc.name,
                "secret": b32encode(acc.secret),
                "updatedAt": now,
                "otp": otp,
                "order": {"position": position},
            }
            entry.setdefault("icon", _label_icon(service["name"]))
            service.update({k: v for k, v in entry.items() if k not in service})
            if acc.folder:
                group = used.setdefault(acc.folder, self._group(acc.folder, now))
                service["groupId"] = group["id"]
            services.append(service)
        by_id = {g.get("id"): (name, g) for name, g in self._groups_raw.items()}
        for raw in self._unread:
            services.append(copy.deepcopy(raw))
            gid = raw.get("groupId") if isinstance(raw, dict) else None
            if isinstance(gid, str) and gid in by_id:
                used.setdefault(by_id[gid][0], copy.deepcopy(by_id[gid][1]))
        backup = {
            "services": services,
            "groups": list(used.values()),
            "updatedAt": now,
            "schemaVersion": SCHEMA_VERSION,
            "appVersionCode": _APP_VERSION_CODE,
            "appVersionName": _APP_VERSION_NAME,
            "appOrigin": "android",
        }
        return backup, services

    def _group(self, name: str, now: int) -> dict[str, Any]:
        if name in self._groups_raw:
            return copy.deepcopy(self._groups_raw[name])
        return {
            "id": self._group_ids.get(name) or str(uuidlib.uuid4()),
            "name": name,
            "isExpanded": True,
            "updatedAt": now,
        }

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        backup, services = self.build_backup(accounts)
        if self._should_encrypt():
            password = self._get_password()
            if not password:
                raise FormatError(f"{self.label}: refusing to encrypt with an empty password")
            salt = ac.random_bytes(SALT_BYTES)
            key = ac.pbkdf2(
                password.encode(),
                salt,
                PBKDF2_ITERATIONS,
                hash_name="sha256",
                label=self.label,
                stats=self.ctx.stats,
            )
            backup["services"] = []
            backup["servicesEncrypted"] = _seal(key, salt, _compact_json(services))
            backup["reference"] = _seal(key, salt, REFERENCE.encode("ascii"))
        else:
            ac.warn_cleartext(self.ctx, self.label)
        return atomic_write(self.path, ac.dump_json(backup), mode=0o600)


def _seal(key: bytes, salt: bytes, plaintext: bytes) -> str:
    iv = ac.random_bytes(IV_BYTES)  # a fresh IV per field, as BackupCipherImpl does
    return ":".join(ac.b64encode(x) for x in (ac.gcm_seal(key, iv, plaintext), salt, iv))


def _compact_json(obj: Any) -> bytes:
    import json

    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _label_icon(name: str) -> dict[str, Any]:
    """The letter badge 2FAS draws for a service without a brand icon."""
    text = "".join(c for c in name if c.isalnum())[:2].upper() or "2F"
    return {
        "selected": "Label",
        "label": {"text": text, "backgroundColor": "LightBlue"},
        "iconCollection": {"id": _DEFAULT_ICON_COLLECTION},
    }
