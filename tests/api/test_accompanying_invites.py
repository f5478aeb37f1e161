"""Interpreters and support persons: invited with the party of this case they accompany
(docs/procedure.md, "Interpreters and support persons"). Bad links are refused with the field at
fault and change nothing; a good one names the party in the token, the audit chain and the record."""
from __future__ import annotations

from sqlalchemy import func, select

from server.core.models import AuditEntry
from server.core.security import decode_join_token

from .helpers import file_case, login, portal_login, row_counts, seed

SECRET = "test-secret-key-" + "x" * 32


async def _case_with_session(client, w, intake, mediator, **over):
    cid = (await file_case(client, w.inst_a, **over))["case"]["id"]
    await client.post(f"/api/v1/cases/{cid}/accept", headers=intake)
    await client.post(f"/api/v1/cases/{cid}/assign", headers=intake, json={"mediator_id": w.users["mediator"]})
    r = await client.post(f"/api/v1/cases/{cid}/sessions", headers=mediator, json={})
    assert r.status == 201, await r.text()
    parties = (await (await client.get(f"/api/v1/cases/{cid}", headers=mediator)).json())["case"]["parties"]
    return cid, (await r.json())["session"]["id"], parties


async def _audit_rows(db) -> int:
    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(AuditEntry))).scalar_one()


async def test_bad_interpreter_and_support_links_are_refused_and_change_nothing(client, db):
    w = await seed(db)
    intake, mediator = await login(client, "intake"), await login(client, "mediator")
    cid, sid, parties = await _case_with_session(client, w, intake, mediator)
    _other, _osid, other_parties = await _case_with_session(client, w, intake, mediator, title="另一件纠纷")
    applicant = parties[0]["id"]
    before, audit_before = await row_counts(db), await _audit_rows(db)
    cases = [
        ({"role": "interpreter", "name": "王译"}, "party_id"),                        # whom do they accompany?
        ({"role": "support", "name": "赵陪"}, "party_id"),
        ({"role": "interpreter", "name": "王译", "party_id": 999999}, "party_id"),   # unknown party
        ({"role": "support", "name": "赵陪", "party_id": other_parties[0]["id"]}, "party_id"),  # another case's
        ({"role": "interpreter", "party_id": applicant}, "name"),                    # no name
        ({"role": "observer", "name": "旁听", "party_id": applicant}, "party_id"),   # roles that take none
        ({"role": "expert", "name": "专家", "specialty": "medical", "party_id": applicant}, "party_id"),
        ({"role": "mediator", "party_id": applicant}, "party_id"),
        ({"role": "interpreter", "name": "王译", "party_id": applicant, "specialty": "medical"}, "role"),
        ({"role": "interpreter", "name": "王译", "party_id": applicant, "court": "某法院"}, "court"),
        ({"role": "translator", "name": "王译", "party_id": applicant}, "role"),      # no such role
    ]
    for body, field in cases:
        r = await client.post(f"/api/v1/sessions/{sid}/invites", headers=mediator, json=body)
        out = await r.json()
        assert r.status == 422, (body, out)
        assert field in out["error"]["fields"], (body, out)
    assert await row_counts(db) == before
    assert await _audit_rows(db) == audit_before
    # Only the case's mediator links anyone, interpreters included.
    r = await client.post(f"/api/v1/sessions/{sid}/invites", headers=intake,
                          json={"role": "interpreter", "name": "王译", "party_id": applicant})
    assert r.status == 403
    assert await row_counts(db) == before


async def test_an_interpreter_link_names_the_party_in_token_audit_and_record(client, db):
    w = await seed(db)
    intake, mediator = await login(client, "intake"), await login(client, "mediator")
    cid, sid, parties = await _case_with_session(client, w, intake, mediator)
    applicant = parties[0]
    made = []
    for body in ({"role": "interpreter", "name": "王译", "party_id": applicant["id"]},
                 {"role": "interpreter", "name": "陈译", "party_id": applicant["id"]},
                 {"role": "support", "name": "赵陪", "party_id": applicant["id"]}):
        r = await client.post(f"/api/v1/sessions/{sid}/invites", headers=mediator, json=body)
        assert r.status == 201, await r.text()
        made.append(await r.json())
    claims = [decode_join_token(SECRET, m["token"]) for m in made]
    assert [c["role"] for c in claims] == ["interpreter", "interpreter", "support"]
    assert [c["name"] for c in claims] == ["王译", "陈译", "赵陪"]
    # Each their own participant, never the party's: two interpreters of one party are two people.
    subs = [c["sub"] for c in claims]
    assert len(set(subs)) == 3 and f"party-{applicant['id']}" not in subs
    assert all(c["accompanies"] == {"id": f"party-{applicant['id']}", "name": applicant["name"]} for c in claims)
    assert sorted(claims[0]["grants"]) == ["publish", "subscribe"]  # a party's, nothing more
    assert made[0]["invite"]["party_id"] == applicant["id"]
    assert made[0]["invite"]["accompanies"] == {"party_id": applicant["id"], "name": applicant["name"]}
    assert not made[0]["invite"]["single_use"]

    # The check-in page says whom they accompany, in Chinese by default and in English.
    page = await (await client.get(f"/room/{made[0]['token']}")).text()
    assert f'data-testid="join-role">译员 · 陪同 {applicant["name"]}<' in page
    page = await (await client.get(f"/room/{made[2]['token']}?lang=en")).text()
    assert f'data-testid="join-role">Support person for {applicant["name"]}<' in page

    # A party's own link still names the party and has none.
    r = await client.post(f"/api/v1/sessions/{sid}/invites", headers=mediator,
                          json={"role": "party", "party_id": applicant["id"]})
    party_link = await r.json()
    assert party_link["invite"]["accompanies"] is None
    assert decode_join_token(SECRET, party_link["token"])["sub"] == f"party-{applicant['id']}"

    async with db.read() as s:
        created = [e.data for e in (await s.execute(select(AuditEntry).where(
            AuditEntry.action == "invite.created", AuditEntry.session_id == sid).order_by(AuditEntry.seq))).scalars()]
    assert [(d["role"], d["name"], d.get("party_id"), d.get("accompanies")) for d in created] == [
        ("interpreter", "王译", applicant["id"], applicant["name"]),
        ("interpreter", "陈译", applicant["id"], applicant["name"]),
        ("support", "赵陪", applicant["id"], applicant["name"]),
        ("party", applicant["name"], applicant["id"], None)]

    # The session as the API shows it, and the case's record, keep the link.
    session = (await (await client.get(f"/api/v1/sessions/{sid}", headers=mediator)).json())["session"]
    assert [(i["role"], (i["accompanies"] or {}).get("name")) for i in session["invites"]] == [
        ("interpreter", applicant["name"]), ("interpreter", applicant["name"]), ("support", applicant["name"]),
        ("party", None)]
    admin = await login(client, "admin")
    record = await (await client.get(f"/api/v1/cases/{cid}/record", headers=admin)).json()
    [rsess] = record["sessions"]
    assert [(i["name"], (i["accompanies"] or {}).get("name")) for i in rsess["invites"]][:3] == [
        ("王译", applicant["name"]), ("陈译", applicant["name"]), ("赵陪", applicant["name"])]

    # The pages: the archive record (links and timeline) and the mediator's case page name the party.
    await portal_login(client, "admin")
    html = await (await client.get(f"/archive/cases/{cid}")).text()
    assert html.count(f"译员 · 陪同 {applicant['name']}") >= 4  # two links, two timeline entries
    assert f"陪同人员 · 陪同 {applicant['name']}" in html
    await portal_login(client, "mediator")
    html = await (await client.get(f"/staff/cases/{cid}?lang=en")).text()
    assert f"Interpreter for {applicant['name']}" in html and '<option value="interpreter"' in html
    assert '<option value="support"' in html
