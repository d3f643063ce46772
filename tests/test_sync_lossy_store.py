"""A device whose store cannot hold folders or notes must not erase them for others."""

from __future__ import annotations

from otpbridge.stores.base import Context
from otpbridge.stores.registry import open_store
from tests.support.engine import Device, make_account


def _aegis(path):
    return open_store(f"aegis:{path}", Context(warn=lambda m: None, info=lambda m: None))


def test_editing_on_a_uri_list_keeps_folder_and_note_from_another_device(tmp_path):
    remote = str(tmp_path / "remote")
    acc = make_account("x").replace(folder="Work/Cloud", note="recovery codes are in the safe")
    # Device B keeps its accounts in an Aegis vault, which holds folders and notes.
    b = Device(tmp_path / "b", remote, "b")
    aegis_file = tmp_path / "b" / "vault.json"
    _aegis(aegis_file).apply([acc])
    assert b.run("init", remote, "--store", f"aegis:{aegis_file}", "--device", "b", "--kdf", "insecure-test").code == 0
    assert b.run("sync").code == 0
    # Device A keeps a plain URI list (no folders, no notes) and renames the account.
    a = Device(tmp_path / "a", remote, "a")
    assert a.init().code == 0
    assert a.sync().code == 0
    assert a.accounts()[acc.secret_id].folder == ""
    a.edit(acc.secret_id, name="renamed-on-a")
    res = a.sync()
    assert res.code == 0, res.err
    res = b.run("sync")
    assert res.code == 0, res.err
    got = {x.secret_id: x for x in _aegis(aegis_file).read().accounts}[acc.secret_id]
    assert got.name == "renamed-on-a"  # the edit arrived
    assert got.folder == "Work/Cloud" and got.note == "recovery codes are in the safe"  # nothing erased


def test_a_store_that_holds_the_field_can_still_clear_it(tmp_path):
    remote = str(tmp_path / "remote")
    acc = make_account("y").replace(folder="Old")
    b = Device(tmp_path / "b", remote, "b")
    aegis_file = tmp_path / "b" / "vault.json"
    _aegis(aegis_file).apply([acc])
    assert b.run("init", remote, "--store", f"aegis:{aegis_file}", "--device", "b", "--kdf", "insecure-test").code == 0
    assert b.run("sync").code == 0
    _aegis(aegis_file).apply([acc.replace(folder="")])  # the user moved it out of the group
    assert b.run("sync").code == 0
    c = Device(tmp_path / "c", remote, "c")
    c_file = tmp_path / "c" / "vault.json"
    assert c.run("init", remote, "--store", f"aegis:{c_file}", "--device", "c", "--kdf", "insecure-test").code == 0
    assert c.run("sync").code == 0
    got = {x.secret_id: x for x in _aegis(c_file).read().accounts}[acc.secret_id]
    assert got.folder == ""
