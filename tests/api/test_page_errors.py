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


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_malformed_form_bodies_get_the_translated_error_page_and_write_nothing(aiohttp_client, settings, db):
    from .helpers import csrf_of, row_counts, seed

    # 1 MB a file, 5 files: 6 MB a request, standing in for the default 51 MB (a 60 MB body).
    small = dataclasses.replace(settings, max_evidence_bytes=1024 * 1024)
    client = await aiohttp_client(create_app(small, db=db))
    await seed(db)
    token = csrf_of(await (await client.get("/file")).text())  # and the CSRF cookie
    before = await row_counts(db)
    b = "xyzzy"
    field = b'Content-Disposition: form-data; name="title"\r\n\r\n' + "工资".encode()
    bodies = [
        ("no boundary", "multipart/form-data", b"--" + b.encode() + b"\r\n" + field + b"\r\n--xyzzy--\r\n", 400),
        ("a broken part header", f"multipart/form-data; boundary={b}",
         b"--xyzzy\r\nContent-Disposition form-data name=title\r\n\r\nx\r\n--xyzzy--\r\n", 400),
        ("no closing boundary", f"multipart/form-data; boundary={b}", b"--xyzzy\r\n" + field + b"0" * 1000, 400),
        ("8 MB without a closing boundary", f"multipart/form-data; boundary={b}",
         b"--xyzzy\r\n" + field + b"0" * (8 * 1024 * 1024), 413),
    ]
    # The CSRF check reads the form (no header); with the token in X-CSRF-Token, or a bearer
    # header, the page's own handler does.
    ways = [("form token", {}), ("header token", {"X-CSRF-Token": token}), ("bearer", {"Authorization": "Bearer x"})]
    problems = []
    for path in ("/file", "/lookup"):
        for what, ctype, body, status in bodies:
            for how, headers in ways if status == 400 else ways[:1]:
                for lang, text in (("", "表单格式有误" if status == 400 else "太大"),
                                   ("?lang=en", "not a well-formed form" if status == 400 else "too large")):
                    r = await client.post(path + lang, data=body, headers={**headers, "Content-Type": ctype})
                    page = await r.text()
                    if r.status != status or "text/html" not in r.headers.get("Content-Type", "") \
                            or text not in page or f'data-status="{status}"' not in page:
                        problems.append(f"POST {path}{lang} ({what}, {how}): {r.status} "
                                        f"{r.headers.get('Content-Type')} {page[:200]!r}")
    assert not problems, "\n".join(problems)
    assert await row_counts(db) == before
