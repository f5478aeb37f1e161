"""Pages answer oversized uploads and unknown addresses with a readable page, not a bare status."""
from __future__ import annotations

import dataclasses

import pytest

from server.http.app import create_app


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_oversized_upload_gets_a_translated_page(aiohttp_client, settings, db):
    small = dataclasses.replace(settings, max_evidence_bytes=1024 * 1024)
    client = await aiohttp_client(create_app(small, db=db))
    await client.get("/file")  # sets the CSRF cookie
    body = b"x" * (7 * 1024 * 1024)
    r = await client.post("/file", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 413
    text = await r.text()
    assert "text/html" in r.headers["Content-Type"] and "1 MB" in text and "太大" in text
    r = await client.get("/no/such/page?lang=en")
    assert r.status == 404 and "text/html" in r.headers["Content-Type"]
