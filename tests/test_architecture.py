"""The layout rules of docs/ARCHITECTURE.md that import-linter does not check itself."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO

SOURCES = [p for top in ("bridge", "backends", "plugins") for p in (REPO / top).rglob("*.py")]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    parts[0] = {"bridge": "otpbridge", "backends": "otpbridge.backends", "plugins": "otpbridge.plugins"}[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _private_uses(path: Path) -> list[str]:
    """Private names of another otpbridge module: imported, or reached as ``module._name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("otpbridge"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if alias.name.startswith("_") and not alias.name.startswith("__") and node.module != me:
                    found.append(f"{path.name}:{node.lineno} imports {target}")
                modules[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("otpbridge"):
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.name}:{node.lineno} uses {modules[node.value.id]}.{node.attr}")
    return found


def test_sources_found():
    names = {_module_name(p) for p in SOURCES}
    assert {"otpbridge.engine.fastpath", "otpbridge.core.model", "otpbridge.plugins.keepass"} <= names


def test_no_module_uses_a_private_name_of_another():
    assert [hit for p in SOURCES for hit in _private_uses(p)] == []


def test_no_module_imports_the_fast_path_back():
    """engine.fastpath loads the rest of the engine lazily; importing it back would make
    the no-change run pay for merge, remote and vault again (SPEC §9)."""
    def imports_fastpath(path: Path) -> bool:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "otpbridge.engine.fastpath":
                return True
            if isinstance(node, ast.Import) and any(a.name == "otpbridge.engine.fastpath" for a in node.names):
                return True
        return False

    assert [p.name for p in SOURCES if p.parts[-2] == "engine" and imports_fastpath(p)] == []


def test_every_subpackage_says_what_it_owns():
    for pkg in ("core", "vault", "stores", "engine", "automation", "cli"):
        init = REPO / "bridge" / pkg / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "May use" in doc, pkg
