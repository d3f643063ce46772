"""The CLI frame: formats, list, code, convert, exit codes and error rendering."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from otpbridge.core.codes import code_at
from otpbridge.core.model import Kind
from otpbridge.core.otpauth import parse_uri
from otpbridge.stores.base import Context
from otpbridge.stores.registry import open_store
from tests.support.cli import run
from tests.support.paths import FIXTURES

URI_FIXTURES = sorted((FIXTURES / "otpauth_uri").glob("*.txt"))


def read_accounts(path: Path):
    return open_store(f"uris:{path}", Context()).read().accounts


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("otpbridge ")


def test_console_script_version_without_tty():
    exe = shutil.which("otpbridge", path=str(Path(sys.executable).parent)) or "otpbridge"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and "otpbridge" in proc.stdout


def test_help_teaches(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for word in ("convert", "sync", "Exit codes", "KIND:LOCATION"):
        assert word in out
    code, out, _ = run(capsys, "convert", "--help")
    assert code == 0 and "Examples" in out and "--dry-run" in out


@pytest.mark.parametrize("fixture", URI_FIXTURES, ids=lambda p: p.name)
def test_convert_roundtrips_uri_fixtures(capsys, tmp_path, fixture):
    dest = tmp_path / "out.txt"
    code, _, err = run(capsys, "convert", f"uris:{fixture}", f"uris:{dest}")
    assert code == 0, err
    assert "clear text" in err  # plaintext export warning
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert read_accounts(dest) == read_accounts(fixture)
    # and the written file is canonical: a second conversion is byte-identical
    again = tmp_path / "again.txt"
    assert run(capsys, "convert", f"uris:{dest}", f"uris:{again}")[0] == 0
    assert again.read_bytes() == dest.read_bytes()


def test_convert_refuses_to_overwrite_then_merges(capsys, tmp_path):
    src = FIXTURES / "otpauth_uri" / "plain.txt"
    other = FIXTURES / "otpauth_uri" / "urilist.txt"
    dest = tmp_path / "out.txt"
    assert run(capsys, "convert", f"uris:{src}", f"uris:{dest}")[0] == 0
    before = dest.read_bytes()
    code, _, err = run(capsys, "convert", f"uris:{other}", f"uris:{dest}")
    assert code == 6 and "--merge" in err and "Traceback" not in err
    assert dest.read_bytes() == before
    code, _, _ = run(capsys, "convert", f"uris:{other}", f"uris:{dest}", "--dry-run", "--merge")
    assert code == 0 and dest.read_bytes() == before
    code, _, _ = run(capsys, "convert", f"uris:{other}", f"uris:{dest}", "--merge")
    assert code == 0
    merged = read_accounts(dest)
    assert len(merged) == len(read_accounts(src)) + len(read_accounts(other))
    assert (tmp_path / "out.txt.bak").read_bytes() == before


def test_convert_dry_run_json(capsys, tmp_path):
    src = FIXTURES / "otpauth_uri" / "plain.txt"
    dest = tmp_path / "new.txt"
    code, out, _ = run(capsys, "convert", f"uris:{src}", f"uris:{dest}", "--dry-run", "--json")
    assert code == 0 and not dest.exists()
    report = json.loads(out)
    assert report["dry_run"] is True and len(report["added"]) == 7
    assert "secret" not in out.lower() or "secret" not in json.dumps(report["added"])


def test_list_json_has_no_secrets_unless_asked(capsys):
    src = FIXTURES / "otpauth_uri" / "plain.txt"
    code, out, _ = run(capsys, "list", f"uris:{src}", "--json")
    assert code == 0
    data = json.loads(out)
    assert len(data["accounts"]) == 7 and data["errors"] == []
    assert "4SJHB4GSD43FZBAI7C2HLRJGPQ" not in out
    code, out, _ = run(capsys, "list", f"uris:{src}", "--json", "--show-secrets")
    assert "4SJHB4GSD43FZBAI7C2HLRJGPQ" in out


def test_list_detects_format(capsys):
    code, _, err = run(capsys, "list", str(FIXTURES / "otpauth_uri" / "urilist.txt"))
    assert code == 0 and "detected uris" in err


def test_partial_import_exits_7_and_imports_the_rest(capsys, tmp_path):
    src = tmp_path / "mixed.txt"
    src.write_text(
        "# my codes\n\n"
        "otpauth://totp/A:a?secret=JBSWY3DPEHPK3PXP\n"
        "otpauth://totp/B:b?secret=NOT-BASE32!!\n"
        "otpauth://motp/C:c?secret=AAAA\n"
        "otpauth://hotp/D:d?secret=JBSWY3DPEHPK3PXQ&counter=3\n"
    )
    dest = tmp_path / "out.txt"
    code, _, err = run(capsys, "convert", f"uris:{src}", f"uris:{dest}")
    assert code == 7
    assert "line 4" in err and "line 5" in err and "NOT-BASE32" not in err
    assert [a.issuer for a in read_accounts(dest)] == ["A", "D"]


def test_code_matches_model_and_hotp_does_not_advance(capsys, tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("otpauth://hotp/H:h?secret=JBSWY3DPEHPK3PXP&counter=3\notpauth://totp/T:t?secret=JBSWY3DPEHPK3PXP\n")
    code, out, _ = run(capsys, "code", f"uris:{src}", "--json")
    assert code == 0
    data = json.loads(out)
    hotp = next(c for c in data["codes"] if c["kind"] == "hotp")
    acc = parse_uri("otpauth://hotp/H:h?secret=JBSWY3DPEHPK3PXP&counter=3")
    assert hotp["code"] == code_at(acc)
    assert read_accounts(src)[0].counter == 3
    code, _, _ = run(capsys, "code", f"uris:{src}", "H", "--advance")
    assert code == 0
    assert read_accounts(src)[0].counter == 4 and read_accounts(src)[0].kind is Kind.HOTP


def test_code_query_without_match(capsys, tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("otpauth://totp/T:t?secret=JBSWY3DPEHPK3PXP\n")
    code, _, err = run(capsys, "code", f"uris:{src}", "nomatch")
    assert code == 2 and "no account matches" in err


@pytest.mark.parametrize(
    "args, exit_code, text",
    [
        (["list", "nosuchkind:/x"], 2, "unknown store kind"),
        (["list", "/nonexistent/x.json"], 2, "does not exist"),
        (["list", "uris:/nonexistent/file.txt"], 2, "no such file"),  # 2 like the untyped case (test_review_automation)
        (["convert", "uris:/dev/null", "out-without-kind.txt"], 2, "name it as KIND:PATH"),
        (["frobnicate"], 2, "No such command"),
        (["list"], 2, "Missing argument"),
    ],
)
def test_user_errors_are_one_line_with_exit_code(capsys, tmp_path, args, exit_code, text):
    os.chdir(tmp_path)
    code, _, err = run(capsys, *args)
    assert code == exit_code, err
    assert text in err and "Traceback" not in err


def test_binary_garbage_is_a_clear_error(capsys, tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"\xff\xfe\x00garbage" * 10)
    code, _, err = run(capsys, "list", f"uris:{junk}")
    assert code == 4 and "UTF-8" in err


def test_ctrl_c_exits_130_without_traceback(capsys, monkeypatch):
    import otpbridge.cli.basic as basic

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(basic, "_matches", interrupted)
    code, _, err = run(capsys, "list", f"uris:{FIXTURES / 'otpauth_uri' / 'plain.txt'}")
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_bad_values_are_not_echoed(capsys, tmp_path):
    src = tmp_path / "odd.txt"
    src.write_text("otpauth://totp/A:a?secret=JBSWY3DPEHPK3PXP&algorithm=SECRETLOOKINGVALUE\n"
                   "otpauth://totp/B:b?secret=JBSWY3DPEHPK3PXQ&digits=SECRETLOOKINGVALUE\n")
    code, _, err = run(capsys, "list", f"uris:{src}")
    assert code == 7 and "SECRETLOOKINGVALUE" not in err


@pytest.mark.parametrize("fixture", URI_FIXTURES, ids=lambda p: p.name)
def test_code_command_agrees_with_oathtool(capsys, fixture):
    from tests.support.oracles import OATHTOOL, oathtool_code

    if OATHTOOL is None:
        pytest.skip("oathtool is not installed")
    code, out, _ = run(capsys, "code", f"uris:{fixture}", "--json")
    assert code == 0
    data = json.loads(out)
    by_id = {a.identity: a for a in read_accounts(fixture)}
    checked = 0
    for row in data["codes"]:
        acc = by_id[row["id"]]
        if acc.kind is Kind.STEAM or acc.digits > 8 or (acc.kind is Kind.HOTP and acc.algorithm.value != "SHA1"):
            continue
        assert row["code"] == oathtool_code(acc, data["time"]), acc.label
        checked += 1
    assert checked >= 4


def test_code_advance_dry_run_writes_nothing(capsys, tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("otpauth://hotp/H:h?secret=JBSWY3DPEHPK3PXP&counter=3\n")
    before = src.read_bytes()
    code, _, err = run(capsys, "code", f"uris:{src}", "--advance", "--dry-run")
    assert code == 0 and "would store the next counter 4" in err
    assert src.read_bytes() == before
