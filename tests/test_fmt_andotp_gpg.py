"""andotp-gpg: — andOTP OpenPGP backups with real gpg and throw-away GnuPG homes."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import given

from otpbridge.core.errors import FormatError, UsageError
from otpbridge.core.model import Kind
from otpbridge.plugins.andotp_gpg import AndOtpGpgStore, first_packet_tag
from otpbridge.stores.base import Context, StoreSpec
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.gpg import needs_gpg
from tests.support.morefmt import MORE, assert_clean_read

AG = MORE / "andotp_gpg"
FIXTURE = AG / "andotp.gpg"
KEY = AG / "pass-import-test-key-1.sec.asc"
pytestmark = needs_gpg


def opener(home):
    def open_store(path, **options):
        warnings: list[str] = []
        env = dict(os.environ, GNUPGHOME=str(home.path))
        env.pop("PASSWORD_STORE_GPG_OPTS", None)
        s = AndOtpGpgStore(StoreSpec("andotp-gpg", str(path), options), Context(environ=env, stats=Counter(), warn=warnings.append))
        s.warnings = warnings
        return s

    return open_store


@pytest.fixture
def keyed(gnupghome):
    """alice's throw-away home plus pass-import's test key 1 (no passphrase), which the fixture is for."""
    gnupghome.run("--import", str(KEY))
    out = gnupghome.run("--with-colons", "--list-keys", "CC9DB947CF90C77B").stdout.decode()
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    gnupghome.run("--import-ownertrust", input=f"{fpr}:6:\n".encode())  # the user's own key is trusted
    return gnupghome


def test_reads_pass_imports_fixture(keyed):
    s = opener(keyed)(FIXTURE)
    result = s.read()
    assert result.errors == [] and len(result.accounts) == 2
    got = [(a.kind, a.name, a.folder, a.counter) for a in result.accounts]
    assert got == [(Kind.TOTP, "alice@google.com", "work", 0), (Kind.HOTP, "bob@google.com", "hack", 10)]
    assert {a.secret_b32 for a in result.accounts} == {"JBSWY3DPEHPK3PXP"}
    assert s.ctx.stats["gpg"] == 1


def test_wrong_key_is_exit_3(gnupghome):
    err = F.assert_wrong_password(opener(gnupghome)(FIXTURE).read)
    assert "2EE5CDCE9B368A49" in str(err) and err.hint


def test_write_armoured_to_a_recipient_and_read_back(keyed, tmp_path):
    path = tmp_path / "otp_accounts.json.gpg"
    accounts = [a.replace(folder="Work" if i % 2 else "") for i, a in enumerate(C.AEGIS_VECTORS)]
    opener(keyed)(path, recipient=keyed.keys.alice.email).write_all(accounts)
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN PGP MESSAGE-----") and b"Deno" not in data
    assert first_packet_tag(data) == 1 and detect_kind(path) == "andotp-gpg"
    assert b'"secret"' in keyed.decrypt(path)  # plain gpg reads what andOTP would restore
    assert opener(keyed)(path).read().accounts == accounts


def test_rewrite_goes_to_the_keys_the_file_was_read_with(keyed, tmp_path):
    path = tmp_path / "b.json.gpg"
    path.write_bytes(FIXTURE.read_bytes())
    new = C.AEGIS_VECTORS[0]
    report = opener(keyed)(path).apply([new])
    assert report.added == [new]
    assert first_packet_tag(path.read_bytes()) == 1
    assert len(opener(keyed)(path).read().accounts) == 3


def test_writing_without_a_recipient_is_a_usage_error(keyed, tmp_path):
    with pytest.raises(UsageError, match="which OpenPGP key"):
        opener(keyed)(tmp_path / "n.json.gpg").write_all(list(C.AEGIS_VECTORS))
    with pytest.raises(UsageError):
        opener(keyed)(tmp_path / "n.json.gpg", recipient="nobody@example.org").write_all(list(C.AEGIS_VECTORS))
    assert not (tmp_path / "n.json.gpg").exists()


def test_a_bad_signature_or_damage_is_exit_4(keyed, tmp_path):
    # a plain (non-OpenPGP) file, and an encrypted file whose body was altered
    plain = tmp_path / "p.json.gpg"
    plain.write_bytes(b"-----BEGIN PGP MESSAGE-----\n\nbm90IHBncA==\n-----END PGP MESSAGE-----\n")
    with pytest.raises(FormatError):
        opener(keyed)(plain).read()
    binary = keyed.run("--dearmor", input=FIXTURE.read_bytes()).stdout
    bad = bytearray(binary)
    bad[len(bad) // 2] ^= 0x40
    path = tmp_path / "x.json.gpg"
    path.write_bytes(bytes(bad))
    assert_clean_read(opener(keyed)(path), codes=(4,))


def test_decrypted_content_that_is_not_andotp_is_exit_4(keyed, tmp_path):
    path = tmp_path / "y.json.gpg"
    path.write_bytes(keyed.run("--armor", "--encrypt", "-r", keyed.keys.alice.email, input=b'{"not": "a list"}').stdout)
    with pytest.raises(FormatError, match="not an andOTP backup"):
        opener(keyed)(path).read()


def test_detection():
    assert detect_kind(FIXTURE) == "andotp-gpg"
    for path in F.other_fixtures(AG):
        assert not AndOtpGpgStore.sniff(path, path.read_bytes()[: 256 * 1024]), path


_DATA = FIXTURE.read_bytes()


@F.examples(25)
@given(blob=F.flipped_and_cut(_DATA, max_flips=3))
def test_mutated_backups_fail_cleanly(tmp_path, keyed, blob):
    path = tmp_path / "m.json.gpg"
    path.write_bytes(blob)
    result = assert_clean_read(opener(keyed)(path), codes=(3, 4))
    if result is not None:
        assert len(result.accounts) + len(result.errors) <= 2


def test_wrong_key_through_the_cli_is_one_line_exit_3(gnupghome, tmp_path):
    from tests.support.cli import run_module

    proc = run_module("list", f"andotp-gpg:{FIXTURE}", env={"GNUPGHOME": str(gnupghome.path), "OTPBRIDGE_HOME": str(tmp_path)})
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "no secret key" in proc.stderr
