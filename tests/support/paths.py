"""Where the shared fixtures live: ``../shared`` beside the repository (also in CI)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OTPBRIDGE_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
