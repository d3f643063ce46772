"""Issue #15, part 2: secrets whose Base32 length no encoder writes (9, 11, 14, 17, 19 … chars).

Real files (tests/fixtures/README-identity.md): 2FAS for iOS and Android, Ente Auth and
Bitwarden exports from Proton's importer test suite, holding such secrets. Each app reads
them its own way and shows codes for the bytes it read, so otpbridge reads them as the
app that wrote the file does. The oracles below are line-by-line ports of the apps'
decoders (kept apart from the compact rule in otpbridge.model) plus the output of the
real Apache Commons Codec 1.20.0 (2FAS for Android's decoder), run once with Java:
none of the apps publishes code vectors for these lengths, so the vectors are their own
decoders' bytes, turned into codes by oathtool.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import subprocess
from pathlib import Path

import pytest

from otpbridge.core.codes import code_at
from otpbridge.core.model import Account, Kind, b32decode, b32encode
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import open_store
from tests.support.oracles import OATHTOOL, needs_oathtool, oathtool_code

FIXTURES = Path(__file__).parent / "fixtures"
TWOFAS_IOS = FIXTURES / "twofas/proton-pass-common/decrypted_ios.2fas"
TWOFAS_ANDROID = FIXTURES / "twofas/proton-pass-common/decrypted_with_hotp_missing_period.2fas"
TWOFAS_MANUAL = FIXTURES / "twofas/proton-pass-common/decrypted_with_manual_entries.2fas"
ENTE = FIXTURES / "ente_auth/proton-pass-common/plain_with_hotp.txt"
BITWARDEN = FIXTURES / "bitwarden/proton-pass-common/bitwarden_sample.csv"

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
TIMES = (0, 1_111_111_109, 1_741_011_292, 2_000_000_000)


# -- the apps' decoders, ported line by line ----------------------------------------------
def rust_base32_crate(text: str) -> bytes:
    """Proton (Pass and Authenticator, via totp-rs) and the Rust ``base32`` crate's ``decode``."""
    data = text.upper().encode()
    output_length = len(data.rstrip(b"=")) * 5 // 8
    ret = bytearray()
    for i in range(0, len(data), 8):
        buf = [0] * 8
        for j, c in enumerate(data[i : i + 8]):
            buf[j] = ALPHABET.index(chr(c))
        ret += bytes([
            (buf[0] << 3 | buf[1] >> 2) & 255,
            (buf[1] << 6 | buf[2] << 1 | buf[3] >> 4) & 255,
            (buf[3] << 4 | buf[4] >> 1) & 255,
            (buf[4] << 7 | buf[5] << 2 | buf[6] >> 3) & 255,
            (buf[6] << 5 | buf[7]) & 255,
        ])
    return bytes(ret[:output_length])


def dart_base32_2_1_3(text: str) -> bytes:
    """Ente Auth: Dart ``otp`` 3.1.4 → ``base32`` 2.1.3 ``decode`` (remainders 1, 3, 6 add nothing)."""
    s = text.upper()
    count = len(s) >> 3 << 3
    v = [ALPHABET.index(c) for c in s]
    out = bytearray()
    for i in range(0, count, 8):
        v1, v2, v3, v4, v5, v6, v7, v8 = v[i : i + 8]
        out += bytes([(v1 << 3 | v2 >> 2) & 255, (v2 << 6 | v3 << 1 | v4 >> 4) & 255, (v4 << 4 | v5 >> 1) & 255,
                      (v5 << 7 | v6 << 2 | v7 >> 3) & 255, (v7 << 5 | v8) & 255])
    rest = v[count:] + [0] * 8
    remain = len(s) - count
    firsts = {2: 1, 4: 2, 5: 3, 7: 4}.get(remain, 0)
    v1, v2, v3, v4, v5, v6, v7 = rest[:7]
    tail = [(v1 << 3 | v2 >> 2) & 255, (v2 << 6 | v3 << 1 | v4 >> 4) & 255, (v4 << 4 | v5 >> 1) & 255,
            (v5 << 7 | v6 << 2 | v7 >> 3) & 255]
    return bytes(out + bytes(tail[:firsts]))


def mf_base32(text: str) -> bytes:
    """2FAS for iOS: ``MF_Base32Codec dataFromBase32String`` (paddingAdjustment {0,1,1,1,2,3,3,4})."""
    values = [ALPHABET.index(c) for c in text.upper()]
    out = bytearray()
    block: list[int] = []
    for c in values:
        block.append(c)
        if len(block) == 8:
            b = block
            out += bytes([(b[0] << 3 & 0xF8) | (b[1] >> 2 & 0x07), (b[1] << 6 & 0xC0) | (b[2] << 1 & 0x3E) | (b[3] >> 4 & 1),
                          (b[3] << 4 & 0xF0) | (b[4] >> 1 & 0x0F), (b[4] << 7 & 0x80) | (b[5] << 2 & 0x7C) | (b[6] >> 3 & 3),
                          (b[6] << 5 & 0xE0) | (b[7] & 0x1F)])
            block = []
    if block:
        b = block + [0] * (8 - len(block))
        tail = bytes([(b[0] << 3 & 0xF8) | (b[1] >> 2 & 0x07), (b[1] << 6 & 0xC0) | (b[2] << 1 & 0x3E) | (b[3] >> 4 & 1),
                      (b[3] << 4 & 0xF0) | (b[4] >> 1 & 0x0F), (b[4] << 7 & 0x80) | (b[5] << 2 & 0x7C) | (b[6] >> 3 & 3),
                      (b[6] << 5 & 0xE0)])
        out += tail[: (0, 1, 1, 1, 2, 3, 3, 4)[len(block)]]
    return bytes(out)


def commons_codec_lenient(text: str) -> bytes:
    """2FAS for Android: Apache Commons Codec ``new Base32().decode`` (lenient; EOF switch falls through)."""
    work, modulus, out = 0, 0, bytearray()
    for c in text.upper():
        work = (work << 5) + ALPHABET.index(c)
        modulus = (modulus + 1) % 8
        if modulus == 0:
            out += bytes((work >> s) & 255 for s in (32, 24, 16, 8, 0))
    if modulus in (1, 2):  # case 1 falls through to case 2
        out.append(work >> 2 & 255)
    elif modulus == 3:
        out.append(work >> 7 & 255)
    elif modulus == 4:
        out += bytes(((work >> 4) >> s) & 255 for s in (8, 0))
    elif modulus == 5:
        out += bytes(((work >> 1) >> s) & 255 for s in (16, 8, 0))
    elif modulus == 6:
        out += bytes(((work >> 6) >> s) & 255 for s in (16, 8, 0))
    elif modulus == 7:
        out += bytes(((work >> 3) >> s) & 255 for s in (24, 16, 8, 0))
    return bytes(out)


def bitwarden_b32_to_bytes(text: str) -> bytes:
    """Bitwarden clients' ``b32ToBytes``: 5-bit groups as a bit string, read 4 bits (a hex nibble) at a time."""
    bits = "".join(format(ALPHABET.index(c), "05b") for c in text.upper())
    hexa = "".join(format(int(bits[i : i + 4], 2), "x") for i in range(0, len(bits) - 3, 4))
    return bytes.fromhex(hexa[: len(hexa) // 2 * 2])


#: ``new org.apache.commons.codec.binary.Base32().decode(s)`` from commons-codec 1.20.0 (the
#: version 2FAS for Android pins in gradle/libs.versions.toml), compiled from its release tag
#: and run with Java for this test: the real library's bytes, not our reading of its code.
COMMONS_CODEC_1_20 = {
    "JDJDBDBDDBDBBXBXB": "48d2308c23184610dc37b8",
    "JDJDUZBXHSHDBXBXHBB": "48d23a64373c8e30dc3738",
    "gfjdhdjdjdjdnjdjf": "3152338d2348d236a46949",
    "hxoxhdjdbdjfjfjhf": "3ddd738d2308d254952739",
    "hssjdhhxhxh": "3ca4919cf73d",
    "xbjzbxbxbcbcbb": "b85390dc37088220",
    "irnshxhxbxbxbbxbb": "445b23dcf70dc37086e108",
    "ndjdfbdnfjdjdjfjhfh": "68d232846d2a4691a4a939",
    "JDKSNDJJDNDJJDBXB": "48d5268d291b46948c37b8",
}
SHORT = sorted(COMMONS_CODEC_1_20)
ORACLES = {"bits": rust_base32_crate, "ente": dart_base32_2_1_3, "2fas-ios": mf_base32, "2fas-android": commons_codec_lenient}


def hotp(key: bytes, counter: int, digits: int = 6, digest=hashlib.sha1) -> str:
    """RFC 4226, written out: the code any app computes from these key bytes."""
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 15
    return str((struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**digits).zfill(digits)


def read(kind: str, path: Path):
    warnings: list[str] = []
    result = open_store(StoreSpec(kind, str(path), {}), Context(environ={}, warn=warnings.append, info=lambda m: None)).read()
    return result, warnings


# -- the rule ---------------------------------------------------------------------------------------
def test_the_oracles_are_the_apps_decoders():
    """Our port of Commons Codec gives what the real library gave; Bitwarden reads as Proton."""
    for text, expected in COMMONS_CODEC_1_20.items():
        assert commons_codec_lenient(text).hex() == expected
        assert bitwarden_b32_to_bytes(text) == rust_base32_crate(text)
    for text in ("JBSWY3DPEHPK3PXP", "JBSWY3DPEE", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"):  # ordinary lengths agree
        assert len({f(text) for f in ORACLES.values()} | {bitwarden_b32_to_bytes(text)}) == 1


@pytest.mark.parametrize("rule", sorted(ORACLES))
@pytest.mark.parametrize("text", SHORT + ["ABCDEFGHB", "AAAAAAA7B", "ABC", "ABCDEFGHIJKLMN"])
def test_each_rule_reads_as_its_app(rule, text):
    if not ORACLES[rule](text):
        with pytest.raises(ValueError, match="no whole byte"):  # nothing left: an error, not b""
            b32decode(text, rule=rule)
        return
    got = b32decode(text, rule=rule)
    assert got == ORACLES[rule](text)
    assert b32decode(text.lower(), rule=rule) == got
    assert "non-standard" in got.note and f"{len(text)} Base32 characters" in got.note
    assert text.upper()[:6] not in got.note.upper()  # lengths only, never the secret


def test_the_apps_disagree_so_the_writer_matters():
    # 17 characters: Proton/Bitwarden/Ente drop the last 5 bits; 2FAS keeps a byte, two ways.
    readings = {rule: b32decode("JDJDBDBDDBDBBXBXB", rule=rule).hex() for rule in ORACLES}
    assert readings == {"bits": "48d2308c23184610dc37", "ente": "48d2308c23184610dc37",
                        "2fas-ios": "48d2308c23184610dc3708", "2fas-android": "48d2308c23184610dc37b8"}
    # 14 characters: Ente drops the whole last group; the others keep 3 more bytes.
    assert len(b32decode("xbjzbxbxbcbcbb", rule="ente")) == 5
    assert len(b32decode("xbjzbxbxbcbcbb", rule="bits")) == 8


def test_ordinary_lengths_carry_no_note_and_nothing_is_empty():
    assert type(b32decode("JBSWY3DPEHPK3PXP")) is bytes
    with pytest.raises(ValueError, match="no whole byte"):
        b32decode("A")
    with pytest.raises(ValueError, match="no whole byte"):
        b32decode("ABC", rule="ente")


# -- the files ----------------------------------------------------------------------------------------
CASES = [
    # (kind, file, rule of the app that wrote it, {label: Base32 text in the file})
    ("2fas", TWOFAS_IOS, "2fas-ios", {"Code1 2FAS": "JDJDBDBDDBDBBXBXB", "Code2 2FAS": "JDJDUZBXHSHDBXBXHBB"}),
    ("2fas", TWOFAS_ANDROID, "2fas-android",
     {"Item1 (Additional item)": "gfjdhdjdjdjdnjdjf", "Item512 (Additional info)": "hxoxhdjdbdjfjfjhf"}),
    ("2fas", TWOFAS_MANUAL, "2fas-android", {"Manual": "hssjdhhxhxh"}),
    ("ente", ENTE, "ente", {"account": "xbjzbxbxbcbcbb", "title no issuer": "irnshxhxbxbxbbxbb",
                            "hotpitem (account1)": "ndjdfbdnfjdjdjfjhfh"}),
    ("bitwarden", BITWARDEN, "bits", {"Code1": "JDKSNDJJDNDJJDBXB"}),
]


@pytest.mark.parametrize("kind, path, rule, short", CASES, ids=[c[1].name for c in CASES])
def test_files_read_every_short_secret_as_the_writing_app_does(kind, path, rule, short):
    result, warnings = read(kind, path)
    by_label = {a.label: a for a in result.accounts}
    for label, text in short.items():
        acc = by_label[label]
        assert acc.secret == ORACLES[rule](text), label
        if rule == "2fas-android":
            assert acc.secret.hex() == COMMONS_CODEC_1_20[text]
        # codes are the app's: HMAC over the bytes the app decoded
        for t in TIMES:
            step = t // acc.period if acc.kind is not Kind.HOTP else acc.counter
            digest = getattr(hashlib, acc.algorithm.value.lower())
            assert code_at(acc, t) == hotp(ORACLES[rule](text), step, acc.digits, digest)
    # one warning per non-standard account, saying it, never quoting the secret
    noted = [w for w in warnings if "non-standard secret" in w]
    assert len(noted) == len(short)
    for label, text in short.items():
        assert any(f": {label}: non-standard secret" in w for w in noted), (label, noted)
    joined = " ".join(warnings).upper()
    for text in short.values():
        assert text.upper()[:8] not in joined
    assert "written back as the canonical Base32" in noted[0]


def test_a_whole_2fas_ios_export_is_read():
    result, _ = read("2fas", TWOFAS_IOS)
    assert len(result.accounts) == 2 and result.errors == []  # was 0 accounts, 2 errors


def test_warned_once_per_account_even_when_read_twice():
    warnings: list[str] = []
    store = open_store(StoreSpec("2fas", str(TWOFAS_IOS), {}), Context(environ={}, warn=warnings.append, info=lambda m: None))
    store.read()
    store.read()
    assert len([w for w in warnings if "non-standard" in w]) == 2


def test_an_ente_uri_read_as_a_plain_uri_list_is_still_read_as_ente_reads_it(tmp_path):
    line = ENTE.read_text().splitlines()[0]  # 14 characters: Ente keeps 5 bytes, Proton 8
    (tmp_path / "one.txt").write_text(line + "\n")
    result, warnings = read("uris", tmp_path / "one.txt")
    assert result.accounts[0].secret == dart_base32_2_1_3("xbjzbxbxbcbcbb")
    assert "as Ente Auth reads it" in warnings[0]


@needs_oathtool
@pytest.mark.parametrize("kind, path, rule, short", CASES, ids=[c[1].name for c in CASES])
def test_oathtool_agrees_on_the_canonical_form(kind, path, rule, short):
    """oathtool refuses the short text (it is not Base32) but reads our canonical Base32 of the
    bytes, and computes the codes the source app shows."""
    result, _ = read(kind, path)
    by_label = {a.label: a for a in result.accounts}
    for label, text in short.items():
        acc = by_label[label]
        refused = subprocess.run([OATHTOOL, "-b", "--totp", text], capture_output=True, text=True)
        assert refused.returncode != 0
        if acc.kind is Kind.HOTP or acc.algorithm.value != "SHA1" or acc.digits not in (6, 7, 8):
            continue
        for t in TIMES:
            canonical = subprocess.run(
                [OATHTOOL, "-b", "--totp=sha1", f"--digits={acc.digits}", f"--time-step-size={acc.period}s",
                 f"--now=@{t}", b32encode(acc.secret)],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            assert canonical == code_at(acc, t) == oathtool_code(acc, t)


@pytest.mark.parametrize("dest", ["uris", "2fas", "ente", "aegis"])
def test_writes_hold_the_canonical_base32_of_the_same_bytes(tmp_path, dest):
    source, _ = read("2fas", TWOFAS_IOS)
    target = tmp_path / f"out.{dest}"
    ctx = Context(environ={}, warn=lambda m: None, info=lambda m: None)
    open_store(StoreSpec(dest, str(target), {}), ctx).apply(source.accounts)
    text = target.read_text()
    for acc in source.accounts:
        canonical = b32encode(acc.secret)
        assert len(canonical) == 18 and canonical in text  # 11 bytes, as 2FAS for iOS read them
    assert "JDJDBDBDDBDBBXBXB" not in text.replace("JDJDBDBDDBDBBXBXBA", "")  # the short form is gone
    again, warnings = read(dest, target)
    assert sorted(a.secret for a in again.accounts) == sorted(a.secret for a in source.accounts)
    assert not [w for w in warnings if "non-standard" in w]


def test_proton_published_vectors_hold():
    """Proton's own published code vectors (proton-pass-totp tests/edent.rs and the
    Android client test): the TOTP computation itself matches the app."""
    edent = Account(Kind.TOTP, b32decode("QWERTYUIOP"), "issuer", "account name")
    assert code_at(edent, 1741011292) == "419231"
    mine = Account(Kind.TOTP, b32decode("MYSECRET"), "MYISSUER", "MYLABEL", "SHA256", 8, 15)
    assert code_at(mine, 1739284795) == "44326356"
    assert code_at(mine, 1739284795 + 15) == "14336450"
