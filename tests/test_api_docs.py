"""docs/API.md is run, block after block, in one Python session (issue 18): every
example there works as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def test_every_api_example_runs(tmp_path, monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("OTPBRIDGE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    from otpbridge.vault import format as vault_format

    # The examples use the real default preset; the test runs them with a cheap one.
    presets = dict(vault_format.PRESETS, default=vault_format.PRESETS["insecure-test"])
    monkeypatch.setattr(vault_format, "PRESETS", presets)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 12
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/API.md block {i + 1}", "exec"), namespace)  # noqa: S102 - our own docs


def test_dir_shows_the_public_api():
    import otpbridge

    names = set(dir(otpbridge))
    assert {"Device", "codes", "convert", "sync", "restore", "read_accounts", "OtpBridgeError"} <= names
    assert not any(n.startswith("_") and n not in ("__version__", "__doc__", "__name__") for n in names)
    for name in ("change_passphrase", "snapshots", "diff", "forget", "devices", "remove_device", "restore"):
        assert callable(getattr(otpbridge.Device, name))
