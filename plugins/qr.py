"""``qr:`` — QR code images: app export screens, screenshots, photos, saved PNGs.

Reading (``qr:IMAGE`` or ``qr:FOLDER``; detected by content, so the kind may be left
out): PNG, JPEG, WebP and GIF files, recognised by their magic bytes, never by their
name. A folder is read flat, in name order; hidden files are passed over, other files
are passed over with a warning. Every QR code in every image is decoded with zxing-cpp
(any position, size or rotation; several per image; every frame of an animated image),
and each must hold

* an ``otpauth://`` URI — one account, or
* an ``otpauth-migration://`` URI — a Google Authenticator "Transfer accounts" batch,
  decoded by :mod:`otpbridge.plugins.gauth`. The batches of one export (same
  ``batch_id``) are combined in ``batch_index`` order whichever files they came from;
  a batch that is not among the images is an entry error that names it (exit 7: the
  accounts of the other batches are read).

The exact same QR content seen twice (the same screen shot twice, a code found in two
images) is read once; distinct accounts are never merged here.

Errors: an image with no QR code, a QR code holding no OTP data, a damaged, truncated,
oversized or unsupported image are a :class:`FormatError` (exit 4) for a single image,
and an entry error naming the file (exit 7) in a folder where other images were read (a
folder where nothing could be read is exit 4 again). What a non-OTP QR code held is
described (``a web link to example.com``, ``text of 30 characters``), never quoted: it
could be a secret in another format.

Bounds: ``MAX_IMAGE_BYTES`` per file, ``MAX_PIXELS`` per frame (checked from the header
before anything is decoded, and Pillow's decompression-bomb guard turned into an error),
``MAX_FRAMES`` per animated image, ``MAX_IMAGES`` per folder. Only Pillow's PNG, JPEG,
WebP and GIF decoders are ever used (no format guessing that could reach an exotic
decoder).

Writing (``convert SOURCE qr:FOLDER [--qr otpauth|gauth]``, or ``qr:-`` to draw on the
terminal): ``otpauth`` (the default) writes one PNG per account, ``NNN-issuer-name.png``,
for any authenticator app; ``gauth`` writes Google Authenticator transfer batches,
``gauth-I-of-N.png`` (accounts the app cannot hold are skipped and listed, as for
``gauth:``). Images are mode 0600 in a folder created 0700, written only into a new or
empty folder: they hold the secrets in clear. ``qr:-`` draws the codes on stderr, and
only when stderr is a terminal (never into a log or a pipe).

Pillow, zxing-cpp and segno are imported only when an image is read or written, so the
CLI starts as fast as without this plugin (optional extra ``qr``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from otpbridge.core.errors import DataLossRefused, EntryError, FormatError, MissingDependencyError, UsageError
from otpbridge.core.fileio import atomic_write
from otpbridge.core.model import Account
from otpbridge.core.otpauth import UriError, format_uri, parse_uri
from otpbridge.stores.base import ReadResult, Store, WriteReport

#: a phone screenshot is well under 10 MB, a 48 MP photo about 20 MB
MAX_IMAGE_BYTES = 64 * 1024 * 1024
#: pixels in one frame: a 48-megapixel photo (8000 x 6000) passes, a decompression bomb does not
MAX_PIXELS = 64_000_000
#: frames read from an animated GIF or WebP (a slide show of export codes)
MAX_FRAMES = 64
#: pixels decoded from all frames of one image together
MAX_TOTAL_PIXELS = 4 * MAX_PIXELS
#: images in one folder: more is almost certainly the wrong folder (all of ~/Pictures)
MAX_IMAGES = 1000
#: what one QR code can hold at most (version 40, byte mode)
MAX_QR_BYTES = 2953

CODES = ("otpauth", "gauth")
IMAGE_TYPES = "PNG, JPEG, WebP or GIF"
_PIL_FORMATS = ["PNG", "JPEG", "WEBP", "GIF"]
_SCHEME_OTP = "otpauth://"
_SCHEME_MIGRATION = "otpauth-migration://"


def image_type(head: bytes) -> str | None:
    """``PNG``, ``JPEG``, ``WebP`` or ``GIF`` from the magic bytes, else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _visible_files(folder: Path) -> list[Path]:
    """Regular files of ``folder`` (not recursive, hidden ones left out), in name order."""
    out = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_file():
                    out.append(Path(entry.path))
            except OSError:
                continue
    return sorted(out, key=lambda p: p.name)


def folder_of_images(folder: Path, *, limit: int = 200) -> bool:
    """True for a folder whose visible files are mostly images (detection; cheap)."""
    if (folder / ".gpg-id").exists():
        return False
    images = others = 0
    try:
        with os.scandir(folder) as it:
            for k, entry in enumerate(it):
                if k >= limit:
                    break
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                if image_type(_head(Path(entry.path))):
                    images += 1
                else:
                    others += 1
    except OSError:
        return False
    return images > 0 and images >= others


# -- what a QR code holds ------------------------------------------------------------------
_KNOWN_SCHEMES = {
    "wifi": "Wi-Fi network settings",
    "mailto": "an e-mail link",
    "tel": "a phone number",
    "sms": "a text message link",
    "smsto": "a text message link",
    "geo": "a map location",
    "mecard": "a contact card",
    "bitcoin": "a payment link",
    "motp": "an mOTP account (not supported)",
    "market": "an app store link",
    "intent": "an Android app link",
    "ethereum": "a payment link",
    "lightning": "a payment link",
    "upi": "a payment link",
    "matmsg": "an e-mail message",
    "steam": "a Steam link (Steam Guard secrets come from the Steam app's files, not a QR code)",
    "otpauth": "a malformed otpauth URI",
    "otpauth-migration": "a malformed otpauth-migration URI",
}


def describe(data: bytes) -> str:
    """What a QR code that holds no OTP data holds, without quoting it (it may be a secret)."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return f"{len(data)} bytes of binary data"
    if not text:
        return "nothing (an empty QR code)"
    if text[:11].upper() == "BEGIN:VCARD":
        return "a contact card"
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]{0,30}):", text)
    if m:
        scheme = m.group(1).lower()
        if scheme in ("http", "https"):
            try:
                host = urlsplit(text).hostname or ""
            except ValueError:
                host = ""
            host = host if re.fullmatch(r"[a-z0-9.-]{1,80}", host) else ""
            return f"a web link to {host}" if host else "a web link"
        # Only well-known schemes are named: "JBSWY3DP…:x" must not come back as a "scheme".
        return _KNOWN_SCHEMES.get(scheme, "a URI of a kind otpbridge does not read")
    return f"text of {len(text)} characters, not an otpauth:// or otpauth-migration:// URI"


# -- the image decoder ---------------------------------------------------------------------
class ImageProblem(Exception):
    """An image that cannot be read; the message names the problem, never the content."""


def _libs() -> tuple[Any, Any]:
    try:
        import zxingcpp
        from PIL import Image
    except ImportError as exc:
        name = (getattr(exc, "name", None) or "").split(".")[0]
        package = {"PIL": "Pillow", "zxingcpp": "zxing-cpp"}.get(name, name or "zxing-cpp")
        raise MissingDependencyError(
            f"reading QR code images needs the Python package {package!r}, which is not installed",
            hint="pip install 'otpbridge[qr]'",
        ) from None
    return Image, zxingcpp


def _grey(frame: Any, Image: Any) -> Any:
    """The frame as 8-bit grey, transparency laid on white (a transparent PNG's dark
    modules would otherwise vanish into a black background)."""
    if frame.mode in ("RGBA", "LA", "PA") or (frame.mode in ("P", "L", "RGB") and "transparency" in frame.info):
        rgba = frame.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if frame.mode.startswith("I;16") or frame.mode in ("I", "F"):
        wide = frame.convert("F")  # 16/32-bit grey: stretch whatever range it uses to 0..255
        lo, hi = wide.getextrema()
        scale = 255 / (hi - lo) if hi > lo else 1.0
        return wide.point(lambda v: (v - lo) * scale).convert("L")
    return frame.convert("L")


def _find(zxingcpp: Any, image: Any) -> list[Any]:
    """Valid QR codes in one grey image: the default pass, then fallbacks if it found none."""
    fmt = zxingcpp.BarcodeFormat.QRCode
    found = [b for b in zxingcpp.read_barcodes(image, formats=fmt) if b.valid]
    if found:
        return found
    found = [
        b
        for b in zxingcpp.read_barcodes(image, formats=fmt, binarizer=zxingcpp.Binarizer.GlobalHistogram)
        if b.valid
    ]
    if found or max(image.size) > 1200:
        return found
    # Tiny codes (one pixel per module, thumbnails): zxing wants a few pixels per module.
    bigger = image.resize((image.size[0] * 4, image.size[1] * 4), resample=0)
    return [b for b in zxingcpp.read_barcodes(bigger, formats=fmt) if b.valid]


def _upright(photo: Any) -> Any:
    """A JPEG photo turned as its EXIF orientation says; as it is when that tag is unreadable."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(photo) or photo
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not hide a readable picture
        return photo


def _position(barcode: Any) -> tuple[int, int]:
    try:
        p = barcode.position.top_left
        return (int(p.y) // 40, int(p.x))  # rows of 40 px, then left to right
    except (AttributeError, TypeError, ValueError):
        return (0, 0)


def scan_image(path: Path) -> list[bytes]:
    """The contents of every QR code in the image at ``path``, top to bottom, left to right.

    Raises :class:`ImageProblem` for anything that is not a readable image within bounds.
    """
    Image, zxingcpp = _libs()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageProblem(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    if size > MAX_IMAGE_BYTES:
        raise ImageProblem(f"the file is {size} bytes; images over {MAX_IMAGE_BYTES // 2**20} MiB are not read")
    kind = image_type(_head(path))
    if kind is None:
        raise ImageProblem(f"not a {IMAGE_TYPES} image")
    if kind == "WebP":
        from PIL import features

        if not features.check("webp"):
            raise ImageProblem("this Pillow was built without WebP support")
    contents: list[bytes] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", message="Palette images with Transparency", category=UserWarning)
        try:
            with Image.open(path, formats=_PIL_FORMATS) as im:
                frames = int(getattr(im, "n_frames", 1) or 1)
                if frames > MAX_FRAMES:
                    raise ImageProblem(f"the image has {frames} frames; at most {MAX_FRAMES} are read")
                budget = MAX_TOTAL_PIXELS
                for number in range(frames):
                    if number:
                        im.seek(number)
                    width, height = im.size
                    if width * height > MAX_PIXELS:
                        raise ImageProblem(
                            f"the image is {width} x {height} pixels; images over "
                            f"{MAX_PIXELS // 1_000_000} megapixels are not read"
                        )
                    budget -= width * height
                    if budget < 0:
                        raise ImageProblem(
                            f"the {frames} frames of the image add up to over "
                            f"{MAX_TOTAL_PIXELS // 1_000_000} megapixels; they are not read"
                        )
                    im.load()
                    frame = im
                    if number == 0 and kind == "JPEG":
                        frame = _upright(im)
                    for barcode in sorted(_find(zxingcpp, _grey(frame, Image)), key=_position):
                        data = bytes(barcode.bytes)
                        if data not in contents:
                            contents.append(data)
        except ImageProblem:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageProblem(
                f"the image is too large to read safely (over {MAX_PIXELS // 1_000_000} megapixels)"
            ) from None
        except Image.UnidentifiedImageError:
            raise ImageProblem(f"damaged, or not a {IMAGE_TYPES} image") from None
        except MemoryError:
            raise ImageProblem("not enough memory to decode the image") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, struct.error…
            truncated = "truncated" in str(exc).lower() or isinstance(exc, EOFError)
            raise ImageProblem(
                f"the {kind} image is truncated" if truncated else f"the {kind} image is damaged ({type(exc).__name__})"
            ) from None
    return contents


# -- reading -------------------------------------------------------------------------------
@dataclass
class _Batch:
    """The Google Authenticator QR codes seen of one export (one ``batch_id``)."""

    size: int
    parts: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)  # index -> [(where, payload)]
    files: list[str] = field(default_factory=list)


class QrStore(Store):
    kind = "qr"
    title = "QR code images (screenshots, photos, PNG exports)"
    reads = (
        f"{IMAGE_TYPES} images, or a folder of them, holding otpauth:// or otpauth-migration:// "
        "(Google Authenticator) QR codes; several per image; batches combined across files"
    )
    writes = (
        "PNG QR codes into a new folder: one otpauth:// code per account (--qr otpauth) or "
        "Google Authenticator transfer batches (--qr gauth); qr:- draws them on the terminal"
    )
    drops = frozenset({"folder", "note"})
    loses = (
        "folders, notes; with --qr gauth also accounts the app cannot hold (periods other "
        "than 30 s, digits other than 6 or 8, Steam), listed as skipped"
    )
    options = ("codes", "batch-size")
    sniff_priority = 20
    #: reading keeps Steam (otpauth encoder=steam); --qr gauth writes skip it (listed)
    carries = {"Steam": "partly"}
    source = (
        "Google Authenticator: ⋮ → Transfer accounts → Export accounts, then a screenshot of each "
        "QR code; any app's 'show QR code' or a service's setup page (screenshot or photo)"
    )

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if path.is_dir():
            return folder_of_images(path)
        return image_type(head) is not None

    @property
    def _terminal(self) -> bool:
        return self.spec.location.strip() == "-"

    def exists(self) -> bool:
        if self._terminal:
            return False
        if self.path.is_dir():
            return bool(_visible_files(self.path))
        return self.path.exists()

    def fingerprint(self) -> str | None:
        if not self.path.is_dir():
            return super().fingerprint()
        try:
            parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in _visible_files(self.path)]
        except OSError:
            return None
        import hashlib

        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    # -- reading ---------------------------------------------------------------------------
    def _images(self) -> tuple[list[tuple[str, Path]], bool]:
        """(name, path) of every image to read, and whether the location is a folder."""
        path = self.path
        if self._terminal:
            raise UsageError("qr:- draws QR codes on the terminal; it cannot be read", hint="read qr:IMAGE or qr:FOLDER")
        if not path.exists():
            raise FormatError(f"{self.label}: no such file or folder")
        if not path.is_dir():
            return [(path.name, path)], False
        try:
            files = _visible_files(path)
        except OSError as exc:
            raise FormatError(f"{self.label}: cannot read the folder: {exc.strerror}") from None
        images = []
        for p in files:
            if image_type(_head(p)) is None:
                self.ctx.warn(f"{self.label}: skipped {p.name}: not a {IMAGE_TYPES} image")
            else:
                images.append((p.name, p))
        if not images:
            raise FormatError(
                f"{self.label}: the folder holds no {IMAGE_TYPES} image",
                hint="put the screenshots of the export in it, or name one image: qr:PATH.png",
            )
        if len(images) > MAX_IMAGES:
            raise FormatError(
                f"{self.label}: the folder holds {len(images)} images; at most {MAX_IMAGES} are read",
                hint="use a folder holding only the screenshots of the export",
            )
        return images, True

    def read(self) -> ReadResult:
        from otpbridge.plugins import appcrypto as ac
        from otpbridge.plugins import gauth

        images, is_folder = self._images()
        result = ReadResult()
        seen: dict[bytes, str] = {}  # QR content -> where it was first read
        units: list[tuple[str, Any]] = []  # ("uri", (where, text)) | ("batch", batch_id) | ("payload", (where, p))
        batches: dict[int, _Batch] = {}
        file_errors: list[EntryError] = []
        with contextlib.ExitStack() as stack:
            progress = stack.enter_context(self._progress(len(images)))
            scanned = []
            for name, path in images:
                try:
                    scanned.append((name, scan_image(path), None))
                except ImageProblem as exc:
                    scanned.append((name, None, exc))
                progress()
        for name, contents, problem in scanned:
            if problem is not None:
                file_errors.append(EntryError(name, str(problem)))
                continue
            if not contents:
                file_errors.append(EntryError(name, "no QR code found in the image"))
                continue
            otp_here = 0
            others: list[tuple[str, str]] = []
            for k, data in enumerate(contents, start=1):
                where = name if len(contents) == 1 else f"{name}, QR code {k}"
                text = _text(data)
                lowered = (text or "")[:32].lower()
                if text is None or not lowered.startswith((_SCHEME_OTP, _SCHEME_MIGRATION)):
                    others.append((where, describe(data)))
                    continue
                otp_here += 1
                key = text.encode()
                if key in seen:
                    self.ctx.info(f"{self.label}: {where} is the same QR code as {seen[key]}; read once")
                    continue
                seen[key] = where
                if lowered.startswith(_SCHEME_OTP):
                    units.append(("uri", (where, text)))
                    continue
                try:
                    payload = gauth.parse_payload(gauth.decode_data(text))
                except ValueError as exc:
                    result.errors.append(EntryError(where, f"Google Authenticator QR code: {exc}"))
                    continue
                size = payload.batch_size if payload.HasField("batch_size") else 1
                if size <= 1:
                    units.append(("payload", (where, payload)))
                    continue
                index = payload.batch_index if payload.HasField("batch_index") else 0
                if not 0 <= index < size or size > 1000:
                    self.ctx.warn(
                        f"{self.label}: {where}: says it is QR code {index + 1} of {size}, which cannot be; "
                        "its accounts are read, missing codes of its export cannot be checked"
                    )
                    units.append(("payload", (where, payload)))
                    continue
                batch = batches.get(payload.batch_id)
                if batch is None:
                    batch = batches[payload.batch_id] = _Batch(size)
                    units.append(("batch", payload.batch_id))
                elif batch.size != size:
                    self.ctx.warn(
                        f"{self.label}: {where}: says its export has {size} QR codes, another code of it "
                        f"says {batch.size}"
                    )
                    batch.size = max(batch.size, size)
                if index in batch.parts:
                    self.ctx.warn(
                        f"{self.label}: {where} and {batch.parts[index][0][0]} are both QR code {index + 1} "
                        f"of {size} of one export but differ; both are read"
                    )
                batch.parts.setdefault(index, []).append((where, payload))
                file_name = where.split(", QR code")[0]
                if file_name not in batch.files:
                    batch.files.append(file_name)
            if others and otp_here:
                for where, what in others:
                    self.ctx.warn(f"{self.label}: {where} holds no OTP data ({what}); passed over")
            elif others:
                what = others[0][1] if len(others) == 1 else "; ".join(w for _, w in others[:3])
                count = "its QR code holds" if len(others) == 1 else f"its {len(others)} QR codes hold"
                file_errors.append(EntryError(name, f"{count} no OTP data ({what})"))

        def add_payload(where: str, payload: Any) -> None:
            for k, params in enumerate(payload.otp_parameters):
                entry = ac.entry_where(k, params.issuer, params.name).replace("entry", "account", 1)
                ac.collect(result, f"{where}, {entry}", lambda params=params: gauth.migration_account(params))

        for what, unit in units:
            if what == "uri":
                where, text = unit
                try:
                    result.accounts.append(parse_uri(text))
                except UriError as exc:
                    result.errors.append(EntryError(where, f"otpauth:// URI: {exc}"))
            elif what == "payload":
                add_payload(*unit)
            else:
                batch = batches[unit]
                for index in sorted(batch.parts):
                    for where, payload in batch.parts[index]:
                        add_payload(where, payload)
                missing = [i for i in range(batch.size) if i not in batch.parts]
                for i in missing:
                    result.errors.append(
                        EntryError(
                            f"Google Authenticator export read from {', '.join(batch.files)}",
                            f"QR code {i + 1} of {batch.size} is missing: the accounts in it were not read "
                            "(add a screenshot of it to the folder)",
                        )
                    )
        result.errors[:0] = file_errors
        if not result.accounts and (file_errors or result.errors):
            first = (file_errors or result.errors)[0]
            if not is_folder:
                raise FormatError(f"{self.label}: {first.reason}", hint=_READ_HINT)
            raise FormatError(
                f"{self.label}: no account could be read from its {len(images)} image(s) (first: {first})",
                hint=_READ_HINT,
            )
        return result

    def _progress(self, total: int):
        """A progress bar on a terminal for folders of several images (decoding a photo takes a while)."""
        if not self.ctx.progress or total < 3:
            return contextlib.nullcontext(lambda: None)
        from otpbridge.plugins.passstore import progress_bar

        return progress_bar(True, f"reading {total} images", total)

    # -- writing ---------------------------------------------------------------------------
    def _codes(self) -> str:
        raw = self.spec.options.get("codes", "otpauth").strip().lower() or "otpauth"
        if raw not in CODES:
            raise UsageError(f"option codes={raw!r} must be one of: {', '.join(CODES)}")
        return raw

    def _gauth(self):
        from otpbridge.plugins.gauth import GAuthStore
        from otpbridge.stores.base import StoreSpec

        options = {k: v for k, v in self.spec.options.items() if k == "batch-size"}
        return GAuthStore(StoreSpec("gauth", "", options), self.ctx)

    def _representable(self, accounts: Sequence[Account]) -> tuple[list[Account], list[EntryError]]:
        if self._codes() != "gauth":
            return list(accounts), []
        from otpbridge.plugins.gauth import unrepresentable

        keep, errors = [], []
        for acc in accounts:
            reason = unrepresentable(acc)
            if reason:
                errors.append(EntryError(acc.label, reason))
            else:
                keep.append(acc)
        return keep, errors

    def _refuse_existing(self) -> None:
        if self.exists():
            what = "folder already holds files" if self.path.is_dir() else "names an existing file"
            raise DataLossRefused(
                f"{self.label}: the {what}; QR code images are written only into a new or empty folder",
                hint="name a new folder (nothing was written); QR images cannot be updated in place",
            )

    def apply(
        self, upserts: Sequence[Account] = (), removals: Sequence[Account] = (), *, dry_run: bool = False
    ) -> WriteReport:
        self._codes()  # a bad option is an error before anything else
        self._refuse_existing()
        keep, errors = self._representable(upserts)
        report = super().apply(keep, removals, dry_run=dry_run)
        report.errors.extend(errors)
        return report

    def write_all(self, accounts: Sequence[Account]) -> Path | None:
        codes = self._codes()
        if not self._terminal:
            self._refuse_existing()
        keep, errors = self._representable(accounts)
        for err in errors:
            self.ctx.warn(f"{self.label}: not written: {err}")
        if codes == "gauth":
            uris = [gauth_uri(p) for p in self._gauth().payloads(keep)]
            captions = [f"Google Authenticator transfer code {i} of {len(uris)}" for i in range(1, len(uris) + 1)]
            names = [f"gauth-{i}-of-{len(uris)}.png" for i in range(1, len(uris) + 1)]
        else:
            uris = [format_uri(a) for a in keep]
            captions = [f"{i} of {len(uris)}: {a.label}" for i, a in enumerate(keep, start=1)]
            names = [f"{i:03d}-{_file_part(a)}.png" for i, a in enumerate(keep, start=1)]
        segno = _segno()
        if self._terminal:
            self._draw(segno, uris, captions, codes)
            return None
        folder = self.path
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for uri, name in zip(uris, names, strict=True):
            png = io.BytesIO()
            segno.make(uri, error="m", micro=False).save(png, kind="png", scale=6, border=4)
            atomic_write(folder / name, png.getvalue(), mode=0o600, backup=False)
        self.ctx.warn(
            f"{self.label}: wrote {len(uris)} QR code image(s); they hold your 2FA secrets in clear: "
            "keep them safe and delete them when done"
        )
        return None

    def _draw(self, segno: Any, uris: list[str], captions: list[str], codes: str) -> None:
        out = terminal_stream()
        if out is None:
            raise UsageError(
                "qr:- draws the QR codes on the terminal, but stderr is not a terminal; "
                "refusing to send secrets into a pipe or a log",
                hint="run it in a terminal, or write PNG images with qr:FOLDER",
            )
        how = (
            "scan with Google Authenticator › Transfer accounts › Import"
            if codes == "gauth"
            else "scan with your authenticator app"
        )
        for uri, caption in zip(uris, captions, strict=True):
            buf = io.StringIO()
            segno.make(uri, error="m", micro=False).terminal(out=buf, compact=True)
            out.write(f"{caption} — {how}:\n{buf.getvalue()}\n")
        out.flush()
        self.ctx.warn("the QR codes on the screen hold your 2FA secrets: clear the terminal and its scrollback when done")


_READ_HINT = (
    "otpbridge reads QR codes holding otpauth:// or otpauth-migration:// URIs, as an app's "
    "export or 'show QR code' screen shows them"
)


def terminal_stream():
    """stderr when it is a terminal, else None (tests replace this)."""
    try:
        return sys.stderr if sys.stderr.isatty() else None
    except (AttributeError, ValueError):
        return None


def gauth_uri(payload: bytes) -> str:
    from otpbridge.plugins.gauth import migration_uri

    return migration_uri(payload)


def _segno() -> Any:
    try:
        import segno
    except ImportError:
        raise MissingDependencyError(
            "writing QR codes needs the Python package 'segno', which is not installed",
            hint="pip install 'otpbridge[qr]'",
        ) from None
    return segno


def _text(data: bytes) -> str | None:
    if len(data) > MAX_QR_BYTES:
        return None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def _file_part(acc: Account) -> str:
    text = "-".join(p for p in (acc.issuer, acc.name) if p) or "account"
    safe = re.sub(r"[^A-Za-z0-9._@+-]+", "_", text).strip("._") or "account"
    return safe[:60]
