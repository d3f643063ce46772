"""Store plugins: one module per password store or export format (see docs/ARCHITECTURE.md)."""
