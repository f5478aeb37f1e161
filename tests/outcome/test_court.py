"""Court hand-off on SQLite and PostgreSQL: judicial confirmation to the directory outbox, an HTTP court that is
down at first (delivered exactly once after it recovers, also across a restart), the 30-day rule, the court's
signed answer, and the one-click litigation filing after a failed mediation."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import zipfile

from aiohttp import web
from sqlalchemy import select, update

from server.core.models import Agreement, AuditEntry, CourtSubmission, OutboxMessage

from .helpers import case_in_mediation, effective_case, eventually, issue_respondent_link


async def _submission(db, case_id, kind="judicial_confirmation"):
    async with db.read() as s:
        return (await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == case_id,
                                                              CourtSubmission.kind == kind))).scalar_one_or_none()


async def _actions(db, case_id):
    async with db.read() as s:
        return [e.action for e in (await s.execute(select(AuditEntry).where(AuditEntry.case_id == case_id)
                                                   .order_by(AuditEntry.seq))).scalars()]


async def test_joint_application_reaches_the_directory_outbox(client, db, settings):
    c = await effective_case(client, db)
    r = await client.get("/api/v1/party/court", headers=c.applicant)
    info = await r.json()
    assert info["days_left"] == 30 and any(x["id"] == "county" for x in info["courts"])
    # Only a basic-level court, unless it invited the mediation.
    r = await client.post("/api/v1/party/confirmation", headers=c.applicant,
                          json={"court_id": "city-intermediate", "basis": "party_residence"})
    assert r.status == 422
    r = await client.post("/api/v1/party/confirmation", headers=c.applicant,
                          json={"court_id": "county", "basis": "institution"})
    assert r.status == 200, await r.text()
    sub = (await r.json())["submission"]
    assert sub["status"] == "collecting" and [w["party_id"] for w in sub["waiting_for"]] == [c.respondent_id]
    # Nothing goes out before every party has confirmed.
    assert (await _submission(db, c.case_id)).package is None
    r = await client.post("/api/v1/party/confirmation/confirm", headers=c.respondent)
    assert r.status == 200, await r.text()
    assert (await r.json())["submission"]["status"] == "queued"
    r = await client.post("/api/v1/party/confirmation/confirm", headers=c.respondent)
    assert r.status == 409

    async def delivered():
        x = await _submission(db, c.case_id)
        return x if x.status == "delivered" else None
    sub = await eventually(delivered, what="delivery to the directory outbox")
    folder = settings.data_dir / "court-outbox" / "county" / sub.key
    names = {p.name for p in folder.iterdir()}
    assert {"manifest.json", "application.pdf", "agreement.pdf", "parties.json", "package.sha256"} <= names
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "judicial_confirmation" and manifest["court"]["id"] == "county"
    for f in manifest["files"]:
        assert hashlib.sha256((folder / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    async with db.read() as s:
        ag = (await s.execute(select(Agreement).where(Agreement.case_id == c.case_id))).scalar_one()
    assert manifest["agreement"]["pdf_sha256"] == ag.pdf_sha256
    assert hashlib.sha256((folder / "agreement.pdf").read_bytes()).hexdigest() == ag.pdf_sha256
    parties = json.loads((folder / "parties.json").read_text())["parties"]
    assert {p["name"] for p in parties} == {"张伟", "某劳务公司"} and all(p["identified_at_signing"] for p in parties)
    assert set(manifest["confirmations"]) == {str(c.applicant_id), str(c.respondent_id)}
    actions = await _actions(db, c.case_id)
    for a in ("confirmation.requested", "confirmation.confirmed", "court.queued", "court.delivered"):
        assert a in actions, a
    assert actions.count("confirmation.confirmed") == 2

    # The court answers through the signed callback and the submission moves on.
    rt = client.app["outcome"]
    rt.cfg.callback_secret = "court-secret-for-tests"
    body = json.dumps({"submission": sub.key, "status": "confirmed", "reference": "(2026)县民特12号"}).encode()
    r = await client.post("/api/v1/court/callback", data=body, headers={
        "Content-Type": "application/json", "X-Court-Signature": "sha256=" + "0" * 64})
    assert r.status == 401
    sig = "sha256=" + hmac.new(b"court-secret-for-tests", body, hashlib.sha256).hexdigest()
    r = await client.post("/api/v1/court/callback", data=body,
                          headers={"Content-Type": "application/json", "X-Court-Signature": sig})
    assert r.status == 200, await r.text()
    x = await _submission(db, c.case_id)
    assert x.status == "confirmed" and x.court_reference == "(2026)县民特12号"
    assert "court.answer" in await _actions(db, c.case_id)


async def test_thirty_day_rule_and_reminders(client, db):
    from server.services.outcome import court as court_svc
    c = await effective_case(client, db)
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2, hours=1)
    async with db.session() as s:
        await s.execute(update(Agreement).where(Agreement.case_id == c.case_id).values(confirmation_deadline=soon))
    assert await court_svc.send_reminders(db) == 1
    assert await court_svc.send_reminders(db) == 0  # each reminder once
    r = await client.get("/api/v1/party/court", headers=c.applicant)
    assert (await r.json())["days_left"] == 3
    assert "confirmation.reminder" in await _actions(db, c.case_id)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=31)
    async with db.session() as s:
        await s.execute(update(Agreement).where(Agreement.case_id == c.case_id).values(
            effective_at=past, confirmation_deadline=past + dt.timedelta(days=30)))
    r = await client.post("/api/v1/party/confirmation", headers=c.applicant,
                          json={"court_id": "county", "basis": "institution"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "deadline_passed"
    assert await _submission(db, c.case_id) is None


class Court:
    """A real HTTP court endpoint on 127.0.0.1 that answers 503 while it is down."""

    def __init__(self):
        self.up = False
        self.attempts = 0
        self.received: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        data = await request.read()
        if not self.up:
            return web.json_response({"error": "maintenance"}, status=503)
        assert request.headers["Authorization"] == "Bearer court-token"
        assert hashlib.sha256(data).hexdigest() == request.headers["X-Package-SHA256"]
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            manifest = json.loads(z.read("manifest.json"))
        self.received.append({"key": request.headers["Idempotency-Key"], "manifest": manifest})
        return web.json_response({"reference": f"COURT-{len(self.received)}"}, status=202)


async def test_http_court_down_then_up_delivered_exactly_once_across_a_restart(aiohttp_client, aiohttp_server,
                                                                               settings, db):
    from server.http.app import create_app

    court = Court()
    capp = web.Application()
    capp.router.add_post("/intake", court.handle)
    court_server = await aiohttp_server(capp, host="127.0.0.1")

    def app_with_fast_retries():
        app = create_app(settings, db=db)
        cfg = app["outcome"].cfg
        cfg.court_endpoint = str(court_server.make_url("/intake"))
        cfg.court_token = "court-token"
        cfg.retry_base, cfg.retry_max, cfg.poll_interval = 0.2, 0.4, 0.1
        return app

    client = await aiohttp_client(app_with_fast_retries())
    c = await effective_case(client, db)
    r = await client.post("/api/v1/party/confirmation", headers=c.applicant,
                          json={"court_id": "county-chengguan", "basis": "party_residence"})
    assert r.status == 200, await r.text()
    r = await client.post("/api/v1/party/confirmation/confirm", headers=c.respondent)
    assert r.status == 200, await r.text()

    async def failed_attempts(n):
        async with db.read() as s:
            msg = (await s.execute(select(OutboxMessage))).scalar_one()
        return msg.attempts >= n and msg.locked_until is None and msg.status == "pending"
    await eventually(lambda: failed_attempts(2), what="two failed attempts")
    # The server stops (a restart) while the court is still down.
    await client.close()
    attempts_before = court.attempts
    async with db.read() as s:
        msg = (await s.execute(select(OutboxMessage))).scalar_one()
        assert msg.status == "pending" and msg.last_error.startswith("HTTP 503")
    court.up = True

    client2 = await aiohttp_client(app_with_fast_retries())
    sub = await eventually(lambda: _delivered(db, c.case_id), what="delivery after the court recovered")
    assert len(court.received) == 1 and court.received[0]["key"] == sub.key
    assert court.received[0]["manifest"]["court"]["id"] == "county-chengguan"
    assert court.attempts == attempts_before + 1
    assert sub.court_reference == "COURT-1"
    # Nothing is sent again afterwards.
    await client2.app["outcome"].worker.run_once()
    assert len(court.received) == 1
    actions = await _actions(db, c.case_id)
    assert actions.count("court.delivered") == 1 and actions.count("court.delivery_failed") >= 2
    await client2.close()


async def _delivered(db, case_id):
    x = await _submission(db, case_id)
    return x if x is not None and x.status == "delivered" else None


async def test_litigation_filing_after_failed_mediation(client, db, settings):
    c = await case_in_mediation(client, db)
    await issue_respondent_link(c, None)
    # Not before the mediator concluded the mediation as failed.
    r = await client.post("/api/v1/party/filing", headers=c.applicant, json={})
    assert r.status == 409
    async with db.read() as s:
        sess_id = (await s.execute(select(AuditEntry.session_id).where(AuditEntry.action == "session.opened",
                                                                        AuditEntry.case_id == c.case_id))).scalar_one()
    assert (await client.post(f"/api/v1/sessions/{sess_id}/end", headers=c.mediator)).status == 200
    r = await client.post(f"/api/v1/cases/{c.case_id}/close", json={"result": "failed",
                                                                    "note": "被申请人坚持不同意支付加班费"},
                          headers=c.mediator)
    assert r.status == 200, await r.text()
    # One click: the respondent through their personal link.
    r = await client.post("/api/v1/party/filing", headers=c.respondent, json={})
    assert r.status == 201, await r.text()
    assert (await r.json())["submission"]["status"] == "queued"
    r = await client.post("/api/v1/party/filing", headers=c.applicant, json={})
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_submitted"
    sub = await eventually(lambda: _delivered_kind(db, c.case_id), what="filing delivered")
    folder = settings.data_dir / "court-outbox" / sub.court_id / sub.key
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "litigation_filing" and manifest["requested_by"]["party_id"] == c.respondent_id
    record = json.loads((folder / "mediation_record.json").read_text())
    assert record["concluded"]["reasons"] == "被申请人坚持不同意支付加班费" and record["sessions"]
    assert (folder / "complaint.pdf").read_bytes().startswith(b"%PDF")
    assert "filing.requested" in await _actions(db, c.case_id)


async def _delivered_kind(db, case_id):
    x = await _submission(db, case_id, "litigation_filing")
    return x if x is not None and x.status == "delivered" else None
