"""Notifications through the persistent outbox: e-mail to a real SMTP server (aiosmtpd), an SMS gateway
(a real HTTP server) that fails at first and gets each message exactly once, across a restart, the
development folder adapter, and the reminder before a session (withdrawn when the session moves)."""
from __future__ import annotations

import asyncio
import datetime as dt
import email
import json
from email import policy

import pytest
from aiohttp import web
from sqlalchemy import select

from server.infra import outbox
from server.infra.db import Database
from server.core.models import OutboxJob, User
from server.core.policy import Actor
from server.core.schemas import CaseIn
from server.services import cases as case_svc
from server.services.notify import messages as notify

from tests.api.helpers import case_body, file_case, login, seed

from .conftest import free_port, wait_for


class Mailbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


def _text(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


async def test_email_reaches_a_real_smtp_server_with_the_right_links(client, db, settings, smtp_server):
    box, port = smtp_server
    w = await seed(db)
    filed = await file_case(client, w.inst_a)
    cid, number, code = filed["case"]["id"], filed["case"]["number"], filed["access_code"]
    notify.configure(notify.NotifyConfig(public_url=settings.public_url, outbox_dir=settings.data_dir / "outbox",
                                         smtp_host="127.0.0.1", smtp_port=port, smtp_from="notice@mediation.example.cn"))
    intake, med = await login(client, "intake"), await login(client, "mediator")
    client.session.cookie_jar.clear()
    # The applicant leaves an e-mail address (with the access code); the mediator has one on file.
    case = await (await client.get(f"/api/v1/cases/{number}", headers={"X-Access-Code": code})).json()
    applicant = next(p for p in case["case"]["parties"] if p["side"] == "applicant")
    r = await client.put(f"/api/v1/cases/{cid}/parties/{applicant['id']}/contact",
                         json={"email": "zhangwei@example.cn"}, headers={"X-Access-Code": code})
    assert r.status == 200, await r.text()
    assert (await client.put("/api/v1/auth/me/contact", json={"email": "liming@example.cn"}, headers=med)).status == 200
    assert (await client.post(f"/api/v1/cases/{cid}/accept", headers=intake)).status == 200
    r = await client.post(f"/api/v1/cases/{cid}/assign", json={"mediator_id": w.users["mediator"]}, headers=intake)
    assert r.status == 200
    assert (await client.post(f"/api/v1/cases/{cid}/conflict", json={"conflict": False}, headers=med)).status == 200
    starts = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).replace(microsecond=0)
    r = await client.post(f"/api/v1/cases/{cid}/schedule", headers=med,
                          json={"starts_at": starts.isoformat(), "duration_minutes": 90})
    assert r.status == 201, await r.text()
    sched = await r.json()
    link = next(x for x in sched["links"] if x["party_id"] == applicant["id"])
    assert link["access_code"] is None and all(x["access_code"] for x in sched["links"] if x["side"] != "applicant")

    # The app's outbox worker sends them (and so would deliver_due).
    await outbox.deliver_due(db)
    await wait_for(lambda: len([m for m in box.messages if m["To"] == "zhangwei@example.cn"]) >= 3, timeout=10,
                   what="the applicant's three e-mails")
    mine = {m["Subject"]: m for m in box.messages if m["To"] == "zhangwei@example.cn"}
    accepted = next(m for s, m in mine.items() if s.startswith("案件已受理"))
    assert f"{settings.public_url}/lookup" in _text(accepted) and number in accepted["Subject"]
    assert any(s.startswith("已指派调解员") for s in mine)
    invitation = next(m for s, m in mine.items() if s.startswith("在线调解安排"))
    body = _text(invitation)
    assert link["url"] in body and link["url"] + "/checks" in body and link["url"].startswith(settings.public_url + "/join/")
    assert "90" in body and "查询码" in body
    assert invitation["Message-ID"].endswith("@mediation.example.cn>")
    ics = next(p for p in invitation.iter_attachments() if p.get_content_type() == "text/calendar")
    cal = ics.get_content()
    assert "BEGIN:VEVENT" in cal and f"DTSTART:{starts.strftime('%Y%m%dT%H%M%SZ')}" in cal and link["token"][:40] in cal
    # The link in the e-mail is a working join link for this session.
    r = await client.post("/api/v1/join-tokens/verify", json={"token": link["token"]})
    assert (await r.json())["valid"] is True and (await r.json())["session_id"] == sched["session"]["id"]
    # The mediator got the assignment and the schedule; nothing went to the outbox folder.
    # (The app's own outbox worker may still be sending them: wait for delivery, not for a race.)
    await wait_for(lambda: len([m for m in box.messages if m["To"] == "liming@example.cn"]) >= 2, timeout=10,
                   what="the mediator's e-mails")
    theirs = [m["Subject"] for m in box.messages if m["To"] == "liming@example.cn"]
    assert any(s.startswith("新的调解案件") for s in theirs) and any(s.startswith("在线调解安排") for s in theirs)
    assert not (settings.data_dir / "outbox" / "email").exists()
    listed = await (await client.get(f"/api/v1/cases/{cid}/notifications", headers=intake)).json()
    assert {"email", "sms"} <= {n["medium"] for n in listed["notifications"]}
    assert all("@" not in (n["to"] or "")[1:4] for n in listed["notifications"] if n["medium"] == "email")

    # The reminder waits in the outbox for its time; moving the session withdraws it and queues a new one.
    async with db.read() as s:
        reminders = (await s.execute(select(OutboxJob).where(OutboxJob.key.like(f"remind:{sched['session']['id']}:%"))
                                     )).scalars().all()
    assert reminders and all(j.status == "pending" for j in reminders)
    assert all(abs((j.next_attempt_at - (starts - dt.timedelta(days=1))).total_seconds()) < 60 for j in reminders)
    later = starts + dt.timedelta(days=1)
    r = await client.post(f"/api/v1/sessions/{sched['session']['id']}/reschedule", headers=med,
                          json={"starts_at": later.isoformat(), "duration_minutes": 60})
    assert r.status == 200, await r.text()
    moved = await r.json()
    new_link = next(x for x in moved["links"] if x["party_id"] == applicant["id"])
    async with db.read() as s:
        jobs = (await s.execute(select(OutboxJob).where(OutboxJob.key.like(f"remind:{sched['session']['id']}:%"))
                                )).scalars().all()
    assert {j.status for j in jobs if j.id in {x.id for x in reminders}} == {"cancelled"}
    assert (await (await client.post("/api/v1/join-tokens/verify", json={"token": link["token"]})).json())["valid"] is False
    # At its time the new reminder is sent, with the new link.
    await outbox.deliver_due(db, now=later - dt.timedelta(hours=23))
    await wait_for(lambda: any(m["Subject"].startswith("调解提醒") for m in box.messages
                               if m["To"] == "zhangwei@example.cn"), timeout=10, what="the reminder")
    reminder = next(m for m in box.messages if m["Subject"].startswith("调解提醒") and m["To"] == "zhangwei@example.cn")
    assert new_link["url"] in _text(reminder)


class Gateway:
    """An SMS gateway: down (503) at first; later it keeps each message once per idempotency key."""

    def __init__(self):
        self.mode = "down"
        self.hits: list[str] = []
        self.messages: dict[str, dict] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers["Idempotency-Key"]
        assert body["key"] == key
        self.hits.append(key)
        if self.mode == "down":
            return web.json_response({"error": "maintenance"}, status=503)
        if key in self.messages:
            return web.json_response({"ok": True, "duplicate": True})
        self.messages[key] = body
        if self.mode == "slow_once":
            # Accepted, but the answer comes too late: the sender cannot know and will send again.
            self.mode = "up"
            await asyncio.sleep(2)
        return web.json_response({"ok": True})


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_sms_gateway_that_fails_at_first_gets_each_message_once_also_across_a_restart(
        aiohttp_server, db, settings):
    gateway = Gateway()
    app = web.Application()
    app.router.add_post("/send", gateway.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    notify.configure(notify.NotifyConfig(public_url=settings.public_url, outbox_dir=settings.data_dir / "outbox",
                                         sms_gateway_url=str(server.make_url("/send")), timeout=0.5))
    w = await seed(db)
    numbers, codes = [], []
    async with db.session() as s:
        intake = Actor(user=await s.get(User, w.users["intake"]))
        for title in ("拖欠工资纠纷", "工伤赔偿纠纷"):
            case, code = await case_svc.file_case(s, None, CaseIn.model_validate(case_body(w.inst_a, title=title)), [],
                                                  max_bytes=1, max_files=0)
            numbers.append(case.number)
            codes.append(code)
        await case_svc.accept(s, intake, case.id)
    t0 = dt.datetime.now(dt.timezone.utc)
    assert await outbox.deliver_due(db, now=t0) == 0  # the gateway is down: nothing is lost, all retried later
    assert len(gateway.hits) == 3 and not gateway.messages
    await db.dispose()  # the server stops

    db2 = Database(settings.database_url)  # ... and starts again
    try:
        gateway.mode = "slow_once"
        first = await outbox.deliver_due(db2, now=t0 + dt.timedelta(days=1))
        assert first == 2 and len(gateway.messages) == 3  # one accepted but answered too late
        assert await outbox.deliver_due(db2, now=t0 + dt.timedelta(days=2)) == 1  # sent again: a duplicate
        assert await outbox.deliver_due(db2, now=t0 + dt.timedelta(days=3)) == 0
        async with db2.read() as s:
            jobs = (await s.execute(select(OutboxJob).where(OutboxJob.kind == "notify.sms"))).scalars().all()
    finally:
        await db2.dispose()
    assert sorted(j.status for j in jobs) == ["delivered"] * 3
    assert sorted(j.attempts for j in jobs) == [2, 2, 3]
    # Each message reached the gateway exactly once (by its key), whatever the retries.
    assert len(gateway.messages) == 3 and len(set(gateway.hits)) == 3
    texts = [m["text"] for m in gateway.messages.values()]
    for number, code in zip(numbers, codes):
        assert any(number in t and code in t for t in texts)  # case filed: number and access code
    assert any("已被" in t and "受理" in t and numbers[1] in t for t in texts)
    assert all(m["to"] == "13800001111" for m in gateway.messages.values())


async def test_without_a_gateway_messages_go_to_the_outbox_folder(db, settings):
    w = await seed(db)
    async with db.session() as s:
        case, code = await case_svc.file_case(s, None, CaseIn.model_validate(case_body(w.inst_a)), [],
                                              max_bytes=1, max_files=0)
    assert await outbox.deliver_due(db) == 1
    files = list((settings.data_dir / "outbox" / "sms").glob("*.json"))
    assert len(files) == 1
    msg = json.loads(files[0].read_text("utf-8"))
    assert msg["to"] == "13800001111" and case.number in msg["text"] and code in msg["text"]
    assert msg["event"] == "case_filed" and msg["lang"] == "zh-CN"
    # English, when the party asked for it.
    from server.services.procedure import rules as procedure
    async with db.session() as s:
        party = next(p for p in case.parties if p.side == "applicant")
        await procedure.set_contact(s, procedure.audit.SYSTEM, "party", party.id, procedure.ContactIn(lang="en"))
        intake = Actor(user=await s.get(User, w.users["intake"]))
        await case_svc.accept(s, intake, case.id)
    assert await outbox.deliver_due(db) == 1
    newest = max((settings.data_dir / "outbox" / "sms").glob("*.json"), key=lambda p: p.stat().st_mtime)
    assert "was accepted" in json.loads(newest.read_text("utf-8"))["text"]
