"""The outcome pages without a browser: the mediator drafts, finalises and issues a link on the staff page, the
applicant signs on /lookup/outcome, the respondent on their personal link, the clerk verifies the PDF."""
from __future__ import annotations

import re
import shutil

import aiohttp
import pytest

from tests.api.helpers import PASSWORD

from .helpers import APPLICANT_ID, DRAFT, case_in_mediation, signature_png


@pytest.fixture
def db_url(tmp_path, sqlite_template):
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def as_staff(client, username: str) -> str:
    client.session.cookie_jar.clear()
    r = await client.post("/login", data={"username": username, "password": PASSWORD,
                                          "csrf_token": csrf_of(await (await client.get("/login")).text())},
                          allow_redirects=False)
    assert r.status == 303, await r.text()
    return username


async def page(client, path: str, status: int = 200) -> str:
    r = await client.get(path)
    text = await r.text()
    assert r.status == status, text[:2000]
    return text


async def post(client, path: str, data: dict, *, csrf_from: str, status: int = 303) -> aiohttp.ClientResponse:
    r = await client.post(path, data={**data, "csrf_token": csrf_of(await page(client, csrf_from))},
                          allow_redirects=False)
    assert r.status == status, (await r.text())[:3000]
    return r


async def test_portal_flow(client, db):
    c = await case_in_mediation(client, db)
    base = f"/staff/cases/{c.case_id}/agreement"
    await as_staff(client, "mediator")
    html = await page(client, f"/staff/cases/{c.case_id}")
    assert base in html  # the case page leads to the agreement
    html = await page(client, base)
    assert 'data-testid="draft-form"' in html and "template-terms" in html
    await post(client, base + "/save", {"template": "labour", "facts": DRAFT["facts"],
                                         "terms": "\n".join(DRAFT["terms"]),
                                         "performance_deadline": DRAFT["performance_deadline"]}, csrf_from=base)
    html = await page(client, base)
    assert "23,000" in html and 'name="version" value="1"' in html
    await post(client, base + "/finalise", {"version": "1"}, csrf_from=base)
    html = await page(client, base)
    assert 'data-status="final"' in html and 'data-testid="mediator-sign"' in html
    # Editing now is refused with a clear message.
    await post(client, base + "/save", {"facts": "改"}, csrf_from=base, status=409)
    r = await post(client, base + "/link", {"party_id": str(c.respondent_id)}, csrf_from=base)
    html = await page(client, r.headers["Location"])
    url = re.search(r'value="(http[^"]+/outcome/p/[^"]+)"', html).group(1)
    token_path = url.split("127.0.0.1:8080", 1)[1]
    text_hash = re.search(r'data-testid="text-hash">([0-9a-f]{64})<', html).group(1)
    await post(client, base + "/sign", {"signature": signature_png(3), "text_sha256": text_hash, "agree": "yes"},
               csrf_from=base)

    # The applicant: /lookup, then the outcome page; a wrong ID ending is shown as a field error.
    client.session.cookie_jar.clear()
    await post(client, "/lookup", {"number": c.number, "phone": c.phone, "code": c.code}, csrf_from="/lookup")
    html = await page(client, "/lookup/case")
    assert "/lookup/outcome" in html
    html = await page(client, "/lookup/outcome")
    assert 'data-testid="sign-form"' in html and 'name="id_last6"' in html
    r = await post(client, "/lookup/outcome/sign", {"signature": signature_png(1), "text_sha256": text_hash,
                                                    "id_last6": "999999", "agree": "yes"},
                   csrf_from="/lookup/outcome", status=401)
    assert "后六位不正确" in await r.text()
    await post(client, "/lookup/outcome/sign", {"signature": signature_png(1), "text_sha256": text_hash,
                                                "id_last6": APPLICANT_ID[-6:], "agree": "yes"},
               csrf_from="/lookup/outcome")
    assert 'data-testid="you-signed"' in await page(client, "/lookup/outcome")

    # The respondent, by personal link (no ID number on file: the link alone), in English.
    client.session.cookie_jar.clear()
    html = await page(client, token_path + "?lang=en")
    assert "Sign the agreement" in html
    await post(client, token_path + "/sign", {"signature": signature_png(2), "text_sha256": text_hash,
                                              "agree": "yes"}, csrf_from=token_path)
    html = await page(client, token_path)
    assert 'data-testid="effective"' in html and 'data-testid="apply-confirmation"' in html
    pdf = await (await client.get(token_path + "/agreement.pdf")).read()
    assert pdf.startswith(b"%PDF")
    assert (await client.get("/outcome/p/" + "x" * 32)).status == 404

    # The clerk's verification page: the real file passes, an altered one fails.
    await as_staff(client, "clerk")
    html = await page(client, "/staff/agreements/verify")
    for data, ok in ((pdf, "yes"), (pdf[:-200] + bytes(200), "no")):
        form = aiohttp.FormData()
        form.add_field("csrf_token", csrf_of(html))
        form.add_field("file", data, filename="协议.pdf", content_type="application/pdf")
        r = await client.post("/staff/agreements/verify", data=form)
        assert r.status == 200
        assert f'data-ok="{ok}"' in await r.text()
