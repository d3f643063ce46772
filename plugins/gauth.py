"""``gauth:`` — Google Authenticator "Transfer accounts" exports (``otpauth-migration://``).

Format (shared notes app-formats §2; Aegis ``google_auth.proto``, dim13/otpauth,
scito/extract_otp_secrets): one URI per QR code, ``otpauth-migration://offline?data=``
+ percent-encoded standard Base64 of a protobuf ``MigrationPayload``. Large exports
are split over several codes that share a ``batch_id``.

Reading takes a text file of such URIs (one per line; ``#`` comments; text before the
URI, as in ``QR-Code:otpauth-migration://…`` from QR scanner apps, is dropped with a
warning). The data is percent-decoded only: a ``+`` some tools leave unencoded is a
Base64 ``+``, not a space.

There is no protoc at build time: the message classes are built at runtime from a
``FileDescriptorProto`` in a private descriptor pool. Enum fields are declared as
int32 (the same varint on the wire), so unknown enum values reach our checks instead
of being dropped.

The HOTP ``counter`` is taken as the next counter to use, as Aegis and
extract_otp_secrets read it (Google Authenticator shows the code for the stored value,
like the otpauth ``counter=`` parameter).

Writing (``write_all``) emits migration URIs in batches, one per line; options:

* ``?batch-size=N`` — at most N accounts per QR code (default 10, as the app does);
  a batch is also closed early so each code stays easily scannable.
* ``?qr=DIR`` — also write one PNG QR code per batch to DIR (``NAME-1-of-3.png``,
  mode 0600: each image holds secrets).
* ``?qr=terminal`` — also draw the QR codes on the terminal (stderr), to scan them
  straight into the phone.

The app cannot hold periods other than 30 s, digit counts other than 6 and 8, or Steam
accounts: those are skipped with a reason instead of being written wrongly.
"""

from __future__ import annotations

import io
import os
import secrets as pysecrets
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from otpbridge.core.errors import EntryError, FormatError, UsageError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account, Algorithm, Kind
from otpbridge.plugins import appcrypto as ac
from otpbridge.stores.base import ReadResult, Store, WriteReport, not_text_error

SCHEME = "otpauth-migration://"
_ALGORITHMS = {0: Algorithm.SHA1, 1: Algorithm.SHA1, 2: Algorithm.SHA256, 3: Algorithm.SHA512}
_ALGORITHM_CODES = {Algorithm.SHA1: 1, Algorithm.SHA256: 2, Algorithm.SHA512: 3}
_DIGITS = {0: 6, 1: 6, 2: 8}
_DIGIT_CODES = {6: 1, 8: 2}
_TYPE_HOTP, _TYPE_TOTP = 1, 2
DEFAULT_BATCH_SIZE = 10
#: Close a batch before its payload passes this size, so a code stays scannable.
MAX_BATCH_BYTES = 1000


@lru_cache(maxsize=1)
def migration_payload_class() -> Any:
    """The ``MigrationPayload`` message class, built from a descriptor at runtime."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(
        name="otpbridge/gauth_migration.proto", package="otpbridge.gauth", syntax="proto3"
    )
    F = descriptor_pb2.FieldDescriptorProto
    payload = fdp.message_type.add(name="MigrationPayload")
    params = payload.nested_type.add(name="OtpParameters")
    for name, number, ftype in (
        ("secret", 1, F.TYPE_BYTES),
        ("name", 2, F.TYPE_STRING),
        ("issuer", 3, F.TYPE_STRING),
        ("algorithm", 4, F.TYPE_INT32),
        ("digits", 5, F.TYPE_INT32),
        ("type", 6, F.TYPE_INT32),
        ("counter", 7, F.TYPE_INT64),
        ("unique_id", 8, F.TYPE_STRING),
    ):
        params.field.add(name=name, number=number, type=ftype, label=F.LABEL_OPTIONAL)
    payload.field.add(
        name="otp_parameters",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".otpbridge.gauth.MigrationPayload.OtpParameters",
    )
    # proto3 ``optional`` (explicit presence, a synthetic oneof each) so batch_index 0 is
    # written, as the app writes it.
    for name, number in (("version", 2), ("batch_size", 3), ("batch_index", 4), ("batch_id", 5)):
        payload.oneof_decl.add(name=f"_{name}")
        payload.field.add(
            name=name,
            number=number,
            type=F.TYPE_INT32,
            label=F.LABEL_OPTIONAL,
            proto3_optional=True,
            oneof_index=len(payload.oneof_decl) - 1,
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("otpbridge.gauth.MigrationPayload"))


def decode_data(uri: str) -> bytes:
    """The raw protobuf bytes of one migration URI; ValueError (no data quoted) if malformed."""
    if not uri[: len(SCHEME)].lower() == SCHEME:
        raise ValueError("not an otpauth-migration:// URI")
    rest = uri[len(SCHEME) :]
    host, _, query = rest.partition("?")
    if host.strip("/").lower() != "offline":
        raise ValueError("not an otpauth-migration://offline URI")
    values = [p[5:] for p in query.split("&") if p[:5].lower() == "data="]
    if len(values) != 1:
        raise ValueError(
            "the URI has no data parameter" if not values else "the URI has several data parameters"
        )
    # Percent-decoding only: '+' is Base64, never a space (test_plus_problem_export.txt).
    try:
        text = unquote(values[0].split("#", 1)[0], errors="strict").replace(" ", "+").strip()
    except UnicodeDecodeError:
        raise ValueError("the data parameter is not valid percent-encoding") from None
    text = text.replace("-", "+").replace("_", "/")
    if not text:
        raise ValueError("the data parameter is empty")
    import base64
    import binascii

    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data parameter is not valid Base64") from None


def parse_payload(raw: bytes) -> Any:
    cls = migration_payload_class()
    try:
        return cls.FromString(raw)
    except Exception:  # noqa: BLE001 - DecodeError, or backend-specific errors from upb/cpp
        raise ValueError("the data is not a Google Authenticator migration payload") from None


class GAuthStore(Store):
    kind = "gauth"
    title = "Google Authenticator export (otpauth-migration://)"
    reads = "text files of otpauth-migration:// URIs (decoded QR codes), several batches"
    writes = "otpauth-migration:// URIs in batches, one per line; ?qr=DIR writes PNG QR codes, ?qr=terminal draws them"
    drops = frozenset({"folder", "note"})
    loses = (
        "folders, notes; accounts with a period other than 30 s, digits other than 6 or 8, "
        "or Steam are skipped (listed)"
    )
    options = ("qr", "batch-size")
    carries = {"Steam": "lost"}
    source = "Google Authenticator: ⋮ → Transfer accounts → Export accounts; decode the QR codes into otpauth-migration:// text (or read screenshots with kind qr)"
    sniff_priority = 40

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        seen = 0
        for line in head.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if SCHEME in line.lower():
                return True
            seen += 1
            if seen >= 5:
                return False
        return False

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> ReadResult:
        data = ac.read_file(self.path, self.label)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise not_text_error(self.label, data) from None
        result = ReadResult()
        batches: dict[int, tuple[int, set[int]]] = {}
        uris = comments = 0
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                comments += bool(line)
                continue
            at = line.lower().find(SCHEME)
            if at < 0:
                reason = (
                    "an otpauth:// URI (read it with uris:)"
                    if line.lower().startswith("otpauth://")
                    else None
                )
                result.errors.append(
                    EntryError(f"line {number}", reason or "not an otpauth-migration:// URI")
                )
                continue
            if at > 0:
                self.ctx.warn(f"{self.label}: line {number}: ignoring {at} characters before the URI")
            uris += 1
            try:
                payload = parse_payload(decode_data(line[at:]))
            except ValueError as exc:
                result.errors.append(EntryError(f"line {number}", str(exc)))
                continue
            if payload.batch_size > 1:
                size, seen = batches.setdefault(payload.batch_id, (payload.batch_size, set()))
                seen.add(payload.batch_index)
            for k, params in enumerate(payload.otp_parameters):
                where = f"line {number}, " + ac.entry_where(k, params.issuer, params.name).replace(
                    "entry", "account", 1
                )
                ac.collect(result, where, lambda params=params: migration_account(params))
        if uris == 0 and not result.errors and comments:
            # Only comments and blank lines (extract_otp_secrets' only_comments.txt): an
            # export with nothing in it, not a damaged one.
            return result
        if uris == 0:
            raise FormatError(
                f"{self.label}: no otpauth-migration:// URI found",
                hint="is this a Google Authenticator export?",
            )
        if not result.accounts and result.errors:
            raise FormatError(f"{self.label}: no account could be read ({result.errors[0]})")
        for size, seen in batches.values():
            if len(seen) < size:
                self.ctx.warn(
                    f"{self.label}: holds {len(seen)} of the {size} QR codes of one export; "
                    "accounts in the missing codes are not included"
                )
        return result

    # -- writing ---------------------------------------------------------------------------
    def _batch_size(self) -> int:
        raw = self.spec.options.get("batch-size", str(DEFAULT_BATCH_SIZE)).strip()
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise UsageError(f"option batch-size={raw!r} must be a number from 1 to 100")
        return int(raw)

    def _representable(self, accounts: Sequence[Account]) -> tuple[list[Account], list[EntryError]]:
        keep, errors = [], []
        for acc in accounts:
            reason = unrepresentable(acc)
            if reason:
                errors.append(EntryError(acc.label, f"{reason}"))
            else:
                keep.append(acc)
        return keep, errors

    def apply(
        self, upserts: Sequence[Account] = (), removals: Sequence[Account] = (), *, dry_run: bool = False
    ) -> WriteReport:
        keep, errors = self._representable(upserts)
        report = super().apply(keep, removals, dry_run=dry_run)
        report.errors.extend(errors)
        return report

    def payloads(self, accounts: Sequence[Account]) -> list[bytes]:
        """Serialised payloads, one per QR code (unrepresentable accounts must be filtered)."""
        cls = migration_payload_class()
        limit = self._batch_size()
        groups: list[list[bytes]] = [[]]
        sizes = [0]
        for acc in accounts:
            one = cls()
            one.otp_parameters.append(_params(acc))
            encoded = one.SerializeToString()
            if groups[-1] and (len(groups[-1]) >= limit or sizes[-1] + len(encoded) > MAX_BATCH_BYTES):
                groups.append([])
                sizes.append(0)
            groups[-1].append(encoded)
            sizes[-1] += len(encoded)
        batch_id = pysecrets.randbelow(2**31 - 1) + 1
        out = []
        for index, group in enumerate(groups):
            # Repeated fields concatenate on the wire, so the account records can be joined.
            header = cls(version=1, batch_size=len(groups), batch_index=index, batch_id=batch_id)
            out.append(b"".join(group) + header.SerializeToString())
        return out

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        keep, errors = self._representable(accounts)
        for err in errors:
            self.ctx.warn(f"{self.label}: not written: {err}")
        qr = self.spec.options.get("qr", "").strip()
        uris = [migration_uri(p) for p in self.payloads(keep)]
        ac.warn_cleartext(self.ctx, self.label)
        backup = atomic_write(self.path, "".join(u + "\n" for u in uris).encode("ascii"), mode=0o600)
        if qr:
            self._write_qr(uris, qr)
        return backup

    def _write_qr(self, uris: list[str], target: str) -> None:
        try:
            import segno
        except ImportError:
            from otpbridge.core.errors import MissingDependencyError

            raise MissingDependencyError(
                "QR codes need the Python package 'segno'", hint="pip install 'otpbridge[gauth]'"
            ) from None
        total = len(uris)
        if target.lower() == "terminal":
            for i, uri in enumerate(uris, start=1):
                out = io.StringIO()
                segno.make(uri, error="m", micro=False).terminal(out=out, compact=True)
                self.ctx.info(
                    f"QR code {i} of {total} — scan with Google Authenticator › Transfer accounts › Import:"
                )
                self.ctx.info(out.getvalue())
            return
        folder = Path(os.path.expanduser(target))
        stem = self.path.name.split(".")[0] or "gauth"
        for i, uri in enumerate(uris, start=1):
            png = io.BytesIO()
            segno.make(uri, error="m", micro=False).save(png, kind="png", scale=4, border=4)
            atomic_write(folder / f"{stem}-{i}-of-{total}.png", png.getvalue(), mode=0o600, backup=False)
        self.ctx.info(f"wrote {total} QR code image(s) to {folder}")


def migration_uri(payload: bytes) -> str:
    import base64

    return f"{SCHEME}offline?data=" + quote(base64.b64encode(payload).decode("ascii"), safe="")


def unrepresentable(acc: Account) -> str | None:
    """Why Google Authenticator cannot hold ``acc`` unchanged, or None."""
    if acc.kind is Kind.STEAM:
        return "Google Authenticator has no Steam accounts"
    if acc.digits not in _DIGIT_CODES:
        return f"{acc.digits}-digit codes (Google Authenticator exports only 6 or 8)"
    if acc.kind is Kind.TOTP and acc.period != 30:
        return f"a {acc.period}-second period (Google Authenticator exports only 30 s)"
    if acc.kind is Kind.HOTP and acc.counter >= 2**63:  # the migration format's counter is an int64
        return "an HOTP counter of 2^63 or more (Google Authenticator's counter is a signed 64-bit number)"
    return None


def migration_account(params: Any) -> Account:
    if params.algorithm not in _ALGORITHMS:
        what = "MD5" if params.algorithm == 4 else f"code {params.algorithm}"
        raise ac.EntryProblem(f"unsupported algorithm {what}")
    if params.digits not in _DIGITS:
        raise ac.EntryProblem(f"unknown digit count code {params.digits}")
    if params.type not in (0, _TYPE_HOTP, _TYPE_TOTP):
        raise ac.EntryProblem(f"unknown OTP type code {params.type}")
    kind = Kind.HOTP if params.type == _TYPE_HOTP else Kind.TOTP
    issuer, name = params.issuer.strip(), params.name.strip()
    # The app stores the label "Issuer:account" in name when the issuer is known.
    if issuer and name.startswith(issuer + ":"):
        name = name[len(issuer) + 1 :]
    if kind is Kind.HOTP and params.counter < 0:
        raise ac.EntryProblem("the HOTP counter is negative")
    return Account(
        kind=kind,
        secret=bytes(params.secret),
        issuer=issuer,
        name=name,
        algorithm=_ALGORITHMS[params.algorithm],
        digits=_DIGITS[params.digits],
        period=30,
        counter=params.counter if kind is Kind.HOTP else 0,
    )


def _params(acc: Account) -> Any:
    params = migration_payload_class().OtpParameters(
        secret=acc.secret,
        name=f"{acc.issuer}:{acc.name}" if acc.issuer else acc.name,
        issuer=acc.issuer,
        algorithm=_ALGORITHM_CODES[acc.algorithm],
        digits=_DIGIT_CODES[acc.digits],
        type=_TYPE_HOTP if acc.kind is Kind.HOTP else _TYPE_TOTP,
    )
    if acc.kind is Kind.HOTP:
        params.counter = acc.counter
    return params


