"""The draft in the live room: two real socket.io clients; the mediator's change reaches the admitted party,
the party's comment reaches the mediator, REST changes are pushed too, and edits after finalising are refused."""
from __future__ import annotations

import dataclasses
import shutil

import pytest

from sqlalchemy import select

from server.core.models import MediationSession
from tests.signaling.peer import Peer

from .helpers import DRAFT, case_in_mediation, eventually


@pytest.fixture
def db_url(tmp_path, sqlite_template):
    """SQLite only: the database does not matter here (the services are covered on both elsewhere)."""
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def test_draft_updates_reach_the_other_participant(aiohttp_client, settings, db):
    from server.http.app import create_app

    client = await aiohttp_client(create_app(dataclasses.replace(settings, identity_check=False), db=db))
    base = str(client.make_url("")).rstrip("/")
    c = await case_in_mediation(client, db)
    async with db.read() as s:
        sid = (await s.execute(select(MediationSession.id).where(MediationSession.case_id == c.case_id))).scalar_one()
    tokens = {}
    for role, extra in (("mediator", {}), ("party", {"party_id": c.respondent_id})):
        r = await client.post(f"/api/v1/sessions/{sid}/invites", json={"role": role, **extra}, headers=c.mediator)
        assert r.status == 201, await r.text()
        tokens[role] = (await r.json())["token"]
    mediator, party = Peer(base, tokens["mediator"]), Peer(base, tokens["party"])
    for peer in (mediator, party):
        for name in ("agreement.draft", "agreement.comment"):
            peer.sio.on(name, peer._recorder(name))
    try:
        await mediator.join()
        assert (await party.join())["in_lobby"]
        # In the lobby: no draft, no comments.
        ack = await party.call("agreement.comment", {"text": "我在等候室"})
        assert not ack["ok"]
        assert (await mediator.call("lobby.admit", {"participant_id": party.me["id"]}))["ok"]
        assert (await party.call("agreement.get", {}))["agreement"] is None

        ack = await mediator.call("agreement.update", {"template": "labour", "facts": DRAFT["facts"]})
        assert ack["ok"], ack
        await eventually(lambda: party.events["agreement.draft"], what="draft pushed to the party")
        seen = party.events["agreement.draft"][-1]
        assert seen["status"] == "draft" and "23,000" in seen["text"] and seen["version"] == 1

        # Only the mediator edits.
        ack = await party.call("agreement.update", {"facts": "我来改"})
        assert not ack["ok"] and ack["error"]["code"] == "forbidden"
        ack = await party.call("agreement.update", {"bogus": 1})
        assert not ack["ok"] and ack["error"]["code"] == "bad_request"

        ack = await party.call("agreement.comment", {"text": "付款时间能否提前到12月15日？"})
        assert ack["ok"]
        await eventually(lambda: mediator.events["agreement.comment"], what="comment reaches the mediator")
        assert mediator.events["agreement.comment"][-1]["text"] == "付款时间能否提前到12月15日？"

        # A change through the REST API (the staff page) is pushed to the room as well.
        r = await client.put(f"/api/v1/cases/{c.case_id}/agreement", json={**DRAFT, "version": 1},
                             headers=c.mediator)
        assert r.status == 200
        await eventually(lambda: any(d["version"] == 2 for d in party.events["agreement.draft"]),
                         what="REST change pushed")
        ack = await mediator.call("agreement.finalise", {"version": 2})
        assert ack["ok"] and ack["agreement"]["status"] == "final"
        await eventually(lambda: party.events["agreement.draft"][-1]["status"] == "final", what="final pushed")
        assert party.events["agreement.draft"][-1]["text_sha256"]
        ack = await mediator.call("agreement.update", {"facts": "定稿后再改"})
        assert not ack["ok"] and ack["error"]["code"] == "agreement_final"
    finally:
        await party.close()
        await mediator.close()
