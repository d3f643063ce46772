"""Entry points: built-ins load like third-party plugins; missing extras say how to fix it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from otpbridge.core import entrypoints
from otpbridge.stores import registry
from tests.support.paths import FIXTURES

BUILT_IN_PLUGINS = {"uris", "keepass", "pass", "gauth", "aegis", "2fas", "andotp", "bitwarden", "ente", "freeotp+", "authy"}


def test_every_built_in_is_registered_and_loads():
    assert BUILT_IN_PLUGINS <= set(registry.plugin_kinds())
    for kind in BUILT_IN_PLUGINS:
        cls = registry.load_plugin(kind)
        assert cls.kind == kind and cls.reads
    assert {"local", "rclone"} <= set(entrypoints.names(entrypoints.BACKEND_GROUP))


def _run_without(module: str, args: list[str], cwd, env=None) -> subprocess.CompletedProcess:
    """Run the CLI in a child where importing ``module`` fails as if it were not installed."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules[{module!r}] = None  # makes 'import {module}' raise ModuleNotFoundError
        from otpbridge.cli import main
        sys.exit(main({args!r}))
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=60, env=env)


@pytest.mark.parametrize(
    "module, args, extra",
    [
        # reading a KDBX needs no pykeepass any more (plugins/keepass_kdbx.py); writing does
        ("pykeepass", ["convert", "uris:codes.txt", "keepass:db.kdbx"], "keepass"),
        ("google.protobuf", ["list", f"gauth:{FIXTURES / 'google_authenticator' / 'example_export.txt'}"], "gauth"),
    ],
)
def test_missing_optional_dependency_names_the_pip_install(tmp_path, module, args, extra):
    import os

    import pykeepass

    pykeepass.create_database(str(tmp_path / "db.kdbx"), password="pw")
    (tmp_path / "codes.txt").write_text("otpauth://totp/A:a?secret=JBSWY3DPEHPK3PXP&issuer=A\n")
    env = dict(os.environ, OTPBRIDGE_KEEPASS_PASSWORD="pw")
    proc = _run_without(module, args, tmp_path, env)
    assert proc.returncode == 1, proc.stderr
    assert f"pip install 'otpbridge[{extra}]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_formats_lists_a_kind_whose_dependency_is_missing(tmp_path):
    proc = _run_without("pykeepass", ["formats", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "keepass" in proc.stdout
