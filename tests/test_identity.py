"""Issue 15 part 1: identity is the code generator and its label (SPEC §3, revised).

Each defect of the issue, rebuilt from the real file or the real client: accounts that
share a secret stay distinct through list, convert, backup → restore and sync; a write
touches only the entries it names; a rename is one change; 0.1.0 vaults still sync.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from otpbridge.core.model import Account, Algorithm, Kind, b32decode
from otpbridge.core.otpauth import format_uri
from tests.support.cli import run_with_env as cli
from tests.support.engine import PASS, Device, base_env, joined_pair, make_account, ok, remote_ids
from tests.support.gpg import needs_pass_otp
from tests.support.kdbx import kpxc, needs_keepassxc

REPO = Path(__file__).resolve().parents[1]
KEEPASS_FIXTURES = REPO / "tests" / "fixtures" / "keepass"
MULTI = KEEPASS_FIXTURES / "NewDatabaseMulti.kdbx"  # KeePassXC's own test database, password "a"
MULTI_SEED = "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"

# The first example, verbatim.
BANK = "otpauth://totp/Bank:alice?secret=JBSWY3DPEHPK3PXP&issuer=Bank&algorithm=SHA256&digits=8&period=15"
MAIL = "otpauth://totp/Mail:bob?secret=JBSWY3DPEHPK3PXP&issuer=Mail"


def _json(out: str) -> dict:
    return json.loads(out)


def pair(tmp_path: Path) -> tuple[Device, Device, Path]:
    return joined_pair(tmp_path, accounts=())


# --- list / convert -------------------------------------------------------------------------
def test_two_uris_sharing_a_secret_are_two_accounts(tmp_path):
    src = tmp_path / "codes.txt"
    src.write_text(f"{BANK}\n{MAIL}\n{MAIL}\n", encoding="utf-8")  # plus an exact duplicate
    code, out, err = cli("list", f"uris:{src}")
    assert code == 0, err
    assert "Bank" in out and "Mail" in out
    assert "Bank (alice) shares a secret with Mail (bob)" in err
    assert "1 exact duplicate entry kept once: Mail (bob)" in err
    assert "2 account(s)" in err
    code, out, err = cli("list", f"uris:{src}", "--json")
    data = _json(out)
    assert [(a["issuer"], a["digits"], a["period"]) for a in data["accounts"]] == [("Bank", 8, 15), ("Mail", 6, 30)]
    bank, mail = data["accounts"]
    assert bank["shares_secret_with"] == [{"id": mail["id"], "label": "Mail (bob)"}]
    assert mail["shares_secret_with"] == [{"id": bank["id"], "label": "Bank (alice)"}]
    assert len(data["duplicates"]) == 1 and "JBSWY3DPEHPK3PXP" not in out  # no secret without --show-secrets
    dest = tmp_path / "out.txt"
    code, _out, err = cli("convert", f"uris:{src}", f"uris:{dest}")
    assert code == 0, err
    assert sorted(dest.read_text().split()) == sorted([format_uri(_parse(BANK)), format_uri(_parse(MAIL))])
    # the codes differ: the SHA1 account is not the SHA256 one
    code, out, _err = cli("code", f"uris:{dest}", "--json")
    codes = {c["issuer"]: c["code"] for c in _json(out)["codes"]}
    assert len(codes["Bank"]) == 8 and len(codes["Mail"]) == 6


def _parse(uri: str) -> Account:
    from otpbridge.core.otpauth import parse_uri

    return parse_uri(uri)


def test_ente_export_of_twenty_accounts_sharing_a_secret_lists_twenty(tmp_path):
    """Ente's plain export is one otpauth URI per line (ente.unencrypted.txt)."""
    src = tmp_path / "ente.txt"
    src.write_text("".join(
        f"otpauth://totp/Ente%3AAccount%20{i}?secret=JBSWY3DPEHPK3PXP&issuer=Ente\n" for i in range(1, 21)
    ), encoding="utf-8")
    code, out, err = cli("list", f"ente:{src}", "--json")
    assert code == 0, err
    accounts = _json(out)["accounts"]
    assert sorted(a["name"] for a in accounts) == sorted(f"Account {i}" for i in range(1, 21))
    assert all(len(a["shares_secret_with"]) == 19 for a in accounts)
    dest = tmp_path / "back.json"
    code, _out, err = cli("convert", f"ente:{src}", f"aegis:{dest}")
    assert code == 0, err
    code, out, err = cli("list", f"aegis:{dest}", "--json")
    assert len(_json(out)["accounts"]) == 20, err


# --- KeePassXC: three entries, one seed --------------------------------------------------------
def _kdbx_copy(tmp_path: Path) -> Path:
    db = tmp_path / "multi.kdbx"
    shutil.copyfile(MULTI, db)
    return db


def _kpxc_rows(db: Path) -> list[dict[str, str]]:
    """Every entry as keepassxc-cli exports it (CSV)."""
    import csv
    import io

    text = kpxc(["export", "-f", "csv"], db, password="a").stdout
    return list(csv.DictReader(io.StringIO(text)))


def _kpxc_entries(db: Path) -> dict[str, dict[str, str]]:
    """By title (the fixture's titles are unique)."""
    return {row["Title"]: row for row in _kpxc_rows(db)}


@needs_keepassxc
def test_keepassxc_database_with_three_entries_sharing_a_seed(tmp_path):
    db = _kdbx_copy(tmp_path)
    env = {"KP": "a"}
    code, out, err = cli("list", f"keepass:{db}?password-env=KP", "--json", env=env)
    assert code == 0, err
    accounts = _json(out)["accounts"]
    assert sorted((a["issuer"], a["name"]) for a in accounts) == [
        ("Multi Entry 1", "Multi Name 1"), ("Multi Entry 2", "Multi Name 2"), ("Single Entry", "User Name")]
    assert all(len(a["shares_secret_with"]) == 2 for a in accounts)
    before = _kpxc_entries(db)
    # The merge: one URI with that seed, other parameters → one new account, the
    # three entries untouched (it used to rewrite all three, digits 6 → 8, "1 updated").
    src = tmp_path / "one.txt"
    src.write_text(f"otpauth://totp/Single%20Entry:User%20Name?secret={MULTI_SEED}&issuer=Single%20Entry&digits=8\n")
    code, out, err = cli("convert", f"uris:{src}", f"keepass:{db}?password-env=KP", "--json", env=env)
    assert code == 0, err
    report = _json(out)
    assert len(report["added"]) == 1 and report["updated"] == []
    after = _kpxc_rows(db)
    for row in before.values():  # every field of each of the three, modification time included
        assert row in after, row["Title"]
    assert len(after) == len(before) + 1
    code, out, err = cli("list", f"keepass:{db}?password-env=KP", "--json", env=env)
    assert len(_json(out)["accounts"]) == 4
    # Merging one of the three exactly as it is changes nothing at all.
    one = tmp_path / "same.txt"
    one.write_text(f"otpauth://totp/Multi%20Entry%201:Multi%20Name%201?secret={MULTI_SEED}&issuer=Multi%20Entry%201\n")
    data = db.read_bytes()
    code, out, err = cli("convert", f"uris:{one}", f"keepass:{db}?password-env=KP", "--json", env=env)
    assert code == 0 and _json(out)["unchanged"] == 1 and db.read_bytes() == data, err


@needs_keepassxc
def test_keepass_rename_updates_that_entry_in_place(tmp_path):
    from otpbridge.plugins.keepass import KeePassStore
    from otpbridge.stores.base import Context, StoreSpec

    db = _kdbx_copy(tmp_path)
    ctx = Context(environ={"KP": "a"}, warn=lambda m: None, info=lambda m: None)
    store = KeePassStore(StoreSpec("keepass", str(db), {"password-env": "KP"}), ctx)
    accounts = {a.name: a for a in store.read().accounts}
    old = accounts["Multi Name 1"]
    new = old.replace(issuer="Renamed", digits=8)
    before = _kpxc_entries(db)
    report = KeePassStore(StoreSpec("keepass", str(db), {"password-env": "KP"}), ctx).apply([new], [old])
    assert report.renamed == [(old, new)] and report.updated == [new] and not report.added and not report.removed
    after = _kpxc_entries(db)
    assert set(after) == set(before)  # no entry added or removed
    assert after["Multi Entry 1"]["Password"] == before["Multi Entry 1"]["Password"]
    assert "digits=8" in after["Multi Entry 1"]["TOTP"]
    for title in ("Single Entry", "Multi Entry 2"):
        assert after[title] == before[title]


# --- pass ----------------------------------------------------------------------------------
@needs_pass_otp
def test_pass_entries_sharing_a_secret_stay_apart_and_merge_touches_only_named(pass_dir):
    seed = "JBSWY3DPEHPK3PXP"
    pass_dir.pass_("insert", "-m", "web/bank", input=f"bank-password\notpauth://totp/Bank:alice?secret={seed}&issuer=Bank\n")
    pass_dir.pass_("insert", "-m", "web/mail", input=f"mail-password\nlogin: bob\notpauth://totp/Mail:bob?secret={seed}&issuer=Mail\n")
    accounts = pass_dir.store().read().accounts
    assert sorted(a.issuer for a in accounts) == ["Bank", "Mail"]
    bank_before, mail_before = pass_dir.pass_("show", "web/bank").stdout, pass_dir.pass_("show", "web/mail").stdout
    new = Account(Kind.TOTP, b32decode(seed), "Bank", "alice", digits=8)
    report = pass_dir.store().apply([new])
    assert report.added == [new] and not report.updated
    assert pass_dir.pass_("show", "web/bank").stdout == bank_before
    assert pass_dir.pass_("show", "web/mail").stdout == mail_before
    assert len(pass_dir.store().read().accounts) == 3
    # a rename of one: that entry only, its password kept
    mail = next(a for a in accounts if a.issuer == "Mail")
    report = pass_dir.store().apply([mail.replace(issuer="Mail Co")], [mail])
    assert [(o.issuer, n.issuer) for o, n in report.renamed] == [("Mail", "Mail Co")]
    shown = pass_dir.pass_("show", "web/mail").stdout
    assert shown.startswith("mail-password\nlogin: bob\n") and "Mail%20Co" in shown
    assert pass_dir.pass_("show", "web/bank").stdout == bank_before
    assert pass_dir.pass_("otp", "web/mail").stdout.strip().isdigit()  # pass-otp reads what we wrote


# --- sync -------------------------------------------------------------------------------------
def _twins(n: int) -> list[Account]:
    base = make_account("twin")
    return [base.replace(name=f"Account {i}") for i in range(1, n + 1)]


def _lines(dev: Device) -> list[Account]:
    from otpbridge.core.otpauth import parse_uri

    return [parse_uri(x) for x in dev.store_path.read_text().splitlines() if x.strip()]


def test_accounts_sharing_a_secret_survive_backup_restore_and_sync(tmp_path):
    a, b, remote = pair(tmp_path)
    twins = _twins(20)
    a.write_accounts([*twins, make_account("other")])
    ok(a.sync())
    ok(b.sync())
    assert sorted(x.identity for x in _lines(b)) == sorted(x.identity for x in [*twins, make_account("other")])
    target = tmp_path / "restored.txt"
    probe = Device(tmp_path / "probe", str(remote), "probe", env=base_env(OTPBRIDGE_PASSPHRASE=PASS))
    ok(probe.run("restore", str(remote), "--into", f"uris:{target}"))
    assert len([x for x in target.read_text().splitlines() if x.strip()]) == 21


def test_renames_are_edits_not_deletions(tmp_path):
    """Five accounts renamed at once: more than the deletion guard allows, yet no
    deletion — one change per account, reported as renames, carried to the other device."""
    a, b, remote = pair(tmp_path)
    accs = [make_account(str(i)) for i in range(6)]
    a.write_accounts(accs)
    ok(a.sync())
    ok(b.sync())
    renamed = [x.replace(issuer=f"New{i}", digits=8) if i < 5 else x for i, x in enumerate(accs)]
    a.write_accounts(renamed)
    res = ok(a.sync()).json()
    assert res["sent"]["deleted"] == [] and res["sent"]["added"] == []
    assert sorted(res["sent"]["renamed"]) == sorted(f"{o.label} → {n.label}" for o, n in zip(accs[:5], renamed[:5]))
    res = ok(b.sync()).json()
    assert sorted(res["received"]["renamed"]) == sorted(f"{o.label} → {n.label}" for o, n in zip(accs[:5], renamed[:5]))
    assert res["received"]["added"] == [] and res["received"]["removed"] == []
    assert sorted(x.identity for x in _lines(b)) == sorted(x.identity for x in renamed)
    assert len(remote_ids(remote)) == 6
    # nothing left to do on either side
    for dev in (a, b):
        res = ok(dev.sync()).json()
        assert not res["sent"]["renamed"] and not res["received"]["renamed"] and res["accounts"] == 6


def test_human_sync_output_says_renamed(tmp_path):
    a, b, _remote = pair(tmp_path)
    acc = make_account("1")
    a.write_accounts([acc])
    ok(a.sync())
    ok(b.sync())
    a.write_accounts([acc.replace(name="new name")])
    out = ok(a.run("sync")).out
    assert f"send renamed: {acc.label} → {acc.replace(name='new name').label}" in out
    out = ok(b.run("sync")).out
    assert f"rename here: {acc.label} → {acc.replace(name='new name').label}" in out


def test_rename_here_racing_an_edit_there_is_one_conflict(tmp_path):
    a, b, _remote = pair(tmp_path)
    acc = make_account("1")
    a.write_accounts([acc])
    ok(a.sync())
    ok(b.sync())
    a.write_accounts([acc.replace(issuer="RenamedOnA")])
    b.write_accounts([acc.replace(period=60)])
    ok(a.sync())
    res = ok(b.sync()).json()
    assert len(res["conflicts"]) == 1 and res["sent"]["deleted"] == [] and res["sent"]["added"] == []
    ok(a.sync())
    assert len(_lines(a)) == 1 and _lines(a) == _lines(b)  # converged on one account


def test_a_new_account_sharing_a_secret_is_an_addition_not_a_rename(tmp_path):
    a, b, _remote = pair(tmp_path)
    acc = make_account("1")
    a.write_accounts([acc])
    ok(a.sync())
    a.write_accounts([acc, acc.replace(name="second login")])
    res = ok(a.sync()).json()
    assert res["sent"]["added"] == [acc.replace(name="second login").label] and not res["sent"]["renamed"]
    ok(b.sync())
    assert len(_lines(b)) == 2


# --- 0.1.0 vaults and homes ------------------------------------------------------------------
def _downgrade_to_0_1_0(devs: list[Device], remote: Path) -> None:
    """Rewrite ``remote``'s views and ``dev``'s state as otpbridge 0.1.0 wrote them:
    payload v1 with record id = kind + secret hash, base entries [digest, counter, applied]."""
    from otpbridge.core.secrets import Secret
    from otpbridge.engine.layout import VIEW_KIND, Listing, encode_view
    from otpbridge.engine.merge import account_from_json
    from otpbridge.vault import format as vault

    class _Info:
        def __init__(self, name: str, size: int) -> None:
            self.name, self.size = name, size

    files = [p for p in remote.rglob("*") if p.is_file()]
    listing = Listing.parse([_Info(p.relative_to(remote).as_posix(), p.stat().st_size) for p in files])
    header = (remote / listing.headers[-1].name).read_bytes()
    key = vault.open_epoch(header, Secret(PASS))
    old_ids: dict[str, str] = {}
    for ref in listing.views:
        path = remote / ref.name
        data = json.loads(key.open(path.read_bytes(), kind=VIEW_KIND, device=ref.device, seq=ref.seq))
        for rec in data["records"]:
            if rec["a"] is not None:
                new_id = account_from_json(rec["a"]).secret_id
                old_ids[rec["id"]] = new_id
                rec["id"] = new_id
        data["v"] = 1
        data["records"].sort(key=lambda r: r["id"])
        path.write_bytes(key.seal(VIEW_KIND, ref.device, ref.seq, encode_view(data)))
    for dev in devs:
        state_file = next(dev.home.rglob("sync-state.json"))
        state = json.loads(state_file.read_text())
        assert set(state["base"]) <= set(old_ids)
        state["base"] = {old_ids[k]: v[:3] for k, v in state["base"].items()}
        state["listing"] = None  # the fast path must look again: the objects changed
        state_file.write_text(json.dumps(state))
        for cached in dev.home.rglob("*-cache.sealed"):  # 0.1.0 kept no download cache
            cached.unlink()


def test_a_0_1_0_vault_and_home_sync_and_upgrade(tmp_path):
    a, b, remote = pair(tmp_path)
    accs = [make_account(str(i)) for i in range(5)]
    a.write_accounts(accs)
    ok(a.sync())
    ok(b.sync())
    _downgrade_to_0_1_0([a, b], Path(remote))
    # an upgraded device renames four accounts: four edits, no deletion (the guard stays quiet)
    renamed = [x.replace(name=f"renamed {i}") if i < 4 else x for i, x in enumerate(accs)]
    a.write_accounts(renamed)
    res = ok(a.sync()).json()
    assert res["sent"]["deleted"] == [] and res["sent"]["added"] == [] and len(res["sent"]["renamed"]) == 4
    res = ok(b.sync()).json()
    assert len(res["received"]["renamed"]) == 4 and not res["received"]["removed"] and not res["received"]["added"]
    assert sorted(x.identity for x in _lines(b)) == sorted(x.identity for x in renamed)
    assert len(remote_ids(remote)) == 5
    # the upgraded device that sent the renames wrote payload v2; b, which had nothing to
    # send, keeps its 0.1.0 view (still read, see the view vectors below)
    from otpbridge.core.secrets import Secret
    from otpbridge.engine.layout import Listing
    from otpbridge.vault import format as vault

    class _Info:
        def __init__(self, name: str, size: int) -> None:
            self.name, self.size = name, size

    files = [p for p in Path(remote).rglob("*") if p.is_file()]
    listing = Listing.parse([_Info(p.relative_to(remote).as_posix(), p.stat().st_size) for p in files])
    key = vault.open_epoch((Path(remote) / listing.headers[-1].name).read_bytes(), Secret(PASS))
    versions = {}
    for dev, ref in listing.newest_views(key.epoch).items():
        data = json.loads(key.open((Path(remote) / ref.name).read_bytes(), kind=ref.kind, device=dev, seq=ref.seq))
        versions[dev] = data["v"]
    a_dev = json.loads(next(a.home.rglob("sync-state.json")).read_text())["device"]
    assert versions.pop(a_dev) == 2 and set(versions.values()) <= {1, 2}


# --- golden view vectors ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2])
def test_view_vectors_of_both_payload_versions_read(version):
    from otpbridge.core.secrets import Secret
    from otpbridge.engine.layout import ViewRef, decode_view
    from otpbridge.engine.merge import Record, alive
    from otpbridge.vault import format as vault

    doc = json.loads((REPO / "tests" / "vectors" / "vault" / f"success-view-v{version}.json").read_text())
    key = vault.open_epoch(base64.b64decode(doc["header_b64"]), Secret(doc["passphrase"]))
    plain = key.open(base64.b64decode(doc["object_b64"]), **doc["open_as"])
    ref = ViewRef("v", len(plain), doc["open_as"]["device"], 1, doc["open_as"]["seq"], 0)
    data = decode_view(plain, ref)
    assert data["v"] == version
    records = {r.id: r for r in (Record.from_json(x, version=version) for x in data["records"])}
    live = alive(records)
    if version == 1:
        assert all(acc.secret_id == rid for rid, acc in live.items())
        assert sorted(a.label for a in live.values()) == ["Bank (alice)", "Token (hw)"]
    else:
        assert sorted(a.label for a in live.values()) == ["Bank (alice)", "Mail (bob)", "Token Co (hw)"]
        bank = next(a for a in live.values() if a.issuer == "Bank")
        mail = next(a for a in live.values() if a.issuer == "Mail")
        assert bank.secret == mail.secret and bank.algorithm is Algorithm.SHA256 and bank.digits == 8
        token_rid = next(rid for rid, a in live.items() if a.issuer == "Token Co")
        assert token_rid == live[token_rid].replace(issuer="Token", counter=4).identity  # id kept across the rename
        assert live[token_rid].counter == 6
        assert sum(r.deleted for r in records.values()) == 1


# --- app files: a rename keeps what the app keeps per entry ----------------------------------
@pytest.mark.parametrize(("kind", "rel"), [("aegis", "aegis/aegis.unencrypted.json"), ("2fas", "twofas/twofas.unencrypted.2fas")])
def test_app_file_rename_keeps_the_entry_and_touches_no_other(tmp_path, kind, rel):
    from otpbridge.stores.base import Context
    from otpbridge.stores.registry import open_store
    from tests.support.paths import FIXTURES

    path = tmp_path / Path(rel).name
    shutil.copyfile(FIXTURES / rel, path)
    ctx = Context(environ={}, warn=lambda m: None, info=lambda m: None)
    accounts = open_store(f"{kind}:{path}", ctx).read().accounts
    doc_before = json.loads(path.read_text())
    old = accounts[0]
    new = old.replace(issuer="Renamed", digits=8 if old.digits != 8 else 7)
    report = open_store(f"{kind}:{path}", ctx).apply([new], [old])
    assert report.renamed == [(old, new)] and not report.added and not report.removed
    after = open_store(f"{kind}:{path}", ctx).read().accounts
    assert len(after) == len(accounts) and after[0] == new and after[1:] == accounts[1:]
    doc_after = json.loads(path.read_text())
    if kind == "aegis":
        before_e, after_e = doc_before["db"]["entries"], doc_after["db"]["entries"]
        keep = ("uuid", "icon", "favorite")
    else:
        before_e, after_e = doc_before["services"], doc_after["services"]
        keep = ("icon", "badge")
    def kept(entries):  # per entry, what the app keeps (order aside: unreadable kinds go last)
        return sorted(json.dumps([e.get(k) for k in keep]) for e in entries)

    assert kept(after_e) == kept(before_e)


# --- sync into a pass primary: a rename from another device updates the entry in place ---------
@needs_pass_otp
def test_rename_from_another_device_updates_the_pass_entry_in_place(tmp_path, pass_dir):
    import os

    accs = [make_account(f"q{i}") for i in range(5)]
    for i, acc in enumerate(accs):
        pass_dir.write(f"{acc.issuer}/{acc.name}", f"pw{i}\nurl: https://example.org/{i}\n{format_uri(acc)}\n".encode())
    remote = str(tmp_path / "remote")
    laptop = Device(tmp_path / "laptop", remote, "laptop")
    laptop.env.update(pass_dir.env())
    laptop.env["GNUPGHOME"] = os.environ["GNUPGHOME"]
    ok(laptop.run("init", remote, "--store", f"pass:{pass_dir.path}", "--device", "laptop", "--kdf", "insecure-test"))
    ok(laptop.sync())
    phone = Device(tmp_path / "phone", remote, "phone")
    ok(phone.init())
    ok(phone.sync())
    # the phone renames four accounts and changes the digits of one
    edited = [a.replace(issuer=f"New{i}") for i, a in enumerate(accs[:4])] + [accs[4].replace(digits=8)]
    phone.write_accounts(edited)
    res = ok(phone.sync()).json()
    assert len(res["sent"]["renamed"]) == 5 and not res["sent"]["deleted"]
    res = ok(laptop.sync()).json()
    assert len(res["received"]["renamed"]) == 5, res
    assert not res["received"]["added"] and not res["received"]["removed"]
    names = sorted(p.relative_to(pass_dir.path).as_posix() for p in pass_dir.path.rglob("*.gpg"))
    assert names == sorted(f"{a.issuer}/{a.name}.gpg" for a in accs)  # same entries, none added or removed
    for i, acc in enumerate(accs):
        body = pass_dir.read(f"{acc.issuer}/{acc.name}").decode()
        assert body.startswith(f"pw{i}\nurl: https://example.org/{i}\n"), body.splitlines()[0:2]
        assert body.splitlines()[2] != format_uri(acc)
    got = sorted(a.identity for a in pass_dir.store().read().accounts)
    assert got == sorted(a.identity for a in edited)
    res = ok(laptop.sync()).json()
    assert res["fast_path"] or not (res["sent"]["renamed"] or res["sent"]["added"] or res["sent"]["deleted"])


def test_rename_here_onto_an_account_added_there_converges_on_one(tmp_path):
    a, b, _remote = pair(tmp_path)
    acc = make_account("1")
    a.write_accounts([acc])
    ok(a.sync())
    ok(b.sync())
    target = acc.replace(name="the same new name")
    a.write_accounts([target])  # renamed on a…
    b.write_accounts([acc, target])  # …while b added exactly that account beside the old one
    ok(a.sync())
    ok(b.sync())
    res = ok(a.sync()).json()
    assert res["accounts"] == len({x.identity for x in _lines(a)})
    assert {x.identity for x in _lines(a)} == {x.identity for x in _lines(b)}
    assert target.identity in {x.identity for x in _lines(a)}
    assert len(_lines(a)) == len({x.identity for x in _lines(a)})  # no entry written twice
