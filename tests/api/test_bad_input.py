"""Bad input on every endpoint gets a clear 4xx error and writes nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from server.core.models import Base

from .helpers import case_body, file_case, login, seed

BIG = "字" * 20000


async def _row_counts(db) -> dict[str, int]:
    async with db.session() as s:
        return {t.name: (await s.execute(select(func.count()).select_from(t))).scalar_one()
                for t in Base.metadata.sorted_tables if t.name != "staff_sessions"}


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
    assert not problems, "\n".join(problems)
    after = await _row_counts(db)
    # A refused login writes nothing either; only the successful logins above added sessions.
    assert after == before
