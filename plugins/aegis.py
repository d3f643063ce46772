"""``aegis:`` — Aegis Authenticator vault / export JSON, plain or password-encrypted.

Format (Aegis ``docs/vault.md``; shared notes app-formats §1): ``{"version": 1,
"header": {"slots", "params"}, "db"}``. Encrypted vaults keep a random master key
wrapped once per slot; a password slot wraps it with scrypt(password) and AES-GCM,
and ``db`` is the Base64 AES-GCM ciphertext of the content JSON, its tag kept apart
in ``header.params``. Biometric slots need the phone's KeyStore and are ignored.

Content versions 1–3 are read (v2: ``group`` name per entry; v3: top-level
``groups`` with uuids); we write version 3, which current Aegis imports.

Rewriting a vault this store read keeps what the model has no field for: entries of
kinds we cannot use (mOTP, Yandex) are written back untouched, and an entry's uuid,
icon and favourite flag survive when the account (kind + secret) is still there.
"""

from __future__ import annotations

import copy
import uuid as uuidlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otpbridge.core.errors import AuthenticationError, FormatError, IntegrityError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Algorithm, Kind, b32decode, b32encode
from otpbridge.core.secrets import Secret
from otpbridge.plugins import appcrypto as ac
from otpbridge.stores.base import ReadResult, Store, carried_keys

# Aegis's own parameters (vault.md): scrypt N=2^15, r=8, p=1; 32-byte salt and key.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
FILE_VERSION = 1
MAX_PASSWORD_SLOTS = 8  # Aegis has one password slot, plus one per "backup password"
#: scrypt work (128·N·r·p bytes, summed over the password slots) we accept before deriving:
#: eight slots at Aegis's own 32 MiB. appcrypto's per-call bound (1 GiB, ~6 s) times eight
#: slots would let a crafted vault stall us for most of a minute.
MAX_SLOTS_SCRYPT_BYTES = 8 * 128 * SCRYPT_N * SCRYPT_R * SCRYPT_P
CONTENT_VERSION = 3
_SUPPORTED = {"totp": Kind.TOTP, "hotp": Kind.HOTP, "steam": Kind.STEAM}
_UNSUPPORTED = {"motp": "mOTP", "yandex": "Yandex"}
# Per-entry fields we own when writing; anything else read from the file is kept.
_OWNED = {"type", "name", "issuer", "note", "info", "groups", "group"}


class AegisStore(Store):
    kind = "aegis"
    title = "Aegis Authenticator vault (JSON)"
    reads = "plain and password-encrypted vaults, content versions 1–3 (groups, notes)"
    writes = (
        "Aegis vault JSON (content v3); encrypted (scrypt + AES-GCM) with a password option, "
        "?encrypt=yes, or when the file was encrypted; else plain"
    )
    loses = (
        "icons of new entries (kept for entries read from the same file); all but the first group of an entry"
    )
    options = ("encrypt",)
    carries = {"folders": "partly", "icons": "partly"}
    source = "Aegis: Settings → Import & Export → Export (encrypted or plain JSON); or its automatic backups (aegis-backup-*.json)"
    sniff_priority = 60
    keeps_unreadable = True  # entries it cannot read are written back untouched

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self._password: Secret | None = None
        self._was_encrypted = False
        self._extras: dict[str, dict[str, Any]] = {}  # identity -> raw entry (uuid, icon…)
        self._read_accounts: list[Account] = []
        self._foreign: list[tuple[dict[str, Any], list[str]]] = []  # raw entry, group names
        self._group_uuids: dict[str, str] = {}

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        top = ac.json_head(head)
        if not isinstance(top, dict) or "db" not in top:
            return False
        header = top.get("header")
        return isinstance(header, dict) and "slots" in header and "params" in header

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> ReadResult:
        self._extras, self._foreign, self._group_uuids = {}, [], {}
        self._read_accounts: list[Account] = []  # what _extras was read for (renames keep them)
        vault = ac.parse_json(ac.read_file(self.path, self.label), self.label)
        if not isinstance(vault, dict) or not isinstance(vault.get("header"), dict) or "db" not in vault:
            raise FormatError(f"{self.label}: not an Aegis vault (no header and db)")
        if vault.get("version") != FILE_VERSION:
            raise FormatError(
                f"{self.label}: unsupported Aegis file version {vault.get('version')!r} (this reads 1)"
            )
        db = vault["db"]
        if isinstance(db, str):
            self._was_encrypted = True
            db = ac.parse_json(self._decrypt(vault["header"], db), self.label, what="decrypted vault")
        elif db is None or not isinstance(db, dict):
            raise FormatError(f"{self.label}: the vault content is neither an object nor encrypted text")
        return self._convert_db(db)

    def _get_password(self) -> Secret:
        if self._password is None:
            self._password = self.ctx.password(self.spec, label=self.label)
        return self._password

    def _decrypt(self, header: dict, db: str) -> bytes:
        slots, params = header.get("slots"), header.get("params")
        if not isinstance(slots, list) or not isinstance(params, dict):
            raise FormatError(f"{self.label}: the encrypted vault has no slots or parameters")
        nonce = ac.unhex(params.get("nonce"), "the vault nonce", self.label, size=12)
        tag = ac.unhex(params.get("tag"), "the vault tag", self.label, size=16)
        ciphertext = ac.b64decode(db, "the encrypted vault", self.label)
        password_slots = [s for s in slots if isinstance(s, dict) and s.get("type") == 1]
        if not password_slots:
            raise FormatError(
                f"{self.label}: the vault has no password slot (biometric slots only open on the phone)",
                hint="in Aegis, set a password, then export again",
            )
        if len(password_slots) > MAX_PASSWORD_SLOTS:
            # Each slot costs one scrypt; a crafted file must not make us run hundreds.
            raise FormatError(
                f"{self.label}: {len(password_slots)} password slots is not a plausible Aegis vault"
            )
        work = 0
        for slot in password_slots:
            n, r, p = (slot.get(k) for k in ("n", "r", "p"))
            if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (n, r, p)):
                work += 128 * n * r * p  # malformed values are refused by ac.scrypt itself
        if work > MAX_SLOTS_SCRYPT_BYTES:
            raise FormatError(
                f"{self.label}: the password slots ask for more scrypt work than Aegis ever uses"
            )
        password = self._get_password().encode()
        master = None
        for slot in password_slots:
            salt = ac.unhex(slot.get("salt"), "a slot salt", self.label)
            key = ac.scrypt(
                password,
                salt,
                n=slot.get("n"),
                r=slot.get("r"),
                p=slot.get("p"),
                label=self.label,
                stats=self.ctx.stats,
            )
            kp = slot.get("key_params")
            if not isinstance(kp, dict):
                raise FormatError(f"{self.label}: a password slot has no key parameters")
            wrapped = ac.unhex(slot.get("key"), "a slot key", self.label)
            knonce = ac.unhex(kp.get("nonce"), "a slot nonce", self.label, size=12)
            ktag = ac.unhex(kp.get("tag"), "a slot tag", self.label, size=16)
            master = ac.gcm_open(key, knonce, wrapped + ktag)
            if master is not None:
                break
        if master is None:
            self._password = None
            raise AuthenticationError(f"wrong password for {self.label}")
        plain = ac.gcm_open(master, nonce, ciphertext + tag)
        if plain is None:
            # The password unlocked the master key, so this is damage, not a wrong password.
            raise IntegrityError(
                f"{self.label}: the vault content fails authentication (corrupt or tampered)"
            )
        return plain

    def _convert_db(self, db: dict) -> ReadResult:
        version = db.get("version")
        if version not in (1, 2, 3):
            raise FormatError(
                f"{self.label}: unsupported Aegis vault content version {version!r} (this reads 1–3)"
            )
        entries = db.get("entries")
        if not isinstance(entries, list):
            raise FormatError(f"{self.label}: the vault has no entry list")
        group_names: dict[str, str] = {}
        raw_groups = db.get("groups") if version >= 3 else None
        for g in raw_groups if isinstance(raw_groups, list) else []:
            if isinstance(g, dict) and isinstance(g.get("uuid"), str) and isinstance(g.get("name"), str):
                group_names[g["uuid"]] = g["name"]
                self._group_uuids.setdefault(g["name"], g["uuid"])
        result = ReadResult()
        for i, raw in enumerate(entries):
            where = ac.entry_where(
                i, *((raw.get("issuer"), raw.get("name")) if isinstance(raw, dict) else ())
            )
            account = ac.collect(
                result, where, lambda raw=raw, where=where: self._entry(raw, version, group_names, where)
            )
            if account is None:
                # Whatever we cannot read (mOTP, Yandex, a newer kind, a damaged entry) is
                # written back untouched when this vault is rewritten (SPEC §3).
                groups = self._groups_of(raw, version, group_names) if isinstance(raw, dict) else []
                self._foreign.append((copy.deepcopy(raw), groups))
        return result

    def _groups_of(self, raw: dict, version: int, group_names: dict[str, str]) -> list[str]:
        if version >= 3 and isinstance(raw.get("groups"), list):
            return [group_names[u] for u in raw["groups"] if isinstance(u, str) and u in group_names]
        group = raw.get("group")
        return [group] if isinstance(group, str) and group else []

    def _entry(self, raw: Any, version: int, group_names: dict[str, str], where: str) -> Account | None:
        if not isinstance(raw, dict):
            raise ac.EntryProblem("not an object")
        raw_type = raw.get("type", "")
        if not isinstance(raw_type, str):  # never quote a non-text value: it could hold anything
            raise ac.EntryProblem("the OTP type is not text")
        otp_type = raw_type.lower()
        groups = self._groups_of(raw, version, group_names)
        if otp_type in _UNSUPPORTED:
            raise ac.skipped(_UNSUPPORTED[otp_type])
        if otp_type not in _SUPPORTED:
            raise ac.EntryProblem(f"unknown OTP type {otp_type[:20]!r}")
        kind = _SUPPORTED[otp_type]
        info = raw["info"]
        if not isinstance(info, dict):
            raise ac.EntryProblem("the entry has no info object")
        secret = b32decode(ac.entry_text(info.get("secret"), "secret"))
        algorithm = Algorithm.parse(ac.entry_text(info.get("algo"), "algo") or "SHA1")
        if len(groups) > 1:
            self.ctx.warn(
                f"{self.label}: {where} is in {len(groups)} groups; keeping only the first, {groups[0]!r}"
            )
        account = Account(
            kind=kind,
            secret=secret,
            issuer=ac.entry_text(raw.get("issuer"), "issuer"),
            name=ac.entry_text(raw.get("name"), "name"),
            algorithm=algorithm,
            digits=ac.entry_int(info.get("digits"), "digits", default=6),
            period=ac.entry_int(info.get("period"), "period", default=30) if kind is not Kind.HOTP else 30,
            counter=ac.entry_int(info.get("counter"), "counter", default=0) if kind is Kind.HOTP else 0,
            folder=groups[0] if groups else "",
            note=ac.entry_text(raw.get("note"), "note"),
        )
        self._extras[account.identity] = {k: copy.deepcopy(v) for k, v in raw.items() if k not in _OWNED}
        self._read_accounts.append(account)
        return account

    # -- writing ---------------------------------------------------------------------------
    def _should_encrypt(self) -> bool:
        return ac.should_encrypt(self, self._was_encrypted, lambda top: isinstance(top.get("db"), str))

    def _group_uuid(self, name: str) -> str:
        if name not in self._group_uuids:
            self._group_uuids[name] = str(uuidlib.uuid4())
        return self._group_uuids[name]

    def build_content(self, accounts: Sequence[Account]) -> dict:
        """The plaintext ``db`` object (content version 3) for ``accounts``."""
        entries: list[dict[str, Any]] = []
        # Groups read from this vault stay, even when no entry uses them any more.
        used_groups: dict[str, str] = dict(self._group_uuids)
        seen_uuids: set[str] = set()

        def group_ids(names: list[str]) -> list[str]:
            ids = []
            for name in names:
                used_groups[name] = self._group_uuid(name)
                ids.append(used_groups[name])
            return ids

        keys = carried_keys(self._read_accounts, accounts)
        for acc, key in zip(accounts, keys, strict=True):
            entry = copy.deepcopy(self._extras.get(key, {}) if key else {})
            if not isinstance(entry.get("uuid"), str) or entry["uuid"] in seen_uuids:
                entry["uuid"] = str(uuidlib.uuid4())
            seen_uuids.add(entry["uuid"])
            info: dict[str, Any] = {
                "secret": b32encode(acc.secret),
                "algo": acc.algorithm.value,
                "digits": acc.digits,
            }
            if acc.kind is Kind.HOTP:
                info["counter"] = acc.counter
            else:
                info["period"] = acc.period
            entry.update(
                {
                    "type": acc.kind.value,
                    "name": acc.name,
                    "issuer": acc.issuer,
                    "note": acc.note,
                    "info": info,
                    "groups": group_ids([acc.folder] if acc.folder else []),
                }
            )
            entry.setdefault("favorite", False)
            entry.setdefault("icon", None)
            entries.append(_ordered(entry))
        for raw, names in self._foreign:
            entry = copy.deepcopy(raw)
            if isinstance(entry, dict):
                entry.pop("group", None)
                entry["groups"] = group_ids(names)
            entries.append(entry)
        groups = [{"uuid": gid, "name": name} for name, gid in used_groups.items()]
        return {"version": CONTENT_VERSION, "entries": entries, "groups": groups}

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        content = self.build_content(accounts)
        if self._should_encrypt():
            vault = self._encrypt(ac.dump_json(content))
        else:
            ac.warn_cleartext(self.ctx, self.label)
            vault = {"version": FILE_VERSION, "header": {"slots": None, "params": None}, "db": content}
        return atomic_write(self.path, ac.dump_json(vault), mode=0o600)

    def _encrypt(self, plaintext: bytes) -> dict:
        password = self._get_password()
        if not password:
            raise FormatError(f"{self.label}: refusing to encrypt with an empty password")
        master = ac.random_bytes(32)
        salt = ac.random_bytes(32)
        key = ac.scrypt(
            password.encode(),
            salt,
            n=SCRYPT_N,
            r=SCRYPT_R,
            p=SCRYPT_P,
            label=self.label,
            stats=self.ctx.stats,
        )
        knonce = ac.random_bytes(12)
        wrapped = ac.gcm_seal(key, knonce, master)
        nonce = ac.random_bytes(12)
        sealed = ac.gcm_seal(master, nonce, plaintext)
        slot = {
            "type": 1,
            "uuid": str(uuidlib.uuid4()),
            "key": wrapped[:-16].hex(),
            "key_params": {"nonce": knonce.hex(), "tag": wrapped[-16:].hex()},
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": salt.hex(),
            "repaired": True,
            "is_backup": False,
        }
        return {
            "version": FILE_VERSION,
            "header": {"slots": [slot], "params": {"nonce": nonce.hex(), "tag": sealed[-16:].hex()}},
            "db": ac.b64encode(sealed[:-16]),
        }


_ORDER = (
    "type",
    "uuid",
    "name",
    "issuer",
    "note",
    "favorite",
    "icon",
    "icon_mime",
    "icon_hash",
    "info",
    "groups",
)


def _ordered(entry: dict[str, Any]) -> dict[str, Any]:
    """Aegis's own key order (readers don't care; people diffing exports do)."""
    out = {k: entry[k] for k in _ORDER if k in entry}
    out.update({k: v for k, v in entry.items() if k not in out})
    return out
