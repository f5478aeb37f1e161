"""The portal parts: the mediator declares and schedules from the case page (links and codes shown once,
an .ics file), intake decides a recusal request, the applicant answers on /lookup."""
from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from server.core.models import OnlineConsent, RecusalRequest

from tests.api.helpers import PASSWORD, file_case, login, seed


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def _staff(client, username: str) -> str:
    """Log in through the portal form; returns the CSRF token of the session."""
    client.session.cookie_jar.clear()
    page = await (await client.get("/login")).text()
    r = await client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": _csrf(page),
                                          "next": "/staff"}, allow_redirects=False)
    assert r.status == 303, await r.text()
    return _csrf(await (await client.get("/staff/queue" if username != "mediator" else "/staff/my")).text())


async def test_staff_and_applicant_pages(client, db):
    w = await seed(db)
    filed = await file_case(client, w.inst_a)
    cid, number, code = filed["case"]["id"], filed["case"]["number"], filed["access_code"]
    intake_api = await login(client, "intake")
    client.session.cookie_jar.clear()
    assert (await client.post(f"/api/v1/cases/{cid}/accept", headers=intake_api)).status == 200
    r = await client.post(f"/api/v1/cases/{cid}/assign", json={"mediator_id": w.users["mediator"]}, headers=intake_api)
    assert r.status == 200

    # The mediator: declare on the case page, then schedule.
    csrf = await _staff(client, "mediator")
    page = await (await client.get(f"/staff/cases/{cid}")).text()
    assert 'data-testid="declare-form"' in page and 'data-testid="schedule-form"' not in page
    r = await client.post(f"/staff/procedure/cases/{cid}/declare", data={"csrf_token": csrf, "conflict": "no"},
                          allow_redirects=False)
    assert r.status == 303
    page = await (await client.get(f"/staff/cases/{cid}")).text()
    assert 'data-testid="declare-form"' not in page and 'data-testid="schedule-form"' in page
    assert 'data-rule="mediation"' in page  # the deadline started by the acceptance
    day = (dt.date.today() + dt.timedelta(days=5)).isoformat()
    r = await client.post(f"/staff/procedure/cases/{cid}/schedule", allow_redirects=False,
                          data={"csrf_token": csrf, "date": day, "time": "09:30", "duration": "90", "notify": "yes"})
    assert r.status == 303, await r.text()
    shown = await (await client.get(r.headers["Location"])).text()
    codes = re.findall(r'data-testid="party-code">([A-Z0-9]+)<', shown)
    assert len(codes) == 1 and "/join/" in shown  # the respondent's code, once
    again = await client.get(r.headers["Location"], allow_redirects=False)
    assert again.status == 303  # shown only once
    sid = int(re.search(r"/staff/procedure/sessions/(\d+)/scheduled", r.headers["Location"]).group(1))
    ics = await client.get(f"/staff/procedure/sessions/{sid}/calendar.ics")
    assert ics.status == 200 and ics.content_type == "text/calendar"
    body = await ics.text()
    assert "DTSTART:" + day.replace("-", "") + "T013000Z" in body and number in body  # 09:30 in Shanghai
    # A bad date comes back as a message, not an error page.
    r = await client.post(f"/staff/procedure/cases/{cid}/schedule", data={"csrf_token": csrf, "date": "x", "time": ""},
                          allow_redirects=False)
    assert r.status == 303 and "#schedule" in r.headers["Location"]

    # The applicant on /lookup: the session with its .ics, consent, an e-mail address, a recusal request.
    client.session.cookie_jar.clear()
    form = await (await client.get("/lookup")).text()
    r = await client.post("/lookup", data={"csrf_token": _csrf(form), "number": number, "phone": "13800001111",
                                           "code": code}, allow_redirects=False)
    assert r.status == 303
    page = await (await client.get("/lookup/case")).text()
    assert 'data-testid="lookup-sessions"' in page and 'data-testid="lookup-recusal-form"' in page
    token = _csrf(page)
    r = await client.post("/lookup/procedure/consent", data={"csrf_token": token, "agree": "yes"}, allow_redirects=False)
    assert r.status == 303
    r = await client.post("/lookup/procedure/contact", data={"csrf_token": token, "email": "zw@example.cn"},
                          allow_redirects=False)
    assert r.status == 303
    r = await client.post("/lookup/procedure/recusal", data={"csrf_token": token, "reason": "调解员与被申请人是同学"},
                          allow_redirects=False)
    assert r.status == 303
    page = await (await client.get("/lookup/case")).text()
    assert 'data-testid="lookup-consent"' in page and "zw@example.cn" in page
    assert 'data-status="pending"' in page
    ics = await client.get(f"/lookup/procedure/sessions/{sid}/calendar.ics")
    assert ics.status == 200 and "BEGIN:VCALENDAR" in await ics.text()
    async with db.read() as s:
        consent = (await s.execute(select(OnlineConsent))).scalar_one()
        req = (await s.execute(select(RecusalRequest))).scalar_one()
    assert consent.agree and consent.how == "portal" and req.status == "pending"

    # Intake sees the request in the queue and grants it from the case page.
    csrf = await _staff(client, "intake")
    queue = await (await client.get("/staff/queue")).text()
    assert 'data-state="recusal"' in queue
    page = await (await client.get(f"/staff/cases/{cid}")).text()
    assert f'data-testid="decide-{req.id}"' in page
    r = await client.post(f"/staff/procedure/recusals/{req.id}/decide", allow_redirects=False,
                          data={"csrf_token": csrf, "decision": "grant", "note": "存在利害关系",
                                "mediator_id": str(w.users["mediator2"])})
    assert r.status == 303
    page = await (await client.get(f"/staff/cases/{cid}")).text()
    assert 'data-status="granted"' in page and "mediator2 名" in page
    # The page without a CSRF token changes nothing.
    r = await client.post(f"/staff/procedure/cases/{cid}/declare", data={"conflict": "no"}, allow_redirects=False)
    assert r.status == 403
