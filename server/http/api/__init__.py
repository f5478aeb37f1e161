"""The JSON API under /api/v1: one route registry (base.py) that also writes the OpenAPI document."""
