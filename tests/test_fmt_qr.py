"""qr: — QR code images: real export screenshots, two independent generators, hostile images.

Images are made with segno (the library we write with) and with qrencode (libqrencode,
an independent C implementation), then scaled, rotated, laid into a phone-screenshot-like
canvas, photographed (crop, tilt, blur) and JPEG-compressed. zbarimg, when installed, is
an independent decoder: it must read the same QR contents from the real screenshots as
we do. Codes read through the whole chain are checked against oathtool.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("zxingcpp")
pytest.importorskip("PIL")
segno = pytest.importorskip("segno")

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from otpbridge.core.errors import DataLossRefused, FormatError, MissingDependencyError, UsageError  # noqa: E402
from otpbridge.core.model import Account, Algorithm, Kind, b32decode, dedupe  # noqa: E402
from otpbridge.core.otpauth import format_uri  # noqa: E402
from otpbridge.plugins import qr as qrmod  # noqa: E402
from otpbridge.plugins.gauth import GAuthStore, migration_uri  # noqa: E402
from otpbridge.plugins.qr import QrStore, describe, image_type, scan_image  # noqa: E402
from otpbridge.stores.base import Context, StoreSpec  # noqa: E402
from otpbridge.stores.registry import detect_kind  # noqa: E402
from tests.support import formats as F  # noqa: E402
from tests.support.cli import run, run_with_env  # noqa: E402
from tests.support.oracles import needs_oathtool, oathtool_code  # noqa: E402
from tests.test_fmt_gauth import decode_uri  # noqa: E402  (an independent protobuf decoder)

QR = Path(__file__).parent / "fixtures" / "qr"
GA_DIR = QR / "ga-export"
QRENCODE = shutil.which("qrencode")
ZBARIMG = shutil.which("zbarimg")
needs_qrencode = pytest.mark.skipif(QRENCODE is None, reason="qrencode is not installed")
needs_zbarimg = pytest.mark.skipif(ZBARIMG is None, reason="zbarimg (zbar-tools) is not installed")

store = F.store_opener(QrStore, "qr")
# qrencode writes palette PNGs with a byte transparency, which Pillow warns about on convert
pytestmark = pytest.mark.filterwarnings("ignore:Palette images with Transparency:UserWarning")

# What the upstream projects document for their images (extract_otp_secrets
# tests/extract_otp_secrets_test.py EXPECTED_STDOUT_FROM_EXAMPLE_EXPORT_PNG; dim13/otpauth
# README): (issuer, name, Base32 secret).
EXAMPLE_EXPORT = [
    ("Test1", "test1@example1.com", "JBSWY3DPEHPK3PXP"),
    ("Test2", "test2@example2.com", "JBSWY3DPEHPK3PXQ"),
    ("Test3", "test3@example3.com", "JBSWY3DPEHPK3PXR"),
]
DIM13 = [("Example", "alice@google.com", "JBSWY3DPEHPK3PXP")]
# Exported-QR-codes.webp: two QR codes of one export (batch 1 and 2 of 2), 10 accounts
# each, no issuers; test15 is not in the export. Secrets in tests/fixtures/qr/README.md.
WEBP_NAMES = ["Test1"] + [f"test{i}" for i in range(2, 21) if i != 15] + ["testscan"]


def _labels(accounts):
    return [(a.issuer, a.name, a.secret_b32) for a in accounts]


# -- helpers: making images ------------------------------------------------------------------
def segno_image(content: str, *, scale: int = 4, border: int = 4, dark="black", light="white") -> Image.Image:
    buf = io.BytesIO()
    segno.make(content, error="m", micro=False).save(buf, kind="png", scale=scale, border=border, dark=dark, light=light)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def qrencode_image(content: str, tmp_path: Path, *, size: int = 4, level: str = "M") -> Image.Image:
    """libqrencode's rendering; the content goes in on stdin."""
    out = Path(tempfile.mkstemp(suffix=".png", dir=tmp_path)[1])
    subprocess.run([QRENCODE, "-t", "PNG", "-s", str(size), "-m", "4", "-l", level, "-o", str(out)], input=content.encode(), check=True)
    return Image.open(out).convert("RGB")


def screenshot(codes: list[Image.Image], *, seed: int = 0, size=(1080, 2340)) -> Image.Image:
    """A phone screen: status bar, title, list rows, buttons, and the codes somewhere on it."""
    rnd = random.Random(seed)
    canvas = Image.new("RGB", size, (250, 250, 250))
    d = ImageDraw.Draw(canvas)
    d.rectangle([0, 0, size[0], 80], fill=(32, 33, 36))
    d.text((40, 30), "12:34   Transfer accounts", fill=(255, 255, 255))
    for row in range(12):
        y = 120 + row * 170
        d.rectangle([30, y, size[0] - 30, y + 140], outline=(200, 200, 200), fill=(rnd.randrange(230, 256),) * 3)
        d.ellipse([50, y + 30, 130, y + 110], fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
        d.text((160, y + 50), f"Account number {row} " + "x" * rnd.randrange(5, 30), fill=(60, 60, 60))
    y = rnd.randrange(200, 400)
    for code in codes:
        x = rnd.randrange(20, max(21, size[0] - code.width - 20))
        d.rectangle([x - 30, y - 30, x + code.width + 30, y + code.height + 30], fill=(255, 255, 255))
        canvas.paste(code, (x, y))
        y += code.height + 80
    d.rounded_rectangle([300, size[1] - 200, size[0] - 300, size[1] - 100], radius=40, fill=(26, 115, 232))
    d.text((480, size[1] - 160), "Next", fill=(255, 255, 255))
    return canvas


def photo(image: Image.Image, *, seed: int = 0) -> Image.Image:
    """A cropped, slightly tilted, blurred, shrunk photo of ``image``."""
    rnd = random.Random(seed)
    w, h = image.size
    box = (rnd.randrange(0, w // 10), rnd.randrange(0, h // 10), w - rnd.randrange(0, w // 10), h - rnd.randrange(0, h // 10))
    out = image.crop(box).rotate(rnd.uniform(-8, 8), expand=True, fillcolor=(120, 110, 100), resample=Image.BICUBIC)
    out = out.filter(ImageFilter.GaussianBlur(0.8))
    return out.resize((int(out.width * 0.7), int(out.height * 0.7)), Image.BILINEAR)


def save(image: Image.Image, path: Path, fmt: str, **kw) -> Path:
    image.save(path, format=fmt, **kw)
    return path


def one_account(i: int = 0) -> Account:
    return Account(
        kind=Kind.TOTP,
        secret=bytes(range(i, i + 20)),
        issuer=f"Example {i}",
        name=f"alice{i}@example.com",
        algorithm=Algorithm.SHA256 if i % 2 else Algorithm.SHA1,
        digits=8 if i % 3 == 0 else 6,
    )


def migration_uris(accounts, batch_size: int = 10) -> list[str]:
    ga = GAuthStore(StoreSpec("gauth", "", {"batch-size": str(batch_size)}), Context(warn=print, info=print))
    return [migration_uri(p) for p in ga.payloads(accounts)]


# -- the public images -------------------------------------------------------------------------
def test_google_authenticator_screenshot():
    result = store(GA_DIR / "example_export.png").read()
    assert result.errors == []
    assert _labels(result.accounts) == EXAMPLE_EXPORT
    assert all(a.kind is Kind.TOTP and a.digits == 6 and a.period == 30 for a in result.accounts)


@pytest.mark.parametrize("name", ["Exported-QR-codes.webp", "Exported-QR-codes_300px.webp"])
def test_two_batches_in_one_webp(name):
    result = store(GA_DIR / name).read()
    assert result.errors == []
    assert [a.name for a in result.accounts] == WEBP_NAMES
    assert {a.issuer for a in result.accounts} == {""}
    assert len(result.accounts) == 20  # accounts sharing a secret are not merged by the reader


def test_go_generated_otpauth_code():
    assert _labels(store(QR / "dim13_example.png").read().accounts) == DIM13


def test_folder_of_screenshots_combines_and_reads_repeats_once():
    s = store(GA_DIR)
    result = s.read()
    assert result.errors == []
    # name order: Exported-QR-codes.webp, Exported-QR-codes_300px.webp (the same two codes), example_export.png
    assert [a.name for a in result.accounts] == WEBP_NAMES + [n for _, n, _ in EXAMPLE_EXPORT]
    repeats = [m for m in s.infos if "read once" in m]
    assert len(repeats) == 2 and all("Exported-QR-codes_300px.webp" in m for m in repeats)


@needs_zbarimg
@pytest.mark.parametrize(
    "path",
    # zbar finds nothing in the 300px WebP (we read it; its codes equal the full-size one's)
    [GA_DIR / "example_export.png", GA_DIR / "Exported-QR-codes.webp", QR / "dim13_example.png", QR / "qr_but_without_otp.png"],
    ids=lambda p: p.name,
)
def test_zbar_reads_the_same_contents(path):
    proc = subprocess.run([ZBARIMG, "-q", "--raw", str(path)], capture_output=True, text=True)
    theirs = sorted(line for line in proc.stdout.splitlines() if line)
    assert theirs and sorted(d.decode() for d in scan_image(path)) == theirs


def test_accounts_agree_with_an_independent_protobuf_decoder():
    for path in sorted(GA_DIR.iterdir()):
        ours = store(path).read().accounts
        theirs = [o for data in scan_image(path) for o in decode_uri(data.decode())["otp"]]
        assert [a.secret for a in ours] == [o["secret"] for o in theirs], path.name


def test_a_qr_code_without_otp_data_is_exit_4_and_not_quoted():
    with pytest.raises(FormatError) as err:
        store(QR / "qr_but_without_otp.png").read()
    msg = str(err.value)
    assert err.value.exit_code == 4
    assert "qr_but_without_otp.png" in msg and "no OTP data" in msg and "text of 30 characters" in msg
    assert "NOT A" not in msg


def test_text_masquerading_as_an_image():
    path = QR / "text_masquerading_as_image.jpeg"
    with pytest.raises(FormatError, match="not a PNG, JPEG, WebP or GIF image") as err:
        store(path).read()
    assert err.value.exit_code == 4
    assert not QrStore.sniff(path, path.read_bytes())


def test_missing_batch_of_a_real_export_is_named(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    with Image.open(GA_DIR / "Exported-QR-codes.webp") as im:  # the left code only: batch 1 of 2
        save(im.crop((0, 0, 281, im.height)), folder / "first.png", "PNG")
    result = store(folder).read()
    assert [a.name for a in result.accounts] == WEBP_NAMES[:10]
    assert len(result.errors) == 1
    assert "first.png" in result.errors[0].where
    assert "QR code 2 of 2 is missing" in result.errors[0].reason


def test_missing_batch_exits_7_on_the_cli(tmp_path, capsys):
    uris = migration_uris([one_account(i) for i in range(9)], batch_size=3)
    for k in (0, 2):
        save(segno_image(uris[k]), tmp_path / f"shot{k}.png", "PNG")
    code, out, err = run(capsys, "list", str(tmp_path))
    assert code == 7, err
    assert "QR code 2 of 3 is missing" in err and "shot0.png, shot2.png" in err
    assert "6 account(s)" in err and "Traceback" not in err


# -- generators, transformations ------------------------------------------------------------
CONTENT = format_uri(one_account(1))


def _generated(tmp_path, generator: str, content: str = CONTENT, **kw) -> Image.Image:
    if generator == "qrencode":
        if QRENCODE is None:
            pytest.skip("qrencode is not installed")
        return qrencode_image(content, tmp_path, **kw)
    return segno_image(content, **kw)


TRANSFORMS = {
    "plain-png": lambda im: (im, "PNG", {}),
    "scaled-down": lambda im: (im.resize((int(im.width * 0.6), int(im.height * 0.6)), Image.BILINEAR), "PNG", {}),
    "scaled-up": lambda im: (im.resize((im.width * 5, im.height * 5), Image.NEAREST), "PNG", {}),
    "rotated-90": lambda im: (im.rotate(90, expand=True), "PNG", {}),
    "rotated-180": lambda im: (im.rotate(180, expand=True), "PNG", {}),
    "rotated-33": lambda im: (im.rotate(33, expand=True, fillcolor="white", resample=Image.BICUBIC), "PNG", {}),
    "jpeg-q30": lambda im: (im, "JPEG", {"quality": 30}),
    "webp": lambda im: (im, "WEBP", {"quality": 60}),
    "gif": lambda im: (im.convert("P"), "GIF", {}),
    "greyscale-16-bit": lambda im: (im.convert("I;16"), "PNG", {}),
    "inverted": lambda im: (Image.eval(im, lambda v: 255 - v), "PNG", {}),
    "screenshot": lambda im: (screenshot([im], seed=1), "PNG", {}),
    "screenshot-jpeg": lambda im: (screenshot([im], seed=2), "JPEG", {"quality": 55}),
    "photo-jpeg": lambda im: (photo(screenshot([im.resize((im.width * 2, im.height * 2))], seed=3), seed=3), "JPEG", {"quality": 60}),
}


@pytest.mark.parametrize("generator", ["segno", "qrencode"])
@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_generated_and_transformed(tmp_path, generator, transform):
    image, fmt, kw = TRANSFORMS[transform](_generated(tmp_path, generator))
    path = save(image, tmp_path / "code.img", fmt, **kw)  # the name says nothing: content decides
    assert detect_kind(path) == "qr"
    assert store(path).read().accounts == [one_account(1)]


@pytest.mark.parametrize("generator", ["segno", "qrencode"])
def test_transparent_png(tmp_path, generator):
    grey = _generated(tmp_path, generator).convert("L")
    rgba = Image.new("RGBA", grey.size, (0, 0, 0, 0))  # transparent black background
    rgba.putalpha(Image.eval(grey, lambda v: 255 - v))  # only the dark modules are opaque
    path = save(rgba, tmp_path / "t.png", "PNG")
    assert store(path).read().accounts == [one_account(1)]


def test_several_codes_in_one_screenshot(tmp_path):
    accounts = [one_account(i) for i in range(3)]
    images = [segno_image(format_uri(a), scale=3) for a in accounts]
    if QRENCODE:
        images[1] = qrencode_image(format_uri(accounts[1]), tmp_path, size=3)
    path = save(screenshot(images, seed=4), tmp_path / "many.png", "PNG")
    assert store(path).read().accounts == accounts  # top to bottom


def test_non_otp_code_beside_otp_codes_is_a_warning(tmp_path):
    images = [segno_image("https://example.com/get-the-app?token=abc", scale=3), segno_image(CONTENT, scale=3)]
    s = store(save(screenshot(images, seed=5), tmp_path / "mixed.png", "PNG"))
    result = s.read()
    assert result.accounts == [one_account(1)] and result.errors == []
    assert any("a web link to example.com" in w for w in s.warnings)
    assert not any("token=abc" in w for w in s.warnings)


def test_animated_gif_frames_are_all_read(tmp_path):
    uris = migration_uris([one_account(i) for i in range(4)], batch_size=2)
    frames = [segno_image(u).convert("P") for u in uris]
    path = tmp_path / "slides.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000)
    assert store(path).read().accounts == [one_account(i) for i in range(4)]


def test_frame_limits(tmp_path, monkeypatch):
    uris = migration_uris([one_account(i) for i in range(4)], batch_size=2)
    frames = [segno_image(u).convert("P") for u in uris]
    path = tmp_path / "slides.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000)
    monkeypatch.setattr(qrmod, "MAX_FRAMES", 1)
    with pytest.raises(FormatError, match="2 frames; at most 1 are read"):
        store(path).read()
    monkeypatch.setattr(qrmod, "MAX_FRAMES", 64)
    monkeypatch.setattr(qrmod, "MAX_TOTAL_PIXELS", frames[0].width * frames[0].height + 1)
    with pytest.raises(FormatError, match="frames of the image add up"):
        store(path).read()


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_phone_photo_with_exif_orientation(tmp_path, orientation):
    turned = {6: 90, 8: 270, 3: 180}[orientation]
    image = photo(screenshot([segno_image(CONTENT, scale=6)], seed=7), seed=7).rotate(turned, expand=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(image, tmp_path / "IMG_0001.JPG", "JPEG", quality=70, exif=exif.tobytes())
    assert store(path).read().accounts == [one_account(1)]


def test_damaged_exif_does_not_hide_the_picture(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 99  # no such orientation
    path = save(segno_image(CONTENT), tmp_path / "odd.jpg", "JPEG", exif=exif.tobytes())
    assert store(path).read().accounts == [one_account(1)]


@F.examples(25)
@given(
    accounts=F.account_lists(max_size=3, folder=None, secret=st.binary(min_size=1, max_size=64)),
    scale=st.integers(2, 6),
    fmt=st.sampled_from(["PNG", "JPEG", "WEBP", "GIF"]),
)
def test_any_accounts_round_trip_through_segno_images(tmp_path, accounts, scale, fmt):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    for k, acc in enumerate(accounts):
        image = segno_image(format_uri(acc), scale=scale)
        save(image.convert("P") if fmt == "GIF" else image, folder / f"{k:02d}", fmt, **({"quality": 85} if fmt in ("JPEG", "WEBP") else {}))
    if not accounts:
        with pytest.raises(FormatError, match="holds no PNG"):
            store(folder).read()
        return
    assert store(folder).read().accounts == accounts


@needs_qrencode
@F.examples(15)
@given(indexes=st.lists(st.integers(0, 200), min_size=1, max_size=14, unique=True))
def test_migration_batches_from_qrencode_round_trip(tmp_path, indexes):
    accounts = [one_account(i) for i in indexes]
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    for k, uri in enumerate(migration_uris(accounts, batch_size=5)):
        save(qrencode_image(uri, tmp_path, size=3), folder / f"shot-{k}.jpg", "JPEG", quality=80)
    assert store(folder).read().accounts == accounts


# -- hostile and broken images ---------------------------------------------------------------
def _png_bytes() -> bytes:
    buf = io.BytesIO()
    segno_image(CONTENT).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("cut", [0.01, 0.05, 0.2, 0.5, 0.8])
def test_truncated_png_is_exit_4(tmp_path, cut):
    data = _png_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(FormatError) as err:
        store(path).read()
    assert err.value.exit_code == 4 and "cut.png" in str(err.value)


def test_truncated_jpeg_in_a_folder_is_a_named_entry_error(tmp_path):
    save(segno_image(CONTENT), tmp_path / "good.png", "PNG")
    buf = io.BytesIO()
    screenshot([segno_image(format_uri(one_account(2)))]).save(buf, format="JPEG")
    (tmp_path / "broken.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    result = store(tmp_path).read()
    assert result.accounts == [one_account(1)]
    assert [e.where for e in result.errors] == ["broken.jpg"]


def _png_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(10_000, 10_000), (100_000, 100_000), (65_000, 1)])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, size):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(*size))
    with pytest.raises(FormatError) as err:
        store(path).read()
    assert err.value.exit_code == 4
    if size[0] * size[1] > qrmod.MAX_PIXELS:
        assert "megapixels" in str(err.value)


def test_oversized_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(qrmod, "MAX_IMAGE_BYTES", 1000)
    path = save(segno_image(CONTENT, scale=10), tmp_path / "big.png", "PNG")
    with pytest.raises(FormatError, match="images over"):
        store(path).read()


def test_blank_image_is_no_qr_code(tmp_path):
    path = save(Image.new("RGB", (300, 300), "white"), tmp_path / "blank.webp", "WEBP")
    with pytest.raises(FormatError, match=r"blank.webp: no QR code found"):
        store(path).read()


@F.examples(60)
@given(data=st.data())
def test_mutated_images_never_crash(tmp_path, data):
    original = _png_bytes() if data.draw(st.booleans()) else (GA_DIR / "Exported-QR-codes_300px.webp").read_bytes()
    raw = F.mutate_bytes(data, original, max_ops=6, truncate=True)
    path = tmp_path / "m.img"
    path.write_bytes(raw)
    F.read_or_refuse(store(path))


@pytest.mark.parametrize(
    "content, described",
    [
        ("JBSWY3DPEHPK3PXP", "text of 16 characters"),
        ("https://accounts.example.org/x?secret=JBSWY3DPEHPK3PXP", "a web link to accounts.example.org"),
        ("WIFI:S:home;T:WPA;P:JBSWY3DPEHPK3PXP;;", "Wi-Fi network settings"),
        ("motp://host?secret=JBSWY3DPEHPK3PXP", "an mOTP account (not supported)"),
        ("BEGIN:VCARD\nFN:JBSWY3DPEHPK3PXP\nEND:VCARD", "a contact card"),
    ],
)
def test_what_a_non_otp_code_held_is_described_never_quoted(tmp_path, content, described):
    assert describe(content.encode()).startswith(described)
    path = save(segno_image(content), tmp_path / "other.png", "PNG")
    with pytest.raises(FormatError) as err:
        store(path).read()
    assert described in str(err.value) and "JBSWY3DPEHPK3PXP" not in str(err.value)


def test_damaged_otpauth_code_is_an_entry_error_without_the_secret(tmp_path):
    bad = "otpauth://totp/Bad:x?secret=JBSWY3DPEHPK3PX1&digits=7"  # '1' is not Base32
    images = [segno_image(bad, scale=3), segno_image(CONTENT, scale=3)]
    result = store(save(screenshot(images, seed=6), tmp_path / "s.png", "PNG")).read()
    assert result.accounts == [one_account(1)]
    assert len(result.errors) == 1 and "s.png, QR code 1" in result.errors[0].where
    assert "JBSWY3DP" not in str(result.errors[0])


def test_folder_rules(tmp_path):
    save(segno_image(CONTENT), tmp_path / "a.png", "PNG")
    save(segno_image("hello"), tmp_path / "b.png", "PNG")
    (tmp_path / "notes.txt").write_text("my codes")
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "sub").mkdir()
    save(segno_image(format_uri(one_account(5))), tmp_path / "sub" / "c.png", "PNG")
    s = store(tmp_path)
    result = s.read()
    assert result.accounts == [one_account(1)]  # flat: sub/ is not read
    assert [e.where for e in result.errors] == ["b.png"] and "no OTP data" in result.errors[0].reason
    assert any("notes.txt" in w for w in s.warnings) and not any(".hidden" in w for w in s.warnings)


def test_folder_with_nothing_readable_is_exit_4(tmp_path):
    save(segno_image("hello"), tmp_path / "b.png", "PNG")
    save(Image.new("L", (100, 100), 255), tmp_path / "c.png", "PNG")
    with pytest.raises(FormatError, match="no account could be read from its 2 image") as err:
        store(tmp_path).read()
    assert err.value.exit_code == 4
    (tmp_path / "b.png").unlink()
    (tmp_path / "c.png").unlink()
    with pytest.raises(FormatError, match="holds no PNG, JPEG, WebP or GIF image"):
        store(tmp_path).read()


def test_too_many_images(tmp_path, monkeypatch):
    monkeypatch.setattr(qrmod, "MAX_IMAGES", 2)
    for k in range(3):
        save(segno_image(format_uri(one_account(k))), tmp_path / f"{k}.png", "PNG")
    with pytest.raises(FormatError, match="at most 2 are read"):
        store(tmp_path).read()


# -- detection -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "head, kind",
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "PNG"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "JPEG"),
        (b"GIF87a\x01\0", "GIF"),
        (b"GIF89a\x01\0", "GIF"),
        (b"RIFF\x10\0\0\0WEBPVP8 ", "WebP"),
        (b"RIFF\x10\0\0\0WAVEfmt ", None),
        (b"otpauth://totp/x", None),
        (b"", None),
    ],
)
def test_magic_bytes(head, kind):
    assert image_type(head) == kind


def test_images_and_folders_are_detected(tmp_path, fixtures_dir):
    for path in [*GA_DIR.iterdir(), QR / "dim13_example.png"]:
        assert detect_kind(path) == "qr"
    assert detect_kind(GA_DIR) == "qr"
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    save(segno_image(CONTENT), tmp_path / "one.png", "PNG")
    assert not QrStore.sniff(tmp_path, b"")  # mostly not images
    (tmp_path / ".gpg-id").write_text("ABC\n")
    assert not QrStore.sniff(tmp_path, b"")
    for path in F.other_fixtures(QR):  # no other format's file is taken for an image
        if path.is_file():
            assert not QrStore.sniff(path, path.read_bytes()[:256 * 1024]), path


def test_uris_and_gauth_say_an_image_is_an_image():
    for kind in ("uris", "gauth"):
        from otpbridge.stores import registry

        cls = registry.load_plugin(kind)
        s = F.store_opener(cls, kind)(GA_DIR / "example_export.png")
        with pytest.raises(FormatError) as err:
            s.read()
        assert "qr:" in (err.value.hint or "")


# -- writing ---------------------------------------------------------------------------------
MIXED = [
    one_account(0),
    Account(kind=Kind.HOTP, secret=b"12345678901234567890", issuer="Hot", name="h", counter=42),
    Account(kind=Kind.STEAM, secret=b"steamsteamsteam", issuer="Steam", name="gabe"),
    Account(kind=Kind.TOTP, secret=b"sixtysixty", issuer="Sixty", name="60", period=60, digits=7),
]


def test_write_one_otpauth_png_per_account(tmp_path):
    out = tmp_path / "codes"
    s = store(out)
    report = s.apply(MIXED)
    assert report.added == MIXED and report.errors == []
    names = sorted(p.name for p in out.iterdir())
    assert names == ["001-Example_0-alice0@example.com.png", "002-Hot-h.png", "003-Steam-gabe.png", "004-Sixty-60.png"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.iterdir())
    assert any("in clear" in w for w in s.warnings)
    assert store(out).read().accounts == MIXED


def test_write_google_authenticator_batches(tmp_path):
    out = tmp_path / "ga"
    accounts = [one_account(i) for i in range(23)] + MIXED[1:]
    report = store(out, codes="gauth").apply(accounts)
    assert sorted(e.where for e in report.errors) == sorted(a.label for a in MIXED[2:])
    assert sorted(p.name for p in out.iterdir()) == [f"gauth-{i}-of-3.png" for i in (1, 2, 3)]
    assert store(out).read().accounts == accounts[:24]
    payloads = [decode_uri(d.decode()) for p in sorted(out.iterdir()) for d in scan_image(p)]
    assert [p["batch_index"] for p in payloads] == [0, 1, 2] and {p["batch_size"] for p in payloads} == {3}


@needs_zbarimg
def test_written_images_read_by_zbar(tmp_path):
    out = tmp_path / "codes"
    store(out).write_all(MIXED)
    got = []
    for p in sorted(out.iterdir()):
        proc = subprocess.run([ZBARIMG, "-q", "--raw", str(p)], capture_output=True, text=True)
        got.append(proc.stdout.strip())
    assert got == [format_uri(a) for a in MIXED]


def test_never_writes_into_a_folder_that_holds_files(tmp_path):
    out = tmp_path / "codes"
    out.mkdir()
    (out / "keep.png").write_bytes(b"mine")
    with pytest.raises(DataLossRefused) as err:
        store(out).apply(MIXED)
    assert err.value.exit_code == 6
    assert [p.name for p in out.iterdir()] == ["keep.png"] and (out / "keep.png").read_bytes() == b"mine"
    with pytest.raises(UsageError):
        store(tmp_path / "new", codes="svg").apply(MIXED)


def test_terminal_drawing(tmp_path, monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(qrmod, "terminal_stream", lambda: screen)
    s = store("-", codes="gauth")
    s.apply([one_account(i) for i in range(12)])
    text = screen.getvalue()
    assert "Google Authenticator transfer code 1 of 2" in text and "code 2 of 2" in text
    assert text.count("\u2580") + text.count("\u2584") + text.count("\u2588") > 200
    assert any("clear the terminal" in w for w in s.warnings)
    assert not any(p.name == "-" for p in Path.cwd().iterdir())
    # what is drawn scans back: half blocks to pixels, then the decoder
    drawings = [block for block in text.split("\n\n") if "\u2588" in block]
    uris = migration_uris([one_account(i) for i in range(12)])
    assert len(drawings) == 2
    got = [scan_image(save(_half_blocks_to_image(d), tmp_path / f"t{k}.png", "PNG")) for k, d in enumerate(drawings)]
    assert [decode_uri(g[0].decode())["otp"] for g in got] == [decode_uri(u)["otp"] for u in uris]


def _half_blocks_to_image(drawing: str) -> Image.Image:
    rows = [line for line in drawing.splitlines() if line and set(line) <= set(" \u2580\u2584\u2588")]
    width = max(len(r) for r in rows)
    image = Image.new("L", (width, 2 * len(rows)), 0)
    upper = {"\u2588": (255, 255), "\u2580": (255, 0), "\u2584": (0, 255), " ": (0, 0)}
    for y, row in enumerate(rows):
        for x, ch in enumerate(row):
            top, bottom = upper[ch]
            image.putpixel((x, 2 * y), top)
            image.putpixel((x, 2 * y + 1), bottom)
    return image.resize((image.width * 6, image.height * 6), Image.NEAREST)


def test_terminal_refuses_a_pipe(monkeypatch):
    monkeypatch.setattr(qrmod, "terminal_stream", lambda: None)
    with pytest.raises(UsageError, match="not a terminal"):
        store("-").apply([one_account(1)])


# -- the CLI ---------------------------------------------------------------------------------
def test_list_and_code_take_images_without_a_kind(capsys):
    code, out, err = run(capsys, "list", str(GA_DIR / "example_export.png"), "--json")
    assert code == 0, err
    assert "detected qr" in err
    assert [a["name"] for a in json.loads(out)["accounts"]] == [n for _, n, _ in EXAMPLE_EXPORT]
    code, out, err = run(capsys, "code", str(QR / "dim13_example.png"), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [c["issuer"] for c in doc["codes"]] == ["Example"] and len(doc["codes"][0]["code"]) == 6


def test_cli_non_otp_image_is_exit_4_naming_the_file(capsys):
    code, out, err = run(capsys, "list", str(QR / "qr_but_without_otp.png"))
    assert code == 4 and "qr_but_without_otp.png" in err and "no OTP data" in err
    assert "NOT A" not in err and "Traceback" not in err


def test_convert_help_documents_qr_output():
    from click.testing import CliRunner

    from otpbridge.cli.basic import convert_cmd

    text = CliRunner().invoke(convert_cmd, ["--help"]).output
    assert "--qr [otpauth|gauth]" in text and "qr:-" in text and "secrets in clear" in text
    assert "otpbridge convert keepass:~/otp.kdbx qr:~/otp-codes --qr otpauth" in text


def test_convert_writes_qr_images_and_refuses_misuse(tmp_path, capsys):
    src = f"uris:{tmp_path / 'in.txt'}"
    (tmp_path / "in.txt").write_text("".join(format_uri(a) + "\n" for a in MIXED))
    code, out, err = run(capsys, "convert", src, str(tmp_path / "ga"), "--qr", "gauth")
    assert code == 7 and "Steam" in err and "in clear" in err  # the app holds neither Steam nor 7 digits
    assert len(list((tmp_path / "ga").iterdir())) == 1
    code, out, err = run(capsys, "convert", src, f"qr:{tmp_path / 'ga'}")
    assert code == 6 and "new or empty folder" in err
    code, out, err = run(capsys, "convert", src, f"uris:{tmp_path / 'x.txt'}", "--qr", "otpauth")
    assert code == 2 and "qr:FOLDER" in err
    code, out, err = run(capsys, "convert", src, f"qr:{tmp_path / 'codes'}", "--dry-run")
    assert code == 0 and not (tmp_path / "codes").exists()


def test_missing_extra_names_the_pip_install(tmp_path):
    for module in ("zxingcpp", "PIL"):
        code = textwrap.dedent(
            f"""
            import sys
            sys.modules[{module!r}] = None
            from otpbridge.cli import main
            sys.exit(main(["list", {str(GA_DIR / 'example_export.png')!r}]))
            """
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "pip install 'otpbridge[qr]'" in proc.stderr and "Traceback" not in proc.stderr


def test_plugin_and_detection_import_no_image_library():
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from otpbridge.stores.registry import detect_kind
        assert detect_kind(Path({str(GA_DIR)!r})) == "qr"
        assert detect_kind(Path({str(GA_DIR / 'example_export.png')!r})) == "qr"
        print(sorted(m for m in ("PIL", "zxingcpp", "segno") if m in sys.modules))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_dependency_error_type(monkeypatch):
    monkeypatch.setitem(sys.modules, "zxingcpp", None)
    with pytest.raises(MissingDependencyError) as err:
        store(GA_DIR / "example_export.png").read()
    assert "zxing-cpp" in str(err.value) and err.value.hint == "pip install 'otpbridge[qr]'"


# -- done when: real Google Authenticator screenshots → KeePass, codes equal oathtool's -------
@needs_oathtool
def test_screenshots_folder_into_keepass_codes_equal_oathtool(tmp_path):
    pytest.importorskip("pykeepass")
    db = tmp_path / "otp.kdbx"
    env = {"K_PW": "qr e2e password", "OTPBRIDGE_HOME": str(tmp_path / "home")}
    code, out, err = run_with_env("convert", f"qr:{GA_DIR}", f"keepass:{db}?password-env=K_PW", env=env)
    assert code == 0, err
    read = store(GA_DIR).read().accounts
    expected = dedupe(read)  # the model's identity rule decides what is one account
    assert f"{len(expected)} added" in err
    # the secrets documented upstream for example_export.png, not our decoder's reading
    documented = {(i, n): b32decode(s) for i, n, s in EXAMPLE_EXPORT}
    code, out, err = run_with_env("code", f"keepass:{db}?password-env=K_PW", "--json", env=env)
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["codes"]) == len(expected)
    by_label = {(a.issuer, a.name): a for a in expected}
    for entry in doc["codes"]:
        acc = by_label[(entry["issuer"], entry["name"])]
        if (acc.issuer, acc.name) in documented:
            assert acc.secret == documented[(acc.issuer, acc.name)]
        assert entry["code"] == oathtool_code(acc, doc["time"]), acc.label
    # and the database itself, read without otpbridge: pykeepass sees every account's otp
    from pykeepass import PyKeePass

    kp = PyKeePass(str(db), password=env["K_PW"])
    otps = [e.otp for e in kp.entries if e.otp]
    assert len(otps) == len(expected)
    assert {b32decode(_secret_param(u)) for u in otps} == {a.secret for a in expected}


def _secret_param(uri: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(uri).query)["secret"][0]
