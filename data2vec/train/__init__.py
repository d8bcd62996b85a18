"""Explicit, importable training loops."""
