"""Remote backends: where encrypted vault objects live (see docs/ARCHITECTURE.md)."""
