"""Adversarial review of the keepass: store: data loss on apply, leaks, hostile headers.

Each test here first failed against the plugin it reviews (or pins a property the
review checked); see docs/stores/keepass.md "Review findings".
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import struct
import time
from pathlib import Path

import pytest

from otpbridge.core.errors import FormatError, OtpBridgeError
from otpbridge.core.model import Account, Kind
from otpbridge.plugins import keepass_kdbx as kdbx
from tests.support.kdbx import (
    KEEPASSXC,
    E,
    entry_fields,
    kpxc,
    kpxc_import,
    make_kdbx4,
    make_keyfile,
    needs_keepassxc,
)
from tests.test_keepass import S, ctx_with, kstore, secret

# -- data loss: a new account must not land in a field that holds another one ----------------


@pytest.mark.parametrize(
    "otp",
    [f"otpauth://hotp/Bank:joe?secret={S[5]}&counter=3", f"key={S[5]}&type=Hotp&counter=3"],
    ids=["hotp-uri", "keeotp-hotp"],
)
def test_new_totp_never_overwrites_an_hotp_held_in_otp(tmp_path, otp):
    """Same title + user name, the entry's 'otp' holds an HOTP account: it must survive."""
    path = make_kdbx4(tmp_path / "u.kdbx", [E("Bank", "joe", "pw-bank", "", {"otp": otp})])
    report = kstore(path).apply([Account(Kind.TOTP, secret(7), "Bank", "joe")])
    assert len(report.added) == 1
    kinds = {a.secret: a.kind for a in kstore(path).read().accounts}
    assert kinds == {secret(5): Kind.HOTP, secret(7): Kind.TOTP}
    assert entry_fields(path, "Bank")["Password"] == "pw-bank"


def test_new_hotp_never_overwrites_a_lone_hmacotp_counter(tmp_path):
    """'HmacOtp-Counter' without a secret is not a slot, but it is the user's field."""
    path = make_kdbx4(tmp_path / "u.kdbx", [E("Bank", "joe", "pw", "", {"HmacOtp-Counter": "77"})])
    kstore(path).apply([Account(Kind.HOTP, secret(8), "Bank", "joe", counter=1)])
    assert entry_fields(path, "Bank")["HmacOtp-Counter"] == "77"
    assert {a.secret for a in kstore(path).read().accounts} == {secret(8)}


# -- leaks: secrets typed into the wrong field must not reach an EntryError -------------------

LEAK = "QWERTYUIOPASDFGHJKLZXCVBNM234567"  # a Base32 secret, pasted where it does not belong


@pytest.mark.parametrize(
    "fields",
    [
        {"TimeOtp-Secret-Base32": S[1], "TimeOtp-Algorithm": LEAK},
        {"otp": f"key={S[1]}&otpHashMode={LEAK}"},
        {"otp": f"key={S[1]}&type={LEAK}"},
        {"otp": f"otpauth://totp/a?secret={S[1]}&encoder={LEAK}"},
        {"otp": f"otpauth://totp/a?secret={S[1]}&encoding={LEAK}"},
        {"otp": f"otpauth://totp/a?secret={S[1]}&algorithm={LEAK}"},
        {"otp": f"otpauth://totp/a?secret={S[1]}&digits={LEAK}"},
        {"TOTP Seed": S[1], "TOTP Settings": LEAK},
        {"TOTP Seed": S[1], "TOTP Settings": f"30;{LEAK}"},
        {"HmacOtp-Secret-Base32": S[1], "HmacOtp-Counter": LEAK},
        {"TimeOtp-Secret-Hex": LEAK},
        {"TimeOtp-Secret-Base64": LEAK + "!"},
        {"otp": f"otpauth://totp/a?secret={LEAK}1!~"},  # read with a note since issue #15 (below)
        {"otp": f"otpauth://{LEAK}"},  # the secret typed where the type belongs
        {"otp": f"otpauth://totp{LEAK}?x=1"},
        {"otpbridge-hotp": f"otpauth://hotp{LEAK}"},
    ],
)
def test_entry_errors_never_quote_a_pasted_secret(tmp_path, fields):
    path = make_kdbx4(tmp_path / "l.kdbx", [E("Odd", "u", "pw", "", fields)])
    warnings: list[str] = []
    store = kstore(path)
    store.ctx.warn = warnings.append
    result = store.read()
    # A secret of a length no encoder writes is read (as Google Authenticator would) and
    # reported as a warning instead of an error: that text must not quote it either.
    assert result.errors or warnings, "the malformed field should be reported"
    text = " ".join([*(f"{e.where} {e.reason}" for e in result.errors), *warnings])
    for i in range(len(LEAK) - 5):
        assert LEAK[i : i + 6] not in text.upper(), text


# -- hostile headers: fail fast, right exit code, no traceback ----------------------------------


def _kdbx4_with(path: Path, kdf: str = "argon2d", **params: int) -> bytes:
    """A KDBX 4 file whose KDF parameters are replaced in place (SHA-256 of the header fixed)."""
    entries = [E("A", "b", "pw", "", {"otp": f"otpauth://totp/A:b?secret={S[1]}"})]
    data = bytearray(make_kdbx4(path, entries, kdf=kdf, rounds=1000).read_bytes())
    header = kdbx.read_header(bytes(data))
    for name, value in params.items():
        key = name.encode()
        at = data.index(struct.pack("<i", len(key)) + key)
        vlen_at = at + 4 + len(key)
        (vlen,) = struct.unpack_from("<i", data, vlen_at)
        data[vlen_at + 4 : vlen_at + 4 + vlen] = value.to_bytes(vlen, "little")
    end = header.length
    data[end : end + 32] = hashlib.sha256(bytes(data[:end])).digest()
    return bytes(data)


def test_argon2_lanes_beyond_memory_is_a_format_error_not_a_traceback(tmp_path):
    # 1 MiB of memory cannot hold 200 lanes (Argon2 needs 8 KiB per lane): argon2-cffi raises HashingError.
    path = tmp_path / "lanes.kdbx"
    path.write_bytes(_kdbx4_with(tmp_path / "src.kdbx", P=200))
    with pytest.raises(FormatError) as info:
        kstore(path).read()
    assert info.value.exit_code == 4


def test_bitflipped_kdf_parameters_fail_before_deriving(tmp_path, monkeypatch):
    """KDBX 4 stores SHA-256 of the header in clear: a damaged header is caught before any KDF runs."""
    good = _kdbx4_with(tmp_path / "src.kdbx")
    at = good.index(struct.pack("<i", 1) + b"I") + 4 + 1 + 4
    bad = bytearray(good)
    bad[at + 2] ^= 0x01  # iterations 2 -> 65538: minutes of Argon2 on a bit flip
    path = tmp_path / "flip.kdbx"
    path.write_bytes(bytes(bad))

    def no_kdf(*a, **k):
        raise AssertionError("the KDF ran on a damaged header")

    monkeypatch.setattr(kdbx, "derive", no_kdf)
    with pytest.raises(FormatError, match="header"):
        kstore(path).read()


def test_huge_argon2_cost_is_refused_before_deriving(tmp_path, monkeypatch):
    """Each bound alone is generous; their product must be bounded too (4 GiB x 100,000 passes is days)."""
    path = tmp_path / "cost.kdbx"
    path.write_bytes(_kdbx4_with(tmp_path / "src.kdbx", M=4 << 30, I=100_000))
    monkeypatch.setattr(kdbx, "derive", lambda *a, **k: pytest.fail("derived"))
    with pytest.raises(FormatError, match="Argon2"):
        kstore(path).read()


def test_absurd_aes_rounds_with_a_valid_header_hash_are_refused_before_deriving(tmp_path, monkeypatch):
    path = tmp_path / "rounds.kdbx"
    path.write_bytes(_kdbx4_with(tmp_path / "src.kdbx", kdf="aes", R=2**40))
    monkeypatch.setattr(kdbx, "derive", lambda *a, **k: pytest.fail("derived"))
    with pytest.raises(FormatError, match="rounds"):
        kstore(path).read()


def test_wrong_password_on_every_kdf_is_exit_3_and_quick(tmp_path):
    for kdf in ("aes", "argon2d", "argon2id"):
        path = make_kdbx4(tmp_path / f"{kdf}.kdbx", [E("A", "b", "pw", "", {})], kdf=kdf)
        started = time.monotonic()
        with pytest.raises(OtpBridgeError) as info:
            kstore(path, ctx_with("nope")).read()
        assert info.value.exit_code == 3 and time.monotonic() - started < 10


# -- saving: temp files, backup mode ---------------------------------------------------------------


def test_failed_save_leaves_no_temp_file_and_the_database_intact(tmp_path, monkeypatch):
    path = make_kdbx4(tmp_path / "u.kdbx", [E("A", "b", "pw", "", {"otp": f"otpauth://totp/A:b?secret={S[1]}"})])
    before = path.read_bytes()
    real = os.replace

    def boom(src, dst):
        if Path(dst) == path:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        kstore(path).apply([Account(Kind.TOTP, secret(2), "N", "n")])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.kdbx", "u.kdbx.bak"]
    assert (tmp_path / "u.kdbx.bak").read_bytes() == before


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_backup_is_never_more_readable_than_the_original(tmp_path, mode):
    path = make_kdbx4(tmp_path / "u.kdbx", [E("A", "b", "pw", "", {})])
    path.chmod(mode)
    report = kstore(path).apply([Account(Kind.TOTP, secret(2), "N", "n")])
    bak_mode = stat.S_IMODE(report.backup.stat().st_mode)
    assert bak_mode & ~mode == 0
    assert stat.S_IMODE(path.stat().st_mode) & ~0o600 == 0


# -- a KeePassXC database keeps everything but the OTP fields we change ----------------------------

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()
ICON = base64.b64encode(bytes(range(16))).decode()
BIN_UUID = base64.b64encode(bytes(range(16, 32))).decode()


def _rich_xml() -> str:
    attachment = base64.b64encode(b"attachment body \x00\x01 bytes").decode()

    def entry(uuid: int, title: str, user: str, extra: str = "", history: str = "") -> str:
        return (f"<Entry><UUID>{base64.b64encode(bytes([uuid]) * 16).decode()}</UUID><IconID>0</IconID>"
                f"<CustomIconUUID>{ICON}</CustomIconUUID><Tags>t1;t2</Tags>"
                f"<String><Key>Title</Key><Value>{title}</Value></String>"
                f"<String><Key>UserName</Key><Value>{user}</Value></String>"
                f"<String><Key>Password</Key><Value ProtectInMemory=\"True\">pw-{title}</Value></String>"
                f"<String><Key>URL</Key><Value>https://{title}.example</Value></String>"
                f"<String><Key>Notes</Key><Value>line1\nline2</Value></String>{extra}"
                f"<Binary><Key>{title}.txt</Key><Value Ref=\"0\"/></Binary>"
                f"<AutoType><Enabled>True</Enabled><DataTransferObfuscation>0</DataTransferObfuscation>"
                f"<Association><Window>{title}*</Window><KeystrokeSequence>{{USERNAME}}</KeystrokeSequence>"
                f"</Association></AutoType>{history}</Entry>")

    def field(k: str, v: str, prot: bool = False) -> str:
        attr = ' ProtectInMemory="True"' if prot else ""
        return f"<String><Key>{k}</Key><Value{attr}>{v}</Value></String>"

    old = entry(9, "Mail", "fred", field("otp", f"otpauth://totp/Mail:fred?secret={S[3]}", True))
    mail = entry(1, "Mail", "fred", field("otp", f"otpauth://totp/Mail:fred?secret={S[1]}", True)
                 + field("PIN", "4321", True), f"<History>{old}</History>")
    bank = entry(2, "Bank", "joe", field("TOTP Seed", S[2], True) + field("TOTP Settings", "30;6"))
    plain = entry(3, "Plain", "ann", field("Recovery codes", "1111 2222", True))
    gone = entry(4, "Gone", "x", field("otp", f"otpauth://totp/Gone:x?secret={S[4]}", True))
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<KeePassFile><Meta>'
        "<Generator>KeePassXC</Generator><DatabaseName>Family vault</DatabaseName>"
        "<DatabaseDescription>ours</DatabaseDescription><DefaultUserName>fred</DefaultUserName>"
        "<MaintenanceHistoryDays>365</MaintenanceHistoryDays><Color>#FF0000</Color>"
        "<HistoryMaxItems>7</HistoryMaxItems><HistoryMaxSize>6291456</HistoryMaxSize>"
        f"<CustomIcons><Icon><UUID>{ICON}</UUID><Data>{PNG}</Data></Icon></CustomIcons>"
        f"<RecycleBinEnabled>True</RecycleBinEnabled><RecycleBinUUID>{BIN_UUID}</RecycleBinUUID>"
        f"<Binaries><Binary ID=\"0\" Compressed=\"False\">{attachment}</Binary></Binaries>"
        "<CustomData><Item><Key>KPXC_DECRYPTION_TIME_PREFERENCE</Key><Value>100</Value></Item>"
        "<Item><Key>my.plugin</Key><Value>settings</Value></Item></CustomData>"
        f"</Meta><Root><Group><UUID>{base64.b64encode(bytes(16 * [7])).decode()}</UUID><Name>Root</Name>"
        f"<Notes>root notes</Notes>{mail}{bank}{plain}"
        f"<Group><UUID>{BIN_UUID}</UUID><Name>Recycle Bin</Name>{gone}</Group>"
        "</Group></Root></KeePassFile>"
    )


def _export(db: Path, **creds):
    from lxml import etree

    parser = etree.XMLParser(remove_blank_text=True)
    return etree.fromstring(kpxc(["export", "-f", "xml"], db, **creds).stdout.encode(), parser)


def _c14n(el) -> bytes:
    """Canonical bytes, minus KeePassXC export noise: CustomData order and its _LAST_MODIFIED stamps."""
    import copy

    from lxml import etree

    el = copy.deepcopy(el)
    for data in el.iter("CustomData"):
        items = sorted((i for i in data if i.findtext("Key") != "_LAST_MODIFIED"), key=lambda i: i.findtext("Key"))
        for i in list(data):
            data.remove(i)
        data.extend(items)
    return etree.tostring(el, method="c14n")


def _import(xml: str, db: Path, *, password: str | None = "pw", keyfile: Path | None = None) -> Path:
    return kpxc_import(xml, db, password=password, keyfile=keyfile)


@needs_keepassxc
@pytest.mark.parametrize(("creds", "version"), [("password", 3), ("keyfile-only", 3), ("password", 4), ("keyfile-only", 4)])
def test_apply_on_a_keepassxc_database_keeps_everything_else(tmp_path, creds, version):
    keyfile = make_keyfile(tmp_path / "k.key") if creds == "keyfile-only" else None
    kw = {"password": None, "keyfile": keyfile} if keyfile else {}
    xml = _rich_xml()
    if version == 4:  # entry CustomData makes KeePassXC write KDBX 4
        xml = xml.replace("<Tags>t1;t2</Tags>", "<Tags>t1;t2</Tags><CustomData><Item><Key>ek</Key><Value>ev</Value></Item></CustomData>")
    db = _import(xml, tmp_path / "rich.kdbx", **kw)
    header_before = kdbx.read_header(db.read_bytes())
    assert header_before.major == version
    before = _export(db, **kw)
    ctx = ctx_with(None) if keyfile else ctx_with()
    opts = {"keyfile": str(keyfile)} if keyfile else {}
    accounts = {a.secret: a for a in kstore(db, ctx, **opts).read().accounts}
    assert set(accounts) == {secret(1), secret(2)}  # not the history item, not the recycle bin
    report = kstore(db, ctx, **opts).apply(
        [accounts[secret(1)].replace(period=60), Account(Kind.TOTP, secret(5), "Plain", "ann")],
        [accounts[secret(2)], accounts[secret(1)]],  # an edit names the old account too (SPEC §3)
    )
    assert (len(report.updated), len(report.added), len(report.removed)) == (1, 1, 1) and not report.errors
    after = _export(db, **kw)  # keepassxc-cli opens what we wrote
    header_after = kdbx.read_header(db.read_bytes())
    assert (header_after.major, header_after.minor) == (header_before.major, header_before.minor)
    assert (header_after.kdf.kind, header_after.kdf.rounds) == (header_before.kdf.kind, header_before.kdf.rounds)
    for part in ("DatabaseName", "DatabaseDescription", "DefaultUserName", "Color", "HistoryMaxItems",
                 "CustomIcons", "RecycleBinUUID", "Binaries"):
        a, b = before.find(f"Meta/{part}"), after.find(f"Meta/{part}")
        assert (a is None) == (b is None) and (a is None or _c14n(a) == _c14n(b)), part

    def custom_data(root):  # KeePassXC's export orders items at random and stamps _LAST_MODIFIED
        items = root.iterfind("Meta/CustomData/Item")
        return {i.findtext("Key"): i.findtext("Value") for i in items if i.findtext("Key") != "_LAST_MODIFIED"}

    assert custom_data(before) == custom_data(after) and custom_data(after)["my.plugin"] == "settings"
    assert _c14n(before.find("Root/Group/Group")) == _c14n(after.find("Root/Group/Group"))  # recycle bin

    def by_title(root):
        return {e.findtext("String[Key='Title']/Value"): e for e in root.iterfind("Root/Group/Entry")}

    old, new = by_title(before), by_title(after)
    assert set(old) == set(new) == {"Mail", "Bank", "Plain"}
    for title in old:
        o, n = old[title], new[title]
        for tag in ("UUID", "CustomIconUUID", "Tags", "AutoType", "Binary", "CustomData"):
            a, b = o.find(tag), n.find(tag)
            assert (a is None) == (b is None) and (a is None or _c14n(a) == _c14n(b)), (title, tag)
        otp_keys = {"otp", "TOTP Seed", "TOTP Settings"}
        strings = lambda e: {s.findtext("Key"): s.findtext("Value") for s in e.iterfind("String")}  # noqa: E731
        so, sn = strings(o), strings(n)
        assert {k: v for k, v in so.items() if k not in otp_keys} == {k: v for k, v in sn.items() if k not in otp_keys}
        old_hist = [_c14n(h) for h in o.iterfind("History/Entry")]
        new_hist = [_c14n(h) for h in n.iterfind("History/Entry")]
        assert new_hist[: len(old_hist)] == old_hist, title  # earlier history kept as it was
    assert "TOTP Seed" not in {s.findtext("Key") for s in new["Bank"].iterfind("String")}
    shown = kpxc(["show", "-s", "-a", "Password", "-a", "otp", "Mail"], db, **kw).stdout
    assert "pw-Mail" in shown and "period=60" in shown


# -- KDBX 3.1 (no header checksum outside the encrypted XML) under random damage ---------------------


@pytest.fixture(scope="module")
def kpxc31(tmp_path_factory) -> bytes:
    if KEEPASSXC is None:
        pytest.skip("keepassxc-cli is not installed")
    return _import(_rich_xml(), tmp_path_factory.mktemp("k31") / "k31.kdbx").read_bytes()


@needs_keepassxc
def test_damaged_kdbx31_raises_only_exit_3_or_4(kpxc31, tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    rounds = kdbx.read_header(kpxc31).kdf.rounds

    @given(data=st.data())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(data):
        blob = bytearray(kpxc31)
        for pos, xor in data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)), min_size=1, max_size=3)):
            blob[pos] ^= xor
        if data.draw(st.booleans()):
            blob = blob[: data.draw(st.integers(0, len(blob)))]
        path = tmp_path / "bad31.kdbx"
        path.write_bytes(bytes(blob))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kdbx, "MAX_AES_ROUNDS", rounds * 2)  # a flipped rounds field must not cost minutes here
            try:
                kstore(path).read()
            except OtpBridgeError as exc:
                assert exc.exit_code in (3, 4), exc

    check()


# -- a save by KeePass between the sync's read() and its apply() -------------------------------------


def test_a_save_between_read_and_apply_is_not_overwritten(tmp_path):
    """The engine reads, works (uploads…), then applies: a KeePass save in between must win.

    Here KeePass used an HOTP code (counter 42 -> 60); applying the counter the engine
    computed from the older read (50) would move it backwards and replay used codes.
    """
    from pykeepass import PyKeePass

    path = make_kdbx4(tmp_path / "u.kdbx", [E("Hotp", "max", "pw", "", {"HmacOtp-Secret-Base32": S[13], "HmacOtp-Counter": "42"})])
    store = kstore(path)
    (hotp,) = store.read().accounts
    kp = PyKeePass(str(path), "pw")
    kp.find_entries(title="Hotp", first=True).set_custom_property("HmacOtp-Counter", "60")
    kp.save()
    with pytest.raises(OtpBridgeError, match="changed on disk"):
        store.apply([hotp.replace(counter=50)])
    assert entry_fields(path, "Hotp")["HmacOtp-Counter"] == "60"
    # The same store object keeps working once it has seen its own save.
    fresh = kstore(path)
    (now,) = fresh.read().accounts
    assert fresh.apply([now.replace(counter=61)]).updated
    assert fresh.apply([now.replace(counter=62)]).updated
    assert entry_fields(path, "Hotp")["HmacOtp-Counter"] == "62"
