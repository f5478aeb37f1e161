"""Shared test and benchmark support (import-linter contract, helpers)."""
