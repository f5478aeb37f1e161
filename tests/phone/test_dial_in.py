"""Dial-in end to end on loopback: a caller (tests/phone/caller.py) keys in the session number and
PIN, meets the join steps by keypad, waits in the lobby, is admitted by the mediator (a real aiortc
participant) and talks: each hears the other's tone, the caller never its own."""
from __future__ import annotations

import asyncio

import numpy as np
from sqlalchemy import select

from server.core.models import AuditEntry, IdentityCheck
from tests.phone.caller import Caller, dominant, level_at, tone
from tests.phone.conftest import until

CALLER_TONE = 1000.0
MEDIATOR_TONE = 440.0


def phone_participant(state: dict | None) -> dict | None:
    return next((x for x in (state or {}).get("participants", []) if "☎" in x.get("name", "")), None)


async def test_a_caller_joins_waits_is_admitted_and_talks(phone_live, mediator):
    invite, _token, number = await phone_live.invite("party", party_id=phone_live.party_ids[0])
    assert number and len(number) == 8 and invite.pin and len(invite.pin) == 6
    caller = Caller(phone_live.sip, number="13900001234")
    await caller.open()
    try:
        ok = await caller.dial()
        assert b"PCMU/8000" in ok.body and b"telephone-event/8000" in ok.body
        await until(lambda: len(caller.heard) > 50, 5, "the welcome prompt")
        assert np.abs(caller.recent(1.0)).max() > 1000, "the prompt is not silent"
        # Number, PIN, then consent (1) and the notices (1 each), typed ahead as people do.
        caller.keys(f"{number}#{invite.pin}#1111")
        await until(lambda: any(x.get("participant_id") for x in mediator.events["lobby.waiting"]), 60,
                    "the caller in the lobby")
        waiting = mediator.events["lobby.waiting"][-1]
        assert waiting["name"].endswith("☎1234") and "13900001234" not in waiting["name"]
        pid = waiting["participant_id"]
        assert pid == f"party-{phone_live.party_ids[0]}"  # the same participant as the web link
        caller.sending = tone(CALLER_TONE, 8000)
        assert (await mediator.call("lobby.admit", {"participant_id": pid}))["ok"]
        await until(lambda: len(mediator.heard_from(pid, 2.0)) >= 16000, 20, "the caller's audio in the room")
        await asyncio.sleep(2.0)
        heard = mediator.heard_from(pid, 1.0)
        assert abs(dominant(heard) - CALLER_TONE) < 20, dominant(heard)
        # The caller hears the room (the mediator's tone), not themselves.
        await until(lambda: level_at(caller.recent(1.0), MEDIATOR_TONE) > 500, 10, "the mediator's tone at the caller")
        await asyncio.sleep(1.5)  # the last second all mix, none of the "you are in" prompt
        mix = caller.recent(1.0)
        assert abs(dominant(mix) - MEDIATOR_TONE) < 20, dominant(mix)
        assert level_at(mix, CALLER_TONE) < 0.05 * level_at(mix, MEDIATOR_TONE), "the caller hears their own voice"
        # Muted by the mediator: the room hears the caller no more.
        assert (await mediator.call("participant.mute", {"participant_id": pid, "kind": "audio"}))["ok"]
        await asyncio.sleep(0.5)
        before = len(mediator.audio[pid])
        await asyncio.sleep(1.5)
        after = mediator.audio[pid][before:]
        assert not after or level_at(np.concatenate(after), CALLER_TONE) < 100
        # Hanging up is leaving.
        await caller.hang_up()
        await until(lambda: phone_participant(mediator.state) is None, 10, "the caller gone from the room")
    finally:
        await caller.close()
    async with phone_live.db.read() as s:
        checks = (await s.execute(select(IdentityCheck).where(IdentityCheck.participant_id == pid))).scalars().all()
        actions = [a for (a,) in await s.execute(select(AuditEntry.action).where(
            AuditEntry.session_id == phone_live.session_id))]
    assert [c.method for c in checks] == ["phone_pin"] and checks[0].ok
    assert "phone.dialed_in" in actions and "participant.left" in actions


async def test_three_wrong_pins_end_the_call(phone_live):
    invite, _token, number = await phone_live.invite("party", party_id=phone_live.party_ids[0])
    wrong = "000000" if invite.pin != "000000" else "111111"
    caller = Caller(phone_live.sip)
    await caller.open()
    try:
        await caller.dial()
        caller.keys(f"{number}#{wrong}#" * 3)
        await asyncio.wait_for(caller.bye.wait(), 60)
        await until(lambda: not phone_live.app["phone"].calls, 10, "the endpoint letting the call go")
    finally:
        await caller.close()
    async with phone_live.db.read() as s:
        actions = [a for (a,) in await s.execute(select(AuditEntry.action).where(
            AuditEntry.session_id == phone_live.session_id))]
    assert "phone.dialed_in" not in actions and "participant.joined" not in actions


async def test_a_call_to_an_ended_session_hears_so_and_ends(phone_live):
    invite, _token, number = await phone_live.invite("party", party_id=phone_live.party_ids[0])
    await phone_live.end()
    ended: list[str] = []
    phone_live.app["phone"].on_call_ended.append(lambda call: ended.append(call.outcome))
    caller = Caller(phone_live.sip)
    await caller.open()
    try:
        await caller.dial()
        caller.keys(f"{number}#{invite.pin}#")
        await asyncio.wait_for(caller.bye.wait(), 40)
    finally:
        await caller.close()
    assert ended == ["session_ended"]
    assert np.abs(caller.recent(3.0)).max() > 1000  # the prompt was said before the BYE
