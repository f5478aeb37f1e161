"""The e-transcript as the room's panel uses it: the mediator corrects and takes out entries of the
area they are in, before closing, each change pushed to that area and in the audit chain; an entry
for both parties at once; the mediator's list shows who signed off; the final PDF through a join link."""
from __future__ import annotations

import hashlib

import aiohttp
from sqlalchemy import select

from server.core.models import AuditEntry, TranscriptEntry

from .conftest import wait_for
from .test_transcript import _ready


async def test_entries_are_edited_and_deleted_only_by_the_mediator_in_their_area(world):
    world.settings.identity_check = False
    mediator = await world.client()
    a, b = await world.client(), await world.client()
    for c in (mediator, a, b):
        for name in ("transcript.deleted",):
            c.sio.on(name, c._recorder(name))
    a_token = await world.token("party", party_id=world.applicant_id)
    mid = await _ready(world, mediator, await world.token("mediator"))
    aid = await _ready(world, a, a_token)
    bid = await _ready(world, b, await world.token("party", party_id=world.respondent_id))
    for pid in (aid, bid):
        assert (await mediator.call("lobby.admit", {"participant_id": pid}))["ok"]

    first = (await mediator.call("transcript.add", {"text": "申请人陈述：拖欠工资两万三千元。", "speaker_id": aid}))["entry"]
    both = (await mediator.call("transcript.add", {"text": "双方同意继续调解。", "speaker_id": "parties"}))["entry"]
    assert both["speaker_id"] == "parties" and both["speaker_name"] == "双方当事人" and both["speaker_role"] == "party"

    # Refusals change nothing: a party, an unknown entry, an unknown speaker, bad input.
    async def texts():
        async with world.db.read() as s:
            return [(e.id, e.text, e.speaker_id) for e in (await s.execute(
                select(TranscriptEntry).order_by(TranscriptEntry.seq))).scalars()]
    before = await texts()
    assert (await a.call("transcript.edit", {"entry_id": first["id"], "text": "改"}))["error"]["code"] == "forbidden"
    assert (await a.call("transcript.delete", {"entry_id": first["id"]}))["error"]["code"] == "forbidden"
    assert (await mediator.call("transcript.edit", {"entry_id": 999999, "text": "改"}))["error"]["code"] == "not_found"
    assert (await mediator.call("transcript.edit", {"entry_id": first["id"], "text": "改", "speaker_id": "nobody"})
            )["error"]["code"] == "not_found"
    assert (await mediator.call("transcript.edit", {"entry_id": first["id"], "text": " "}))["error"]["code"] == "bad_request"
    assert (await mediator.call("transcript.delete", {"entry_id": "x"}))["error"]["code"] == "bad_request"
    assert await texts() == before

    # Corrected: text and speaker; both parties see the new version.
    ack = await mediator.call("transcript.edit", {"entry_id": first["id"], "text": "申请人陈述：拖欠工资两万元。",
                                                  "speaker_id": aid})
    assert ack["ok"] and ack["entry"]["id"] == first["id"] and ack["entry"]["text"].endswith("两万元。")
    await wait_for(lambda: any(e["text"].endswith("两万元。") for e in b.events.get("transcript.entry", [])),
                   what="b sees the correction")

    # In a caucus the mediator cannot touch main-room entries; the caucus's own entries stay there.
    caucus = (await mediator.call("caucus.create", {"name": "背对背"}))["caucus_id"]
    for pid in (bid, mid):
        assert (await mediator.call("participant.move", {"participant_id": pid, "to": caucus}))["ok"]
    assert (await mediator.call("transcript.delete", {"entry_id": both["id"]}))["error"]["code"] == "forbidden"
    note = (await mediator.call("transcript.add", {"text": "被申请人私下表示可以分期。", "speaker_id": bid}))["entry"]
    assert (await mediator.call("transcript.delete", {"entry_id": note["id"]}))["ok"]
    await wait_for(lambda: b.events.get("transcript.deleted"), what="the caucus sees the deletion")
    assert not a.events.get("transcript.deleted")
    for pid in (bid, mid):
        assert (await mediator.call("participant.move", {"participant_id": pid, "to": "main"}))["ok"]
    assert (await mediator.call("transcript.delete", {"entry_id": both["id"]}))["ok"]
    await wait_for(lambda: a.events.get("transcript.deleted"), what="a sees the deletion")

    # Closed: no more edits; the parties confirm; the mediator's list shows who did.
    assert (await mediator.call("transcript.close", {"mode": "confirm"}))["ok"]
    assert (await mediator.call("transcript.edit", {"entry_id": first["id"], "text": "再改"}))["error"]["code"] \
        == "transcript_closed"
    assert (await a.call("transcript.confirm", {"agree": True}))["ok"]
    listed = await mediator.call("transcript.list")
    assert [so["participant_id"] for so in listed["signoffs"]] == [aid] and listed["status"] == "review"
    assert (await a.call("transcript.list"))["signoffs"] == []  # only the mediator sees the list
    done = await b.call("transcript.confirm", {"agree": True})
    assert done["finalized"]

    async with world.db.read() as s:
        actions = [e.action for e in (await s.execute(select(AuditEntry).where(
            AuditEntry.session_id == world.session_id))).scalars()]
    assert actions.count("transcript.entry_edited") == 1 and actions.count("transcript.entry_deleted") == 2

    # The party downloads the final PDF with their join link; a made-up link gets nothing.
    async with aiohttp.ClientSession() as http:
        r = await http.get(world.url + f"/room/{a_token}/transcript.pdf")
        data = await r.read()
        assert r.status == 200 and data.startswith(b"%PDF")
        assert hashlib.sha256(data).hexdigest() == done["pdf_sha256"] == r.headers["X-Content-SHA256"]
        assert (await http.get(world.url + "/room/" + "x" * 40 + "/transcript.pdf")).status == 404
