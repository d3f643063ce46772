"""A short run of scripts/fuzz.py (issue 17, item 10): every parser, a few hundred inputs.

The full run (10,000 inputs per parser) is by hand: ``python scripts/fuzz.py``; its
figures are in docs/SECURITY.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.paths import REPO

PARSERS = {
    "format:aegis", "format:andotp", "format:authy", "format:bitwarden", "format:ente", "format:freeotp+",
    "format:gauth", "format:2fas", "format:uris", "otpauth-uri", "keepass-fields", "pass-entry",
    "vault-header", "vault-object", "vault-view", "vault-keyring", "sync-state", "config",
}  # fmt: skip


def test_short_fuzz_run_of_every_parser_has_no_traceback_and_no_hang(tmp_path, record_property):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fuzz.py"), "-n", "150", "--seed", "3", "--json", "--out", str(tmp_path / "failures")],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    tallies = json.loads(proc.stdout.splitlines()[-1])
    assert {t["name"] for t in tallies} == PARSERS
    for t in tallies:
        assert t["inputs"] == 150 and t["tracebacks"] == 0 and t["hangs"] == 0, t
        assert t["accepted"] + t["rejected"] == t["inputs"]
    record_property("figure", f"fuzz (short run): {sum(t['inputs'] for t in tallies)} inputs over {len(tallies)} parsers, 0 tracebacks, 0 hangs")
