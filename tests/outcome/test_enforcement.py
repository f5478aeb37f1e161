"""Enforcement (申请强制执行) on SQLite and PostgreSQL: when a term of an agreement the court confirmed (by its
signed callback) was not performed, the party it was owed to applies with one click; the package goes to
the confirming court through the court outbox and the court answers by callback. An application for an
unconfirmed agreement, by the obliged party, twice, or for someone else's obligation changes nothing."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import select

from server.core.models import CourtSubmission
from tests.api.helpers import csrf_of, row_counts

from .follow_helpers import actions, another_effective_case, callback, jobs
from .helpers import case_in_mediation, effective_case, eventually, issue_respondent_link, sign_all

TZ = dt.timezone(dt.timedelta(hours=8))


async def _submission(db, case_id, kind):
    async with db.read() as s:
        return (await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == case_id,
                                                              CourtSubmission.kind == kind))).scalar_one_or_none()


async def _delivered(db, case_id, kind):
    x = await _submission(db, case_id, kind)
    return x if x is not None and x.status == "delivered" else None


async def _confirmed_by_the_court(client, db, c) -> CourtSubmission:
    r = await client.post("/api/v1/party/confirmation", headers=c.applicant,
                          json={"court_id": "county", "basis": "institution"})
    assert r.status == 200, await r.text()
    r = await client.post("/api/v1/party/confirmation/confirm", headers=c.respondent)
    assert r.status == 200, await r.text()
    sub = await eventually(lambda: _delivered(db, c.case_id, "judicial_confirmation"), what="confirmation delivered")
    r = await callback(client, {"submission": sub.key, "status": "confirmed", "reference": "(2026)县民特88号"})
    assert r.status == 200, await r.text()
    return sub


async def _past_due(client, c) -> dict:
    r = await client.get(f"/api/v1/cases/{c.case_id}/obligations", headers=c.mediator)
    ob = (await r.json())["obligations"][0]
    yesterday = (dt.datetime.now(TZ).date() - dt.timedelta(days=1)).isoformat()
    r = await client.patch(f"/api/v1/cases/{c.case_id}/obligations/{ob['id']}", headers=c.mediator,
                           json={"due_on": yesterday})
    assert r.status == 200, await r.text()
    return (await r.json())["obligation"]


async def test_enforcement_of_a_confirmed_agreement_goes_to_the_confirming_court(client, db, settings):
    c = await effective_case(client, db)
    r = await client.put("/api/v1/auth/me/contact", headers=c.mediator, json={"phone": "13600007777"})
    assert r.status == 200, await r.text()
    ob = await _past_due(client, c)
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=c.applicant,
                          json={"performed": False, "note": "截至今日未收到一分钱"})
    assert r.status == 201, await r.text()
    # Not before the court confirmed the agreement.
    before = await row_counts(db)
    r = await client.post("/api/v1/party/enforcement", headers=c.applicant, json={})
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_confirmed"
    assert await row_counts(db) == before

    conf = await _confirmed_by_the_court(client, db, c)
    # The obliged party has nothing to enforce; a wrong obligation or a malformed body is refused.
    before = await row_counts(db)
    for headers, body, status, code in (
            (c.respondent, {}, 409, "nothing_to_enforce"),
            (c.applicant, {"obligation_ids": [999999]}, 422, "validation_failed"),
            (c.applicant, {"obligation_ids": []}, 422, "validation_failed"),
            (c.applicant, {"obligation_ids": "all"}, 422, "validation_failed"),
            (c.applicant, {"court_id": "city-intermediate"}, 422, "validation_failed"),
            ({}, {}, 401, "unauthorized"),
            (c.mediator, {}, 401, "unauthorized")):
        r = await client.post("/api/v1/party/enforcement", headers=headers, json=body)
        assert r.status == status, (body, await r.text())
        assert (await r.json())["error"]["code"] == code
    assert await row_counts(db) == before

    r = await client.post("/api/v1/party/enforcement", headers=c.applicant, json={"obligation_ids": [ob["id"]]})
    assert r.status == 201, await r.text()
    sub = (await r.json())["submission"]
    assert sub["kind"] == "enforcement" and sub["status"] == "queued" and sub["court_id"] == conf.court_id
    x = await eventually(lambda: _delivered(db, c.case_id, "enforcement"), what="enforcement delivered")
    before = await row_counts(db)  # the worker is done: nothing else writes meanwhile
    r = await client.post("/api/v1/party/enforcement", headers=c.applicant, json={})
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_submitted"
    assert await row_counts(db) == before
    folder = settings.data_dir / "court-outbox" / "county" / x.key
    names = {p.name for p in folder.iterdir()}
    assert names == {"manifest.json", "application.pdf", "agreement.pdf", "confirmation.json",
                     "non_performance.json", "parties.json", "package.sha256"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "enforcement" and manifest["court"] == {"id": "county", "name": conf.court_name,
                                                                       "basis": "confirming_court"}
    assert manifest["confirmation"]["reference"] == "(2026)县民特88号"
    for f in manifest["files"]:
        assert hashlib.sha256((folder / f["name"]).read_bytes()).hexdigest() == f["sha256"], f["name"]
    report = json.loads((folder / "non_performance.json").read_text())
    assert [o["id"] for o in report["obligations"]] == [ob["id"]]
    assert report["obligations"][0]["reports"][0]["note"] == "截至今日未收到一分钱"
    assert (folder / "application.pdf").read_bytes().startswith(b"%PDF")
    acts = await actions(db, c.case_id)
    assert "enforcement.requested" in acts and acts.count("court.delivered") == 2
    # The mediator is told through the notification outbox.
    told = await jobs(db, "enforcement_requested")
    assert [j.payload["to"] for j in told] == ["13600007777"] and conf.court_name in told[0].payload["text"]

    # The court answers by signed callback, with an answer an enforcement can have.
    r = await callback(client, {"submission": x.key, "status": "confirmed"})
    assert r.status == 422
    r = await callback(client, {"submission": x.key, "status": "filed", "reference": "(2027)县执1号"})
    assert r.status == 200, await r.text()
    assert (await _submission(db, c.case_id, "enforcement")).status == "filed"
    # The party's page shows where it stands.
    client.session.cookie_jar.clear()
    html = await (await client.get(f"/outcome/p/{c.respondent_token}")).text()
    assert 'data-testid="enforcement-other"' in html and "法院已立案" in html and "张伟已向" in html
    assert 'data-testid="apply-enforcement"' not in html


async def test_the_page_offers_enforcement_only_when_it_can_be_had(client, db):
    c = await effective_case(client, db)
    ob = await _past_due(client, c)
    client.session.cookie_jar.clear()
    r = await client.post("/api/v1/party/obligations/{}/report".format(ob["id"]), headers=c.applicant,
                          json={"performed": False})
    assert r.status == 201
    # The applicant on the lookup page's outcome page: the court has not confirmed yet.
    html = await (await client.get("/lookup")).text()
    r = await client.post("/lookup", data={"csrf_token": csrf_of(html), "number": c.number, "phone": c.phone,
                                           "code": c.code})
    assert r.status == 200, await r.text()
    html = await (await client.get("/lookup/outcome")).text()
    assert 'data-testid="enforcement-needs-confirmation"' in html and 'data-testid="apply-enforcement"' not in html
    before = await row_counts(db)
    r = await client.post("/lookup/outcome/follow/enforcement", data={"csrf_token": csrf_of(html)})
    assert r.status == 200 and "尚未经人民法院司法确认" in await r.text()
    assert await row_counts(db) == before
    # Another case's obligation cannot be reported from this page.
    o = await another_effective_case(c)
    r = await client.get(f"/api/v1/cases/{o.case_id}/obligations", headers=c.mediator)
    theirs = (await r.json())["obligations"][0]
    before = await row_counts(db)
    r = await client.post(f"/lookup/outcome/follow/report/{theirs['id']}",
                          data={"csrf_token": csrf_of(html), "performed": "yes"})
    assert r.status == 200 and "找不到这项内容" in await r.text()
    assert await row_counts(db) == before


MUTUAL = {
    "template": "labour",
    "facts": "申请人张伟在被申请人工地务工期间借用工具一套；被申请人拖欠工资人民币23,000元。",
    "terms": ["某劳务公司于2026年12月31日前向张伟一次性支付拖欠的劳动报酬人民币23,000元。",
              "张伟于2026年12月31日前向某劳务公司归还借用的电钻工具一套。"],
    "performance_deadline": "2026-12-31",
}


async def test_each_side_owed_something_applies_once(client, db):
    """When each party owes the other, each may apply for enforcement of what it is owed, once."""
    c = await case_in_mediation(client, db)
    r = await client.put(f"/api/v1/cases/{c.case_id}/agreement", json={"template": "labour"}, headers=c.mediator)
    assert r.status == 200, await r.text()
    r = await client.put(f"/api/v1/cases/{c.case_id}/agreement", json={**MUTUAL, "version": 1}, headers=c.mediator)
    assert r.status == 200, await r.text()
    r = await client.post(f"/api/v1/cases/{c.case_id}/agreement/finalise", json={"version": 2}, headers=c.mediator)
    assert r.status == 200, await r.text()
    await issue_respondent_link(c)
    await sign_all(c, (await r.json())["agreement"]["text_sha256"])
    r = await client.get(f"/api/v1/cases/{c.case_id}/obligations", headers=c.mediator)
    obligations = (await r.json())["obligations"]
    by_obligor = {o["obligor_party_id"]: o for o in obligations}
    assert set(by_obligor) == {c.respondent_id, c.applicant_id}, obligations
    yesterday = (dt.datetime.now(TZ).date() - dt.timedelta(days=1)).isoformat()
    for o in obligations:
        r = await client.patch(f"/api/v1/cases/{c.case_id}/obligations/{o['id']}", headers=c.mediator,
                               json={"due_on": yesterday})
        assert r.status == 200, await r.text()
    owed_to_applicant, owed_to_respondent = by_obligor[c.respondent_id], by_obligor[c.applicant_id]
    for headers, ob in ((c.applicant, owed_to_applicant), (c.respondent, owed_to_respondent)):
        r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=headers,
                              json={"performed": False})
        assert r.status == 201, await r.text()
    await _confirmed_by_the_court(client, db, c)

    # What the other side is owed is not this party's to enforce.
    before = await row_counts(db)
    for headers, other in ((c.applicant, owed_to_respondent), (c.respondent, owed_to_applicant)):
        r = await client.post("/api/v1/party/enforcement", headers=headers, json={"obligation_ids": [other["id"]]})
        assert r.status == 422, await r.text()
    assert await row_counts(db) == before
    keys = []
    for headers in (c.applicant, c.respondent):
        r = await client.post("/api/v1/party/enforcement", headers=headers, json={})
        assert r.status == 201, await r.text()
        keys.append((await r.json())["submission"]["id"])
    assert keys[0] != keys[1]
    async with db.read() as s:
        subs = (await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == c.case_id,
                                                              CourtSubmission.kind == "enforcement")
                                .order_by(CourtSubmission.id))).scalars().all()
    assert [x.applicant_party_id for x in subs] == [c.applicant_id, c.respondent_id]
    # Once each: a second application by either is refused and changes nothing.
    await eventually(lambda: all_delivered(db, c.case_id), what="both applications delivered")
    before = await row_counts(db)
    for headers in (c.applicant, c.respondent):
        r = await client.post("/api/v1/party/enforcement", headers=headers, json={})
        assert r.status == 409 and (await r.json())["error"]["code"] == "already_submitted"
    assert await row_counts(db) == before
    # Each party's page shows its own application.
    client.session.cookie_jar.clear()
    html = await (await client.get(f"/outcome/p/{c.respondent_token}")).text()
    assert 'data-testid="enforcement-status"' in html and 'data-testid="enforcement-other"' in html
    assert 'data-testid="apply-enforcement"' not in html


async def all_delivered(db, case_id) -> bool:
    async with db.read() as s:
        subs = (await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == case_id,
                                                              CourtSubmission.kind == "enforcement"))).scalars().all()
    return len(subs) == 2 and all(x.status == "delivered" for x in subs)
