"""Events the hub refuses with a clear error ack, changing nothing: payloads nested past the
bound (refused before parsing) and asking for help from the lobby."""
from __future__ import annotations

import asyncio
import json

import aiohttp
from sqlalchemy import func, select

from server.core.models import AuditEntry, ChatMessage
from tests.rooms.clients import wait_for

from .peer import Peer


class RawSocket:
    """socket.io v4 over a WebSocket, written by hand: python-socketio cannot even encode a
    payload nested 50,000 levels (its json.dumps recurses too), a hostile client can."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session: aiohttp.ClientSession | None = None
        self.ws = None
        self.acks = 0

    async def open(self) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.base_url + "/socket.io/?EIO=4&transport=websocket")
        assert (await self.ws.receive_str()).startswith("0")  # Engine.IO open
        await self.ws.send_str("40")  # socket.io connect, default namespace
        assert (await self._next(lambda m: m.startswith("40"))).startswith("40{")

    async def _next(self, wanted, timeout: float = 10) -> str:
        async def loop():
            while True:
                msg = await self.ws.receive_str()
                if msg == "2":
                    await self.ws.send_str("3")  # ping, pong
                elif wanted(msg):
                    return msg
        return await asyncio.wait_for(loop(), timeout)

    async def call(self, event: str, raw_payload: str, timeout: float = 10) -> dict:
        """Emit `event` with a payload given as JSON text, and return its ack."""
        self.acks += 1
        head = f"43{self.acks}"
        await self.ws.send_str(f"42{self.acks}[{json.dumps(event)},{raw_payload}]")
        msg = await self._next(lambda m: m.startswith(head + "["), timeout)
        return json.loads(msg[len(head):])[0]

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


async def _counts(db, session_id: int) -> tuple[int, int]:
    async with db.session() as s:
        audit = (await s.execute(select(func.count()).select_from(AuditEntry)
                                 .where(AuditEntry.session_id == session_id))).scalar_one()
        chat = (await s.execute(select(func.count()).select_from(ChatMessage))).scalar_one()
    return audit, chat


async def test_deeply_nested_payloads_get_an_error_ack_and_change_nothing(live, media):
    raw = RawSocket(live.url)
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
    try:
        await raw.open()
        ack = await raw.call("join", json.dumps({"token": await live.token("mediator")}))
        assert ack["ok"] and ack["participant"]["role"] == "mediator", ack
        assert (await party.join())["ok"]
        assert (await raw.call("lobby.admit", json.dumps({"participant_id": party.me["id"]})))["ok"]
        await wait_for(lambda: party.state and len(party.state["participants"]) == 2, what="party admitted")
        room = live.app["hub"].rooms[live.room_id].room


        def who_where():
            st = room.state()
            return [(p["id"], p["where"], p["muted"]) for p in st["participants"]], st["caucuses"]

        before, state = await _counts(live.db, live.session_id), who_where()
        deep = {"unclosed arrays": "[" * 50_000, "unclosed objects": '{"a":' * 50_000,
                "closed arrays in a field": '{"text": ' + "[" * 5_000 + "]" * 5_000 + "}"}
        for what, payload in deep.items():
            for event in ("chat.send", "participant.remove", "help.request"):
                ack = await raw.call(event, payload)
                assert not ack["ok"] and ack["error"]["code"] == "bad_request", (what, event, ack)
                assert "nested too deeply" in ack["error"]["message"], ack
        # Deeper than Engine.IO's own parser takes, too: dropped, the connection goes on.
        await raw.send("4" + "[" * 50_000)
        await raw.send("2" + "[" * 50_000)
        await asyncio.sleep(0.3)
        assert await _counts(live.db, live.session_id) == before
        assert who_where() == state
        assert not party.events["chat.message"] and not party.events["removed"]
        # Still the same working connection afterwards.
        ack = await raw.call("chat.send", json.dumps({"text": "仍然正常"}))
        assert ack["ok"], ack
        await wait_for(lambda: party.events["chat.message"], what="chat delivered")
        assert [m["text"] for m in party.events["chat.message"]] == ["仍然正常"]
    finally:
        await party.close()
        await raw.close()


async def test_help_from_the_lobby_is_refused_and_reaches_nobody(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
    try:
        assert (await mediator.join())["ok"]
        ack = await party.join()
        assert ack["ok"] and ack["in_lobby"]
        before = await _counts(live.db, live.session_id)
        ack = await party.call("help.request")
        assert not ack["ok"] and ack["error"]["code"] == "in_lobby" and ack["error"]["message"], ack
        await asyncio.sleep(0.3)
        assert not mediator.events["help.requested"]
        assert await _counts(live.db, live.session_id) == before
        # Once admitted, the same request reaches the mediator.
        assert (await mediator.call("lobby.admit", {"participant_id": party.me["id"]}))["ok"]
        assert (await party.call("help.request"))["ok"]
        await wait_for(lambda: mediator.events["help.requested"], what="help requested")
        assert mediator.events["help.requested"][0]["participant_id"] == party.me["id"]
        # Asking again at once: the mediator has been told; refused and not written twice.
        again = await party.call("help.request")
        assert again["error"]["code"] == "rate_limited", again
        await asyncio.sleep(0.3)
        assert len(mediator.events["help.requested"]) == 1
    finally:
        await party.close()
        await mediator.close()
    async with live.db.session() as s:
        helped = (await s.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "participant.help_requested"))).scalar_one()
    assert helped == 1


async def test_a_flood_of_events_from_one_page_is_refused_and_the_room_goes_on(live, media):
    """Past its burst a connection's events are answered rate_limited unhandled (signaling/hub.py,
    EVENT_BURST, EVENT_RATE): 200 chat messages at once store and deliver the first burst only;
    the page can talk again a moment later, and another page was never slowed."""
    from signaling.hub import EVENT_BURST

    mediator = Peer(live.url, await live.token("mediator"), media)
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
    try:
        assert (await mediator.join())["ok"]
        assert (await party.join())["ok"]
        assert (await mediator.call("lobby.admit", {"participant_id": party.me["id"]}))["ok"]
        await wait_for(lambda: party.state and len(party.state["participants"]) == 2, what="party admitted")
        _, chat_before = await _counts(live.db, live.session_id)
        acks = await asyncio.gather(*[party.call("chat.send", {"text": f"第{i}条"}) for i in range(200)])
        sent = [a for a in acks if a["ok"]]
        refused = [a for a in acks if not a["ok"]]
        assert EVENT_BURST - 5 <= len(sent) <= EVENT_BURST + 15, len(sent)  # the burst, plus what refilled meanwhile
        assert refused and all(a["error"]["code"] == "rate_limited" for a in refused), refused[:1]
        _, chat_after = await _counts(live.db, live.session_id)
        assert chat_after - chat_before == len(sent)
        # The mediator's own connection has its own budget.
        assert (await mediator.call("chat.send", {"text": "请一条一条发"}))["ok"]
        await asyncio.sleep(0.5)
        assert (await party.call("chat.send", {"text": "好的"}))["ok"]
    finally:
        await party.close()
        await mediator.close()
