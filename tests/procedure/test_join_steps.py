"""The steps before joining, over the real socket.io signaling: consent to online mediation, identity
(at every session, attempts limited and logged, the mediator sees who is verified), notices."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from server.core.models import AuditEntry, IdentityCheck, NoticeAck, OnlineConsent
from server.core.schemas import SessionIn
from server.services.procedure import rules as procedure
from server.services import sessions as session_svc

from .conftest import APPLICANT_ID, wait_for


async def _actions(db, case_id, session_id=None):
    async with db.read() as s:
        q = select(AuditEntry).where(AuditEntry.case_id == case_id)
        if session_id is not None:
            q = q.where(AuditEntry.session_id == session_id)
        return list((await s.execute(q.order_by(AuditEntry.seq))).scalars())


def _identity(name="张伟", last6=APPLICANT_ID[-6:], code=None):
    return {"name": name, "id_number_last6": last6, "access_code": code}


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_party_that_did_not_consent_cannot_join(world):
    party = await world.client()
    token = await world.token("party", party_id=world.applicant_id)
    ack = await party.join(token)
    assert not ack["ok"] and ack["error"]["code"] == "consent_required"
    assert ack["error"]["declined"] is False and ack["error"]["steps"][0] == "consent_required"

    # Declining is recorded, answered with the offline alternative, and still no way in.
    ack = await party.call("consent.online", {"agree": False})
    assert ack["ok"] and ack["agree"] is False
    assert "城关镇人民调解委员会" in ack["offline"]["text"]
    again = await party.join(token)
    assert again["error"]["code"] == "consent_required" and again["error"]["declined"] is True
    assert "城关镇人民调解委员会" in again["error"]["offline"]["text"]
    # Another connection with the same link is refused too: the answer is the case's, not the socket's.
    other = await world.client()
    assert (await other.join(token))["error"]["code"] == "consent_required"

    # Changing one's mind: agreeing moves on to the next step.
    assert (await party.call("consent.online", {"agree": True}))["ok"]
    ack = await party.join(token)
    assert ack["error"]["code"] == "identity_required"
    async with world.db.read() as s:
        rows = (await s.execute(select(OnlineConsent).order_by(OnlineConsent.id))).scalars().all()
    assert [(r.party_id, r.agree, r.how) for r in rows] == [(world.applicant_id, False, "room"),
                                                          (world.applicant_id, True, "room")]
    steps = [e for e in await _actions(world.db, world.case_id) if e.action == "consent.online"]
    assert [e.data["agree"] for e in steps] == [False, True] and steps[0].actor_type == "participant"
    # Consent is the party's own: the mediator and an observer are never asked.
    mediator = await world.client()
    assert (await mediator.join(await world.token("mediator")))["ok"]
    # Consent is asked before identity and notices, and an event without a join attempt is refused.
    stranger = await world.client()
    assert (await stranger.call("consent.online", {"agree": True}))["error"]["code"] == "not_pending"


async def test_a_failed_identity_check_cannot_join_and_is_logged(world):
    mediator = await world.client()
    assert (await mediator.join(await world.token("mediator")))["ok"]
    party = await world.client()
    token = await world.token("party", party_id=world.applicant_id)
    await party.join(token)
    assert (await party.call("consent.online", {"agree": True}))["ok"]
    refused = await party.join(token)
    assert refused["error"]["code"] == "identity_required"
    assert refused["error"]["attempts_left"] == procedure.MAX_IDENTITY_FAILURES
    assert refused["error"]["fields"] == ["name", "id_number_last6", "access_code"]

    # Wrong code, wrong name, wrong ID digits: each refused with one vague answer, each logged.
    bad = [_identity(code="WRONG123"), _identity(name="王五", code=world.access_code),
           _identity(last6="000000", code=world.access_code)]
    for n, attempt in enumerate(bad, 1):
        ack = await party.call("identity.verify", attempt)
        assert not ack["ok"] and ack["error"]["code"] == "identity_failed"
        assert ack["error"]["attempts_left"] == procedure.MAX_IDENTITY_FAILURES - n
        assert (await party.join(token))["error"]["code"] == "identity_required"
    failed = [e for e in await _actions(world.db, world.case_id, world.session_id) if e.action == "identity.failed"]
    assert [e.data["reason"] for e in failed] == ["code_mismatch", "name_mismatch", "id_number_mismatch"]
    assert all(world.access_code not in str(e.data) for e in failed)  # secrets are not logged

    # The mediator sees the party coming, not verified yet.
    status = await mediator.call("procedure.status")
    row = next(r for r in status["participants"] if r["participant_id"] == f"party-{world.applicant_id}")
    assert row["verified"] is False and row["identity_failures"] == 3 and row["where"] == "steps"

    # The right answers (case access code, typed in lower case with spaces in the name) pass.
    ok = await party.call("identity.verify", _identity(name=" 张 伟", code=world.access_code.lower()))
    assert ok["ok"] and ok["verified"] and ok["steps"] == ["notice_required"]
    await wait_for(lambda: any(r["participant_id"] == f"party-{world.applicant_id}" and r["verified"]
                               for ev in mediator.events.get("procedure.status", []) for r in ev["participants"]),
                   what="the mediator is told the party is verified")

    # Attempts are limited: the respondent, with a per-party code, is locked after five failures.
    async with world.db.session() as s:
        code = await procedure.issue_party_code_for(s, world.mediator, world.case_id, world.respondent_id, send=False)
    resp = await world.client()
    rtoken = await world.token("party", party_id=world.respondent_id)
    await resp.join(rtoken)
    await resp.call("consent.online", {"agree": True})
    for _ in range(procedure.MAX_IDENTITY_FAILURES):
        await resp.call("identity.verify", _identity(name="李四", last6="123456", code="NOPE2345"))
    locked = await resp.call("identity.verify", _identity(name="李四", last6="123456", code=code))
    assert locked["error"]["code"] == "identity_locked" and locked["error"]["attempts_left"] == 0
    assert (await resp.join(rtoken))["error"]["locked"] is True
    actions = [e.action for e in await _actions(world.db, world.case_id, world.session_id)]
    assert actions.count("identity.failed") == 3 + procedure.MAX_IDENTITY_FAILURES and "identity.locked" in actions

    # Identity is checked at every session: a new session asks again.
    async with world.db.session() as s:
        new = await session_svc.open_session(s, world.mediator, world.case_id, SessionIn())
    fresh = await world.client()
    second = await world.token("party", session_id=new.id, party_id=world.applicant_id)
    assert (await fresh.join(second))["error"]["code"] == "identity_required"  # consent is once per case
    async with world.db.read() as s:
        checks = (await s.execute(select(IdentityCheck).where(IdentityCheck.ok.is_(True)))).scalars().all()
    assert [(c.session_id, c.participant_id, c.method) for c in checks] == \
        [(world.session_id, f"party-{world.applicant_id}", "access_code")]


async def test_notices_must_be_acknowledged_before_joining(world):
    world.settings.identity_check = False  # a deployment with IDENTITY_CHECK=off: everything else applies
    party = await world.client(lang="en")
    token = await world.token("party", party_id=world.applicant_id)
    await party.join(token)
    await party.call("consent.online", {"agree": True})
    ack = await party.join(token)
    assert ack["error"]["code"] == "notice_required"
    notices = ack["error"]["notices"]
    assert [n["id"] for n in notices] == ["confidentiality", "concessions", "sham_mediation"]
    assert "art. 29" in notices[0]["text"] and "art. 18" in notices[1]["text"]  # in the client's language

    # Acknowledging some is not enough; unknown notices are refused and change nothing.
    assert (await party.call("notice.ack", {"notices": ["made_up"]}))["error"]["code"] == "bad_request"
    part = await party.call("notice.ack", {"notices": ["confidentiality"]})
    assert part["ok"] and part["pending"] == ["concessions", "sham_mediation"]
    again = await party.join(token)
    assert [n["id"] for n in again["error"]["notices"]] == ["concessions", "sham_mediation"]
    assert (await party.call("notice.ack", {"notices": ["concessions", "sham_mediation"]}))["pending"] == []
    joined = await party.join(token)
    assert joined["ok"] and joined["in_lobby"]

    # Once per session: the same participant on a new connection (the same device) goes straight in.
    await party.close()
    back = await world.client()
    assert (await back.join(token, resume=party.resume))["ok"]
    # An observer acknowledges confidentiality only; the mediator none.
    observer = await world.client()
    otoken = await world.token("observer", name="旁听的法官")
    ack = await observer.join(otoken)
    assert [n["id"] for n in ack["error"]["notices"]] == ["confidentiality"]
    assert "保密" in ack["error"]["notices"][0]["title"]  # Chinese by default
    await observer.call("notice.ack", {"notices": ["confidentiality"]})
    assert (await observer.join(otoken))["ok"]
    mediator = await world.client()
    assert (await mediator.join(await world.token("mediator")))["ok"]
    async with world.db.read() as s:
        rows = (await s.execute(select(NoticeAck).order_by(NoticeAck.id))).scalars().all()
    assert len(rows) == 4 and {r.role for r in rows} == {"party", "observer"}
    logged = [e for e in await _actions(world.db, world.case_id, world.session_id) if e.action == "notice.acknowledged"]
    assert [e.data["notices"] for e in logged] == [["confidentiality"], ["concessions", "sham_mediation"],
                                                   ["confidentiality"]]


async def test_step_page_questions_do_not_use_up_a_link(world):
    """procedure.check answers what is owed without joining; a single-use expert link stays usable."""
    world.settings.identity_check = False
    checker = await world.client()
    token = await world.token("expert", name="王工", specialty="construction")
    ack = await checker.call("procedure.check", {"token": token, "lang": "en"})
    assert ack["ok"] and ack["steps"] == ["notice_required"] and ack["next"]["code"] == "notice_required"
    assert ack["room_url"] == f"/room/{token}"
    assert (await checker.call("notice.ack", {"notices": ["confidentiality"]}))["steps"] == []
    room = await world.client()
    assert (await room.join(token))["ok"]  # the room's join is the link's one use
    bad = await world.client()
    assert (await bad.call("procedure.check", {"token": "x" * 40}))["error"]["code"] == "token_invalid"


async def test_one_time_code_by_sms_where_a_gateway_is_configured(world, aiohttp_server):
    from aiohttp import web

    from server.services.notify import messages as notify
    got: list[dict] = []

    async def gateway(request):
        got.append(await request.json())
        return web.json_response({"ok": True})

    gw = web.Application()
    gw.router.add_post("/sms", gateway)
    server = await aiohttp_server(gw, host="127.0.0.1")
    party = await world.client()
    token = await world.token("party", party_id=world.respondent_id)
    await party.join(token)
    assert (await party.call("identity.sms_request"))["error"]["code"] == "sms_unavailable"
    notify.configure(notify.NotifyConfig(public_url=world.settings.public_url, sms_gateway_url=str(server.make_url("/sms")),
                                         outbox_dir=world.settings.data_dir / "outbox"))
    await party.call("consent.online", {"agree": True})
    refused = await party.join(token)
    assert refused["error"]["code"] == "identity_required" and refused["error"]["methods"] == ["access_code", "sms"]
    sent = await party.call("identity.sms_request")
    assert sent["ok"] and sent["sent_to"] == "139****2222"
    assert (await party.call("identity.sms_request"))["error"]["code"] == "sms_too_soon"
    # (earlier messages of the case may reach the gateway too: the outbox keeps whatever was pending)
    msg = await wait_for(lambda: next((m for m in got if "验证码" in m["text"]), None), timeout=10,
                         what="the code reaches the gateway")
    assert msg["to"] == "13900002222"
    code = re.search(r"验证码为(\d{6})", msg["text"]).group(1)
    wrong = "000000" if code != "000000" else "111111"
    assert (await party.call("identity.verify", {"sms_code": wrong}))["error"]["code"] == "identity_failed"
    assert (await party.call("identity.verify", {"sms_code": code}))["ok"]
    assert (await party.call("identity.verify", {"sms_code": code}))["ok"]  # already verified for this session
    async with world.db.read() as s:
        rows = (await s.execute(select(IdentityCheck).order_by(IdentityCheck.id))).scalars().all()
    assert [(r.ok, r.method, r.reason) for r in rows] == [(False, "sms", "sms_code_mismatch"), (True, "sms", "")]
