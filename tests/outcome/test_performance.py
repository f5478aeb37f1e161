"""Performance tracking on SQLite and PostgreSQL, from the outside: the agreement's terms become watched
obligations when it takes effect, the obliged party is reminded before the last day through the
notification outbox, the parties are asked to report after it and report from their link or with the
access code, the mediator sees the state on the case page and in the list; bad input changes nothing."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from server.core.models import AuditEntry, Obligation, OutboxJob
from server.services.outcome import performance
from tests.api.helpers import csrf_of, portal_login, row_counts

from .follow_helpers import another_effective_case
from .helpers import APPLICANT_ID, DRAFT, RESPONDENT_ID, effective_case, issue_respondent_link, signature_png

TZ = dt.timezone(dt.timedelta(hours=8))


def at(day: str, hour: int = 9) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=TZ)


async def _jobs(db, event: str) -> list[OutboxJob]:
    async with db.read() as s:
        return [j for j in (await s.execute(select(OutboxJob).order_by(OutboxJob.id))).scalars()
                if j.payload.get("event") == event]


async def _actions(db, case_id) -> list[str]:
    async with db.read() as s:
        return [e.action for e in (await s.execute(select(AuditEntry).where(AuditEntry.case_id == case_id)
                                                   .order_by(AuditEntry.seq))).scalars()]


async def _obligations(client, c) -> list[dict]:
    r = await client.get(f"/api/v1/cases/{c.case_id}/obligations", headers=c.mediator)
    assert r.status == 200, await r.text()
    return (await r.json())["obligations"]


async def test_terms_are_watched_reminded_and_reported(client, db):
    c = await effective_case(client, db)
    obs = await _obligations(client, c)
    # The payment term obliges the respondent; the closing clause obliges nobody.
    assert [(o["term"], o["obligor"], o["due_on"], o["state"]) for o in obs] == [
        (1, "某劳务公司", "2026-12-31", "running")]
    ob = obs[0]
    assert ob["text"] == DRAFT["terms"][0] and {p["name"] for p in ob["concerned"]} == {"张伟", "某劳务公司"}
    assert "obligation.created" in await _actions(db, c.case_id)

    # Reminders before the last day go to the obliged party only, each once.
    assert await performance.scan(db, (7, 1), now=at("2026-12-20")) == {"reminded": 0, "asked": 0}
    assert await performance.scan(db, (7, 1), now=at("2026-12-24")) == {"reminded": 1, "asked": 0}
    assert await performance.scan(db, (7, 1), now=at("2026-12-25")) == {"reminded": 0, "asked": 0}
    assert await performance.scan(db, (7, 1), now=at("2026-12-30")) == {"reminded": 1, "asked": 0}
    sms = [j for j in await _jobs(db, "obligation_due_soon") if j.payload["medium"] == "sms"]
    assert [j.payload["to"] for j in sms] == ["13900002222", "13900002222"]
    assert "2026-12-31" in sms[0].payload["text"] and "7" in sms[0].payload["text"]
    # On the day after the last day both parties concerned are asked to report, once.
    assert await performance.scan(db, (7, 1), now=at("2027-01-01", 0)) == {"reminded": 0, "asked": 1}
    assert await performance.scan(db, (7, 1), now=at("2027-01-02")) == {"reminded": 0, "asked": 0}
    asked = {j.payload["to"] for j in await _jobs(db, "obligation_report") if j.payload["medium"] == "sms"}
    assert asked == {"13800001111", "13900002222"}
    actions = await _actions(db, c.case_id)
    assert actions.count("obligation.reminded") == 2 and actions.count("obligation.due") == 1

    # Before the last day nobody can say it was not performed; the obliged party can say it was.
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=c.applicant,
                          json={"performed": False})
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_due"
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=c.respondent,
                          json={"performed": True, "note": "已于12月28日转账"})
    assert r.status == 201, await r.text()
    assert (await r.json())["obligation"]["status"] == "claimed"
    # The other side confirms: performed.
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=c.applicant,
                          json={"performed": True})
    assert r.status == 201, await r.text()
    body = (await r.json())["obligation"]
    assert body["status"] == "performed" and body["me"]["reported"] is True
    assert [(x["name"], x["performed"]) for x in body["reports"]] == [("某劳务公司", True), ("张伟", True)]
    r = await client.get("/api/v1/party/obligations", headers=c.applicant)
    mine = (await r.json())["obligations"][0]["me"]
    assert mine == {"concerned": True, "obligor": False, "reported": True, "may_report_performed": False,
                    "may_report_not_performed": False}
    assert (await _actions(db, c.case_id)).count("obligation.reported") == 2


async def test_not_performed_after_the_last_day_is_flagged_for_the_mediator(client, db):
    c = await effective_case(client, db)
    ob = (await _obligations(client, c))[0]
    # The mediator moves the last day (nobody reported yet): it is now past.
    yesterday = (dt.datetime.now(TZ).date() - dt.timedelta(days=1)).isoformat()
    r = await client.patch(f"/api/v1/cases/{c.case_id}/obligations/{ob['id']}", headers=c.mediator,
                           json={"due_on": yesterday})
    assert r.status == 200, await r.text()
    assert (await r.json())["obligation"]["state"] == "overdue"
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=c.applicant,
                          json={"performed": False, "note": "至今未收到任何款项"})
    assert r.status == 201, await r.text()
    assert (await r.json())["obligation"]["status"] == "not_performed"
    # The mediator is told (with a contact on file) and sees it on the case page and in the list.
    assert [j.payload["event"] for j in await _jobs(db, "obligation_not_performed")] == []  # no contact yet
    # The obliged party says otherwise: disputed.
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=c.respondent,
                          json={"performed": True})
    assert (await r.json())["obligation"]["status"] == "disputed"
    # Once reported on, the mediator can no longer correct it.
    r = await client.patch(f"/api/v1/cases/{c.case_id}/obligations/{ob['id']}", headers=c.mediator,
                           json={"withdrawn": True})
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_reported"

    csrf = await portal_login(client, "mediator")
    html = await (await client.get(f"/staff/cases/{c.case_id}")).text()
    assert 'data-testid="followup"' in html and f'data-obligation="{ob["id"]}" data-state="disputed"' in html
    assert "至今未收到任何款项" in html and "双方说法不一" in html
    html = await (await client.get("/staff/my")).text()
    assert f'data-testid="ob-flags-{c.number}"' in html and "履行有争议 1 项" in html
    assert csrf


async def test_the_mediator_hears_of_a_non_performance(client, db):
    c = await effective_case(client, db)
    r = await client.put("/api/v1/auth/me/contact", headers=c.mediator, json={"email": "li.ming@example.cn"})
    assert r.status == 200, await r.text()
    ob = (await _obligations(client, c))[0]
    async with db.session() as s:
        row = await s.get(Obligation, ob["id"])
        row.due_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=c.applicant,
                          json={"performed": False})
    assert r.status == 201, await r.text()
    jobs = await _jobs(db, "obligation_not_performed")
    assert [(j.payload["medium"], j.payload["to"]) for j in jobs] == [("email", "li.ming@example.cn")]
    assert c.number in jobs[0].payload["subject"]


async def test_refused_reports_change_nothing(client, db):
    c = await effective_case(client, db)
    ob = (await _obligations(client, c))[0]
    other = await another_effective_case(c)  # a second case with its own obligation and parties
    theirs = (await _obligations(client, other))[0]
    before = await row_counts(db)
    url = f"/api/v1/party/obligations/{ob['id']}/report"
    refusals = [
        # someone else's obligation: an obligation of another case
        (f"/api/v1/party/obligations/{theirs['id']}/report", c.applicant, {"performed": True}, 404, "not_found"),
        (url, {}, {"performed": True}, 401, "unauthorized"),
        (url, {"X-Party-Token": "x" * 30}, {"performed": True}, 401, "link_invalid"),
        (url, c.mediator, {"performed": True}, 401, "unauthorized"),  # staff are no party
        (url, c.applicant, {}, 422, "validation_failed"),
        (url, c.applicant, {"performed": "perhaps"}, 422, "validation_failed"),
        (url, c.applicant, {"performed": True, "note": "x" * 1001}, 422, "validation_failed"),
        (url, c.applicant, {"performed": True, "obligation_id": theirs["id"]}, 422, "validation_failed"),
        (url, c.applicant, {"performed": False}, 409, "not_due"),
        ("/api/v1/party/obligations/999999/report", c.applicant, {"performed": True}, 404, "not_found"),
    ]
    for path, headers, body, status, code in refusals:
        r = await client.post(path, headers=headers, json=body)
        assert r.status == status, (path, body, await r.text())
        assert (await r.json())["error"]["code"] == code, (path, body)
    r = await client.post(url, headers={**c.applicant, "Content-Type": "application/json"}, data=b"{not json")
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_json"
    assert await row_counts(db) == before
    # The same report twice: the second is refused and nothing changes.
    assert (await client.post(url, headers=c.respondent, json={"performed": True})).status == 201
    before = await row_counts(db)
    r = await client.post(url, headers=c.respondent, json={"performed": True})
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_reported"
    assert await row_counts(db) == before
    # The mediator's corrections: only the case's mediator, a party of the case, something to change.
    patch = f"/api/v1/cases/{other.case_id}/obligations/{theirs['id']}"
    for headers, body, status in ((c.admin, {"withdrawn": True}, 403), (other.mediator, {"obligor_party_id": c.applicant_id}, 422),
                                  (other.mediator, {}, 409), (other.mediator, {"due_on": "soon"}, 422),
                                  (other.mediator, {"status": "performed"}, 422)):
        r = await client.patch(patch, headers=headers, json=body)
        assert r.status == status, (body, await r.text())
    r = await client.patch(f"/api/v1/cases/{c.case_id}/obligations/{theirs['id']}", headers=c.mediator,
                           json={"withdrawn": True})
    assert r.status == 404
    assert await row_counts(db) == before


async def test_a_co_party_on_the_same_side_cannot_report(client, db):
    """Two respondents: the term obliges the first; the second is on the same side and not concerned."""
    from .helpers import case_in_mediation
    c = await case_in_mediation(client, db)
    # A second respondent joins the case's parties before the agreement (as intake would record them).
    from server.core.models import Party
    async with db.session() as s:
        s.add(Party(case_id=c.case_id, side="respondent", name="王五", phone="13700007777"))
    async with db.read() as s:
        second = (await s.execute(select(Party).where(Party.case_id == c.case_id, Party.name == "王五"))).scalar_one()
    r = await client.put(f"/api/v1/cases/{c.case_id}/agreement", headers=c.mediator, json={**DRAFT})
    assert r.status == 200, await r.text()
    r = await client.post(f"/api/v1/cases/{c.case_id}/agreement/finalise", headers=c.mediator, json={})
    text_sha = (await r.json())["agreement"]["text_sha256"]
    await issue_respondent_link(c)
    r = await client.post(f"/api/v1/cases/{c.case_id}/agreement/links", headers=c.mediator,
                          json={"party_id": second.id})
    second_token = (await r.json())["token"]
    for headers, n, id6 in ((c.applicant, 1, APPLICANT_ID), (c.respondent, 2, RESPONDENT_ID),
                            ({"X-Party-Token": second_token}, 4, None)):
        body = {"signature": signature_png(n), "text_sha256": text_sha}
        if id6:
            body["id_last6"] = id6[-6:]
        r = await client.post("/api/v1/party/agreement/sign", headers=headers, json=body)
        assert r.status == 200, await r.text()
    r = await client.post(f"/api/v1/cases/{c.case_id}/agreement/sign", headers=c.mediator,
                          json={"signature": signature_png(3), "text_sha256": text_sha})
    assert (await r.json())["effective"] is True
    ob = (await _obligations(client, c))[0]
    assert ob["obligor"] == "某劳务公司" and "王五" not in {p["name"] for p in ob["concerned"]}
    before = await row_counts(db)
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers={"X-Party-Token": second_token},
                          json={"performed": True})
    assert r.status == 403 and (await r.json())["error"]["code"] == "not_concerned"
    assert await row_counts(db) == before
    r = await client.get("/api/v1/party/obligations", headers={"X-Party-Token": second_token})
    assert (await r.json())["obligations"][0]["me"]["concerned"] is False


async def test_party_page_reports_with_the_personal_link(client, db):
    """The form on the party's page (the same page the lookup leads to) records a report."""
    c = await effective_case(client, db)
    ob = (await _obligations(client, c))[0]
    async with db.session() as s:
        row = await s.get(Obligation, ob["id"])
        row.due_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    client.session.cookie_jar.clear()
    page = f"/outcome/p/{c.respondent_token}"
    html = await (await client.get(page)).text()
    assert f'data-testid="obligation-{ob["id"]}"' in html and f'data-testid="report-yes-{ob["id"]}"' in html
    r = await client.post(f"{page}/follow/report/{ob['id']}", data={"csrf_token": csrf_of(html), "performed": "yes",
                                                                   "note": "已付清"}, allow_redirects=False)
    assert r.status == 303, await r.text()
    html = await (await client.get(page)).text()
    assert "已收到您的报告" in html and f'data-testid="my-report-{ob["id"]}"' in html
    # The same again is refused with a clear message and nothing changes.
    before = await row_counts(db)
    r = await client.post(f"{page}/follow/report/{ob['id']}", data={"csrf_token": csrf_of(html), "performed": "yes"})
    assert r.status == 200 and "您已经报告过相同的情况" in await r.text()
    assert await row_counts(db) == before
