"""One system for every entry point (docs/architecture.md): what a service announces reaches
the live room, the procedural rules and the outbox whether the change came from the API, a
staff page (a form post with its CSRF token), the room or the command line.

Each test here failed before the composition root and the event bus existed."""
from __future__ import annotations

import json
import zipfile

import aiohttp
from sqlalchemy import select

from server.core.models import Agreement, Deadline, OutboxJob
from server.core.schemas import InviteIn
from server.services import sessions as session_svc
from tests.api.helpers import PASSWORD, login
from tests.outcome.helpers import effective_case
from tests.rooms.clients import wait_for
from tests.signaling.peer import Peer
from tests.support.cli import run_cli_async


async def _staff_browser(live, username: str) -> tuple[aiohttp.ClientSession, str]:
    """A staff member's browser: the session cookie, and the CSRF token the pages embed in forms."""
    http = aiohttp.ClientSession(base_url=live.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status == 200, await r.text()
    return http, (await r.json())["csrf_token"]


async def test_ending_a_session_on_the_staff_page_ends_the_live_room(live, media):
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
    http, csrf = await _staff_browser(live, "mediator")
    try:
        assert (await party.join())["ok"]
        assert live.room_id in live.app["hub"].rooms
        r = await http.post(f"/staff/sessions/{live.session_id}/end", data={"csrf_token": csrf},
                            allow_redirects=False)
        assert r.status in (302, 303), await r.text()
        await wait_for(lambda: party.events["session.ended"], what="the party is told the session ended")
        await wait_for(lambda: live.room_id not in live.app["hub"].rooms, what="the room is freed")
    finally:
        await http.close()
        await party.close()


async def test_revoking_a_link_on_the_staff_page_removes_its_holder_from_the_room(live, media):
    async with live.db.session() as s:
        invite, token = await session_svc.create_invite(
            s, live.mediator, live.session_id, InviteIn(role="expert", name="王工", specialty="建筑"),
            secret=live.settings.secret_key, default_seconds=3600)
    expert = Peer(live.url, token, media)
    http, csrf = await _staff_browser(live, "mediator")
    try:
        assert (await expert.join())["ok"]
        r = await http.post(f"/staff/sessions/{live.session_id}/invites/{invite.id}/revoke",
                            data={"csrf_token": csrf}, allow_redirects=False)
        assert r.status in (302, 303), await r.text()
        await wait_for(lambda: expert.events["removed"], what="the holder is removed")
        assert expert.events["removed"][0]["reason"] == "revoked"
        room = live.app["hub"].rooms[live.room_id].room
        await wait_for(lambda: expert.me["id"] not in room.participants, what="gone from the room")
    finally:
        await http.close()
        await expert.close()


async def test_settling_through_the_signatures_follows_the_procedural_rules(client, db):
    c = await effective_case(client, db)
    async with db.read() as s:
        deadlines = {d.rule: d for d in (await s.execute(select(Deadline).where(Deadline.case_id == c.case_id)
                                                         .order_by(Deadline.id))).scalars()}
        ag = (await s.execute(select(Agreement).where(Agreement.case_id == c.case_id))).scalar_one()
        jobs = (await s.execute(select(OutboxJob))).scalars().all()
    # The mediation deadline is met, the confirmation deadline runs, and it is the agreement's own clock.
    assert deadlines["mediation"].status == "met"
    assert deadlines["confirmation"].status == "open"
    assert deadlines["confirmation"].due_at == ag.confirmation_deadline.replace(tzinfo=None) \
        or deadlines["confirmation"].due_at == ag.confirmation_deadline
    # Every party is told that the agreement took effect.
    settled = [j for j in jobs if j.payload.get("event") == "case_settled"]
    assert settled, [j.payload.get("event") for j in jobs]
    r = await client.get(f"/api/v1/cases/{c.case_id}", headers=c.admin)
    assert (await r.json())["case"]["status"] == "settled"


async def test_the_command_line_sees_the_same_archive_as_the_web_app(client, db, settings, tmp_path):
    c = await effective_case(client, db)
    clerk = await login(client, "clerk")
    r = await client.get(f"/api/v1/cases/{c.case_id}/integrity", headers=clerk)
    assert r.status == 200, await r.text()
    web_checks = [x["name"] for x in (await r.json())["checks"]]
    r = await client.get(f"/api/v1/cases/{c.case_id}/record", headers=clerk)
    web_sections = set((await r.json()).keys())
    assert {"recordings", "agreements", "transcripts"} <= set(web_checks)

    p = await run_cli_async(["audit", "verify", "--case", c.number, "--json"], settings)
    assert p.returncode == 0, p.stdout + p.stderr
    assert [x["name"] for x in json.loads(p.stdout)["checks"]] == web_checks

    out = tmp_path / "export.zip"
    p = await run_cli_async(["cases", "export", c.number, "--out", str(out)], settings)
    assert p.returncode == 0, p.stdout + p.stderr
    with zipfile.ZipFile(out) as z:
        manifest = json.loads(z.read("manifest.json"))
        record = json.loads(z.read("record.json"))
        names = z.namelist()
    assert [x["name"] for x in manifest["integrity_at_export"]["checks"]] == web_checks
    assert set(record.keys()) == web_sections
    assert any(n.startswith("outcome/") and n.endswith("-agreement.pdf") for n in names), names
