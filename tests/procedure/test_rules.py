"""Conflict of interest and recusal over the API; deadlines across a weekend and a public holiday,
with the flags in the intake queue and the mediator's list."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from server.core import audit
from server.core.models import AuditEntry, Deadline, OutboxJob
from server.services.procedure import deadlines

from tests.api.helpers import file_case, login, seed

TZ = ZoneInfo("Asia/Shanghai")


async def _assigned(client, db, w):
    filed = await file_case(client, w.inst_a)
    cid = filed["case"]["id"]
    intake = await login(client, "intake")
    client.session.cookie_jar.clear()  # the bearer tokens alone say who calls
    assert (await client.post(f"/api/v1/cases/{cid}/accept", headers=intake)).status == 200
    r = await client.post(f"/api/v1/cases/{cid}/assign", json={"mediator_id": w.users["mediator"]}, headers=intake)
    assert r.status == 200
    return filed, cid, intake


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_declared_conflict_returns_the_case_for_reassignment(client, db):
    w = await seed(db)
    filed, cid, intake = await _assigned(client, db, w)
    med = await login(client, "mediator")
    # Before declaring, the mediator cannot schedule; the lists flag the missing declaration.
    r = await client.post(f"/api/v1/cases/{cid}/schedule", json={"starts_at": "2030-01-07T09:00:00+08:00"}, headers=med)
    assert r.status == 409 and (await r.json())["error"]["code"] == "declaration_required"
    page = await (await client.get("/staff/my", headers=med)).text()
    assert 'data-state="declare"' in page
    # A conflict needs its reason.
    r = await client.post(f"/api/v1/cases/{cid}/conflict", json={"conflict": True}, headers=med)
    assert r.status == 422
    r = await client.post(f"/api/v1/cases/{cid}/conflict", json={"conflict": True, "reason": "申请人是我的表弟"},
                          headers=med)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["case"]["status"] == "accepted" and body["case"]["mediator_id"] is None
    # The mediator no longer has the case; intake assigns another, who declares no conflict.
    assert (await client.get(f"/api/v1/cases/{cid}/procedure", headers=med)).status == 403
    r = await client.post(f"/api/v1/cases/{cid}/assign", json={"mediator_id": w.users["mediator2"]}, headers=intake)
    assert r.status == 200
    med2 = await login(client, "mediator2")
    r = await client.post(f"/api/v1/cases/{cid}/conflict", json={"conflict": False}, headers=med2)
    assert r.status == 200 and (await r.json())["case"]["status"] == "assigned"
    r = await client.post(f"/api/v1/cases/{cid}/conflict", json={"conflict": False}, headers=med2)
    assert r.status == 409  # once per assignment
    proc = await (await client.get(f"/api/v1/cases/{cid}/procedure", headers=intake)).json()
    assert proc["declaration"]["conflict"] is False and proc["declaration_needed"] is False
    async with db.read() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.case_id == cid).order_by(AuditEntry.seq))).scalars().all()
        assert await audit.verify_chain(s) == []
    steps = [(e.action, e.data.get("conflict"), e.data.get("to")) for e in rows
             if e.action in ("conflict.declared", "case.unassign", "case.assign")]
    assert steps == [("case.assign", None, "assigned"), ("conflict.declared", True, None),
                     ("case.unassign", None, "accepted"), ("case.assign", None, "assigned"),
                     ("conflict.declared", False, None)]


async def test_recusal_request_is_decided_by_intake_and_both_are_recorded(client, db):
    w = await seed(db)
    filed, cid, intake = await _assigned(client, db, w)
    number, code = filed["case"]["number"], {"X-Access-Code": filed["access_code"]}
    r = await client.post(f"/api/v1/cases/{number}/recusal", json={"reason": "调解员曾为被申请人代理过案件"}, headers=code)
    assert r.status == 201, await r.text()
    rid = (await r.json())["recusal"]["id"]
    r = await client.post(f"/api/v1/cases/{number}/recusal", json={"reason": "再次申请"}, headers=code)
    assert r.status == 409  # one pending request at a time
    # The queue shows it; another institution's intake may not decide.
    page = await (await client.get("/staff/queue", headers=intake)).text()
    assert 'data-state="recusal"' in page
    other = await login(client, "intake_b")
    client.session.cookie_jar.clear()
    assert (await client.post(f"/api/v1/recusals/{rid}/decide", json={"grant": True}, headers=other)).status == 403
    r = await client.post(f"/api/v1/recusals/{rid}/decide",
                          json={"grant": True, "note": "存在利害关系", "mediator_id": w.users["mediator2"]}, headers=intake)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["recusal"]["status"] == "granted" and body["case"]["mediator_id"] == w.users["mediator2"]
    assert body["case"]["status"] == "assigned"
    # A refused one changes nothing.
    r = await client.post(f"/api/v1/cases/{number}/recusal", json={"reason": "对新调解员也不放心"}, headers=code)
    rid2 = (await r.json())["recusal"]["id"]
    r = await client.post(f"/api/v1/recusals/{rid2}/decide", json={"grant": False, "note": "理由不充分"}, headers=intake)
    assert (await r.json())["case"]["mediator_id"] == w.users["mediator2"]
    listed = await (await client.get(f"/api/v1/recusals?case_id={cid}", headers=intake)).json()
    assert [x["status"] for x in listed["recusals"]] == ["granted", "refused"]
    async with db.read() as s:
        acts = [(e.action, e.actor_type) for e in (await s.execute(
            select(AuditEntry).where(AuditEntry.case_id == cid).order_by(AuditEntry.seq))).scalars()
            if e.action.startswith("recusal.") or e.action in ("case.unassign",)]
    assert acts == [("recusal.requested", "applicant"), ("recusal.granted", "staff"), ("case.unassign", "staff"),
                    ("recusal.requested", "applicant"), ("recusal.refused", "staff")]


def test_working_days_skip_weekends_and_configured_holidays(tmp_path):
    holidays = tmp_path / "holidays.txt"
    holidays.write_text("# 2026 清明\n2026-04-06\n")
    cal = deadlines.WorkCalendar.from_env({"HOLIDAYS": "2026-05-01,2026-05-04", "HOLIDAYS_FILE": str(holidays),
                                           "WORKDAYS": "2026-05-09"})
    thu = dt.date(2026, 4, 2)
    assert cal.add_working_days(thu, 1) == dt.date(2026, 4, 3)             # Friday
    assert cal.add_working_days(thu, 2) == dt.date(2026, 4, 7)             # past the weekend and the holiday
    assert cal.add_working_days(thu, 3) == dt.date(2026, 4, 8)
    assert deadlines.WorkCalendar().add_working_days(thu, 3) == dt.date(2026, 4, 7)  # no holidays configured
    assert cal.is_working(dt.date(2026, 5, 9))                             # a Saturday worked (调休)
    assert not cal.is_working(dt.date(2026, 5, 1)) and not cal.is_working(dt.date(2026, 4, 6))
    # A calendar-day limit that ends on a day off runs to the next working day.
    deadlines.configure(calendar=cal, tz="Asia/Shanghai")
    start = dt.datetime(2026, 4, 4, 10, 0, tzinfo=TZ)  # + 30 days = Monday 4 May, a holiday
    assert deadlines.due_date(deadlines.RULES["mediation"], start) == dt.date(2026, 5, 5)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_overdue_flags_appear_on_the_right_day_across_a_weekend_and_a_holiday(client, db):
    deadlines.configure(calendar=deadlines.WorkCalendar(holidays={dt.date(2026, 4, 6)}), tz="Asia/Shanghai")
    try:
        w = await seed(db)
        filed = await file_case(client, w.inst_a)
        cid = filed["case"]["id"]
        intake = await login(client, "intake")
        r = await client.put("/api/v1/auth/me/contact", json={"email": "intake@example.cn"}, headers=intake)
        assert r.status == 200
        # Filed on Thursday 2 April 2026 at 10:00 (the clock of the filing is moved back for the test).
        filed_at = dt.datetime(2026, 4, 2, 10, 0, tzinfo=TZ)
        async with db.session() as s:
            d = await deadlines.start(s, cid, "decide", filed_at)
        assert d.due_on == "2026-04-08"  # Fri 3, (Sat, Sun, holiday Mon 6), Tue 7, Wed 8

        def at(day, hour, minute=0):
            return dt.datetime(2026, 4, day, hour, minute, tzinfo=TZ)

        async with db.read() as s:
            d = (await s.execute(select(Deadline).where(Deadline.case_id == cid, Deadline.status == "open"))).scalar_one()
        expected = [(at(3, 9), "running"), (at(6, 12), "running"), (at(7, 0, 1), "due_soon"),
                    (at(8, 23, 59), "due_soon"), (at(9, 0, 0), "overdue"), (at(10, 9), "overdue")]
        assert [(when, deadlines.state(d, when)) for when, _ in expected] == expected
        # The scan reminds on the day before, flags on the first day after, once each.
        assert await deadlines.scan(db, now=at(6, 12)) == {"reminded": 0, "overdue": 0}
        assert await deadlines.scan(db, now=at(7, 9)) == {"reminded": 1, "overdue": 0}
        assert await deadlines.scan(db, now=at(8, 20)) == {"reminded": 0, "overdue": 0}
        assert await deadlines.scan(db, now=at(9, 0, 1)) == {"reminded": 0, "overdue": 1}
        assert await deadlines.scan(db, now=at(10, 9)) == {"reminded": 0, "overdue": 0}
        async with db.read() as s:
            jobs = (await s.execute(select(OutboxJob).where(OutboxJob.kind == "notify.email")
                                    .order_by(OutboxJob.id))).scalars().all()
            flagged = (await s.execute(select(AuditEntry).where(AuditEntry.action == "deadline.overdue"))).scalars().all()
        events = [(j.payload["event"], j.payload["to"]) for j in jobs if j.payload["event"].startswith("deadline")]
        assert events == [("deadline_near", "intake@example.cn"), ("deadline_overdue", "intake@example.cn")]
        assert "2026-04-08" in jobs[-1].payload["text"]
        assert [(e.case_id, e.data["rule"]) for e in flagged] == [(cid, "decide")]
        # The intake queue shows the flag now (the real clock is long past 8 April 2026).
        page = await (await client.get("/staff/queue", headers=intake)).text()
        assert 'data-testid="flags-' + filed["case"]["number"] + '"' in page and 'data-state="overdue"' in page
        api = await (await client.get("/api/v1/deadlines?state=overdue", headers=intake)).json()
        assert [(x["case"]["id"], x["rule"], x["due_on"]) for x in api["deadlines"]] == [(cid, "decide", "2026-04-08")]
        # Deciding meets the deadline and starts the mediation limit, shown in the mediator's list.
        assert (await client.post(f"/api/v1/cases/{cid}/accept", headers=intake)).status == 200
        r = await client.post(f"/api/v1/cases/{cid}/assign", json={"mediator_id": w.users["mediator"]}, headers=intake)
        assert r.status == 200
        async with db.read() as s:
            rows = (await s.execute(select(Deadline).where(Deadline.case_id == cid).order_by(Deadline.id))).scalars().all()
        # (the first "decide" is the one the filing started today, replaced above by the back-dated one)
        assert [(x.rule, x.status) for x in rows] == [("decide", "cancelled"), ("decide", "met"), ("mediation", "open")]
        med = await login(client, "mediator")
        page = await (await client.get("/staff/my", headers=med)).text()
        assert 'data-rule="mediation"' in page
        assert (await client.get("/api/v1/deadlines", headers=intake)).status == 200
    finally:
        deadlines.configure(calendar=deadlines.WorkCalendar.from_env())


async def test_a_refused_step_on_a_staff_page_is_a_translated_message_not_a_server_error(client, db):
    """A mediator not assigned to the case posts the conflict form (with its CSRF token): the page
    answers with the refusal as a flash message, and nothing is declared."""
    w = await seed(db)
    filed = await file_case(client, w.inst_a)
    r = await client.post("/api/v1/auth/login", json={"username": "mediator", "password": "correct-horse-42"})
    assert r.status == 200
    csrf = (await r.json())["csrf_token"]
    r = await client.post(f"/staff/procedure/cases/{filed['case']['id']}/declare",
                          data={"csrf_token": csrf, "conflict": "no"}, allow_redirects=False)
    assert r.status in (302, 303), await r.text()
    async with db.read() as s:
        declared = (await s.execute(select(AuditEntry).where(AuditEntry.action.like("conflict.%")))).scalars().all()
    assert declared == []
