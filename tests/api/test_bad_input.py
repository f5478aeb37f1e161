"""Bad input on every endpoint gets a clear 4xx error and writes nothing."""
from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from sqlalchemy import select

from server.core.models import MediationSession

from .helpers import case_body, file_case, login, portal_login, row_counts as _row_counts, seed

BIG = "字" * 20000


async def _refusals(client, checks) -> list[str]:
    """Send each (headers, method, path, body, status, field or code); what did not get that JSON error."""
    problems = []
    for headers, method, path, body, status, expect in checks:
        kw = {"headers": headers}
        if body is not None:
            kw["json"] = body
        r = await client.request(method, "/api/v1" + path, **kw)
        try:
            err = (await r.json())["error"]
        except Exception:  # noqa: BLE001
            problems.append(f"{method} {path}: not a JSON error ({r.status})")
            continue
        if r.status != status or (expect not in err.get("fields", {}) and err["code"] != expect):
            problems.append(f"{method} {path} {body}: {r.status} {err}")
        if not err.get("message"):
            problems.append(f"{method} {path}: empty message")
    return problems


def _bad_cases(inst):
    good = case_body(inst)
    yield "type", {**good, "type": "lawsuit"}
    yield "category", {**good, "category": "weather"}
    yield "title", {**good, "title": ""}
    yield "description", {**good, "description": BIG}
    yield "institution_id", {**good, "institution_id": 999}
    yield "institution_id", {**good, "institution_id": "one"}
    yield "applicant.phone", {**good, "applicant": {"name": "张伟", "phone": "call me"}}
    yield "applicant.name", {**good, "applicant": {"phone": "13800001111"}}
    yield "applicant.id_number", {**good, "applicant": {**good["applicant"], "id_number": "!!"}}
    yield "respondents.0.name", {**good, "respondents": [{"name": ""}]}
    yield "respondents", {**good, "respondents": [{"name": "x"}] * 21}
    yield "extra", {**good, "extra": 1}
    yield "respondents", {**good, "respondents": []}


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_filing_rejects_bad_input_and_writes_nothing(client, db):
    w = await seed(db)
    before = await _row_counts(db)
    for field, body in _bad_cases(w.inst_a):
        r = await client.post("/api/v1/cases", json=body)
        assert r.status == 422, (field, r.status)
        err = (await r.json())["error"]
        assert err["code"] == "validation_failed" and err["message"]
        assert field in err["fields"], (field, err)
    for raw, ctype, status in [("{not json", "application/json", 422), ("[1,2]", "application/json", 422),
                               ("type=mediation", "application/x-www-form-urlencoded", 415),
                               ("x" * 300_000, "application/json", 413)]:
        r = await client.post("/api/v1/cases", data=raw, headers={"Content-Type": ctype})
        assert r.status == status, (raw[:20], r.status, await r.text())
        assert "error" in await r.json()
    assert await _row_counts(db) == before


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_staff_endpoints_reject_bad_input_and_write_nothing(client, db):
    w = await seed(db)
    filed = await file_case(client, w.inst_a)
    cid = filed["case"]["id"]
    intake, admin, mediator = await login(client, "intake"), await login(client, "admin"), await login(client, "mediator")
    await client.post(f"/api/v1/cases/{cid}/accept", headers=intake)
    await client.post(f"/api/v1/cases/{cid}/assign", headers=intake, json={"mediator_id": w.users["mediator"]})
    r = await client.post(f"/api/v1/cases/{cid}/sessions", headers=mediator, json={})
    sid = (await r.json())["session"]["id"]
    client.session.cookie_jar.clear()  # bearer tokens only, so "{}" really is anonymous
    before = await _row_counts(db)
    checks = [
        # (headers, method, path, body, expected status, expected field or code)
        (intake, "POST", f"/cases/{cid}/reject", {}, 422, "reason"),
        (intake, "POST", f"/cases/{cid}/reject", {"reason": "x"}, 422, "reason"),
        (intake, "POST", f"/cases/{cid}/transfer", {"institution_id": w.inst_a, "reason": "同一机构"}, 422, "institution_id"),
        (intake, "POST", f"/cases/{cid}/transfer", {"institution_id": 4242, "reason": "不存在"}, 422, "institution_id"),
        (intake, "POST", f"/cases/{cid}/assign", {"mediator_id": w.users["clerk"]}, 422, "mediator_id"),
        (intake, "POST", f"/cases/{cid}/assign", {"mediator_id": -1}, 422, "mediator_id"),
        (intake, "POST", f"/cases/{cid}/assign", {"mediator_id": True, "x": 1}, 422, "x"),
        (intake, "POST", f"/cases/{cid}/accept", None, 409, "illegal_transition"),
        (intake, "POST", "/cases/999999/accept", None, 404, "not_found"),
        (intake, "POST", "/cases/abc/accept", None, 404, "not_found"),
        (intake, "GET", "/cases?status=nonsense", None, 422, "status"),
        (intake, "GET", "/cases?page=0", None, 422, "page"),
        (intake, "GET", "/cases?q=" + "x" * 200, None, 422, "q"),
        (intake, "GET", "/mediators?institution_id=x", None, 422, "institution_id"),
        (mediator, "POST", f"/cases/{cid}/close", {"result": "maybe"}, 422, "result"),
        (mediator, "POST", f"/cases/{cid}/sessions", {"scheduled_at": "tomorrow"}, 422, "scheduled_at"),
        (mediator, "POST", f"/cases/{cid}/sessions", {"scheduled_at": "2026-12-01T09:00:00"}, 422, "scheduled_at"),
        (mediator, "POST", f"/sessions/{sid}/invites", {"role": "judge"}, 422, "role"),
        (mediator, "POST", f"/sessions/{sid}/invites", {"role": "party"}, 422, "party_id"),
        (mediator, "POST", f"/sessions/{sid}/invites", {"role": "party", "party_id": 99999}, 422, "party_id"),
        (mediator, "POST", f"/sessions/{sid}/invites", {"role": "expert"}, 422, "name"),
        (mediator, "POST", f"/sessions/{sid}/invites", {"role": "expert", "expert_id": 777}, 422, "expert_id"),
        (mediator, "POST", f"/sessions/{sid}/invites", {"role": "observer", "name": "x", "expires_in": 5}, 422, "expires_in"),
        (mediator, "POST", f"/sessions/{sid}/invites/12345/revoke", None, 404, "not_found"),
        (mediator, "POST", "/sessions/424242/end", None, 404, "not_found"),
        (admin, "POST", "/institutions", {"name": "x"}, 422, "name"),
        (admin, "POST", "/institutions", {"name": "城关镇人民调解委员会"}, 409, "name"),
        (admin, "POST", "/institutions", {"name": "新的调委会", "prefix": "cg"}, 422, "prefix"),
        (admin, "POST", "/institutions", {"name": "新的调委会", "prefix": "CG"}, 409, "prefix"),
        (admin, "POST", "/users", {"username": "a b", "password": "long-enough-pw", "role": "clerk"}, 422, "username"),
        (admin, "POST", "/users", {"username": "short", "password": "short", "role": "clerk"}, 422, "password"),
        (admin, "POST", "/users", {"username": "newmed", "password": "long-enough-pw", "role": "mediator"}, 422, "institution_id"),
        (admin, "POST", "/users", {"username": "INTAKE", "password": "long-enough-pw", "role": "clerk"}, 409, "username"),
        (admin, "POST", "/users", {"username": "boss", "password": "long-enough-pw", "role": "god"}, 422, "role"),
        (admin, "PATCH", f"/users/{w.users['admin']}", {"active": False}, 422, "active"),
        (admin, "PATCH", "/users/9999", {"name": "x"}, 404, "not_found"),
        (admin, "POST", "/experts", {"name": "x", "specialty": "labour", "level": "province"}, 422, "level"),
        (admin, "POST", "/experts", {"name": "x", "specialty": "labour", "phone": "nope"}, 422, "phone"),
        ({}, "POST", "/auth/login", {"username": "intake"}, 422, "password"),
        ({}, "POST", "/auth/login", {"username": "intake", "password": "wrong-password"}, 401, "bad_credentials"),
        ({}, "POST", "/join-tokens/verify", {"token": 5}, 422, "token"),
        ({}, "GET", "/cases/NOPE-1", None, 401, "unauthorized"),
        ({}, "GET", "/no-such-route", None, 404, "not_found"),
    ]
    problems = await _refusals(client, checks)
    assert not problems, "\n".join(problems)
    after = await _row_counts(db)
    # A refused login writes nothing either; only the successful logins above added sessions.
    assert after == before


# --- ids, dates and text: what the edge accepts (docs/api.md, "Accepted input") ----------------------------------

SUPERSCRIPT_TWO = "\u00b2"  # "²".isdigit() is True, yet int("²") raises
ARABIC_ONE = "\u0661"  # int("١") == 1: it would name case 1, but an id is ASCII digits
FULLWIDTH_ONE = "\uff11"
NOT_ASCII = (SUPERSCRIPT_TWO, ARABIC_ONE, FULLWIDTH_ONE)
BEYOND = (3_000_000_000, 2**63)  # past PostgreSQL's integer column; past 64 bits (SQLite, bigint)
CONTROL = ("\x00", "\x1b", "\x7f")


async def _in_mediation(client, db):
    """A case in mediation with a session and the applicant's request for another mediator, and the
    staff's bearer headers (no cookie)."""
    from tests.outcome.helpers import case_in_mediation, login as bearer

    c = await case_in_mediation(client, db)
    async with db.session() as s:
        sid = (await s.execute(select(MediationSession.id))).scalar_one()
    r = await client.post(f"/api/v1/cases/{c.number}/recusal", headers=c.applicant, json={"reason": "调解员是对方亲戚"})
    assert r.status == 201, await r.text()
    return c, sid, (await r.json())["recusal"]["id"], await bearer(client, "intake")


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_api_ids_are_ascii_digits_within_the_database_range(client, db):
    c, sid, rid, intake = await _in_mediation(client, db)
    cid, admin, mediator = c.case_id, c.admin, c.mediator
    r = await client.post(f"/api/v1/sessions/{sid}/invites", headers=mediator, json={"role": "observer", "name": "旁听"})
    link = {"X-Join-Token": (await r.json())["token"]}
    before = await _row_counts(db)
    checks = []
    for x in NOT_ASCII:
        checks += [
            (link, "GET", f"/link-check/download?bytes={x}", None, 422, "bytes"),
            (c.applicant, "PUT", f"/cases/{x}/parties/{c.applicant_id}/contact", {"email": "zw@example.cn"}, 404,
             "not_found"),
            (admin, "GET", f"/cases/{x}", None, 404, "not_found"),
            (admin, "GET", f"/cases/{x}/record", None, 404, "not_found"),
            (mediator, "GET", f"/cases/{x}/procedure", None, 404, "not_found"),
            (mediator, "GET", f"/sessions/{x}/calendar.ics", None, 404, "not_found"),
            (admin, "PATCH", f"/users/{x}", {"name": "x"}, 404, "not_found"),
            (intake, "GET", f"/cases?page={x}", None, 422, "page"),
            (intake, "GET", f"/mediators?institution_id={x}", None, 422, "institution_id"),
            (mediator, "GET", f"/recusals?case_id={x}", None, 422, "case_id"),
            (admin, "GET", f"/archive/cases?mediator_id={x}", None, 422, "mediator_id"),
            (admin, "GET", f"/analytics/summary?institution_id={x}", None, 422, "institution_id"),
        ]
    for n in BEYOND:
        checks += [
            ({}, "POST", "/cases", case_body(n), 422, "institution_id"),
            (admin, "POST", f"/cases/{cid}/transfer", {"institution_id": n, "reason": "转到别处"}, 422, "institution_id"),
            (admin, "POST", f"/cases/{cid}/assign", {"mediator_id": n}, 422, "mediator_id"),
            (admin, "POST", f"/recusals/{rid}/decide", {"grant": True, "mediator_id": n}, 422, "mediator_id"),
            (mediator, "POST", f"/sessions/{sid}/invites", {"role": "party", "party_id": n}, 422, "party_id"),
            (mediator, "POST", f"/sessions/{sid}/invites", {"role": "expert", "expert_id": n}, 422, "expert_id"),
            (mediator, "POST", f"/cases/{cid}/agreement/links", {"party_id": n}, 422, "party_id"),
            (admin, "POST", "/users", {"username": "newclerk", "password": "long-enough-pw", "role": "clerk",
                                       "institution_id": n}, 422, "institution_id"),
            (admin, "PATCH", f"/users/{n}", {"name": "x"}, 404, "not_found"),
            (admin, "GET", f"/cases/{n}/record", None, 404, "not_found"),
            (intake, "GET", f"/mediators?institution_id={n}", None, 422, "institution_id"),
            (mediator, "GET", f"/recusals?case_id={n}", None, 422, "case_id"),
            (admin, "GET", f"/archive/cases?institution_id={n}", None, 422, "institution_id"),
            (admin, "GET", f"/analytics/summary?institution_id={n}", None, 422, "institution_id"),
            (admin, "GET", f"/archive/cases?after={_cursor(f'2026-01-01T00:00:00+00:00|{n}')}", None, 422, "after"),
        ]
    problems = await _refusals(client, checks)
    assert not problems, "\n".join(problems)
    assert await _row_counts(db) == before


async def _page(client, method: str, path: str, data: dict | None = None):
    r = await client.request(method, path, data=data, allow_redirects=False)
    return r, await r.text()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_pages_take_ascii_ids_within_range_and_answer_a_translated_page(client, db):
    c, sid, rid, _intake = await _in_mediation(client, db)
    cid = c.case_id
    filed = (await file_case(client, c.world.inst_a))["case"]["id"]  # still to be accepted or transferred
    client.session.cookie_jar.clear()
    csrf = (await (await client.get("/file")).text()).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    filing = {"csrf_token": csrf, "type": "mediation", "category": "labour", "title": "拖欠工资纠纷",
              "description": "包工头拖欠四个月工资共计两万三千元。", "applicant.name": "张伟",
              "applicant.phone": "13800001111", "respondents.0.name": "某劳务公司"}
    before = await _row_counts(db)
    for bad in (*NOT_ASCII, *map(str, BEYOND)):
        r, html = await _page(client, "POST", "/file", {**filing, "institution_id": bad})
        assert r.status == 422 and 'id="err-institution_id"' in html, (bad, r.status)
        assert "请从列表中选择" in html
    assert await _row_counts(db) == before

    csrf = await portal_login(client, "admin")
    before = await _row_counts(db)
    for x in NOT_ASCII:
        for path in (f"/staff/cases/{x}", f"/archive/cases/{x}", f"/archive/cases/{x}/verify",
                     f"/staff/cases/{x}/agreement", f"/staff/procedure/sessions/{x}/calendar.ics",
                     f"/staff/sessions/{x}/player"):
            r, html = await _page(client, "GET", path)
            assert r.status == 404 and r.content_type == "text/html" and "页面不存在" in html, (path, r.status)
        r, html = await _page(client, "GET", f"/staff/cases/{x}?lang=en")
        assert r.status == 404 and "Not found" in html
        r, html = await _page(client, "POST", f"/admin/users/{x}", {"csrf_token": csrf, "op": "activate"})
        assert r.status == 404 and "页面不存在" in html
        r, html = await _page(client, "GET", f"/staff/queue?page={x}")
        assert r.status == 200, r.status  # an unusable page number shows the first page
        r, _ = await _page(client, "POST", f"/staff/procedure/recusals/{rid}/decide",
                           {"csrf_token": csrf, "decision": "grant", "mediator_id": x})
        assert r.status == 303 and r.headers["Location"].endswith("#procedure")  # refused with a message
    for n in BEYOND:
        r, html = await _page(client, "POST", f"/staff/cases/{filed}/transfer",
                              {"csrf_token": csrf, "institution_id": str(n), "reason": "转到别处"})
        assert r.status == 422 and 'id="err-transfer-institution_id"' in html, (n, r.status)
        r, _ = await _page(client, "POST", f"/staff/procedure/recusals/{rid}/decide",
                           {"csrf_token": csrf, "decision": "grant", "mediator_id": str(n)})
        assert r.status == 303
    assert await _row_counts(db) == before

    csrf = await portal_login(client, "mediator")
    before = await _row_counts(db)
    for bad in (*NOT_ASCII, *map(str, BEYOND)):
        r, html = await _page(client, "POST", f"/staff/sessions/{sid}/invites",
                              {"csrf_token": csrf, "role": "party", "party_id": bad})
        assert r.status == 422 and f'id="err-s{sid}-party_id"' in html, (bad, r.status)
        r, _ = await _page(client, "POST", f"/staff/procedure/cases/{cid}/schedule",
                           {"csrf_token": csrf, "date": "2030-05-06", "time": "09:30", "duration": bad})
        assert r.status == 303 and r.headers["Location"].endswith("#schedule"), (bad, r.status)
    assert await _row_counts(db) == before


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_dates_outside_the_accepted_range_are_refused(client, db):
    c, _sid, _rid, _intake = await _in_mediation(client, db)
    admin, mediator = c.admin, c.mediator
    before = await _row_counts(db)
    checks = [
        (admin, "GET", "/archive/cases?from=0001-01-01", None, 422, "from"),
        (admin, "GET", "/archive/cases?to=9999-12-31", None, 422, "to"),
        (admin, "GET", "/archive/cases?from=0001-01-01&to=9999-12-31", None, 422, "from"),
        (admin, "GET", "/archive/cases?from=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01", None, 422, "from"),  # ２０２６
        (admin, "GET", f"/archive/cases?after={_cursor('0001-01-01T00:00:00+14:00|1')}", None, 422, "after"),
        (admin, "GET", f"/archive/cases?before={_cursor('9999-12-31T23:59:59-12:00|1')}", None, 422, "before"),
        (admin, "GET", "/analytics/summary?to=9999-12-31", None, 422, "to"),
        (admin, "GET", "/analytics/summary?to=0001-01-01", None, 422, "to"),
        (admin, "GET", "/analytics/summary?from=0001-01-01&to=0001-12-31", None, 422, "from"),
        (admin, "GET", "/analytics/csv?table=by_category&to=9999-12-31", None, 422, "to"),
        (mediator, "POST", f"/cases/{c.case_id}/sessions", {"scheduled_at": "0001-01-01T00:00:00+08:00"}, 422,
         "scheduled_at"),
        (mediator, "POST", f"/cases/{c.case_id}/sessions", {"scheduled_at": "9999-12-31T23:59:59-12:00"}, 422,
         "scheduled_at"),
    ]
    problems = await _refusals(client, checks)
    assert not problems, "\n".join(problems)
    assert await _row_counts(db) == before
    await portal_login(client, "admin")
    before = await _row_counts(db)
    r, html = await _page(client, "GET", "/archive?from=0001-01-01&to=9999-12-31")
    assert r.status == 200 and "检索条件有误" in html
    r, html = await _page(client, "GET", "/analytics?to=9999-12-31")
    assert r.status == 200 and "筛选条件有误" in html
    r, html = await _page(client, "GET", "/analytics?from=0001-01-01&to=0001-12-31&lang=en")
    assert r.status == 200 and "Some filters are invalid" in html
    assert await _row_counts(db) == before


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_control_characters_are_refused_the_same_on_both_databases(client, db):
    c, sid, _rid, intake = await _in_mediation(client, db)
    cid, admin, mediator, inst = c.case_id, c.admin, c.mediator, c.world.inst_a
    before = await _row_counts(db)
    checks = []
    for ch in CONTROL:
        q = quote(ch)
        checks += [
            ({}, "POST", "/auth/login", {"username": f"intake{ch}", "password": "whatever"}, 422, "username"),
            ({}, "POST", "/cases", case_body(inst, title=f"拖欠{ch}工资"), 422, "title"),
            ({}, "POST", "/cases", case_body(inst, applicant={"name": f"张{ch}伟", "phone": "13800001111"}), 422,
             "applicant.name"),
            ({"X-Access-Code": c.code}, "GET", f"/cases/{quote(c.number)}{q}", None, 422, "ref"),
            (admin, "GET", f"/cases/{q}{quote(c.number)}", None, 422, "ref"),
            (intake, "GET", f"/cases?q={q}", None, 422, "q"),
            (admin, "GET", f"/archive/cases?party=%E5%BC%A0{q}", None, 422, "party"),
            (admin, "GET", f"/archive/cases?number={q}", None, 422, "number"),
            (admin, "POST", "/experts", {"name": f"刘{ch}", "specialty": "labour"}, 422, "name"),
            (mediator, "GET", f"/experts?specialty=labour{q}", None, 422, "specialty"),
            (mediator, "POST", f"/sessions/{sid}/invites", {"role": "observer", "name": f"旁听{ch}"}, 422, "name"),
            (mediator, "PUT", f"/cases/{cid}/agreement", {"template": "labour", "terms": [f"条款{ch}"]}, 422, "terms"),
            (c.applicant, "POST", f"/cases/{c.number}/recusal", {"reason": f"理由{ch}充分"}, 422, "reason"),
        ]
    # A lone surrogate is not text either (PostgreSQL and SQLite cannot store it).
    checks.append(({}, "POST", "/cases", case_body(inst, title="拖欠\ud800工资"), 422, "title"))
    problems = await _refusals(client, checks)
    assert not problems, "\n".join(problems)
    assert await _row_counts(db) == before
    # Tabs and line breaks are text.
    r = await client.post("/api/v1/cases", json=case_body(inst, description="第一行\r\n第二行\n\t第三行：欠款两万"))
    assert r.status == 201, await r.text()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_pages_refuse_control_characters_with_a_translated_message(client, db):
    c, _sid, _rid, _intake = await _in_mediation(client, db)
    client.session.cookie_jar.clear()
    html = await (await client.get("/login")).text()
    csrf = html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    before = await _row_counts(db)
    r, html = await _page(client, "POST", "/login", {"csrf_token": csrf, "username": "intake\x00",
                                                     "password": "whatever"})
    assert r.status == 422 and 'id="err-username"' in html and "控制字符" in html, r.status
    r, html = await _page(client, "POST", "/lookup", {"csrf_token": csrf, "number": c.number + "\x00",
                                                      "phone": "13800001111", "code": c.code})
    assert r.status == 422 and 'id="err-number"' in html and "控制字符" in html, r.status
    r, html = await _page(client, "POST", "/file", {
        "csrf_token": csrf, "type": "mediation", "category": "labour", "title": "拖欠\x00工资",
        "description": "包工头拖欠四个月工资共计两万三千元。", "institution_id": str(c.world.inst_a),
        "applicant.name": "张伟", "applicant.phone": "13800001111", "respondents.0.name": "某劳务公司"})
    assert r.status == 422 and 'id="err-title"' in html and "控制字符" in html, r.status
    assert await _row_counts(db) == before

    csrf = await portal_login(client, "admin")
    before = await _row_counts(db)
    r, html = await _page(client, "GET", "/staff/queue?q=%00")
    assert r.status == 422 and r.content_type == "text/html" and "内容有误" in html, r.status
    r, html = await _page(client, "GET", "/staff/queue?q=%1B&lang=en")
    assert r.status == 422 and "control characters" in html, r.status
    r, html = await _page(client, "GET", "/archive?party=%E5%BC%A0%00")
    assert r.status == 200 and "检索条件有误" in html
    r, html = await _page(client, "POST", "/admin/experts", {"csrf_token": csrf, "name": "刘\x00", "specialty": "labour",
                                                             "level": "county"})
    assert r.status == 422 and 'id="err-name"' in html and "控制字符" in html, r.status
    assert await _row_counts(db) == before
