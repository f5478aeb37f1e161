"""A caller is a participant like any other: what they hear follows their area (a caucus cuts off
the others, measured on the samples), and removal by the mediator ends the call with a prompt."""
from __future__ import annotations

import array
import asyncio
import fractions
import math
from types import SimpleNamespace

import av

from tests.phone.caller import Caller, level_at, tone
from tests.phone.conftest import ListeningPeer, until

MEDIATOR_TONE, PARTY_TONE, CALLER_TONE = 440.0, 660.0, 1000.0


def opus_tone(freq: float, count: int = 50) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = 48000, "stereo", "s16"
    codec.bit_rate, codec.time_base = 32000, fractions.Fraction(1, 48000)
    out: list[bytes] = []
    for i in range(count):
        samples = array.array("h", (int(8000 * math.sin(2 * math.pi * freq * (i * 960 + n // 2) / 48000))
                                    for n in range(960 * 2)))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        out += [bytes(p) for p in codec.encode(frame)]
    return [p for p in out if p]


async def test_the_caller_hears_only_their_area_and_removal_ends_the_call(phone_live, mediator, media):
    # A second party on the web, publishing 660 Hz; its identity check is not this test's subject
    # (the caller's is their PIN either way).
    phone_live.settings.identity_check = False
    _, web_token, _ = await phone_live.invite("party", party_id=phone_live.party_ids[1])
    web = ListeningPeer(phone_live.url, web_token, SimpleNamespace(opus=opus_tone(PARTY_TONE), vp8=media.vp8))
    ack = await web.join()
    assert ack["ok"], ack
    assert (await mediator.call("lobby.admit", {"participant_id": web.me["id"]}))["ok"]
    assert (await web.publish(video=False))["ok"]
    invite, _token, number = await phone_live.invite("party", party_id=phone_live.party_ids[0])
    caller = Caller(phone_live.sip, number="13900004321")
    await caller.open()
    try:
        await caller.dial()
        caller.keys(f"{number}#{invite.pin}#1111")
        await until(lambda: any("☎" in (x or {}).get("name", "") for x in mediator.events["lobby.waiting"]), 60,
                    "the caller in the lobby")
        pid = next(x for x in mediator.events["lobby.waiting"] if "☎" in x["name"])["participant_id"]
        caller.sending = tone(CALLER_TONE, 8000)
        assert (await mediator.call("lobby.admit", {"participant_id": pid}))["ok"]

        def hears(freq: float) -> float:
            return level_at(caller.recent(1.0), freq)

        await until(lambda: hears(MEDIATOR_TONE) > 500 and hears(PARTY_TONE) > 500, 20, "both tones at the caller")
        await until(lambda: level_at(web.heard_from(pid, 1.0), CALLER_TONE) > 500, 20, "the caller at the web party")
        # The web party goes into a caucus: the caller hears the mediator, no longer the party.
        caucus = await mediator.call("caucus.create", {"name": "乙方"})
        assert caucus["ok"], caucus
        assert (await mediator.call("participant.move", {"participant_id": web.me["id"],
                                                         "to": caucus["caucus_id"]}))["ok"]
        await asyncio.sleep(2.5)
        assert hears(MEDIATOR_TONE) > 500, hears(MEDIATOR_TONE)
        assert hears(PARTY_TONE) < 0.05 * hears(MEDIATOR_TONE), (hears(PARTY_TONE), hears(MEDIATOR_TONE))
        assert hears(CALLER_TONE) < 0.05 * hears(MEDIATOR_TONE)  # never themselves
        # The caller joins the party in the caucus: now they hear the party and not the mediator.
        assert (await mediator.call("participant.move", {"participant_id": pid, "to": caucus["caucus_id"]}))["ok"]
        await asyncio.sleep(2.5)
        assert hears(PARTY_TONE) > 500 and hears(MEDIATOR_TONE) < 0.05 * hears(PARTY_TONE)
        # Removed by the mediator: a prompt, then the server's BYE.
        assert (await mediator.call("participant.remove", {"participant_id": pid}))["ok"]
        await asyncio.wait_for(caller.bye.wait(), 30)
        await until(lambda: not phone_live.app["phone"].calls, 10, "the endpoint letting the call go")
    finally:
        await caller.close()
        await web.close()
