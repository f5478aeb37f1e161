"""The whole case workflow over HTTP, on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import aiohttp
from sqlalchemy import func, select, update

from server.core import audit
from server.core.models import AuditEntry, Case

from .helpers import case_body, file_case, login, png_bytes, seed


async def test_full_workflow_from_filing_to_archive(client, db):
    w = await seed(db)
    filed = await file_case(client, w.inst_a)
    number, code, case_id = filed["case"]["number"], filed["access_code"], filed["case"]["id"]
    assert number.startswith("CG-") and number.endswith("-000001")
    assert filed["case"]["status"] == "filed" and len(code) == 8

    # The applicant reads their own case by number + access code (+ phone).
    r = await client.get(f"/api/v1/cases/{number}", headers={"X-Access-Code": code, "X-Phone": "13800001111"})
    assert r.status == 200
    body = await r.json()
    assert body["case"]["status"] == "filed"
    assert [h["action"] for h in body["history"]] == ["case.filed"]
    assert "phone" not in body["case"]["parties"][0]  # staff-only details stay hidden
    r = await client.get(f"/api/v1/cases/{number}", headers={"X-Access-Code": code, "X-Phone": "+86 138-0000-1111"})
    assert r.status == 200  # the same phone written with the country code
    r = await client.get(f"/api/v1/cases/{number}", headers={"X-Access-Code": "WRONG123"})
    assert r.status == 401

    intake = await login(client, "intake")
    r = await client.get("/api/v1/cases?status=filed", headers=intake)
    assert [c["number"] for c in (await r.json())["cases"]] == [number]
    assert (await (await client.post(f"/api/v1/cases/{case_id}/accept", headers=intake)).json())["case"]["status"] == "accepted"

    r = await client.get("/api/v1/mediators", headers=intake)
    loads = {m["id"]: m["open_cases"] for m in (await r.json())["mediators"]}
    assert loads == {w.users["mediator"]: 0, w.users["mediator2"]: 0}
    r = await client.post(f"/api/v1/cases/{case_id}/assign", headers=intake, json={"mediator_id": w.users["mediator"]})
    assert (await r.json())["case"]["status"] == "assigned"
    r = await client.get("/api/v1/mediators", headers=intake)
    assert {m["id"]: m["open_cases"] for m in (await r.json())["mediators"]}[w.users["mediator"]] == 1

    mediator = await login(client, "mediator")
    r = await client.get("/api/v1/cases", headers=mediator)
    assert [c["id"] for c in (await r.json())["cases"]] == [case_id]
    r = await client.post(f"/api/v1/cases/{case_id}/sessions", headers=mediator,
                          json={"scheduled_at": "2026-12-01T09:00:00+08:00"})
    assert r.status == 201, await r.text()
    session = (await r.json())["session"]
    assert session["room_id"] and session["status"] == "scheduled"

    r = await client.get(f"/api/v1/cases/{case_id}", headers=mediator)
    parties = (await r.json())["case"]["parties"]
    applicant = next(p for p in parties if p["side"] == "applicant")
    r = await client.post(f"/api/v1/sessions/{session['id']}/invites", headers=mediator,
                          json={"role": "party", "party_id": applicant["id"]})
    assert r.status == 201, await r.text()
    invite = await r.json()
    assert invite["url"].endswith("/join/" + invite["token"])
    r = await client.post("/api/v1/join-tokens/verify", json={"token": invite["token"]})
    claims = await r.json()
    assert claims["valid"] and claims["role"] == "party" and claims["name"] == "张伟"
    assert claims["session_id"] == session["id"] and claims["room_id"] == session["room_id"]
    assert set(claims["grants"]) == {"publish", "subscribe"}

    r = await client.post(f"/api/v1/sessions/{session['id']}/invites", headers=mediator, json={"role": "mediator"})
    mine = await r.json()
    r = await client.post("/api/v1/join-tokens/verify", json={"token": mine["token"]})
    assert "admit" in (await r.json())["grants"]

    # Closing while a session is open is refused; ending it first works.
    r = await client.post(f"/api/v1/cases/{case_id}/close", headers=mediator, json={"result": "failed"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "sessions_open"
    assert (await client.post(f"/api/v1/sessions/{session['id']}/end", headers=mediator)).status == 200
    r = await client.post("/api/v1/join-tokens/verify", json={"token": invite["token"]})
    assert (await r.json())["error"]["code"] == "session_ended"
    r = await client.post(f"/api/v1/cases/{case_id}/close", headers=mediator, json={"result": "failed", "note": "双方分歧大"})
    assert (await r.json())["case"]["status"] == "failed"
    r = await client.post(f"/api/v1/cases/{case_id}/archive", headers=intake)
    assert (await r.json())["case"]["status"] == "archived"

    clerk = await login(client, "clerk")
    r = await client.get(f"/api/v1/cases/{case_id}/record", headers=clerk)
    assert r.status == 200
    rec = await r.json()
    actions = [e["action"] for e in rec["timeline"]]
    assert actions == ["case.filed", "case.accept", "case.assign", "case.open_session", "session.opened",
                       "invite.created", "invite.created", "session.ended", "case.fail", "followup.scheduled",
                       "case.archive"]
    assert all(e["hash"] and e["prev_hash"] for e in rec["timeline"])
    assert rec["sessions"][0]["invites"][0]["role"] == "party"
    async with db.session() as s:
        assert await audit.verify_chain(s) == []


async def test_reject_and_transfer_paths(client, db):
    w = await seed(db)
    intake, intake_b = await login(client, "intake"), await login(client, "intake_b")
    c1 = (await file_case(client, w.inst_a))["case"]["id"]
    c2 = (await file_case(client, w.inst_a, title="邻里纠纷"))["case"]["id"]

    r = await client.post(f"/api/v1/cases/{c1}/reject", headers=intake, json={"reason": "不属于受理范围"})
    assert (await r.json())["case"]["status"] == "rejected"
    r = await client.post(f"/api/v1/cases/{c1}/accept", headers=intake)
    assert r.status == 409 and (await r.json())["error"]["code"] == "illegal_transition"

    r = await client.post(f"/api/v1/cases/{c2}/transfer", headers=intake,
                          json={"institution_id": w.inst_b, "reason": "劳动争议由专业调委会调处"})
    body = await r.json()
    assert body["case"]["status"] == "transferred" and body["case"]["institution_id"] == w.inst_b
    # The old institution has lost it, the new one sees and decides it.
    assert (await client.post(f"/api/v1/cases/{c2}/accept", headers=intake)).status == 403
    r = await client.get("/api/v1/cases", headers=intake_b)
    assert [c["id"] for c in (await r.json())["cases"]] == [c2]
    assert (await client.post(f"/api/v1/cases/{c2}/accept", headers=intake_b)).status == 200
    # A mediator of another institution cannot be assigned.
    r = await client.post(f"/api/v1/cases/{c2}/assign", headers=intake_b, json={"mediator_id": w.users["mediator"]})
    assert r.status == 422 and "mediator_id" in (await r.json())["error"]["fields"]
    r = await client.post(f"/api/v1/cases/{c2}/assign", headers=intake_b, json={"mediator_id": w.users["mediator_b"]})
    assert (await r.json())["case"]["mediator_id"] == w.users["mediator_b"]


async def test_applicant_withdraws(client, db):
    w = await seed(db)
    filed = await file_case(client, w.inst_a)
    number, code = filed["case"]["number"], filed["access_code"]
    r = await client.post(f"/api/v1/cases/{number}/withdraw", json={"reason": "已和解"}, headers={"X-Access-Code": code})
    assert (await r.json())["case"]["status"] == "withdrawn"
    r = await client.post(f"/api/v1/cases/{number}/withdraw", json={}, headers={"X-Access-Code": code})
    assert r.status == 409


async def test_filing_with_evidence_files(client, db):
    w = await seed(db)
    form = aiohttp.FormData()
    form.add_field("case", json.dumps(case_body(w.inst_a)), content_type="application/json")
    form.add_field("evidence", png_bytes(), filename="欠条.png", content_type="image/png")
    r = await client.post("/api/v1/cases", data=form)
    assert r.status == 201, await r.text()
    case_id = (await r.json())["case"]["id"]
    intake = await login(client, "intake")
    r = await client.get(f"/api/v1/cases/{case_id}", headers=intake)
    ev = (await r.json())["case"]["evidence"]
    assert len(ev) == 1 and ev[0]["filename"] == "欠条.png" and ev[0]["content_type"] == "image/png"
    r = await client.get(f"/api/v1/cases/{case_id}/evidence/{ev[0]['id']}", headers=intake)
    assert await r.read() == png_bytes()

    # A file that claims to be an image but is not is refused, and nothing is written.
    async with db.session() as s:
        before = (await s.execute(select(func.count()).select_from(Case))).scalar_one()
    form = aiohttp.FormData()
    form.add_field("case", json.dumps(case_body(w.inst_a)), content_type="application/json")
    form.add_field("evidence", b"MZ\x90\x00 not an image", filename="photo.png", content_type="image/png")
    r = await client.post("/api/v1/cases", data=form)
    assert r.status == 422 and (await r.json())["error"]["fields"]["evidence"] == "file_type_not_allowed"
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Case))).scalar_one() == before


async def test_audit_chain_detects_alteration(client, db):
    w = await seed(db)
    case_id = (await file_case(client, w.inst_a))["case"]["id"]
    intake = await login(client, "intake")
    await client.post(f"/api/v1/cases/{case_id}/accept", headers=intake)
    async with db.session() as s:
        assert await audit.verify_chain(s) == []
        target = (await s.execute(select(AuditEntry).where(AuditEntry.action == "case.accept"))).scalar_one()
        await s.execute(update(AuditEntry).where(AuditEntry.id == target.id).values(actor_name="someone else"))
    async with db.session() as s:
        problems = await audit.verify_chain(s)
    assert [p.seq for p in problems] == [target.seq]
    assert "altered" in problems[0].problem


async def test_search_and_pagination(client, db):
    w = await seed(db)
    for i in range(23):
        await file_case(client, w.inst_a, title=f"纠纷 {i:02d}")
    await file_case(client, w.inst_a, applicant={"name": "欧阳娜", "phone": "13912345678"})
    intake = await login(client, "intake")
    r = await client.get("/api/v1/cases?page=2", headers=intake)
    body = await r.json()
    assert body["total"] == 24 and len(body["cases"]) == 4
    r = await client.get("/api/v1/cases?q=欧阳", headers=intake)
    assert [c["title"] for c in (await r.json())["cases"]] == ["拖欠工资纠纷"]
