"""Nothing lost silently, for every issue #16 fixture as a *source*: ``convert FIXTURE uris:``.

Every entry of the file (as many as tests/fixtures/README-more.md counts, independently of
the plugins) either arrives in the URI list or is named on stderr as skipped (exit 7).
The writable kinds are also targets of ``test_e2e_convert.test_nothing_is_lost_silently``.
"""

from __future__ import annotations

import os
import re

import pytest

from otpbridge.stores.base import Context
from otpbridge.stores.registry import open_store
from tests.support.cli import run_with_env as cli
from tests.support.gpg import GPG
from tests.support.morefmt import MORE

ROW = re.compile(r"^\| `([^`]+)` \| [^|]+ \| ([^|]+) \| (\d+)(?: \+ (\d+))?[^|]* \|", re.M)


def _fixtures() -> list[tuple[str, str | None, int]]:
    out = []
    for rel, password, n, extra in ROW.findall((MORE / "README-more.md").read_text()):
        pw = re.match(r"`([^`]+)`", password.strip())
        out.append((rel, pw.group(1) if pw else None, int(n) + int(extra or 0)))
    return out


FIXTURES = _fixtures()


def test_the_readme_counts_every_readable_fixture():
    assert len(FIXTURES) >= 24


@pytest.fixture
def env(request, tmp_path):
    """PW for encrypted files; for the andOTP OpenPGP fixture a GnuPG home holding its key."""
    values = {"OTPBRIDGE_HOME": str(tmp_path / "home")}
    if "andotp_gpg" in request.node.callspec.params["fixture"][0]:
        if GPG is None:
            pytest.skip("gpg is not installed")
        keys = request.getfixturevalue("gpg_keys")
        home = keys.copy("alice")
        request.addfinalizer(home.close)
        home.run("--import", str(MORE / "andotp_gpg" / "pass-import-test-key-1.sec.asc"))
        values["GNUPGHOME"] = str(home.path)
    return values


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_every_entry_arrives_or_is_named(tmp_path, env, fixture):
    rel, password, count = fixture
    src = str(MORE / rel) + ("?password-env=PW" if password else "")
    env = dict(env, **({"PW": password} if password else {}))
    out = tmp_path / "out.txt"
    code, _, err = cli("convert", src, f"uris:{out}", env=env)
    assert "Traceback" not in err
    environ = dict(os.environ, **env)
    read = open_store(src, Context(environ=environ, info=lambda m: None, warn=lambda m: None)).read()
    assert len(read.accounts) + len(read.errors) == count, "the plugin does not read what README-more.md counts"
    assert code == (7 if read.errors else 0), err
    written = {a.identity for a in open_store(f"uris:{out}", Context(info=lambda m: None)).read().accounts}
    assert {a.identity for a in read.accounts} == written
    for error in read.errors:
        assert f"skipped {error.where}" in err, f"{error} not reported:\n{err}"
