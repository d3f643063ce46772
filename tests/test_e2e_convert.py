"""Migrations end to end through the CLI, between every pair that matters.

The property for every writable format: after ``convert SRC X:`` and ``convert X: uris:``
each account either comes back with the same settings, or was named on stderr as
skipped (exit 7). Nothing is lost silently.
"""

from __future__ import annotations

import os

import pytest

from otpbridge.stores.base import Context
from otpbridge.stores.registry import open_store
from tests.support.canonical import AEGIS_VECTORS, STRATUM, assert_matches
from tests.support.cli import run_with_env as cli
from tests.support.gpg import needs_gpg
from tests.support.paths import FIXTURES

PW = "e2e store password"


def read(spec: str, env: dict[str, str] | None = None):
    environ = dict(os.environ, **(env or {}))
    return open_store(spec, Context(environ=environ, info=lambda m: None, warn=lambda m: None)).read()


def comparable(acc):
    return acc.replace(folder="", note="")


# What a format cannot say and declares in its ``loses`` text (checked below).
FIXUPS = {
    "freeotp+": (lambda a: a.replace(issuer="Steam") if a.kind.value == "steam" else a, "Steam"),
    "proton-authenticator": (lambda a: a.replace(issuer="Steam") if a.kind.value == "steam" else a, "a Steam account's issuer becomes 'Steam'"),
    "proton-authenticator-protected": (lambda a: a.replace(issuer="Steam") if a.kind.value == "steam" else a, "a Steam account's issuer becomes 'Steam'"),
    "stratum": (lambda a: a if a.issuer else a.replace(issuer=a.name, name=""), "gets its name as issuer"),
    "stratum-encrypted": (lambda a: a if a.issuer else a.replace(issuer=a.name, name=""), "gets its name as issuer"),
}


# Writable kinds, with the option that makes a new file of that kind.
TARGETS = {
    "uris": "uris:{d}/out.txt",
    "aegis": "aegis:{d}/out.json",
    "aegis-encrypted": "aegis:{d}/out-enc.json?encrypt=yes&password-env=E2E_PW",
    "2fas": "2fas:{d}/out.2fas",
    "2fas-encrypted": "2fas:{d}/out-enc.2fas?encrypt=yes&password-env=E2E_PW",
    "andotp": "andotp:{d}/out.json",
    "freeotp+": "freeotp+:{d}/out.json",
    "gauth": "gauth:{d}/out.txt",
    "ente": "ente:{d}/out.txt",
    "keepass": "keepass:{d}/out.kdbx?password-env=E2E_PW",
    "qr": "qr:{d}/codes",
    "qr-gauth": "qr:{d}/ga-codes?codes=gauth",
    "proton-authenticator": "proton-authenticator:{d}/out.json",
    "proton-authenticator-protected": "proton-authenticator:{d}/out-enc.json?encrypt=yes&password-env=E2E_PW",
    "stratum": "stratum:{d}/out.authpro",
    "stratum-encrypted": "stratum:{d}/out-enc.authpro?encrypt=yes&password-env=E2E_PW",
}


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("source", ["otpauth_uri/plain.txt", "otpauth_uri/urilist.txt"])
def test_nothing_is_lost_silently(tmp_path, source, target):
    env = {"E2E_PW": PW}
    src = f"uris:{FIXTURES / source}"
    dest = TARGETS[target].format(d=tmp_path)
    code, _, err = cli("convert", src, dest, env=env)
    assert code in (0, 7), err
    assert "Traceback" not in err
    back = tmp_path / "back.txt"
    code2, _, err2 = cli("convert", dest, f"uris:{back}", env=env)
    assert code2 == 0, err2
    # matched by kind + secret: a format may change a declared field (FIXUPS), and so the identity
    original = {a.secret_id: a for a in read(src).accounts}
    returned = {a.secret_id: a for a in read(f"uris:{back}").accounts}
    assert set(returned) <= set(original)
    fix, declared = FIXUPS.get(target, (lambda a: a, ""))
    if declared:
        from otpbridge.stores import registry

        assert declared in registry.load_plugin(dest.partition(":")[0]).loses
    for rid, acc in original.items():
        if rid in returned:
            assert comparable(returned[rid]) == comparable(fix(acc)), f"{target} changed {acc.label}"
        else:
            assert code == 7 and acc.label.split(" (")[0] in err, f"{target} dropped {acc.label} silently:\n{err}"


# SPEC §3 (revised): accounts that share a secret but differ in any identity field are
# different accounts; an exact duplicate is one.
SHARED_SECRET_FAMILY = [
    "otpauth://totp/Bank:alice?secret=JBSWY3DPEHPK3PXP&issuer=Bank&algorithm=SHA256&digits=8&period=15",
    "otpauth://totp/Mail:bob?secret=JBSWY3DPEHPK3PXP&issuer=Mail",
    "otpauth://totp/Mail:bob?secret=JBSWY3DPEHPK3PXP&issuer=Mail&digits=8",
    "otpauth://totp/mail:bob?secret=JBSWY3DPEHPK3PXP&issuer=mail",  # case is part of the label
    "otpauth://hotp/Bank:alice?secret=JBSWY3DPEHPK3PXP&issuer=Bank&counter=3",
    *(f"otpauth://totp/Ente:Account%20{i}?secret=GEZDGNBVGY3TQOJQ&issuer=Ente" for i in range(1, 6)),
    "otpauth://totp/Mail:bob?secret=JBSWY3DPEHPK3PXP&issuer=Mail",  # an exact duplicate
]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_accounts_sharing_a_secret_are_never_merged(tmp_path, target):
    """For every writable format: N distinct accounts in, N out — nothing merged, nothing
    lost — or the ones a format cannot hold are named (exit 7)."""
    env = {"E2E_PW": PW}
    src = tmp_path / "family.txt"
    src.write_text("\n".join(SHARED_SECRET_FAMILY) + "\n", encoding="utf-8")
    original = {a.identity: a for a in read(f"uris:{src}").accounts}
    assert len(original) == len(SHARED_SECRET_FAMILY) - 1
    dest = TARGETS[target].format(d=tmp_path)
    code, _, err = cli("convert", f"uris:{src}", dest, env=env)
    assert code in (0, 7), err
    back = tmp_path / "back.txt"
    code2, _, err2 = cli("convert", dest, f"uris:{back}", env=env)
    assert code2 == 0, err2
    returned = [a for a in read(f"uris:{back}").accounts]
    fix, _declared = FIXUPS.get(target, (lambda a: a, ""))
    expected = {comparable(fix(a)).identity: a for a in original.values()}
    if target == "freeotp+":  # declared in its ``loses``: equal issuer:name pairs get a ' (2)' suffix
        import re

        returned = [a.replace(name=re.sub(r" \(\d+\)$", "", a.name)) for a in returned]
    got = [comparable(a).identity for a in returned]
    assert len(got) == len(set(got)), f"{target} wrote one account twice"
    assert set(got) <= set(expected), f"{target} changed an account"
    for ident, acc in expected.items():
        if ident not in got:
            assert code == 7 and acc.label.split(" (")[0] in err, f"{target} merged or dropped {acc.label}:\n{err}"


def test_aegis_encrypted_to_keepass(tmp_path):
    env = {"A_PW": "test", "K_PW": PW}
    db = tmp_path / "migrated.kdbx"
    code, _, err = cli(
        "convert", f"aegis:{FIXTURES / 'aegis' / 'aegis_encrypted.json'}?password-env=A_PW", f"keepass:{db}?password-env=K_PW", env=env
    )
    assert code == 0, err
    assert_matches(read(f"keepass:{db}?password-env=K_PW", env).accounts, AEGIS_VECTORS)
    # a second conversion into the same database changes nothing
    code, out, err = cli(
        "convert", f"aegis:{FIXTURES / 'aegis' / 'aegis_encrypted.json'}?password-env=A_PW", f"keepass:{db}?password-env=K_PW", "--json", env=env
    )
    assert code == 0, err
    assert '"added": []' in out.replace("\n", "").replace(" ", "").replace('"added":[]', '"added": []')


@needs_gpg
def test_gauth_to_pass(tmp_path, pass_dir):
    export = FIXTURES / "google_authenticator" / "example_export.txt"
    expected = read(f"gauth:{export}").deduplicated().accounts
    code, _, err = cli("convert", f"gauth:{export}", f"pass:{pass_dir.path}")
    assert code == 0, err
    got = read(f"pass:{pass_dir.path}").accounts
    assert sorted(comparable(a).identity for a in got) == sorted(a.identity for a in expected)
    by_id = {a.identity: a for a in got}
    for acc in expected:
        mine = by_id[acc.identity]
        assert (mine.kind, mine.algorithm, mine.digits, mine.period, mine.counter) == (
            acc.kind, acc.algorithm, acc.digits, acc.period, acc.counter
        )


def test_stratum_sets_agree_across_apps():
    """The same seven accounts, exported by six apps, read identically."""
    files = {
        "uris": "otpauth_uri/urilist.txt",
        "aegis": "aegis/aegis.unencrypted.json",
        "2fas": "twofas/twofas.unencrypted.2fas",
        "andotp": "andotp/andotp.unencrypted.json",
        "ente": "ente_auth/ente.unencrypted.txt",
        "freeotp+": "freeotp_plus/freeotpplus.json",
    }
    reference = {a.secret_id: a for a in STRATUM}  # by kind + secret: some apps change a field
    for kind, rel in files.items():
        accounts = [a for a in read(f"{kind}:{FIXTURES / rel}").accounts if a.secret_id in reference]
        assert len(accounts) >= len(STRATUM) - 1, kind  # 2FAS cannot hold the 9-digit one
        for acc in accounts:
            ref = reference[acc.secret_id]
            if kind == "freeotp+" and ref.digits > 8:
                continue  # FreeOTP+ holds at most 8 digits; Stratum exported it as 8
            if ref.issuer == "NoIssuer":  # apps disagree on which of issuer/name a bare label is
                acc = acc.replace(issuer=ref.issuer, name=ref.name)
            assert comparable(acc) == ref, (kind, acc.label)


@pytest.mark.parametrize("target", sorted(t for t in TARGETS if not t.startswith("qr")))  # qr: new folders only
def test_merging_the_same_accounts_again_changes_nothing(tmp_path, target):
    """``convert --merge`` run twice: the second run finds every account unchanged, also
    where the accounts carry a folder or note the format cannot hold (it used to report
    them 'updated' and rewrite the file and its backup every time)."""
    from otpbridge.core.model import Account, Kind

    env = {"E2E_PW": PW}
    accounts = [Account(kind=Kind.TOTP, secret=bytes([i + 1]) * 10, issuer=f"Svc{i}", name="me",
                        folder="Work/Team" if i % 2 else "", note="a note" if i == 2 else "") for i in range(4)]
    environ = dict(os.environ, **env)
    dest = TARGETS[target].format(d=tmp_path)
    ctx = Context(environ=environ, info=lambda m: None, warn=lambda m: None)
    first = open_store(dest, ctx).apply(accounts)
    assert len(first.added) == 4
    again = open_store(dest, Context(environ=environ, info=lambda m: None, warn=lambda m: None)).apply(accounts)
    assert not again.added and not again.updated and not again.removed and again.unchanged == 4, target
    assert again.backup is None  # nothing rewritten


@pytest.mark.parametrize("target", ["uris", "aegis", "keepass", "ente", "andotp", "2fas"])
def test_merging_an_old_export_never_moves_a_hotp_counter_back(tmp_path, target):
    """SPEC §6: codes below a store's counter were used. Merging an older export (a lower
    counter) keeps the store's; a higher one is taken."""
    from otpbridge.core.model import Account, Kind

    env = {"E2E_PW": PW}
    environ = dict(os.environ, **env)
    dest = TARGETS[target].format(d=tmp_path)

    def store():
        return open_store(dest, Context(environ=environ, info=lambda m: None, warn=lambda m: None))

    acc = Account(kind=Kind.HOTP, secret=b"hotp-secret-1", issuer="Acme", name="a", counter=19)
    store().apply([acc])
    report = store().apply([acc.replace(counter=3)])
    assert not report.updated and report.unchanged == 1
    (back,) = [a for a in store().read().accounts if a.issuer == "Acme"]
    assert back.counter == 19
    store().apply([acc.replace(counter=25)])
    (back,) = [a for a in store().read().accounts if a.issuer == "Acme"]
    assert back.counter == 25
