"""Follow-up visits (回访) on SQLite and PostgreSQL: a task for the mediator a configurable number of days
after a settlement or a failed mediation, its deadline reminded and flagged overdue like every other,
the outcome recorded in the case record; refused completions change nothing."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select

from server.core.config import Settings
from server.core.models import Deadline
from server.services.procedure import deadlines
from tests.api.helpers import portal_login, row_counts

from .follow_helpers import actions, jobs
from .helpers import case_in_mediation, effective_case, login


async def _tasks(client, c) -> list[dict]:
    r = await client.get(f"/api/v1/cases/{c.case_id}/followups", headers=c.mediator)
    assert r.status == 200, await r.text()
    return (await r.json())["tasks"]


async def _deadline(db, case_id, rule) -> Deadline:
    async with db.read() as s:
        return (await s.execute(select(Deadline).where(Deadline.case_id == case_id, Deadline.rule == rule)
                                .order_by(Deadline.id.desc()))).scalars().first()


async def test_followup_after_settlement_is_due_flagged_and_recorded(client, db):
    c = await effective_case(client, db)
    r = await client.put("/api/v1/auth/me/contact", headers=c.mediator, json={"phone": "13600006666"})
    assert r.status == 200, await r.text()
    tasks = await _tasks(client, c)
    expected = deadlines.due_date(deadlines.RULES["followup"], dt.datetime.now(dt.timezone.utc)).isoformat()
    assert [(t["kind"], t["rule"], t["status"], t["state"], t["due_on"]) for t in tasks] == [
        ("followup", "followup", "open", "running", expected)]
    d = await _deadline(db, c.case_id, "followup")
    assert d.status == "open" and d.due_on == expected
    assert "followup.scheduled" in await actions(db, c.case_id)
    r = await client.get("/api/v1/followups", headers=c.mediator)
    assert [t["id"] for t in (await r.json())["tasks"]] == [tasks[0]["id"]]
    assert (await r.json())["tasks"][0]["may_complete"] is True

    # The day after its last day it is overdue: flagged in the audit chain, the mediator told.
    after = dt.datetime.fromisoformat(expected).replace(tzinfo=deadlines.tz()) + dt.timedelta(days=1, hours=9)
    await deadlines.scan(db, now=after)
    d = await _deadline(db, c.case_id, "followup")
    assert d.overdue_at is not None
    assert any(j.payload["to"] == "13600006666" and "回访" in j.payload["text"]
               for j in await jobs(db, "deadline_overdue"))
    assert deadlines.due_state("followup", expected, after) == "overdue"
    assert "deadline.overdue" in await actions(db, c.case_id)

    # The mediator records the outcome: the task is done, the deadline met, the case record has it.
    r = await client.post(f"/api/v1/followups/{tasks[0]['id']}/complete", headers=c.mediator,
                          json={"outcome": "performed", "note": "电话回访：款项已于12月20日付清"})
    assert r.status == 200, await r.text()
    done = (await r.json())["task"]
    assert done["status"] == "done" and done["outcome"] == "performed"
    assert (await _deadline(db, c.case_id, "followup")).status == "met"
    before = await row_counts(db)
    r = await client.post(f"/api/v1/followups/{tasks[0]['id']}/complete", headers=c.mediator,
                          json={"outcome": "reached"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_done"
    assert await row_counts(db) == before
    assert "followup.done" in await actions(db, c.case_id)
    clerk = await login(client, "clerk")
    r = await client.get(f"/api/v1/cases/{c.case_id}/record", headers=clerk)
    rec = await r.json()
    assert rec["followups"][0]["outcome"] == "performed" and rec["obligations"][0]["term"] == 1
    r = await client.get("/api/v1/followups?status=done", headers=c.mediator)
    assert [t["outcome"] for t in (await r.json())["tasks"]] == ["performed"]


async def _fail(client, c) -> None:
    r = await client.get(f"/api/v1/cases/{c.case_id}/record", headers=c.admin)
    sid = (await r.json())["sessions"][0]["id"]
    assert (await client.post(f"/api/v1/sessions/{sid}/end", headers=c.mediator)).status == 200
    r = await client.post(f"/api/v1/cases/{c.case_id}/close", json={"result": "failed", "note": "双方分歧过大"},
                          headers=c.mediator)
    assert r.status == 200, await r.text()


async def test_followup_after_a_failure_takes_the_configured_days(aiohttp_client, settings, db):
    from server.http.app import create_app
    client = await aiohttp_client(create_app(dataclasses.replace(settings, followup_failed_days=5), db=db))
    c = await case_in_mediation(client, db)
    await _fail(client, c)
    tasks = await _tasks(client, c)
    start = dt.datetime.now(dt.timezone.utc).astimezone(deadlines.tz()).date()
    assert [(t["rule"], t["due_on"]) for t in tasks] == [
        ("followup_failed", deadlines.calendar().next_working(start + dt.timedelta(days=5)).isoformat())]
    r = await client.get("/api/v1/deadlines/rules")
    rules = {x["rule"]: x for x in (await r.json())["rules"]}
    assert rules["followup_failed"]["days"] == 5 and rules["followup"]["responsible"] == "mediator"
    r = await client.post(f"/api/v1/followups/{tasks[0]['id']}/complete", headers=c.mediator,
                          json={"outcome": "new_dispute"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "validation_failed"  # say what the dispute is
    r = await client.post(f"/api/v1/followups/{tasks[0]['id']}/complete", headers=c.mediator,
                          json={"outcome": "new_dispute", "note": "双方又因加班费发生争执，建议重新申请调解"})
    assert r.status == 200, await r.text()


async def test_refused_completions_change_nothing(client, db):
    c = await effective_case(client, db)
    task = (await _tasks(client, c))[0]
    url = f"/api/v1/followups/{task['id']}/complete"
    intake, mediator2 = await login(client, "intake"), await login(client, "mediator2")
    before = await row_counts(db)
    for headers, body, status in (
            ({}, {"outcome": "reached"}, 401),
            (intake, {"outcome": "reached"}, 403),          # a follow-up is the mediator's
            (mediator2, {"outcome": "reached"}, 403),       # not their case
            (c.applicant, {"outcome": "reached"}, 401),     # parties have no say here
            (c.mediator, {"outcome": "resolved", "note": "x"}, 422),  # a review's outcome
            (c.mediator, {"outcome": "sort of"}, 422),
            (c.mediator, {}, 422),
            (c.mediator, {"outcome": "reached", "note": "x" * 2001}, 422),
            (c.mediator, {"outcome": "reached", "done_by": 1}, 422)):
        r = await client.post(url, headers=headers, json=body)
        assert r.status == status, (body, await r.text())
    r = await client.post("/api/v1/followups/999999/complete", headers=c.mediator, json={"outcome": "reached"})
    assert r.status == 404
    r = await client.post(url, headers={**c.mediator, "Content-Type": "application/json"}, data=b"[1,")
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_json"
    r = await client.get("/api/v1/followups?status=whatever", headers=c.mediator)
    assert r.status == 422
    assert await row_counts(db) == before


async def test_mediator_records_the_followup_on_the_case_page(client, db):
    c = await effective_case(client, db)
    task = (await _tasks(client, c))[0]
    csrf = await portal_login(client, "mediator")
    html = await (await client.get(f"/staff/cases/{c.case_id}")).text()
    assert f'data-testid="task-form-{task["id"]}"' in html and "调解成功后回访" in html
    r = await client.post(f"/staff/followup/tasks/{task['id']}/complete",
                          data={"csrf_token": csrf, "case_id": str(c.case_id), "outcome": "new_dispute"})
    assert r.status == 200 and "请检查填写的内容" in await r.text()
    r = await client.post(f"/staff/followup/tasks/{task['id']}/complete",
                          data={"csrf_token": csrf, "case_id": str(c.case_id), "outcome": "reached",
                                "note": "已电话回访"})
    html = await r.text()
    assert r.status == 200 and "已记录任务结果" in html and f'data-testid="task-outcome-{task["id"]}"' in html
    assert "已回访，情况稳定" in html


def test_the_days_are_checked_at_start(monkeypatch, tmp_path):
    monkeypatch.setenv("FOLLOWUP_DAYS", "10")
    monkeypatch.setenv("PERFORMANCE_REMINDER_DAYS", "1, 7,3")
    s = Settings.from_env(data_dir=tmp_path)
    assert s.followup_days == 10 and s.followup_failed_days == 15 and s.performance_reminder_days == (7, 3, 1)
    for name, value in (("FOLLOWUP_DAYS", "ten"), ("FOLLOWUP_DAYS", "0"), ("FOLLOWUP_FAILED_DAYS", "400"),
                        ("PERFORMANCE_REMINDER_DAYS", "7,x")):
        monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit, match=name):
            Settings.from_env(data_dir=tmp_path)
        monkeypatch.delenv(name)
