"""Issue #15, part 3: smaller import defects, each shown on a real file (tests/fixtures,
sources in tests/fixtures/README-identity.md) or with the real client."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from otpbridge.core.codes import code_at
from otpbridge.core.model import Account, Kind
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import detect_kind, open_store
from tests.support.cli import run_with_env
from tests.support.gpg import GPG, PASS, kill_agent, needs_gpg
from tests.support.kdbx import KEEPASSXC, needs_keepassxc
from tests.support.paths import FIXTURES as SHARED_FIXTURES

FIXTURES = Path(__file__).parent / "fixtures"
PASS_IMPORT = FIXTURES / "pass/pass-import"


def read(kind: str, path: Path, **environ: str):
    warnings: list[str] = []
    store = open_store(StoreSpec(kind, str(path), {}), Context(environ=environ, warn=warnings.append, info=lambda m: None))
    return store.read(), warnings


# -- pass: hidden files and folders ----------------------------------------------------------------
@pytest.fixture
def pass_import_store(tmp_path, monkeypatch):
    """pass-import's own test store (made with pass; it keeps `.ignore/filename.gpg` and
    `CornerCases/.filename.gpg`) and the key it is encrypted to (pass's "pass test key 1")."""
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))  # short: gpg-agent socket path limit
    shutil.copytree(PASS_IMPORT / "gnupg", home, dirs_exist_ok=True)
    for d in (home, home / "private-keys-v1.d"):
        d.chmod(0o700)
    (home / "gpg-agent.conf").write_text("pinentry-program /bin/false\n")
    store = tmp_path / "pass-store"
    shutil.copytree(PASS_IMPORT / "pass-store", store)
    monkeypatch.setenv("GNUPGHOME", str(home))
    yield store, home
    kill_agent(home)
    shutil.rmtree(home, ignore_errors=True)


@needs_gpg
def test_pass_ignores_hidden_files_and_folders_like_pass_ls(pass_import_store):
    store, home = pass_import_store
    assert (store / ".ignore/filename.gpg").exists() and (store / "CornerCases/.filename.gpg").exists()
    result, _ = read("pass", store, GNUPGHOME=str(home))
    assert result.errors == []  # the two hidden, empty .gpg files were "not gpg-encrypted" entries: exit 7
    assert [(a.issuer, a.name, a.folder) for a in result.accounts] == [("mastodon.social", "ostqxi", "Social")]
    code, out, err = run_with_env("list", f"pass:{store}", env={"GNUPGHOME": str(home)})
    assert code == 0, err
    assert "mastodon.social" in out and ".filename" not in out + err and ".ignore" not in out + err


@needs_gpg
def test_pass_fingerprint_ignores_hidden_files(pass_import_store):
    store, home = pass_import_store
    ps = open_store(StoreSpec("pass", str(store), {}), Context(environ={"GNUPGHOME": str(home)}))
    before = ps.fingerprint()
    (store / ".ignore/filename.gpg").write_bytes(b"changed")
    assert ps.fingerprint() == before
    (store / ".gpg-id").write_text((store / ".gpg-id").read_text() + "\n")
    assert ps.fingerprint() != before  # recipients still count


@pytest.mark.skipif(PASS is None or GPG is None, reason="pass is not installed")
def test_pass_lists_what_we_read(pass_import_store):
    store, home = pass_import_store
    env = {"PASSWORD_STORE_DIR": str(store), "GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}
    listing = subprocess.run([PASS, "ls"], capture_output=True, text=True, env=env, check=True).stdout
    # tree (behind 'pass ls') hides dot names; CornerCases/filename (no dot) is listed
    assert ".filename" not in listing and ".ignore" not in listing and "mastodon.social" in listing


# -- Bitwarden ------------------------------------------------------------------------------------
def test_bitwarden_csv_reads_login_totp_whatever_the_type_column_holds():
    path = FIXTURES / "bitwarden/proton-pass-common/bitwarden.csv"  # type=1, no login_username column
    result, _ = read("bitwarden", path)
    assert result.errors == []
    got = {(a.kind, a.issuer, a.name, a.digits, a.period) for a in result.accounts}
    assert got == {
        (Kind.TOTP, "ISSUER", "LABEL_256_8_15", 8, 15),
        (Kind.TOTP, "ISSUER_DEFAULT", "LABEL_DEFAULT", 6, 30),
        (Kind.STEAM, "SteamName", "", 5, 30),
        (Kind.TOTP, "SevenDigits", "Seven digit username", 7, 30),
    }
    assert detect_kind(path) == "bitwarden"
    code, out, err = run_with_env("list", str(path))
    assert code == 0 and "4 account(s)" in err and "SevenDigits" in out, err


def test_bitwarden_csv_with_login_type_text_still_reads():
    result, _ = read("bitwarden", FIXTURES / "bitwarden/proton-pass-common/bitwarden_sample.csv")
    assert [a.issuer for a in result.accounts] == ["Code 2", "Code 3", "Code1"] and result.errors == []


def test_bitwarden_json_without_encrypted_key_is_detected():
    path = FIXTURES / "bitwarden/keepassxc/bitwarden_export.json"  # KeePassXC's test export: no "encrypted"
    assert detect_kind(path) == "bitwarden"
    result, _ = read("bitwarden", path)
    assert [(a.issuer, a.name, a.folder, a.secret_b32) for a in result.accounts] == [
        ("Google", "myusername@gmail.com", "My Folder", "DFDFDEA")
    ]
    code, _, err = run_with_env("list", str(path))
    assert code == 0 and "detected bitwarden" in err


# -- Ente ---------------------------------------------------------------------------------------------
def test_ente_code_display_is_form_encoded():
    result, _ = read("ente", FIXTURES / "ente_auth/proton-pass-common/plain_with_hotp.txt")
    notes = {a.label: a.note for a in result.accounts}
    assert notes["hotpitem (account1)"] == "notes djdhhx"  # written by Ente as notes+djdhhx
    assert notes["issuer (account)"] == "jddnhdxhhdjdhhdhdhxhh"
    assert [e.where for e in result.errors] == ["line 3"]  # the trashed code, skipped with a reason


def test_ente_plus_and_percent_2b_round_trip(tmp_path):
    acc = Account(Kind.TOTP, b"0123456789", "Acme", "joe", note="a+b c", folder="x y+z")
    target = tmp_path / "e.txt"
    ctx = Context(environ={}, warn=lambda m: None, info=lambda m: None)
    open_store(StoreSpec("ente", str(target), {}), ctx).apply([acc])
    (back,) = read("ente", target)[0].accounts
    assert (back.note, back.folder) == ("a+b c", "x y+z")


# -- 2FAS -----------------------------------------------------------------------------------------------
def test_2fas_names_from_link_and_issuer_over_service_name():
    result, _ = read("2fas", FIXTURES / "twofas/proton-pass-common/decrypted_with_manual_entries.2fas")
    got = [(a.issuer, a.name) for a in result.accounts]
    # Proton's importer test (parser.rs handles_manual_entries) expects these 11 TOTP names;
    # we also read the HOTP service Proton skips.
    assert got == [
        ("Amazon", "some@test.email"),
        ("GitHub", "Test-acc"),  # otp.account empty: the name comes from otp.link
        ("Facebook", "random.sometest"),  # ditto, a label without issuer
        ("Google", "some@test.email"),
        ("LinkedIn", "some@test.email"),
        ("Binance.com", "some@test.email"),  # otp.issuer, not the service name "Binance"
        ("kick", "some@test.email"),  # otp.issuer, not "Kick"
        ("Proton", "sometestaccount@proton.me"),
        ("Service name hotp", ""),
        ("Reddit", "Some-Account1234"),
        ("20", ""),
        ("Manual", ""),
    ]
    assert result.errors == []


# -- Google Authenticator -------------------------------------------------------------------------
def test_gauth_file_of_only_comments_is_an_empty_export():
    path = FIXTURES / "google_authenticator/extract_otp_secrets/only_comments.txt"
    result, _ = read("gauth", path)
    assert result.accounts == [] and result.errors == []
    code, out, err = run_with_env("list", f"gauth:{path}")
    assert code == 0, err
    assert "0 account(s)" in err


# -- KeePass writes -------------------------------------------------------------------------------
KP_ENV = {"OTPBRIDGE_KEEPASS_PASSWORD": "pw", "OTPBRIDGE_STORE_PASSWORD": "pw"}


def test_keepass_warns_about_periods_over_60_seconds(tmp_path):
    src = FIXTURES / "twofas/proton-pass-common/decrypted_with_hotp_missing_period.2fas"  # Item256: 90 s
    code, _, err = run_with_env("convert", f"2fas:{src}", f"keepass:{tmp_path / 'db.kdbx'}", env=KP_ENV)
    assert code == 0, err
    period_warnings = [line for line in err.splitlines() if "-second period" in line]
    assert len(period_warnings) == 1 and "Item256 (Bdjdbfjr)" in period_warnings[0]
    assert "90-second" in period_warnings[0] and "KeePassXC 2.7.4 and older" in period_warnings[0]
    (back, _) = read("keepass", tmp_path / "db.kdbx", **KP_ENV)
    assert {a.period for a in back.accounts if a.issuer == "Item256"} == {90}


@needs_keepassxc
def test_keepassxc_shows_what_the_period_warning_says(tmp_path):
    """The real client: KeePassXC up to 2.7.4 computes the 90-second account with a 60-second
    step (the warning's reason); from 2.7.5 it computes it right."""
    src = FIXTURES / "twofas/proton-pass-common/decrypted_with_hotp_missing_period.2fas"
    db = tmp_path / "db.kdbx"
    code, _, err = run_with_env("convert", f"2fas:{src}", f"keepass:{db}", env=KP_ENV)
    assert code == 0, err
    acc = next(a for a in read("2fas", src)[0].accounts if a.period == 90)
    version = subprocess.run([KEEPASSXC, "--version"], capture_output=True, text=True).stdout.strip()
    old = tuple(int(p) for p in version.split(".")[:3]) <= (2, 7, 4)
    for _ in range(3):  # retry across a step boundary
        now = time.time()
        shown = subprocess.run([KEEPASSXC, "show", "-q", "-t", str(db), "/Item256"], input="pw\n",
                               capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        if int(time.time()) // 60 == int(now) // 60:
            break
    expected = code_at(acc.replace(period=60) if old else acc, now)
    assert shown == expected, (version, shown, expected)


def _titles(path: Path) -> list[tuple[str, str, str]]:
    from pykeepass import PyKeePass

    kp = PyKeePass(str(path), password="pw")
    return sorted(("/".join(e.group.path or []), e.title, e.username) for e in kp.entries)


def test_keepass_titles_are_unique_and_readable(tmp_path):
    src = SHARED_FIXTURES / "twofas/2fas-demo-nopass.2fas"  # two accounts of issuer "Example"
    if not src.exists():
        pytest.skip("the shared 2FAS fixture is not present")
    db = tmp_path / "db.kdbx"
    code, _, err = run_with_env("convert", f"2fas:{src}", f"keepass:{db}", env=KP_ENV)
    assert code == 0, err
    titles = _titles(db)
    assert titles == [
        ("", "Example (Other Additional Info)", "Other Additional Info"),
        ("", "Example (alice@google)", "alice@google"),
        ("", "Ledgy", "Additional Info"),
        ("Folder 1", "Example 3", "Example in Folder"),
    ]
    assert len({(f, t) for f, t, _ in titles}) == len(titles)
    source, _ = read("2fas", src)
    back, _ = read("keepass", db, **KP_ENV)
    key = lambda a: (a.issuer, a.name, a.folder, a.secret)  # noqa: E731
    assert sorted(map(key, back.accounts)) == sorted(map(key, source.accounts))  # titles do not leak into names


def test_keepass_title_collisions_keep_round_trips_where_the_title_is_the_issuer(tmp_path):
    """HOTP goes to KeePass's HmacOtp-* fields, which take the issuer from the title: there a
    clash keeps the issuer as the title rather than invent an issuer."""
    accounts = [
        Account(Kind.HOTP, b"1234567890", "Bank", "alice", counter=3),
        Account(Kind.HOTP, b"0987654321", "Bank", "bob", counter=7),
        Account(Kind.TOTP, b"abcdefghij", "Bank", "carol"),
    ]
    db = tmp_path / "db.kdbx"
    ctx = Context(environ=KP_ENV, warn=lambda m: None, info=lambda m: None)
    open_store(StoreSpec("keepass", str(db), {}), ctx).apply(accounts)
    back, _ = read("keepass", db, **KP_ENV)
    assert sorted((a.issuer, a.name, a.counter) for a in back.accounts) == [("Bank", "alice", 3), ("Bank", "bob", 7), ("Bank", "carol", 0)]
    assert ("", "Bank (carol)", "carol") in _titles(db)


@needs_keepassxc
def test_keepassxc_cli_paths_are_unambiguous(tmp_path):
    src = SHARED_FIXTURES / "twofas/2fas-demo-nopass.2fas"
    db = tmp_path / "db.kdbx"
    code, _, err = run_with_env("convert", f"2fas:{src}", f"keepass:{db}", env=KP_ENV)
    assert code == 0, err
    source, _ = read("2fas", src)
    for folder, title, username in _titles(db):
        path = f"/{folder}/{title}" if folder else f"/{title}"
        shown = subprocess.run([KEEPASSXC, "show", "-q", "-a", "UserName", str(db), path], input="pw\n",
                               capture_output=True, text=True, check=True).stdout.strip()
        assert shown == username
        totp = subprocess.run([KEEPASSXC, "show", "-q", "-t", str(db), path], input="pw\n",
                              capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        acc = next(a for a in source.accounts if a.name == username)
        assert totp in {code_at(acc), code_at(acc, time.time() + 1)}


# -- files a text kind cannot read ----------------------------------------------------------------------
# Each of these once gave "not a UTF-8 text file"; the kinds that read them exist now, so a
# file without KIND: is detected, and the same file given to a text kind says what it is.
DETECT = [
    ("qr/qr_but_without_otp.png", "qr", "a PNG image", "otpbridge list qr:FILE"),
    ("proton_pass/PassExport.zip", "proton-pass", "a ZIP archive", "otpbridge list proton-pass:FILE"),
    ("google_authenticator_db/google_authenticator.sqlite", "gauth-db", "an SQLite database", "otpbridge list gauth-db:FILE"),
    ("andotp_gpg/andotp.gpg", "andotp-gpg", "an OpenPGP-encrypted file", "otpbridge list andotp-gpg:FILE"),
]


@pytest.mark.parametrize("name, kind, what, advice", DETECT, ids=[d[1] for d in DETECT])
def test_binary_exports_are_detected_by_content(name, kind, what, advice):
    assert detect_kind(SHARED_FIXTURES / name) == kind


BINARY = [d for d in DETECT if d[1] != "andotp-gpg"]  # that one is ASCII-armoured: text to a text kind


@pytest.mark.parametrize("name, kind, what, advice", BINARY, ids=[d[1] for d in BINARY])
def test_a_binary_export_named_as_a_text_kind_says_what_it_is(name, kind, what, advice):
    code, _, err = run_with_env("list", f"uris:{SHARED_FIXTURES / name}")
    assert code == 4, err  # unchanged exit code for a file that is not of its kind
    assert f"looks like {what}" in err and advice in err
    assert "UTF-8 text file: this looks like" in err


@pytest.mark.parametrize("kind", ["uris", "gauth", "ente"])
def test_a_binary_file_named_as_a_text_kind_says_what_it_is(kind):
    path = SHARED_FIXTURES / "qr/qr_but_without_otp.png"
    code, _, err = run_with_env("list", f"{kind}:{path}")
    assert code == 4, err
    assert "looks like a PNG image" in err and "otpbridge list qr:FILE" in err


def test_an_unknown_binary_file_says_what_it_looks_like(tmp_path):
    odd = tmp_path / "archive.zip"
    odd.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty ZIP archive: no kind reads it
    code, _, err = run_with_env("list", str(odd))
    assert code == 2, err
    assert "looks like a ZIP archive" in err and "UTF-8" not in err


def test_a_pass_entry_given_as_a_file_is_recognised_as_openpgp():
    code, _, err = run_with_env("list", str(PASS_IMPORT / "pass-store/Bank/aib.gpg"))
    assert code == 2 and "OpenPGP" in err


# -- hostile input: clean results, never a traceback --------------------------------------------------------
@pytest.mark.parametrize("link", ["", "otpauth://", "otpauth://totp", "otpauth://totp/%FF%FE:x?secret=A", "not a uri",
                                  "otpauth://totp/" + "A" * 100_000, "otpauth://totp/Iss:%ZZname"])
def test_hostile_2fas_links_never_break_a_read(tmp_path, link):
    from otpbridge.core.otpauth import label_of

    issuer, name = label_of(link)
    assert isinstance(issuer, str) and isinstance(name, str)
    backup = {"schemaVersion": 4, "appOrigin": "android", "groups": [], "services": [
        {"name": "Svc", "secret": "JBSWY3DPEHPK3PXP", "otp": {"account": "", "issuer": "", "link": link, "tokenType": "TOTP"}},
        {"name": "Odd", "secret": "JBSWY3DPEHPK3PXPA", "otp": {"account": "", "link": 7}},
    ]}
    path = tmp_path / "h.2fas"
    path.write_text(json.dumps(backup))
    result, warnings = read("2fas", path)
    assert len(result.accounts) == 2 and result.errors == []
    assert len([w for w in warnings if "non-standard" in w]) == 1


@pytest.mark.parametrize("head", [b"", b"\x89PNG", b"PK", b"\x85", b"SQLite format 3", b"\xff" * 300_000])
def test_unknown_binary_heads_give_a_clean_usage_error(tmp_path, head):
    path = tmp_path / "blob"
    path.write_bytes(head)
    code, _, err = run_with_env("list", str(path))
    assert code == 2 and "cannot tell what kind of file" in err and "Traceback" not in err
