"""The golden vault vectors (tests/vectors/vault/) and the script that makes them, shared
by the version-1 and version-2 vector tests."""

from __future__ import annotations

import base64
import importlib.util
import json
from collections import Counter
from collections.abc import Iterable, Mapping
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


#: the exit code each outcome of a vector stands for (README "Exit codes")
EXIT = {"success": 0, "usage": 2, "wrong-passphrase": 3, "integrity": 4}


def check_vector_set(files: list[Path], needed: Iterable[str], at_least: Mapping[str, int]) -> list[dict]:
    """The vector files hold every ``needed`` case and ``at_least`` so many of each outcome;
    each file is named after its case and states the exit code of its outcome. Returns
    the documents, for the checks a version adds."""
    docs = [load(p) for p in files]
    names = {d["name"] for d in docs}
    missing = [n for n in needed if n not in names]
    assert not missing, f"vectors missing: {missing}"
    expects = Counter(d["expect"] for d in docs)
    assert all(expects[what] >= n for what, n in at_least.items()), expects
    for p, d in zip(files, docs, strict=True):
        assert p.stem == d["name"]
        assert d["exit_code"] == EXIT[d["expect"]], p.name
    return docs
