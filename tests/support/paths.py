"""Where the test data lives: ``tests/fixtures`` inside the repository (see its README)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
