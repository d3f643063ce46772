"""gauth-db: — Google Authenticator's SQLite database: fixture, counters, encrypted rows, WAL, read-only, hostile files."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otpbridge.core.errors import FormatError
from otpbridge.core.model import Algorithm, Kind
from otpbridge.plugins.gauth_db import GAuthDbStore
from otpbridge.stores.registry import detect_kind
from tests.support import canonical as C
from tests.support import formats as F
from tests.support.morefmt import MORE, assert_clean_read

GA = MORE / "google_authenticator_db"
FIXTURE = GA / "google_authenticator.sqlite"
store = F.store_opener(GAuthDbStore, "gauth-db")

# What the database can say: SHA1, 6 digits, 30 s; HOTP counters are "last used" (next = +1).
GA_FIX = C.fix_where(lambda a: True, algorithm=Algorithm.SHA1, digits=6, period=30)

SCHEMA = (
    "CREATE TABLE accounts (_id INTEGER PRIMARY KEY, email TEXT NOT NULL, secret TEXT NOT NULL, "
    "counter INTEGER DEFAULT 0, type INTEGER, provider INTEGER DEFAULT 0, issuer TEXT DEFAULT NULL, "
    "original_name TEXT DEFAULT NULL{extra})"
)


def test_reads_the_aegis_fixture():
    result = store(FIXTURE).read()
    assert result.errors == [] and len(result.accounts) == 6
    expected = [GA_FIX(a) for a in C.AEGIS_VECTORS[:6]]
    expected = [a.replace(counter=a.counter + 1) if a.kind is Kind.HOTP else a for a in expected]
    C.assert_matches(result.accounts, expected)


def test_the_users_file_is_left_untouched():
    folder_before = sorted(os.listdir(GA))
    stat = FIXTURE.stat()
    data = FIXTURE.read_bytes()
    store(FIXTURE).read()
    assert FIXTURE.read_bytes() == data and FIXTURE.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(os.listdir(GA)) == folder_before  # no -shm, -wal or -journal made beside it


def _db(path, rows, *, extra="", wal=False):
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(SCHEMA.format(extra=extra))
    for row in rows:
        conn.execute(f"INSERT INTO accounts ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    conn.commit()
    return conn


def test_encrypted_rows_are_listed_and_old_rows_split_their_issuer(tmp_path):
    path = tmp_path / "databases"
    _db(path, [
        {"email": "Deno:Mason", "secret": "4SJHB4GSD43FZBAI7C2HLRJGPQ", "type": 0, "isencrypted": 0},
        {"email": "Bank:me", "secret": "c2VjcmV0IGJsb2I=", "type": 0, "isencrypted": 1},
        {"email": "lower case", "secret": "jbsw y3dp ehpk 3pxp", "type": 1, "counter": 4, "issuer": None, "isencrypted": 0},
        {"email": "x", "secret": "JBSWY3DPEHPK3PXP", "type": 7, "isencrypted": 0},
    ], extra=", isencrypted INTEGER DEFAULT 0").close()  # fmt: skip
    result = store(path).read()
    got = [(a.kind, a.issuer, a.name, a.counter) for a in result.accounts]
    assert got == [(Kind.TOTP, "Deno", "Mason", 0), (Kind.HOTP, "", "lower case", 5)]
    assert [e.where for e in result.errors] == ["entry 2 (Bank:me)", "entry 4 (x)"]
    assert "Transfer accounts" in result.errors[0].reason and "c2VjcmV0" not in str(result.errors)


def test_rows_only_in_the_wal_are_not_missed(tmp_path):
    path = tmp_path / "databases"
    conn = _db(path, [{"email": "A:a", "secret": "JBSWY3DPEHPK3PXP", "type": 0}], wal=True)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("INSERT INTO accounts (email, secret, type) VALUES ('B:b', 'MFRGGZDFMZTWQ2LK', 0)")
    conn.commit()
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in os.listdir(tmp_path):
        if name.startswith("databases"):
            shutil.copyfile(tmp_path / name, copy / name)  # as a user copies them off the phone
    conn.close()
    os.remove(copy / "databases-shm")
    before = {n: (copy / n).read_bytes() for n in os.listdir(copy)}
    alone = sqlite3.connect(f"{(copy / 'databases').as_uri()}?immutable=1", uri=True)
    assert alone.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0  # all of it is in the WAL
    alone.close()
    result = store(copy / "databases").read()
    assert [a.issuer for a in result.accounts] == ["A", "B"]
    assert {n: (copy / n).read_bytes() for n in os.listdir(copy)} == before


def test_other_sqlite_files_are_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE authenticator (secret TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(FormatError, match="no 'accounts' table"):
        store(path).read()
    view = tmp_path / "view.db"
    conn = sqlite3.connect(view)
    conn.execute("CREATE TABLE t (email TEXT, secret TEXT, type INTEGER)")
    conn.execute("CREATE VIEW accounts AS SELECT * FROM t")
    conn.commit()
    conn.close()
    with pytest.raises(FormatError):
        store(view).read()


@pytest.mark.parametrize("content", [b"", b"SQLite format 3\x00", b"SQLite format 3\x00" + bytes(200), b"not a db"])
def test_damaged_files_are_exit_4(tmp_path, content):
    path = tmp_path / "databases"
    path.write_bytes(content)
    with pytest.raises(FormatError) as err:
        store(path).read()
    assert err.value.exit_code == 4


def test_detected_and_does_not_claim_other_formats():
    assert detect_kind(FIXTURE) == "gauth-db"
    for path in F.other_fixtures(GA):
        assert not GAuthDbStore.sniff(path, path.read_bytes()[: 256 * 1024]), path


_DATA = FIXTURE.read_bytes()


@F.examples(100)
@given(blob=F.flipped_and_cut(_DATA, max_flips=6))
def test_mutated_databases_fail_cleanly(tmp_path, blob):
    path = tmp_path / "databases"
    path.write_bytes(blob)
    result = assert_clean_read(store(path))
    if result is not None:
        assert len(result.accounts) + len(result.errors) <= 6


@F.examples(60)
@given(data=st.data())
def test_mutated_pages_fail_cleanly(tmp_path, data):
    path = tmp_path / "databases"
    path.write_bytes(F.mutate_bytes(data, _DATA, max_ops=4, max_delete=8, max_insert=4))
    assert_clean_read(store(path))
