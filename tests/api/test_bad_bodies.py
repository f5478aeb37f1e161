"""Bodies that cannot be read: JSON nested past the bound (refused before parsing), malformed
multipart and form bodies. Each gets a clear 4xx, as JSON on the API, and nothing is written."""
from __future__ import annotations

import dataclasses
import json

import pytest

from server.http.app import create_app
from server.http.util import MAX_JSON_DEPTH

from .helpers import case_body, file_case, login, row_counts, seed

# Python's parser recurses once per level: 50,000 used to end in RecursionError, a 500.
DEEP_BODIES = {
    "unclosed arrays": "[" * 50_000,
    "unclosed objects": '{"a":' * 50_000,
    "closed arrays in a field": '{"title": ' + "[" * 5_000 + "]" * 5_000 + "}",
}


def _multipart(boundary: str, *parts: bytes, close: bool = True) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return body + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


def _case_part(raw: str | bytes) -> bytes:
    data = raw.encode() if isinstance(raw, str) else raw
    return b'Content-Disposition: form-data; name="case"\r\nContent-Type: application/json\r\n\r\n' + data


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_deeply_nested_json_is_refused_before_parsing_and_writes_nothing(client, db):
    w = await seed(db)
    cid = (await file_case(client, w.inst_a))["case"]["id"]
    intake, admin = await login(client, "intake"), await login(client, "admin")
    client.session.cookie_jar.clear()  # bearer tokens only
    before = await row_counts(db)
    routes = [({}, "POST", "/cases"), ({}, "POST", "/auth/login"), ({}, "POST", "/join-tokens/verify"),
              ({}, "POST", "/link-check/result"), (intake, "POST", f"/cases/{cid}/reject"),
              (admin, "POST", "/institutions"), (admin, "PATCH", f"/users/{w.users['clerk']}")]
    problems = []
    for what, raw in DEEP_BODIES.items():
        for headers, method, path in routes:
            r = await client.request(method, "/api/v1" + path, data=raw,
                                     headers={**headers, "Content-Type": "application/json"})
            body = await r.json()
            err = body.get("error") or {}
            if r.status != 422 or err.get("code") != "invalid_json" or "nested too deeply" not in err.get("message", ""):
                problems.append(f"{what}: {method} {path}: {r.status} {body}")
        # The same bound on the filing form's JSON field.
        boundary = "deep-boundary"
        r = await client.post("/api/v1/cases", data=_multipart(boundary, _case_part(raw)),
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        body = await r.json()
        if r.status != 422 or body["error"]["code"] != "invalid_json" or body["error"]["fields"] != {"case": "too_deep"}:
            problems.append(f"{what}: multipart case field: {r.status} {body}")
    assert not problems, "\n".join(problems)
    # Within the bound the body is parsed and judged on its shape as before.
    nested = '{"title": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"
    r = await client.post("/api/v1/cases", data=nested, headers={"Content-Type": "application/json"})
    err = (await r.json())["error"]
    assert r.status == 422 and err["code"] == "validation_failed" and "title" in err["fields"], err
    assert await row_counts(db) == before


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_malformed_multipart_filing_gets_400_or_413_as_json_and_writes_nothing(aiohttp_client, settings, db):
    # A small upload limit (1 MB a file, 5 files: 6 MB a request) stands in for the default 10 MB
    # (51 MB a request): the 60 MB body without a closing boundary takes the same path as this 8 MB one.
    small = dataclasses.replace(settings, max_evidence_bytes=1024 * 1024)
    client = await aiohttp_client(create_app(small, db=db))
    w = await seed(db)
    before = await row_counts(db)
    good = json.dumps(case_body(w.inst_a))
    b = "xyzzy"
    evidence = b'Content-Disposition: form-data; name="evidence"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    cases = [
        ("no boundary", "multipart/form-data", _multipart(b, _case_part(good)), 400, "malformed_body"),
        ("an empty boundary", "multipart/form-data; boundary=", _multipart(b, _case_part(good)), 400, "malformed_body"),
        ("a broken part header", f"multipart/form-data; boundary={b}",
         _multipart(b, b"Content-Disposition form-data name=case\r\n\r\n" + good.encode()), 400, "malformed_body"),
        ("no closing boundary", f"multipart/form-data; boundary={b}",
         _multipart(b, _case_part(good), close=False) + b"--" + b.encode() + b"\r\n" + evidence + b"\x89PNG" * 100,
         400, "malformed_body"),
        ("garbage, no boundary at all", f"multipart/form-data; boundary={b}", b"not a multipart body", 400,
         "malformed_body"),
        ("a nested multipart", f"multipart/form-data; boundary={b}", _multipart(
            b, _case_part(good), b'Content-Disposition: form-data; name="evidence"\r\n'
            b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n\r\nx\r\n--inner--"), 400, "malformed_body"),
        ("an evidence file over the limit", f"multipart/form-data; boundary={b}",
         _multipart(b, _case_part(good), evidence + b"\x89PNG\r\n\x1a\n" + b"0" * (1024 * 1024)), 413, "too_large"),
        ("8 MB without a closing boundary", f"multipart/form-data; boundary={b}",
         _multipart(b, _case_part(good), close=False) + b"--" + b.encode() + b"\r\n" + evidence
         + b"0" * (8 * 1024 * 1024), 413, "too_large"),
        ("a 'case' field over 256 KB", f"multipart/form-data; boundary={b}",
         _multipart(b, _case_part('"' + "x" * 300_000 + '"')), 413, "too_large"),
    ]
    problems = []
    for what, ctype, body, status, code in cases:
        r = await client.post("/api/v1/cases", data=body, headers={"Content-Type": ctype})
        try:
            err = (await r.json())["error"]
        except Exception:  # noqa: BLE001
            problems.append(f"{what}: not a JSON error ({r.status} {r.content_type})")
            continue
        if r.status != status or err["code"] != code or not err["message"]:
            problems.append(f"{what}: {r.status} {err}")
    assert not problems, "\n".join(problems)
    assert await row_counts(db) == before
    # A well-formed one still files the case.
    r = await client.post("/api/v1/cases", data=_multipart(b, _case_part(good)),
                          headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    assert r.status == 201, await r.text()
