"""Archive search, the case record, access logging and read-only clerks, on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from server.core import audit
from server.http.api.routes import api
from server.core.models import AuditEntry, AuditHead, ChatMessage, MediationSession
from server.services.archive import records as archive_svc
from tests.api.helpers import file_case, login, seed

from .seeding import Spec, case_status, patch, seed_cases

UTC = dt.timezone.utc


def search_specs() -> list[Spec]:
    out = []
    for i in range(25):
        out.append(Spec(filed=dt.datetime(2026, 3, 1 + i, 4, 0, tzinfo=UTC), inst="a" if i % 5 else "b",
                        type="petition" if i % 4 == 0 else "mediation", category=["labour", "family", "neighbour"][i % 3],
                        applicant=("欧阳娜" if i == 7 else f"申请人{i}"), respondent=f"被申请人{i}",
                        accept_after_h=2 if i % 2 else None,
                        mediator=("mediator" if i % 5 else "mediator_b") if i % 2 else None))
    return out


@pytest.fixture
async def world_with_cases(db, settings, monkeypatch):
    from server.infra.files import FileStore
    world = await seed(db)
    clock = patch(monkeypatch)
    specs = search_specs()
    await seed_cases(db, world, specs, clock, FileStore(settings.evidence_dir))
    monkeypatch.undo()
    return world, specs


async def _all_pages(client, headers, qs: str, limit: int = 4) -> list[str]:
    numbers, url, pages = [], f"/api/v1/archive/cases?{qs}&limit={limit}", 0
    while url:
        r = await client.get(url, headers=headers)
        assert r.status == 200, await r.text()
        body = await r.json()
        numbers += [c["number"] for c in body["cases"]]
        url = f"/api/v1/archive/cases?{qs}&limit={limit}&after={body['next_cursor']}" if body["next_cursor"] else None
        pages += 1
        assert pages < 50
    return numbers


async def test_search_filters_and_keyset_pages(client, world_with_cases):
    world, specs = world_with_cases
    clerk = await login(client, "county_clerk")
    newest_first = [sp.number for sp in sorted(specs, key=lambda sp: sp.filed, reverse=True)]
    # Walking forward over every page gives each case once, newest first.
    assert await _all_pages(client, clerk, "x=1".replace("x=1", "")) == newest_first
    # ...and backward from the last page gives the same pages.
    r = await client.get("/api/v1/archive/cases?limit=4", headers=clerk)
    body = await r.json()
    assert body["total"] == 25 and body["prev_cursor"] is None
    r2 = await client.get(f"/api/v1/archive/cases?limit=4&after={body['next_cursor']}", headers=clerk)
    page2 = await r2.json()
    r3 = await client.get(f"/api/v1/archive/cases?limit=4&before={page2['prev_cursor']}", headers=clerk)
    back = await r3.json()
    assert [c["number"] for c in back["cases"]] == [c["number"] for c in body["cases"]]
    assert back["prev_cursor"] is None and back["next_cursor"]

    def expect(pred):
        return [sp.number for sp in sorted(specs, key=lambda sp: sp.filed, reverse=True) if pred(sp)]

    mediator_b = world.users["mediator_b"]
    cases = {
        "party=欧阳": lambda sp: sp.applicant == "欧阳娜",
        "party=被申请人1": lambda sp: sp.respondent.startswith("被申请人1"),
        "type=petition": lambda sp: sp.type == "petition",
        "category=family": lambda sp: sp.category == "family",
        "status=assigned": lambda sp: case_status(sp) == "assigned",
        "status=filed,assigned": lambda sp: case_status(sp) in ("filed", "assigned"),
        f"institution_id={world.inst_b}": lambda sp: sp.inst == "b",
        f"mediator_id={mediator_b}": lambda sp: sp.mediator == "mediator_b",
        # 10 March 00:00 to 12 March 23:59 in the centre (UTC+8)
        "from=2026-03-10&to=2026-03-12": lambda sp: dt.date(2026, 3, 10) <= sp.filed.date() <= dt.date(2026, 3, 12),
        f"category=labour&institution_id={world.inst_a}&from=2026-03-05":
            lambda sp: sp.category == "labour" and sp.inst == "a" and sp.filed.date() >= dt.date(2026, 3, 5),
        f"number={specs[3].number}": lambda sp: sp is specs[3],
        f"number={specs[3].number.lower()[-6:]}": lambda sp: sp.number.endswith(specs[3].number[-6:]),
        "party=%": lambda sp: False,  # wildcards are literal characters
    }
    for qs, pred in cases.items():
        got = await _all_pages(client, clerk, qs)
        assert got == expect(pred), qs
        r = await client.get(f"/api/v1/archive/cases?{qs}", headers=clerk)
        assert (await r.json())["total"] == len(expect(pred)), qs
    # An institution's clerk searches only their institution.
    own = await login(client, "clerk")
    assert await _all_pages(client, own, "") == expect(lambda sp: sp.inst == "a")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_search_rejects_bad_parameters_and_other_roles(client, db):
    await seed(db)
    clerk = await login(client, "clerk")
    bad = {"limit=0": "limit", "limit=101": "limit", "limit=x": "limit", "from=2026-02-30": "from",
           "to=20260101": "to", "from=2026-05-02&to=2026-05-01": "to", "status=open": "status",
           "type=lawsuit": "type", "category=cats": "category", "institution_id=-1": "institution_id",
           "mediator_id=1.5": "mediator_id", "after=garbage": "after", "sort=asc": "sort",
           "number=" + "X" * 41: "number", "party=" + "名" * 101: "party"}
    for qs, field in bad.items():
        r = await client.get(f"/api/v1/archive/cases?{qs}", headers=clerk)
        assert r.status == 422, qs
        assert field in (await r.json())["error"]["fields"], qs
    r = await client.get("/api/v1/archive/cases?limit=0&colour=red", headers=clerk)
    assert set((await r.json())["error"]["fields"]) == {"limit", "colour"}  # every problem at once
    filed = await file_case(client, (await (await client.get("/api/v1/institutions")).json())["institutions"][0]["id"])
    client.session.cookie_jar.clear()
    assert (await client.get("/api/v1/archive/cases")).status == 401
    code = {"X-Access-Code": filed["access_code"]}
    assert (await client.get("/api/v1/archive/cases", headers=code)).status == 401
    cid = filed["case"]["id"]
    for path in ("/api/v1/archive/cases", f"/api/v1/cases/{cid}/integrity", f"/api/v1/cases/{cid}/export"):
        assert (await client.get(path)).status == 401, path
        for who in ("intake", "mediator"):
            h = await login(client, who)
            client.session.cookie_jar.clear()
            assert (await client.get(path, headers=h)).status == 403, (path, who)
    r = await client.get("/archive", allow_redirects=False)
    assert r.status == 303 and "/login" in r.headers["Location"]


async def _views(db, case_id) -> list[AuditEntry]:
    async with db.read() as s:
        return list((await s.execute(select(AuditEntry).where(AuditEntry.case_id == case_id,
                                                               AuditEntry.action == "case.viewed")
                                     .order_by(AuditEntry.seq))).scalars())


async def test_record_lists_everything_and_every_clerk_view_is_logged(client, db, world_with_cases):
    world, specs = world_with_cases
    sp = next(x for x in specs if x.mediator == "mediator")
    async with db.session() as s:
        # A live session's trail as signaling writes it, and a chat transcript.
        med = audit.ActorRef("participant", "mediator-1", "mediator 名")
        sess = MediationSession(case_id=sp.id, room_id="room-record-test", status="ended", created_by=world.users["mediator"],
                                started_at=dt.datetime(2026, 3, 9, 2, tzinfo=UTC), ended_at=dt.datetime(2026, 3, 9, 3, tzinfo=UTC))
        s.add(sess)
        await s.flush()
        for action, data in [("participant.joined", {"name": "张伟", "role": "party", "where": "lobby"}),
                             ("participant.admitted", {"name": "张伟", "role": "party", "target": "party-1"}),
                             ("participant.moved", {"name": "张伟", "role": "party", "to": "caucus-1"}),
                             ("recording.started", {}), ("recording.stopped", {}),
                             ("participant.left", {"name": "张伟", "role": "party", "reason": "leave"})]:
            await audit.append(s, med, action, case_id=sp.id, session_id=sess.id, data=data)
        s.add_all([ChatMessage(session_id=sess.id, participant_id="party-1", name="张伟", role="party", area="main",
                               text="您好"),
                   ChatMessage(session_id=sess.id, participant_id="mediator-1", name="调解员", role="mediator",
                               area="caucus-1", text="请说明情况")])
    clerk = await login(client, "clerk")
    assert await _views(db, sp.id) == []
    r = await client.get(f"/api/v1/cases/{sp.id}/record", headers=clerk)
    assert r.status == 200
    rec = await r.json()
    actions = [e["action"] for e in rec["timeline"]]
    assert [a for a in actions if a.startswith("case.")][:3] == ["case.filed", "case.accept", "case.assign"]
    assert "participant.admitted" in actions and "recording.started" in actions
    assert [e["seq"] for e in rec["timeline"]] == sorted(e["seq"] for e in rec["timeline"])
    live = next(x for x in rec["sessions"] if x["room_id"] == "room-record-test")
    assert [m["text"] for m in live["chat"]] == ["您好", "请说明情况"] and live["chat"][1]["area"] == "caucus-1"
    assert [e["action"] for e in live["events"]][:2] == ["participant.joined", "participant.admitted"]
    assert live["duration_seconds"] == 3600
    assert rec["recordings"] == [] and rec["outcome"] is None
    views = await _views(db, sp.id)
    assert len(views) == 1 and views[0].actor_id == str(world.users["clerk"]) and views[0].data["via"] == "api.record"
    # Views are in the access log, not in the case's timeline; the staff page's timeline leaves them out too.
    r = await client.get(f"/api/v1/cases/{sp.id}/record", headers=clerk)
    rec = await r.json()
    assert [e["action"] for e in rec["access_log"]] == ["case.viewed"]
    assert "case.viewed" not in [e["action"] for e in rec["timeline"]]
    # The page view, the case API, the session API: each one logged. Intake's reading is not an archive access.
    assert (await client.get(f"/archive/cases/{sp.id}", headers=clerk)).status == 200
    assert (await client.get(f"/api/v1/cases/{sp.id}", headers=clerk)).status == 200
    assert (await client.get(f"/api/v1/sessions/{sess.id}", headers=clerk)).status == 200
    intake = await login(client, "intake")
    assert (await client.get(f"/api/v1/cases/{sp.id}/record", headers=intake)).status == 200
    vias = [v.data["via"] for v in await _views(db, sp.id)]
    assert vias == ["api.record", "api.record", "page", "api.case", "api.session"]
    # A clerk's old case-page address leads to the archive record.
    r = await client.get(f"/staff/cases/{sp.id}", headers=clerk, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == f"/archive/cases/{sp.id}"
    # Another institution's clerk cannot read it (and nothing is logged).
    other = next(x for x in specs if x.inst == "b")
    assert (await client.get(f"/api/v1/cases/{other.id}/record", headers=clerk)).status == 403
    assert await _views(db, other.id) == []
    async with db.read() as s:
        assert await audit.verify_chain(s) == []

    # The recordings and outcome modules register their sections; the record lists whatever they return.

    async def recordings(s, case):
        return [{"id": 1, "participant": "张伟", "kind": "audio+video", "sha256": "ab" * 32, "case": case.number}]

    async def outcome(s, case):
        return {"result": "settled", "signed_at": "2026-03-20T10:00:00+08:00", "sha256": "cd" * 32}

    archive_svc.register_record_section("recordings", recordings)
    archive_svc.register_record_section("outcome", outcome)
    try:
        clerk = await login(client, "county_clerk")
        rec = await (await client.get(f"/api/v1/cases/{specs[0].id}/record", headers=clerk)).json()
        assert rec["recordings"][0]["case"] == specs[0].number and rec["outcome"]["result"] == "settled"
        html = await (await client.get(f"/archive/cases/{specs[0].id}", headers=clerk)).text()
        assert "ab" * 32 in html and "cd" * 32 in html
    finally:
        archive_svc.register_record_section("recordings", None, [])
        archive_svc.register_record_section("outcome", None)
    rec = await (await client.get(f"/api/v1/cases/{specs[0].id}/record", headers=clerk)).json()
    assert rec["recordings"] == [] and rec["outcome"] is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_clerks_cannot_change_anything(client, db):
    """Every write route of the API, with a valid body, refuses a clerk (403); the chain does not move."""
    from tests.api.helpers import case_body
    from tests.api.test_authorization import MATRIX, _fill, _fresh_case
    w = await seed(db)
    ids = await _fresh_case(client, db, w)
    ids.update(user=w.users["intake"], inst_b=w.inst_b, mediator2_id=w.users["mediator2"])
    clerks = [await login(client, "clerk"), await login(client, "county_clerk")]
    client.session.cookie_jar.clear()
    async with db.read() as s:
        head_before = (await s.execute(select(AuditHead.seq))).scalar_one()
    bodies = {(m, p): b for m, p, b, _ in MATRIX}
    allowed = {(m, p): who for m, p, _, who in MATRIX}
    norm = {"{case_id}": "{case}", "{session_id}": "{session}", "{invite_id}": "{invite}", "{user_id}": "{user}",
            "{ref}": "{number}"}
    writes = [op for op in api.operations if op.method in ("POST", "PUT", "PATCH", "DELETE")
              and op.who != "anyone" and not op.path.startswith("/auth/")]  # one's own login and contact
    checked = 0
    for op in writes:
        path = op.path
        for a, b in norm.items():
            path = path.replace(a, b)
        if (op.method, path) not in bodies:
            continue  # newer than the matrix: test_matrix_covers_every_route asks for it to be added there
        who = allowed[(op.method, path)]
        if "clerk" in who:
            continue  # a POST that only reads (e.g. checking an agreement PDF), open to clerks by the matrix
        body = bodies[(op.method, path)]
        body = case_body(w.inst_a) if body == "case" else _fill(body, ids)
        url = "/api/v1" + _fill(re.sub(r"{(\w+)}", lambda m: m.group(0) if m.group(1) in ids else "1", path), ids)
        for headers in clerks:
            r = await client.request(op.method, url, headers=headers, json=body or {})
            if not who:  # only a party or the applicant, with their own proof
                assert r.status in (401, 403), (op.method, path, r.status)
            elif re.search(r"{(\w+)}", path) and any(x not in ids for x in re.findall(r"{(\w+)}", path)):
                assert r.status in (403, 404), (op.method, path, r.status)  # an id this test does not make
            else:  # a valid body: the role check is what refuses
                assert r.status == 403, (op.method, path, r.status, await r.text())
        checked += 1
    assert checked >= 15
    # The portal's forms too.
    r = await client.post(f"/staff/cases/{ids['case']}/accept", headers={**clerks[0], "X-CSRF-Token": "x"})
    assert r.status == 403
    async with db.read() as s:
        assert (await s.execute(select(AuditHead.seq))).scalar_one() == head_before
