"""The judge in the loop (SQLite and PostgreSQL): the court's signed callback opens an online review session
(司法确认在线审查) for a pending judicial-confirmation application; the parties get links through the
notification outbox, the judge an observer link in the answer that names them as the judge with the court;
the decision and the ruling PDF come back by callback and are linked to the review's session in the record.
Bad requests (unsigned, wrongly signed, unknown or not pending application, a second open review, a time
in the past) change nothing; a judge's link stops working when the session ends. The mediator can invite a
judge of a court as an observer into a mediation session too."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

from sqlalchemy import select

from server.core.models import AuditEntry, CourtSubmission, Invite, MediationSession, OutboxJob
from server.services.archive import analytics
from tests.api.helpers import row_counts

from .follow_helpers import CALLBACK_SECRET, callback
from .helpers import effective_case, eventually, login
from .test_pages import as_staff, page
from .test_ruling import RULING, _post as post_ruling

CST = dt.timezone(dt.timedelta(hours=8))


def _sign(body: bytes, secret: str = CALLBACK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def ask_review(client, payload: dict, *, sig: str | None = "auto", raw: bytes | None = None):
    client.app["outcome"].cfg.callback_secret = CALLBACK_SECRET
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["X-Court-Signature"] = _sign(body) if sig == "auto" else sig
    return await client.post("/api/v1/court/callback/review", data=body, headers=headers)


def _at(hours: float) -> str:
    return (dt.datetime.now(CST) + dt.timedelta(hours=hours)).replace(microsecond=0).isoformat()


async def _delivered_application(client, db):
    c = await effective_case(client, db)
    r = await client.post("/api/v1/party/confirmation", headers=c.applicant,
                          json={"court_id": "county", "basis": "institution"})
    assert r.status == 200, await r.text()
    assert (await client.post("/api/v1/party/confirmation/confirm", headers=c.respondent)).status == 200

    async def delivered():
        async with db.read() as s:
            x = (await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == c.case_id))).scalar_one()
        return x if x.status == "delivered" else None
    return c, await eventually(delivered, what="confirmation delivered")


async def _review_jobs(db, session_id: int) -> list[OutboxJob]:
    async with db.read() as s:
        return [j for j in (await s.execute(select(OutboxJob).order_by(OutboxJob.id))).scalars()
                if j.payload.get("event", "").startswith("court_review") and j.payload.get("session_id") == session_id]


async def _entries(db, case_id: int, action: str) -> list[AuditEntry]:
    async with db.read() as s:
        return list((await s.execute(select(AuditEntry).where(AuditEntry.case_id == case_id,
                                                              AuditEntry.action == action)
                                     .order_by(AuditEntry.seq))).scalars())


async def test_the_court_reviews_online_and_its_decision_is_linked_to_the_review(client, db, settings):
    c, sub = await _delivered_application(client, db)
    good = {"submission": sub.key, "starts_at": _at(48), "judge": "王法官", "duration_minutes": 45}

    # Refusals first: none of them writes anything.
    before = await row_counts(db)
    r = await ask_review(client, good, sig=None)
    assert r.status == 401 and (await r.json())["error"]["code"] == "bad_signature"
    r = await ask_review(client, good, sig=_sign(json.dumps(good).encode(), "another-secret"))
    assert r.status == 401
    for payload, status, what in (
            ({**good, "submission": "9" * 32}, 404, "no_application"),
            ({**good, "starts_at": _at(-3)}, 422, "starts_at"),
            ({**good, "starts_at": "2030-01-01T09:00:00"}, 422, "starts_at"),
            ({**good, "starts_at": _at(24 * 40)}, 422, "starts_at"),
            ({**good, "judge": ""}, 422, "judge"),
            ({**good, "bogus": 1}, 422, "bogus"),
            ({**good, "duration_minutes": 5}, 422, "duration_minutes")):
        r = await ask_review(client, payload)
        body = await r.json()
        assert r.status == status, (payload, body)
        assert what == body["error"]["code"] or what in (body["error"].get("fields") or {}), body
    assert await row_counts(db) == before

    # The court asks: a session of the case at its time, the judge's link in the answer.
    r = await ask_review(client, good)
    assert r.status == 201, await r.text()
    out = await r.json()
    review = out["review"]
    assert review["state"] == "scheduled" and review["court_name"] == "县人民法院" and review["judge"] == "王法官"
    assert review["submission_id"] == sub.id and review["duration_minutes"] == 45
    assert out["judge_url"] == f"{settings.public_url}/join/{out['judge_token']}"
    assert dt.datetime.fromisoformat(out["judge_expires_at"]) > dt.datetime.fromisoformat(good["starts_at"])
    sid = review["session_id"]
    # Analytics count the mediator's sessions: the court's review, held, is not one of them.
    admin = await login(client, "admin")

    async def held() -> tuple[int, int]:
        r = await client.get("/api/v1/analytics/summary", headers=admin)
        body = await r.json()
        return body["sessions"]["held"], sum(m["sessions"] for m in body["mediators"])
    before_held = await held()
    async with db.session() as s:
        row = await s.get(MediationSession, sid)
        row.started_at, row.ended_at = dt.datetime.utcnow() - dt.timedelta(minutes=30), dt.datetime.utcnow()
    analytics.clear_cache()  # written here without the audit entry a live room appends (the cache's key)
    assert await held() == before_held
    # The case stays settled; the session is the court's, not the mediator's.
    r = await client.get(f"/api/v1/cases/{c.case_id}", headers=c.mediator)
    assert (await r.json())["case"]["status"] == "settled"

    # The record: the judge is an observer named with the court, who enters directly like every review link.
    r = await client.get(f"/api/v1/cases/{c.case_id}/record", headers=c.admin)
    rec = await r.json()
    sess = next(x for x in rec["sessions"] if x["id"] == sid)
    judge = next(i for i in sess["invites"] if i["role"] == "observer")
    assert judge["judge"] is True and judge["name"] == "王法官" and judge["organisation"] == "县人民法院"
    assert judge["direct"] is True
    assert sorted(i["party_id"] for i in sess["invites"] if i["role"] == "party") == sorted(
        [c.applicant_id, c.respondent_id])
    assert [e["action"] for e in sess["events"]][:2] == ["session.opened", "invite.created"]
    assert any(e["action"] == "court.review_requested" and e["actor_type"] == "court" for e in sess["events"])
    assert rec["court_reviews"][0]["id"] == review["id"]

    # Every party got their own link through the notification outbox.
    jobs = await _review_jobs(db, sid)
    sms = [j for j in jobs if j.payload["event"] == "court_review" and j.payload["medium"] == "sms"]
    assert {j.payload["ref"] for j in sms} == {f"party:{c.applicant_id}", f"party:{c.respondent_id}"}
    urls = {j.payload["ref"]: j.payload["text"].rsplit(" ", 1)[-1].rsplit("：", 1)[-1] for j in sms}
    assert len(set(urls.values())) == 2 and all("/join/" in u for u in urls.values())
    assert all("县人民法院" in j.payload["text"] and "王法官" in j.payload["text"] for j in sms)

    # The judge's page says it is the court's review and who they are.
    html = await page(client, f"/join/{out['judge_token']}")
    assert 'data-testid="court-review-banner"' in html and "县人民法院 司法确认在线审查" in html
    assert "王法官（县人民法院）" in html and ">法官<" in html
    party_token = urls[f"party:{c.applicant_id}"].rsplit("/join/", 1)[1]
    html = await page(client, f"/join/{party_token}")
    assert 'data-testid="court-review-banner"' in html

    # One review at a time per application.
    before = await row_counts(db)
    r = await ask_review(client, {**good, "starts_at": _at(72)})
    assert r.status == 409 and (await r.json())["error"]["code"] == "review_open"
    assert await row_counts(db) == before

    # The mediator and the parties see it.
    r = await client.get(f"/api/v1/cases/{c.case_id}/submissions", headers=c.mediator)
    assert [v["id"] for v in (await r.json())["reviews"]] == [review["id"]]
    r = await client.get("/api/v1/party/court", headers=c.respondent)
    seen = (await r.json())["reviews"]
    assert seen[0]["starts_at"] == review["starts_at"] and seen[0]["state"] == "scheduled"
    html = await page(client, f"/outcome/p/{c.respondent_token}")
    assert 'data-testid="court-review"' in html and "法院在线审查" in html and "王法官" in html
    html = await page(client, f"/outcome/p/{c.respondent_token}?lang=en")
    assert "Online court review" in html and "Judge: 王法官" in html

    # The mediator ends the session: the judge's link stops working; the court may ask again.
    r = await client.post(f"/api/v1/sessions/{sid}/end", headers=c.mediator)
    assert r.status == 200, await r.text()
    await page(client, f"/join/{out['judge_token']}", status=410)
    r = await ask_review(client, {**good, "starts_at": _at(24)})
    assert r.status == 201, await r.text()
    second = await r.json()
    sid2 = second["review"]["session_id"]
    assert sid2 != sid

    # The decision closes the review: its session ends, the answer is linked to it in the record.
    r = await callback(client, {"submission": sub.key, "status": "confirmed", "reference": "(2026)县民特12号"})
    assert r.status == 200, await r.text()
    assert (await r.json())["submission"]["answer"]["review_id"] == second["review"]["id"]
    answer = (await _entries(db, c.case_id, "court.answer"))[-1]
    assert answer.session_id == sid2 and answer.data["review_id"] == second["review"]["id"]
    await page(client, f"/join/{second['judge_token']}", status=410)
    ended = (await _entries(db, c.case_id, "session.ended"))[-1]
    assert ended.session_id == sid2 and ended.actor_type == "court" and ended.data["via"] == "court_decision"

    # The ruling PDF: attached with its hash, linked to the review session.
    r = await post_ruling(client, sub.key, judge="")
    assert r.status == 200, await r.text()
    ruling = (await r.json())["submission"]["answer"]["ruling"]
    digest = hashlib.sha256(RULING).hexdigest()
    assert ruling["sha256"] == digest and ruling["session_id"] == sid2 and ruling["judge"] == "王法官"
    entry = (await _entries(db, c.case_id, "court.ruling"))[-1]
    assert entry.session_id == sid2 and entry.data["sha256"] == digest
    r = await client.get(f"/api/v1/cases/{c.case_id}/submissions", headers=c.mediator)
    views = {v["id"]: v for v in (await r.json())["reviews"]}
    assert views[second["review"]["id"]]["state"] == "decided"
    assert views[second["review"]["id"]]["decision"] == "confirmed"
    assert views[second["review"]["id"]]["ruling_sha256"] == digest
    assert views[review["id"]]["state"] == "ended" and views[review["id"]]["ruling_sha256"] is None

    # Decided: no further review.
    before = await row_counts(db)
    r = await ask_review(client, {**good, "starts_at": _at(24)})
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_pending"
    assert await row_counts(db) == before

    # The mediator's case page shows when the court asked, and what it decided.
    await as_staff(client, "mediator")
    html = await page(client, f"/staff/cases/{c.case_id}")
    assert 'data-testid="court-review"' in html and "县人民法院于" in html and "确认调解协议有效" in html
    assert digest in html


async def test_a_review_needs_an_application_pending_at_the_court(client, db):
    c = await effective_case(client, db)
    r = await client.post("/api/v1/party/confirmation", headers=c.applicant,
                          json={"court_id": "county", "basis": "institution"})
    assert r.status == 200, await r.text()
    key = (await r.json())["submission"]["key"]  # still waiting for the respondent's confirmation
    before = await row_counts(db)
    r = await ask_review(client, {"submission": key, "starts_at": _at(24), "judge": "王法官"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_pending", await r.text()
    # Callbacks off (no secret): refused as well.
    client.app["outcome"].cfg.callback_secret = None
    body = json.dumps({"submission": key, "starts_at": _at(24), "judge": "王法官"}).encode()
    r = await client.post("/api/v1/court/callback/review", data=body,
                          headers={"Content-Type": "application/json", "X-Court-Signature": _sign(body)})
    assert r.status == 403 and (await r.json())["error"]["code"] == "callback_disabled"
    assert await row_counts(db) == before


async def test_the_mediator_invites_a_judge_as_an_observer(client, db):
    c = await effective_case(client, db)
    r = await client.get(f"/api/v1/cases/{c.case_id}/record", headers=c.admin)
    sid = (await r.json())["sessions"][0]["id"]
    other = await login(client, "admin")
    before = await row_counts(db)
    for body in ({"role": "party", "party_id": c.applicant_id, "court": "县人民法院"},
                 {"role": "expert", "name": "李专家", "specialty": "labour", "court": "县人民法院"},
                 {"role": "observer", "name": "李法官", "court": ""}):
        r = await client.post(f"/api/v1/sessions/{sid}/invites", json=body, headers=c.mediator)
        assert r.status == 422 and "court" in (await r.json())["error"]["fields"], await r.text()
    r = await client.post(f"/api/v1/sessions/{sid}/invites", json={"role": "observer", "name": "李法官",
                                                                   "court": "县人民法院"}, headers=other)
    assert r.status == 403
    assert await row_counts(db) == before
    r = await client.post(f"/api/v1/sessions/{sid}/invites", json={"role": "observer", "name": "李法官",
                                                                   "court": "县人民法院城关人民法庭"},
                          headers=c.mediator)
    assert r.status == 201, await r.text()
    token = (await r.json())["token"]
    async with db.read() as s:
        inv = (await s.execute(select(Invite).where(Invite.session_id == sid, Invite.role == "observer"))).scalar_one()
    assert inv.judge and inv.organisation == "县人民法院城关人民法庭" and not inv.direct  # waits in the lobby
    created = (await _entries(db, c.case_id, "invite.created"))[-1]
    assert created.data["judge"] is True and created.data["organisation"] == "县人民法院城关人民法庭"
    html = await page(client, f"/join/{token}")
    assert "李法官（县人民法院城关人民法庭）" in html and 'data-testid="court-review-banner"' not in html
