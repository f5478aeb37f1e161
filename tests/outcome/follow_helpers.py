"""Building blocks for the tests after the agreement: more cases in the same world, the court's signed
answers, the outbox's notifications, the audit trail."""
from __future__ import annotations

import hashlib
import hmac
import json

from sqlalchemy import select

from server.core.models import AuditEntry, OutboxJob
from tests.api.helpers import file_case

from .helpers import Ctx, DRAFT, draft_and_finalise, issue_respondent_link, sign_all

CALLBACK_SECRET = "court-secret-for-tests"


async def another_case_in_mediation(c: Ctx, **over) -> Ctx:
    """A further case of the same world (institution, staff), assigned to the same mediator, in mediation."""
    client = c.client
    filed = await file_case(client, c.world.inst_a, respondents=[{"name": "某劳务公司", "phone": "13900002222"}],
                            **over)
    cid = filed["case"]["id"]
    for path, body in (("accept", None), ("assign", {"mediator_id": c.world.users["mediator"]})):
        r = await client.post(f"/api/v1/cases/{cid}/{path}", json=body or {}, headers=c.admin)
        assert r.status == 200, await r.text()
    r = await client.post(f"/api/v1/cases/{cid}/sessions", json={}, headers=c.mediator)
    assert r.status == 201, await r.text()
    r = await client.get(f"/api/v1/cases/{cid}", headers=c.admin)
    parties = (await r.json())["case"]["parties"]
    return Ctx(client, cid, filed["case"]["number"], filed["access_code"], "13800001111",
               next(p["id"] for p in parties if p["side"] == "applicant"),
               next(p["id"] for p in parties if p["side"] == "respondent"), c.mediator, c.admin, c.world)


async def another_effective_case(c: Ctx) -> Ctx:
    o = await another_case_in_mediation(c)
    ag = await draft_and_finalise(o)
    await issue_respondent_link(o)
    await sign_all(o, ag["text_sha256"])
    return o


async def end_session(c: Ctx) -> None:
    """The mediator ends the case's first session."""
    r = await c.client.get(f"/api/v1/cases/{c.case_id}/record", headers=c.admin)
    sid = (await r.json())["sessions"][0]["id"]
    r = await c.client.post(f"/api/v1/sessions/{sid}/end", headers=c.mediator)
    assert r.status == 200, await r.text()


async def callback(client, payload: dict, secret: str = CALLBACK_SECRET):
    """The court's answer, signed as the court signs it."""
    client.app["outcome"].cfg.callback_secret = secret
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return await client.post("/api/v1/court/callback", data=body,
                             headers={"Content-Type": "application/json", "X-Court-Signature": sig})


async def jobs(db, event: str, medium: str | None = "sms") -> list[OutboxJob]:
    async with db.read() as s:
        return [j for j in (await s.execute(select(OutboxJob).order_by(OutboxJob.id))).scalars()
                if j.payload.get("event") == event and (medium is None or j.payload.get("medium") == medium)]


async def actions(db, case_id) -> list[str]:
    async with db.read() as s:
        return [e.action for e in (await s.execute(select(AuditEntry).where(AuditEntry.case_id == case_id)
                                                   .order_by(AuditEntry.seq))).scalars()]


__all__ = ["another_case_in_mediation", "another_effective_case", "end_session", "callback", "jobs", "actions",
           "DRAFT"]
