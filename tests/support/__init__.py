"""Test support shared by every test module (paths, oracles, servers)."""
