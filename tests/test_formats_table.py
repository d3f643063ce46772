"""docs/stores/README.md's table and ``otpbridge formats`` say what the plugins declare.

The table is parsed and compared, cell by cell, with every registered plugin's declared
capabilities (``Store.capabilities``): kind, title, whether it writes, the five features
and where to get the file. A failure prints the row to paste.
"""

from __future__ import annotations

import json
import re

import pytest

from otpbridge.stores import registry
from otpbridge.stores.base import CARRIES, FEATURES
from tests.support.cli import run_module
from tests.support.paths import REPO

README = REPO / "docs" / "stores" / "README.md"
HEADER = ["Kind", "What", "Writes", "Folders", "Notes", "Icons", "HOTP", "Steam", "Where to get the file"]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table() -> dict[str, list[str]]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and _cells(line) == HEADER)
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(HEADER), f"malformed row: {line}"
        kind = cells[0].strip("`")
        assert kind not in rows, f"{kind} is listed twice"
        rows[kind] = cells[1:]
    return rows


def declared(kind: str) -> list[str]:
    cls = registry.load_plugin(kind)
    caps = cls.capabilities()
    features = caps["features"]
    return [caps["title"], "yes" if cls.can_write() else "no", *(features[f] for f in FEATURES), caps["source"]]


def _row(kind: str) -> str:
    return "| " + " | ".join([f"`{kind}`", *declared(kind)]) + " |"


def test_the_table_lists_every_registered_kind_once():
    assert sorted(table()) == sorted(registry.plugin_kinds())


@pytest.mark.parametrize("kind", registry.plugin_kinds())
def test_each_row_says_what_the_plugin_declares(kind):
    rows = table()
    if kind not in rows:
        pytest.fail(f"docs/stores/README.md has no row for {kind}; add:\n{_row(kind)}")
    assert rows[kind] == declared(kind), f"the row for {kind} is out of date; it should read:\n{_row(kind)}"


@pytest.mark.parametrize("kind", registry.plugin_kinds())
def test_declarations_are_complete_and_consistent(kind):
    cls = registry.load_plugin(kind)
    features = cls.feature_support()
    assert set(features) == set(FEATURES) and set(features.values()) <= set(CARRIES), kind
    assert cls.source.strip(), f"{kind}: say where a user gets such a file (Store.source)"
    # a field sync is told the kind cannot hold is never claimed as kept
    for field, feature in (("folder", "folders"), ("note", "notes")):
        if field in cls.drops:
            assert features[feature] != "kept", f"{kind} drops {field} but says {feature} kept"
    for feature, how in features.items():
        if how == "partly":  # the limit must be explained to the user
            assert cls.loses, f"{kind}: {feature} is 'partly' but 'loses' says nothing"
    assert "|" not in cls.source + cls.title, "a '|' would break the docs table"


def test_formats_json_and_text_carry_the_same_facts(tmp_path):
    proc = run_module("formats", "--json", env={"OTPBRIDGE_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    rows = {r["kind"]: r for r in json.loads(proc.stdout)["formats"]}
    assert sorted(rows) == sorted(registry.plugin_kinds())
    for kind, row in rows.items():
        assert row["available"] and [row["title"], "yes" if row["writes"] else "no",
                                     *(row["features"][f] for f in FEATURES), row["source"]] == declared(kind)  # fmt: skip
    text = run_module("formats", env={"OTPBRIDGE_HOME": str(tmp_path)}).stdout
    for kind in ("lastpass", "proton-authenticator", "proton-pass", "stratum", "1password", "gauth-db", "andotp-gpg", "freeotp2"):
        block = re.search(rf"^{re.escape(kind)} — .*?(?=^\S|\Z)", text, re.M | re.S)
        assert block, kind
        assert "features: folders" in block.group(0) and "get it: " in block.group(0)


def test_new_plugins_and_detection_import_nothing_heavy():
    """Detection loads every plugin: the issue #16 ones must not pull in crypto, zip or sqlite."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from otpbridge.stores.registry import detect_kind\n"
        f"print(detect_kind(Path({str(REPO / 'tests' / 'fixtures' / 'lastpass' / 'lastpass.json')!r})))\n"
        "print(sorted(m for m in ('cryptography', 'zipfile', 'sqlite3', 'csv') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "lastpass"
    heavy = eval(out[1])  # noqa: S307 - our own printed list
    assert not {"cryptography", "zipfile", "sqlite3"} & set(heavy), heavy
