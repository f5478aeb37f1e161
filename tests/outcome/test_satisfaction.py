"""Satisfaction (好差评) on SQLite and PostgreSQL: each party rates once per matter after a session or at the
end, a poor rating opens a review task for the institution, and the analytics count the ratings by
institution, mediator and category with the figures behind each rate; bad input changes nothing."""
from __future__ import annotations

import csv
import io

from sqlalchemy import select

from server.core.models import Deadline
from tests.api.helpers import csrf_of, row_counts

from .follow_helpers import actions, another_case_in_mediation, end_session, jobs
from .helpers import case_in_mediation, issue_respondent_link, login


async def test_one_rating_per_matter_and_a_poor_one_is_reviewed(client, db):
    c = await case_in_mediation(client, db)
    await issue_respondent_link(c, None)
    intake = await login(client, "intake")
    r = await client.put("/api/v1/auth/me/contact", headers=intake, json={"email": "wang.fang@example.cn"})
    assert r.status == 200, await r.text()
    # Nothing to rate while the first session runs.
    r = await client.get("/api/v1/party/rating", headers=c.applicant)
    assert (await r.json())["may_rate"] is False
    before = await row_counts(db)
    r = await client.post("/api/v1/party/rating", headers=c.applicant, json={"level": 5})
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_yet"
    assert await row_counts(db) == before

    await end_session(c)
    r = await client.post("/api/v1/party/rating", headers=c.applicant, json={"level": 4, "comment": "调解员很耐心"})
    assert r.status == 201, await r.text()
    assert (await r.json())["rating"] | {"at": None, "id": None, "case_id": None, "party_id": None} == {
        "id": None, "case_id": None, "party_id": None, "name": "张伟", "level": 4, "label": "satisfied",
        "poor": False, "comment": "调解员很耐心", "stage": "session", "at": None}
    # Once per matter: the second is refused and nothing changes.
    before = await row_counts(db)
    for body in ({"level": 5}, {"level": 1, "comment": "改主意了"}):
        r = await client.post("/api/v1/party/rating", headers=c.applicant, json=body)
        assert r.status == 409 and (await r.json())["error"]["code"] == "already_rated"
    # Malformed ratings, and no party proof.
    for headers, body in ((c.respondent, {"level": 0}), (c.respondent, {"level": 6}), (c.respondent, {"level": "good"}),
                          (c.respondent, {}), (c.respondent, {"level": 3, "comment": "很" * 1001}),
                          (c.respondent, {"level": 3, "party_id": c.applicant_id}), (c.respondent, {"level": 2.5})):
        r = await client.post("/api/v1/party/rating", headers=headers, json=body)
        assert r.status == 422, (body, await r.text())
    for headers in ({}, c.mediator, {"X-Party-Token": "y" * 40}):
        r = await client.post("/api/v1/party/rating", headers=headers, json={"level": 5})
        assert r.status == 401
    assert await row_counts(db) == before
    r = await client.get("/api/v1/party/rating", headers=c.applicant)
    got = await r.json()
    assert got["may_rate"] is False and got["rating"]["level"] == 4

    # A poor rating: the institution reviews it within 5 working days, and intake is told.
    r = await client.post("/api/v1/party/rating", headers=c.respondent, json={"level": 1, "comment": "调解员偏袒对方"})
    assert r.status == 201, await r.text()
    r = await client.get(f"/api/v1/cases/{c.case_id}/followups", headers=intake)
    body = await r.json()
    assert [(x["level"], x["poor"]) for x in body["ratings"]] == [(4, False), (1, True)]
    reviews = [t for t in body["tasks"] if t["kind"] == "review"]
    assert len(reviews) == 1 and reviews[0]["rule"] == "review" and reviews[0]["may_complete"] is True
    async with db.read() as s:
        d = (await s.execute(select(Deadline).where(Deadline.case_id == c.case_id, Deadline.rule == "review"))
             ).scalar_one()
    assert d.status == "open" and d.due_on == reviews[0]["due_on"]
    mails = await jobs(db, "rating_poor", "email")
    assert [j.payload["to"] for j in mails] == ["wang.fang@example.cn"]
    # Only intake of the institution (or an admin) records how it was handled.
    url = f"/api/v1/followups/{reviews[0]['id']}/complete"
    intake_b, mediator = await login(client, "intake_b"), c.mediator
    before = await row_counts(db)
    for headers, body, status in ((mediator, {"outcome": "explained"}, 403), (intake_b, {"outcome": "explained"}, 403),
                                  (intake, {"outcome": "performed"}, 422), (intake, {"outcome": "resolved"}, 422)):
        r = await client.post(url, headers=headers, json=body)
        assert r.status == status, (body, await r.text())
    assert await row_counts(db) == before
    r = await client.post(url, headers=intake, json={"outcome": "explained", "note": "已向当事人解释调解规则"})
    assert r.status == 200, await r.text()
    async with db.read() as s:
        d = (await s.execute(select(Deadline).where(Deadline.case_id == c.case_id, Deadline.rule == "review"))
             ).scalar_one()
    assert d.status == "met"
    acts = await actions(db, c.case_id)
    assert acts.count("rating.given") == 2 and "review.opened" in acts and "review.done" in acts


async def test_analytics_count_the_ratings_by_institution_mediator_and_category(client, db):
    c = await case_in_mediation(client, db)
    await issue_respondent_link(c, None)
    await end_session(c)
    o = await another_case_in_mediation(c, category="neighbour")
    await end_session(o)
    for headers, level in ((c.applicant, 5), (c.respondent, 2), (o.applicant, 3)):
        r = await client.post("/api/v1/party/rating", headers=headers, json={"level": level})
        assert r.status == 201, await r.text()
    admin = await login(client, "admin")
    r = await client.get("/api/v1/analytics/summary", headers=admin)
    assert r.status == 200, await r.text()
    st = (await r.json())["satisfaction"]
    assert {k: st[k] for k in ("ratings", "good", "poor", "good_rate", "average")} == {
        "ratings": 3, "good": 2, "poor": 1, "good_rate": 0.6667, "average": 3.33}
    assert st["levels"] == {"5": 1, "4": 0, "3": 1, "2": 1, "1": 0}
    assert [(x["key"], x["ratings"], x["good"]) for x in st["by_institution"]] == [(c.world.inst_a, 3, 2)]
    assert [(x["key"], x["name"], x["ratings"]) for x in st["by_mediator"]] == [
        (c.world.users["mediator"], "mediator 名", 3)]
    assert {x["key"]: (x["ratings"], x["good"], x["poor"], x["good_rate"]) for x in st["by_category"]} == {
        "labour": (2, 1, 1, 0.5), "neighbour": (1, 1, 0, 1.0)}
    # Another institution's clerk sees none of them.
    r = await client.get(f"/api/v1/analytics/summary?institution_id={c.world.inst_b}", headers=admin)
    assert (await r.json())["satisfaction"]["ratings"] == 0
    # The CSV carries every row with its counts; the page shows the rate.
    r = await client.get("/api/v1/analytics/csv?table=satisfaction&lang=en", headers=admin)
    rows = list(csv.reader(io.StringIO((await r.read()).decode("utf-8-sig"))))
    assert rows[0][:4] == ["dimension", "code", "name", "ratings"]
    assert [(x[0], x[1], x[3]) for x in rows[1:]] == [
        ("all", "", "3"), ("institution", str(c.world.inst_a), "3"), ("mediator", str(c.world.users["mediator"]), "3"),
        ("category", "labour", "2"), ("category", "neighbour", "1")]
    r = await client.get("/analytics?lang=zh-CN", headers=admin)
    html = await r.text()
    assert 'data-testid="satisfaction"' in html and "66.7%" in html and "服务评价（好差评）" in html


async def test_rating_on_the_party_page(client, db):
    c = await case_in_mediation(client, db)
    await issue_respondent_link(c, None)
    await end_session(c)
    client.session.cookie_jar.clear()
    page = f"/outcome/p/{c.respondent_token}"
    html = await (await client.get(page)).text()
    assert 'data-testid="rating-form"' in html and 'data-testid="level-1"' in html
    csrf = csrf_of(html)
    r = await client.post(f"{page}/follow/rating", data={"csrf_token": csrf, "comment": "没选"})
    assert r.status == 200 and "请检查填写的内容" in await r.text()
    r = await client.post(f"{page}/follow/rating", data={"csrf_token": csrf, "level": "3", "comment": "还行"})
    html = await r.text()
    assert r.status == 200 and 'data-testid="rated"' in html and "基本满意" in html
    before = await row_counts(db)
    r = await client.post(f"{page}/follow/rating", data={"csrf_token": csrf, "level": "5"})
    assert "您已经评价过本案" in await r.text()
    assert await row_counts(db) == before
