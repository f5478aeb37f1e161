"""An interpreter (or support person) over the real socket.io signaling: the confidentiality notice
before joining, the lobby, and then wherever their party goes, in the same step (docs/procedure.md,
"Interpreters and support persons"); the audit chain names the party on every step."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.core.models import AuditEntry

from .conftest import wait_for


def _where(client, pid):
    state = (client.events.get("room.state") or [{}])[-1]
    return next((p["where"] for p in state.get("participants", []) if p["id"] == pid), None)


async def _party_in_lobby(world, client, token):
    await client.join(token)
    assert (await client.call("consent.online", {"agree": True}))["ok"]
    ack = await client.join(token)
    assert ack["error"]["code"] == "notice_required"
    await client.call("notice.ack", {"notices": [n["id"] for n in ack["error"]["notices"]]})
    joined = await client.join(token)
    assert joined["ok"] and joined["in_lobby"]
    return joined["participant"]["id"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_an_interpreter_acknowledges_confidentiality_and_moves_with_the_party(world):
    world.settings.identity_check = False
    mediator = await world.client()
    assert (await mediator.join(await world.token("mediator")))["ok"]
    party = await world.client()
    pa = await _party_in_lobby(world, party, await world.token("party", party_id=world.applicant_id))

    # The interpreter owes the confidentiality notice only: the consent and the identity check are
    # the party's, the concessions and the sham-mediation warning concern the party's own claims.
    interp = await world.client(lang="en")
    itoken = await world.token("interpreter", name="王译", party_id=world.applicant_id)
    ack = await interp.join(itoken)
    assert ack["error"]["code"] == "notice_required" and ack["error"]["steps"] == ["notice_required"]
    assert [n["id"] for n in ack["error"]["notices"]] == ["confidentiality"]
    assert (await interp.call("notice.ack", {"notices": ["concessions"]}))["error"]["code"] == "bad_request"
    assert (await interp.call("notice.ack", {"notices": ["confidentiality"]}))["pending"] == []
    joined = await interp.join(itoken)
    assert joined["ok"] and joined["in_lobby"] and joined["participant"]["role"] == "interpreter"
    pi = joined["participant"]["id"]
    assert sorted(joined["participant"]["grants"]) == ["publish", "subscribe"]

    # A support person owes the same, and nothing more.
    support = await world.client()
    ack = await support.join(await world.token("support", name="赵陪", party_id=world.applicant_id))
    assert ack["error"]["steps"] == ["notice_required"]
    assert [n["id"] for n in ack["error"]["notices"]] == ["confidentiality"]
    await support.close()

    await wait_for(lambda: _where(mediator, pi) == "lobby", what="the mediator sees the interpreter waiting")
    told = next(e for e in mediator.events["lobby.waiting"] if e["participant_id"] == pi)
    assert told["role"] == "interpreter" and told["accompanies"] == pa and told["accompanies_name"] == "张伟"
    row = next(p for p in mediator.events["room.state"][-1]["participants"] if p["id"] == pi)
    assert row["accompanies"] == pa and row["accompanies_name"] == "张伟"

    # Admitting the party brings its interpreter along, in one step.
    ack = await mediator.call("lobby.admit", {"participant_id": pa})
    assert ack["ok"] and ack["admitted"] == [pa, pi]
    await wait_for(lambda: _where(mediator, pa) == "main" and _where(mediator, pi) == "main", what="both in")

    # Into a caucus and back: the interpreter follows the party; the interpreter's page sees the caucus.
    caucus = (await mediator.call("caucus.create", {"name": "与申请人背对背"}))["caucus_id"]
    ack = await mediator.call("participant.move", {"participant_id": pa, "to": caucus})
    assert ack["ok"] and ack["moved"] == [pa, pi]
    await wait_for(lambda: _where(interp, pi) == caucus and _where(interp, pa) == caucus,
                   what="the interpreter's state shows them in the caucus with the party")
    assert [c["name"] for c in interp.events["room.state"][-1]["caucuses"]] == ["与申请人背对背"]
    states_before = len(mediator.events["room.state"])

    # Alone, the interpreter cannot be moved away from the party; nothing changes.
    for to in ("main",):
        ack = await mediator.call("participant.move", {"participant_id": pi, "to": to})
        assert ack["error"]["code"] == "linked" and "王译" in ack["error"]["message"]
    other = (await mediator.call("caucus.create", {"name": "另一间"}))["caucus_id"]
    ack = await mediator.call("participant.move", {"participant_id": pi, "to": other})
    assert ack["error"]["code"] == "linked"
    assert _where(mediator, pi) == caucus

    # Closing the caucus brings both back; the lobby takes both (the mediator sent the party there).
    assert (await mediator.call("caucus.close", {"caucus_id": caucus}))["ok"]
    await wait_for(lambda: _where(mediator, pa) == "main" and _where(mediator, pi) == "main", what="both back")
    assert len(mediator.events["room.state"]) > states_before
    ack = await mediator.call("participant.move", {"participant_id": pa, "to": "lobby"})
    assert ack["moved"] == [pa, pi]
    await wait_for(lambda: _where(mediator, pi) == "lobby", what="both sent back")
    assert {e["participant_id"] for e in mediator.events["lobby.waiting"] if e.get("sent_back")} == {pa, pi}
    assert (await mediator.call("lobby.admit", {"participant_id": pa}))["admitted"] == [pa, pi]

    # The interpreter may be sent to the lobby alone; the party then moves without them; let in
    # again, the interpreter joins the party where it is.
    assert (await mediator.call("participant.move", {"participant_id": pi, "to": "lobby"}))["moved"] == [pi]
    assert (await mediator.call("participant.move", {"participant_id": pa, "to": other}))["moved"] == [pa]
    assert (await mediator.call("lobby.admit", {"participant_id": pi}))["admitted"] == [pi]
    await wait_for(lambda: _where(mediator, pi) == other, what="the interpreter back with the party")

    # Removing the party does not silently remove the interpreter: they wait in the lobby again.
    assert (await mediator.call("participant.remove", {"participant_id": pa}))["ok"]
    await wait_for(lambda: _where(mediator, pi) == "lobby" and _where(mediator, pa) is None, what="party gone")
    # With the party gone, the interpreter may come into the main area only.
    assert (await mediator.call("lobby.admit", {"participant_id": pi}))["admitted"] == [pi]
    await wait_for(lambda: _where(mediator, pi) == "main", what="the interpreter in the main area")
    assert (await mediator.call("participant.move", {"participant_id": pi, "to": other}))["error"]["code"] == "linked"

    async with world.db.read() as s:
        steps = list((await s.execute(select(AuditEntry).where(AuditEntry.session_id == world.session_id)
                                      .order_by(AuditEntry.seq))).scalars())
    mine = [e for e in steps if (e.data or {}).get("participant_id") == pi]
    assert mine and all(e.data["accompanies"] == pa and e.data["accompanies_name"] == "张伟" for e in mine)
    actions = [(e.action, e.data.get("to"), e.data.get("with")) for e in mine
               if e.action.startswith("participant.") and e.action != "participant.joined"]
    assert actions[:4] == [("participant.admitted", None, pa), ("participant.moved", caucus, pa),
                           ("participant.moved", "lobby", pa), ("participant.admitted", None, pa)]
    assert ("participant.moved", "lobby", pa) in actions[4:]  # sent back when the party was removed
    notice = next(e for e in steps if e.action == "notice.acknowledged" and e.data["participant_id"] == pi)
    assert notice.data["participant_role"] == "interpreter" and notice.data["notices"] == ["confidentiality"]
