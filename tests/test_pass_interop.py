"""Both directions with the real ``pass`` and pass-otp: what they write we read, and the
codes ``pass otp`` prints for what we write are oathtool's."""

from __future__ import annotations

import time

import pytest

from otpbridge.core.codes import code_at
from otpbridge.core.model import Account, Algorithm, Kind, b32decode
from otpbridge.plugins import pass_entry as pe
from tests.support.gpg import needs_gpg, needs_pass, needs_pass_otp
from tests.support.oracles import needs_oathtool, oathtool_code

pytestmark = [needs_gpg, needs_pass]

SECRET = "JBSWY3DPEHPK3PXP"
SECRET2 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def _totp_matches(printed: str, account: Account, before: float, after: float) -> bool:
    """``pass otp`` ran between ``before`` and ``after``: the code of either moment is right."""
    return printed in {oathtool_code(account, before), oathtool_code(account, after)}


@needs_pass_otp
def test_reads_what_pass_otp_insert_wrote(pass_dir):
    pass_dir.pass_("otp", "insert", input=f"otpauth://totp/Big%20Corp:alice%40corp?secret={SECRET}&issuer=Big%20Corp\n")
    pass_dir.pass_("otp", "insert", "-s", "-i", "Acme", "-a", "bob smith", input=f"{SECRET2}\n")
    pass_dir.pass_("otp", "insert", "hotp/Bank", input=f"otpauth://hotp/Bank:carol?secret={SECRET}&counter=3\n")
    got = {(a.issuer, a.name): a for a in pass_dir.store().read().accounts}
    assert set(got) == {("Big Corp", "alice@corp"), ("Acme", "bob smith"), ("Bank", "carol")}
    assert got[("Big Corp", "alice@corp")].folder == ""
    assert got[("Acme", "bob smith")].secret == b32decode(SECRET2)
    assert got[("Bank", "carol")].counter == 4  # pass-otp's next code uses counter 4
    assert got[("Bank", "carol")].folder == "hotp"
    assert (pass_dir.path / "Big Corp" / "alice@corp.gpg").is_file()


def test_reads_pass_insert_multiline_with_otp_on_line_three(pass_dir):
    body = f"correct horse\nlogin: dave\notpauth://totp/Shop:dave?secret={SECRET}&issuer=Shop&digits=8\nurl: https://shop\n"
    pass_dir.pass_("insert", "-m", "shopping/shop.example", input=body)
    (acc,) = pass_dir.store().read().accounts
    assert (acc.issuer, acc.name, acc.digits, acc.folder) == ("Shop", "dave", 8, "shopping")
    assert pass_dir.pass_("show", "shopping/shop.example").stdout == body


@needs_pass_otp
@needs_oathtool
@pytest.mark.parametrize(
    "account",
    [
        Account(kind=Kind.TOTP, secret=b32decode(SECRET), issuer="Acme", name="alice"),
        Account(kind=Kind.TOTP, secret=b32decode(SECRET2), issuer="Big Corp", name="a:b@c", algorithm=Algorithm.SHA256, digits=8),
        Account(kind=Kind.TOTP, secret=b32decode(SECRET2), issuer="Slow", name="x", algorithm=Algorithm.SHA512, period=60),
        Account(kind=Kind.TOTP, secret=b32decode(SECRET), issuer="", name="Username", folder="Group"),
    ],
    ids=["sha1", "sha256-8digits", "sha512-60s", "no-issuer-in-a-folder"],
)
def test_pass_otp_prints_oathtools_totp_for_what_we_wrote(pass_dir, account):
    pass_dir.store().apply([account])
    rel = pe.entry_name(account)
    before = time.time()
    printed = pass_dir.pass_("otp", rel).stdout.strip()
    after = time.time()
    assert _totp_matches(printed, account, before, after)
    assert printed in {code_at(account, before), code_at(account, after)}
    assert pass_dir.pass_("otp", "uri", rel).stdout.strip() == pe.uri_for(account, rel)


@needs_pass_otp
@needs_oathtool
def test_hotp_counter_convention_matches_pass_otp(pass_dir):
    account = Account(kind=Kind.HOTP, secret=b32decode(SECRET2), issuer="Bank", name="bob", counter=10)
    pass_dir.git_init()
    pass_dir.store().apply([account])
    # pass otp prints the code for OUR next counter…
    # (pass otp prints git's commit summary first in a git store; the code is the last line)
    assert pass_dir.pass_("otp", "Bank/bob").stdout.split()[-1] == oathtool_code(account) == code_at(account, 0)
    # …and then stores it as used (damaged by bash ≥ 5.2, pass-otp #171, or clean):
    stored = pass_dir.pass_("show", "Bank/bob").stdout
    assert pass_dir.read("Bank/bob") != b""
    assert "&counter=9counter=10" in stored or stored.strip().endswith("&counter=10")
    (after,) = pass_dir.store().read().accounts
    assert after.counter == 11  # pass otp used 10
    # we write the clean form back, and pass otp works again from where it was
    pass_dir.store().apply([after])
    assert pass_dir.pass_("otp", "uri", "Bank/bob").stdout.strip().endswith("&counter=10")
    assert pass_dir.pass_("otp", "Bank/bob").stdout.split()[-1] == oathtool_code(after)
    assert pass_dir.git_log()[:2] == ["Increment HOTP counter for Bank/bob.", "otpbridge: update OTP for Bank/bob"]


@needs_pass_otp
def test_pass_otp_append_and_our_update_and_removal_keep_the_password(pass_dir):
    pass_dir.git_init()
    pass_dir.pass_("insert", "-m", "mail/provider", input="p@ssw0rd\nuser: erin\n")
    pass_dir.pass_("otp", "append", "mail/provider", input=f"otpauth://totp/Mail:erin?secret={SECRET}&issuer=Mail\n")
    store = pass_dir.store()
    (acc,) = store.read().accounts
    store.apply([acc.replace(digits=8)], [acc])  # an edit names the old account too (SPEC §3)
    shown = pass_dir.pass_("show", "mail/provider").stdout
    assert shown == f"p@ssw0rd\nuser: erin\n{pe.uri_for(acc.replace(digits=8))}\n"
    pass_dir.store().apply([], [acc.replace(digits=8)])
    assert pass_dir.pass_("show", "mail/provider").stdout == "p@ssw0rd\nuser: erin\n"
    log = pass_dir.git_log()
    assert log[0] == "otpbridge: remove OTP from mail/provider"
    assert log[1] == "otpbridge: update OTP for mail/provider"
    assert "Append OTP secret for mail/provider." in log
    assert pass_dir.git_clean()


def test_pass_reads_entries_in_subfolders_with_their_own_recipients(pass_dir, gpg_keys):
    pass_dir.pass_("init", "-p", "team", gpg_keys.alice.fingerprint, gpg_keys.bob.fingerprint)
    acc = Account(kind=Kind.TOTP, secret=b32decode(SECRET), issuer="Team", name="ops", folder="team")
    pass_dir.store().apply([acc])
    assert pass_dir.pass_("show", "team/Team/ops").stdout == pe.uri_for(acc) + "\n"
    with gpg_keys.copy("bob").temporary() as bob:
        assert pass_dir.read("team/Team/ops", home=bob) == (pe.uri_for(acc) + "\n").encode()
