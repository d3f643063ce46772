"""The golden vault vectors (tests/vectors/vault/) and the script that makes them, shared
by the version-1 and version-2 vector tests."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors" / "vault"


def load(path: Path) -> dict:
    return json.loads(path.read_text("utf-8"))


def field_bytes(doc: dict, field: str) -> bytes | None:
    value = doc.get(field)
    return None if value is None else base64.b64decode(value, validate=True)


def vector_script():
    """scripts/make_vault_vectors.py as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("make_vault_vectors", REPO / "scripts" / "make_vault_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
