"""Authorization matrix: every role, and an anonymous caller, against every API route."""
from __future__ import annotations

import pytest

from server.http.api.routes import api
from server.core.schemas import AssignIn, InviteIn, SessionIn
from server.services import cases as case_svc
from server.services import sessions as session_svc
from server.core.policy import Actor

from .helpers import file_case, login, png_bytes, seed

ACTORS = ["anonymous", "admin", "intake", "intake_b", "mediator", "mediator2", "clerk", "county_clerk"]
STAFF = set(ACTORS) - {"anonymous"}
VIEWERS = {"admin", "intake", "mediator", "clerk", "county_clerk"}
INTAKE = {"admin", "intake"}
MEDIATOR = {"mediator"}

# (method, path template, body, who may call). Paths use {case}, {session}, {invite}, {user}, {evidence}.
MATRIX = [
    ("GET", "/institutions", None, set(ACTORS)),
    # The link check answers a join token (X-Join-Token), never a staff login or nobody.
    ("GET", "/link-check/ping", None, set()),
    ("GET", "/link-check/download", None, set()),
    ("POST", "/link-check/upload", None, set()),
    ("POST", "/link-check/result", {"rtt_ms": 20, "down_kbps": 5000, "up_kbps": 2000}, set()),
    # Evidence in the room: a participant of the live session (join token, signed page URL), no staff login.
    ("POST", "/room/evidence", None, set()),
    ("GET", "/room/evidence/{evidence}/pages/{page}", None, set()),
    ("POST", "/institutions", {"name": "新设调解委员会"}, {"admin"}),
    ("GET", "/users", None, {"admin"}),
    ("POST", "/users", {"username": "newuser", "password": "long-enough-pw", "role": "clerk"}, {"admin"}),
    ("PATCH", "/users/{user}", {"name": "改名"}, {"admin"}),
    ("GET", "/mediators", None, {"admin", "intake", "intake_b"}),
    ("GET", "/experts", None, STAFF),
    ("POST", "/experts", {"name": "黄海", "specialty": "fishery"}, {"admin"}),
    ("GET", "/meta", None, set(ACTORS)),
    ("POST", "/cases", "case", set(ACTORS)),
    ("GET", "/cases", None, STAFF),
    ("GET", "/cases/{case}", None, VIEWERS),
    ("GET", "/cases/{case}/record", None, VIEWERS),
    ("GET", "/cases/{case}/evidence/{evidence}", None, VIEWERS),
    ("POST", "/cases/{case}/accept", None, INTAKE),
    ("POST", "/cases/{case}/reject", {"reason": "不属于受理范围"}, INTAKE),
    ("POST", "/cases/{case}/transfer", {"institution_id": "{inst_b}", "reason": "转专业调委会"}, INTAKE),
    ("POST", "/cases/{case}/assign", {"mediator_id": "{mediator2_id}"}, INTAKE),
    ("POST", "/cases/{case}/archive", None, INTAKE),
    ("POST", "/cases/{case}/close", {"result": "failed"}, MEDIATOR),
    ("POST", "/cases/{case}/sessions", {}, MEDIATOR),
    ("GET", "/sessions/{session}", None, VIEWERS),
    ("POST", "/sessions/{session}/invites", {"role": "observer", "name": "旁听人"}, MEDIATOR),
    ("POST", "/sessions/{session}/invites/{invite}/revoke", None, MEDIATOR),
    ("POST", "/sessions/{session}/end", None, MEDIATOR),
    ("POST", "/join-tokens/verify", {"token": "not-a-real-token-at-all"}, set(ACTORS)),
    ("POST", "/cases/{number}/withdraw", {}, set()),  # only with the access code, tested below
    ("POST", "/auth/login", {"username": "nobody", "password": "wrong"}, set()),  # 401 for all: bad login
    ("GET", "/auth/me", None, STAFF),
    ("POST", "/auth/logout", None, STAFF),
    ("GET", "/openapi.json", None, set(ACTORS)),
    ("GET", "/sessions/{session}/recordings", None, VIEWERS),
    ("GET", "/recordings/{recording}/file", None, VIEWERS),
    ("POST", "/sessions/{session}/recordings/verify", None, VIEWERS),
    # The archive and analytics (tests/archive has the details): clerks and admins read.
    ("GET", "/archive/cases", None, {"admin", "clerk", "county_clerk"}),
    ("GET", "/cases/{case}/integrity", None, {"admin", "clerk", "county_clerk"}),
    ("GET", "/cases/{case}/export", None, {"admin", "clerk", "county_clerk"}),
    ("GET", "/analytics/summary", None, {"admin", "clerk", "county_clerk"}),
    ("GET", "/analytics/csv?table=by_status", None, {"admin", "clerk", "county_clerk"}),
    # The procedure (tests/procedure has the details).
    ("GET", "/deadlines/rules", None, set(ACTORS)),
    ("GET", "/deadlines", None, STAFF),
    ("GET", "/recusals", None, STAFF),
    ("POST", "/recusals/{request_id}/decide", {"grant": False, "note": "理由不成立"}, INTAKE),
    ("GET", "/cases/{case}/procedure", None, VIEWERS),
    ("GET", "/cases/{case}/notifications", None, VIEWERS),
    ("POST", "/cases/{case}/conflict", {"conflict": False}, MEDIATOR),
    ("POST", "/cases/{case}/schedule", {"starts_at": "2030-01-07T09:00:00+08:00"}, MEDIATOR),
    ("POST", "/cases/{case}/parties/{party_id}/consent", {"agree": True, "how": "phone"}, MEDIATOR),
    ("POST", "/cases/{case}/parties/{party_id}/access-code", None, {"admin", "intake", "mediator"}),
    ("PUT", "/cases/{case}/parties/{party_id}/contact", {"email": "a@example.cn"}, {"admin", "intake", "mediator"}),
    ("POST", "/cases/{case}/consent", {"agree": True}, set()),  # only with the access code
    ("POST", "/cases/{case}/recusal", {"reason": "调解员是对方亲戚"}, set()),  # only with the access code
    ("GET", "/cases/{case}/sessions", None, set()),  # only with the access code
    ("POST", "/sessions/{session}/reschedule", {"starts_at": "2030-01-08T09:00:00+08:00"}, MEDIATOR),
    ("GET", "/sessions/{session}/calendar.ics", None, VIEWERS),
    ("GET", "/sessions/{session}/procedure", None, VIEWERS),
    ("GET", "/sessions/{session}/transcript", None, VIEWERS),
    ("GET", "/sessions/{session}/transcript.pdf", None, VIEWERS),
    ("PUT", "/auth/me/contact", {"lang": "en"}, STAFF),
    # The outcome: agreement, signatures, court hand-off (tests/outcome has the details).
    ("GET", "/cases/{case}/agreement", None, VIEWERS),
    ("PUT", "/cases/{case}/agreement", {"template": "labour"}, MEDIATOR),
    ("POST", "/cases/{case}/agreement/finalise", {}, MEDIATOR),
    ("POST", "/cases/{case}/agreement/links", {"party_id": "{party_id}"}, MEDIATOR),
    ("POST", "/cases/{case}/agreement/sign", {"signature": "data:image/png;base64,AAAA", "text_sha256": "0" * 64},
     MEDIATOR),
    ("GET", "/cases/{case}/agreement/pdf", None, VIEWERS),
    ("POST", "/agreements/verify", None, STAFF),
    ("POST", "/cases/{case}/confirmation", {"court_id": "county", "basis": "institution"}, MEDIATOR),
    ("GET", "/cases/{case}/submissions", None, VIEWERS),
    ("POST", "/cases/{case}/submissions/{submission_id}/retry", None, MEDIATOR),
    ("GET", "/courts", None, set(ACTORS)),
    ("POST", "/court/callback", {"submission": "0" * 32, "status": "accepted"}, set()),  # HMAC-signed by the court
    # A party's calls need their personal link's token or the applicant's access code, never a staff login.
    ("GET", "/party/agreement", None, set()),
    ("POST", "/party/agreement/sign", {"signature": "data:image/png;base64,AAAA", "text_sha256": "0" * 64}, set()),
    ("POST", "/party/agreement/comments", {"text": "意见"}, set()),
    ("GET", "/party/agreement/pdf", None, set()),
    ("GET", "/party/court", None, set()),
    ("POST", "/party/confirmation", {"court_id": "county", "basis": "institution"}, set()),
    ("POST", "/party/confirmation/confirm", None, set()),
    ("POST", "/party/filing", {}, set()),
    # After the agreement (tests/outcome/test_performance.py, test_followup.py, test_satisfaction.py,
    # test_enforcement.py have the details): staff read a case's follow-through, the mediator corrects an
    # obligation and records a follow-up; parties report, rate and apply for enforcement with their proof only.
    ("GET", "/cases/{case}/obligations", None, VIEWERS),
    ("PATCH", "/cases/{case}/obligations/{obligation_id}", {"withdrawn": True}, MEDIATOR),
    ("GET", "/cases/{case}/followups", None, VIEWERS),
    ("GET", "/followups", None, STAFF),
    ("POST", "/followups/{task_id}/complete", {"outcome": "reached"}, MEDIATOR),
    ("GET", "/party/obligations", None, set()),
    ("POST", "/party/obligations/{obligation_id}/report", {"performed": True}, set()),
    ("GET", "/party/rating", None, set()),
    ("POST", "/party/rating", {"level": 5}, set()),
    ("POST", "/party/enforcement", {}, set()),
    ("POST", "/court/callback/ruling?submission=" + "0" * 32, None, set()),  # HMAC-signed by the court
    ("POST", "/court/callback/review", {"submission": "0" * 32, "starts_at": "2030-01-01T09:00:00+08:00",
                                        "judge": "王法官"}, set()),  # HMAC-signed by the court
]


def test_matrix_covers_every_route():
    covered = {(m, p.split("?")[0]) for m, p, _, _ in MATRIX}
    routes = {(op.method, op.path.replace("{case_id}", "{case}").replace("{session_id}", "{session}")
               .replace("{invite_id}", "{invite}").replace("{user_id}", "{user}")
               .replace("{evidence_id}", "{evidence}").replace("{ref}", "{case}")
               .replace("{file_id}", "{recording}")) for op in api.operations}
    routes = {("POST", "/cases/{number}/withdraw") if r == ("POST", "/cases/{case}/withdraw") else r for r in routes}
    assert routes == covered


async def _fresh_case(client, db, w):
    """A case assigned to `mediator`, with an open session, an invitation and an evidence file."""
    import aiohttp, json
    from .helpers import case_body
    form = aiohttp.FormData()
    form.add_field("case", json.dumps(case_body(w.inst_a)), content_type="application/json")
    form.add_field("evidence", png_bytes(), filename="a.png", content_type="image/png")
    filed = await (await client.post("/api/v1/cases", data=form)).json()
    cid = filed["case"]["id"]
    admin = Actor(user=None)
    async with db.session() as s:
        from server.core.models import User
        admin = Actor(user=await s.get(User, w.users["admin"]))
        med = Actor(user=await s.get(User, w.users["mediator"]))
        await case_svc.accept(s, admin, cid)
        await case_svc.assign(s, admin, cid, AssignIn(mediator_id=w.users["mediator"]))
        sess = await session_svc.open_session(s, med, cid, SessionIn())
        inv, _ = await session_svc.create_invite(s, med, sess.id, InviteIn(role="observer", name="x"),
                                                 secret="matrix-test-secret-" + "k" * 32, default_seconds=60)
        case = await case_svc.get_case(s, cid)
        from server.services.procedure import rules as procedure
        recusal = await procedure.request_recusal(s, admin.ref(), case, case.parties[0], "测试用的回避申请")
        # A recording on record (rows only: allowed callers then get 404 "missing from storage").
        import datetime as dt
        from server.core.models import RecordingFile, RecordingRun
        run = RecordingRun(session_id=sess.id, run_key=f"s{sess.id}-20261129T000000", status="complete",
                           started_at=dt.datetime.now(dt.timezone.utc), manifest_sha256="0" * 64, signature="x",
                           public_key="x")
        s.add(run)
        await s.flush()
        rec = RecordingFile(run_id=run.id, session_id=sess.id, key=f"{run.run_key}/p-1.webm", participant_id="p",
                            segment=1, container="webm", codecs="vp8", kinds="video", offset=0.0, duration=1.0,
                            size=1, sha256="0" * 64)
        s.add(rec)
        await s.flush()
        # A follow-up task of the case (as a settlement would schedule it): the mediator's to complete.
        from server.core.models import FollowTask
        task = FollowTask(case_id=cid, kind="followup", rule="followup", due_on="2030-01-07")
        s.add(task)
        await s.flush()
        return {"case": cid, "number": filed["case"]["number"], "session": sess.id, "invite": inv.id,
                "evidence": case.evidence[0].id, "party_id": case.parties[0].id, "request_id": recusal.id,
                "recording": rec.id, "task_id": task.id}


def _fill(value, ids):
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
            return ids[value[1:-1]]
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_authorization_matrix(client, db):
    w = await seed(db)
    headers = {"anonymous": {}}
    for name in ACTORS[1:]:
        headers[name] = await login(client, name)
    async with db.session() as s:
        from server.core.schemas import UserIn
        from server.services import directory
        target = await directory.add_user(s, None, UserIn(username="target", password="long-enough-pw", role="clerk"))
    client.session.cookie_jar.clear()  # the bearer token alone decides who calls
    failures = []
    from .helpers import case_body
    for method, path, body, allowed in MATRIX:
        ids = await _fresh_case(client, db, w)
        ids.update(user=target.id, inst_b=w.inst_b, mediator2_id=w.users["mediator2"], submission_id=999999,
                   obligation_id=999999, page=1)
        url = "/api/v1" + _fill(path, ids)
        payload = case_body(w.inst_a) if body == "case" else _fill(body, ids)
        # Refused callers first: their calls must change nothing for the allowed ones after them.
        for actor in sorted(ACTORS, key=lambda a: a in allowed):
            if path == "/auth/logout" and actor != "anonymous":
                continue  # checked separately below so the tokens stay valid
            kw = {"headers": headers[actor]}
            if payload is not None:
                kw["json"] = payload
            r = await client.request(method, url, **kw)
            # 429: one address's bad logins are throttled after five (server/core/throttle.py); still a refusal.
            refused = r.status in (401, 403, 429)
            if r.status >= 500 or refused == (actor in allowed):
                failures.append(f"{method} {path} as {actor}: {r.status} {(await r.text())[:120]}")
    assert not failures, "\n".join(failures)
    for actor in STAFF:
        r = await client.post("/api/v1/auth/logout", headers=headers[actor])
        assert r.status == 200
        assert (await client.get("/api/v1/auth/me", headers=headers[actor])).status == 401


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_applicant_reaches_only_their_own_case(client, db):
    w = await seed(db)
    mine = await file_case(client, w.inst_a)
    other = await file_case(client, w.inst_a, title="别人的案件")
    code = {"X-Access-Code": mine["access_code"]}
    assert (await client.get(f"/api/v1/cases/{mine['case']['number']}", headers=code)).status == 200
    assert (await client.get(f"/api/v1/cases/{other['case']['number']}", headers=code)).status == 401
    assert (await client.get(f"/api/v1/cases/{other['case']['id']}", headers=code)).status == 401
    r = await client.post(f"/api/v1/cases/{other['case']['number']}/withdraw", headers=code, json={})
    assert r.status == 401
    # The wrong phone with the right code is refused too.
    r = await client.get(f"/api/v1/cases/{mine['case']['number']}", headers={**code, "X-Phone": "13000000000"})
    assert r.status == 401
    # An access code is no staff credential.
    assert (await client.get("/api/v1/cases", headers=code)).status == 401
    assert (await client.post(f"/api/v1/cases/{mine['case']['id']}/accept", headers=code)).status == 401


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_cookie_sessions_need_the_csrf_header(client, db):
    w = await seed(db)
    case_id = (await file_case(client, w.inst_a))["case"]["id"]
    r = await client.post("/api/v1/auth/login", json={"username": "intake", "password": "correct-horse-42"})
    csrf = (await r.json())["csrf_token"]
    assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Lax" in r.headers["Set-Cookie"]
    # The cookie alone reads, but cannot write.
    assert (await client.get("/api/v1/cases")).status == 200
    r = await client.post(f"/api/v1/cases/{case_id}/accept")
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
    r = await client.post(f"/api/v1/cases/{case_id}/accept", headers={"X-CSRF-Token": csrf})
    assert r.status == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_guessing_is_throttled(client, db):
    """One address guessing passwords and access codes: five failures are free, then it must wait
    (the whole rule, with the owner's known device, is in tests/api/test_lockout.py)."""
    w = await seed(db)
    filed = await file_case(client, w.inst_a)
    client.session.cookie_jar.clear()  # not the browser that filed the case
    number = filed["case"]["number"]
    for _ in range(3):
        r = await client.post("/api/v1/auth/login", json={"username": "intake", "password": "guess-guess"})
        assert r.status == 401
        r = await client.get(f"/api/v1/cases/{number}", headers={"X-Access-Code": "AAAAAAAA"})
        assert r.status == 401
    r = await client.get(f"/api/v1/cases/{number}", headers={"X-Access-Code": filed["access_code"]})
    assert r.status == 429 and (await r.json())["error"]["code"] == "too_many_attempts"
    assert r.headers["Retry-After"] == "1"
    r = await client.post("/api/v1/auth/login", json={"username": "intake", "password": "correct-horse-42"})
    assert r.status == 429
