"""The clerks archive (search, the case record, integrity checks, export) and the analytics."""
