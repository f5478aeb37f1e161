"""The room's tools besides media and documents (docs/protocol.md, "Room tools"): messages to the
lobby, raised hands, muting everyone, caucus timers, a word to every caucus, knocking on the
mediator's door from a caucus, and the active speaker. Installed by `create_socketio`.

Each event is checked here (grants, areas) and by rooms/room.py, acknowledged like every other
(signaling/hub.py) and written to the case's audit chain; what the room holds (hands, who is held
muted, the caucus timers) is part of `room.state`.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field, StringConstraints

from rooms.participant import LOBBY, MAIN
from signaling.hub import Hub, LiveRoom, fail
from signaling.schemas import Event, Id

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class LobbyMessage(Event):
    text: Text
    participant_id: Id | None = None  # one person waiting; none: everyone waiting


class HandLower(Event):
    participant_id: Id | None = None  # none: my own hand


class MuteAll(Event):
    hold: bool = False


class Release(Event):
    participant_id: Id | None = None  # none: everyone held


class CaucusTimer(Event):
    caucus_id: Id
    minutes: int = Field(ge=0, le=240)  # 0 takes the timer off


class Broadcast(Event):
    text: Text


class Empty(Event):
    pass


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def install(hub: Hub) -> "RoomTools":
    return RoomTools(hub)


class RoomTools:
    def __init__(self, hub: Hub):
        self.hub = hub
        for name, model, fn in (
            ("lobby.message", LobbyMessage, self.lobby_message),
            ("hand.raise", Empty, self.hand_raise),
            ("hand.lower", HandLower, self.hand_lower),
            ("participant.mute_all", MuteAll, self.mute_all),
            ("participant.release", Release, self.release),
            ("caucus.timer", CaucusTimer, self.caucus_timer),
            ("caucus.broadcast", Broadcast, self.caucus_broadcast),
            ("caucus.knock", Empty, self.caucus_knock),
        ):
            hub.add_event(name, model, fn)

    def _area(self, live: LiveRoom, pid: str) -> str:
        part = live.room.participants.get(pid)
        return part.area if part else LOBBY

    async def lobby_message(self, sid, live: LiveRoom, pid: str, data: LobbyMessage) -> dict:
        live.room.participant(pid).require("admit")
        if data.participant_id is not None:
            target = live.room.participants.get(data.participant_id)
            if target is None:
                return fail("not_found", "No such participant.")
            if target.area != LOBBY:
                return fail("bad_state", "This participant is not waiting in the lobby.")
            to = [target.id]
        else:
            to = [p.id for p in live.room.participants.values() if p.area == LOBBY]
        out = {"text": data.text, "name": live.passes[pid].name, "to_all": data.participant_id is None, "at": _now()}
        for target in to:
            await self.hub.emit_to(live, target, "lobby.message", out)
        await self.hub.record_step(live, pid, "lobby.message", {"to": data.participant_id or "lobby",
                                                                "recipients": len(to), "text": data.text})
        return {"recipients": len(to)}

    async def hand_raise(self, sid, live: LiveRoom, pid: str, data: Empty) -> dict:
        if live.room.raise_hand(pid):
            p = live.passes[pid]
            await self.hub.to_grant_holders(live, "move", "hand.raised",
                                            {"participant_id": pid, "name": p.name, "where": self._area(live, pid)})
            await self.hub.record_step(live, pid, "participant.hand_raised", {"where": self._area(live, pid)})
        return {"hands": live.room.hands()}

    async def hand_lower(self, sid, live: LiveRoom, pid: str, data: HandLower) -> dict:
        target = data.participant_id or pid
        if live.room.participants.get(target) is None:
            return fail("not_found", "No such participant.")
        if live.room.lower_hand(target, by=pid):
            if target == pid:
                await self.hub.record_step(live, pid, "participant.hand_lowered", {})
            else:
                await self.hub._staff_step(live, pid, target, "participant.hand_lowered")
        return {"hands": live.room.hands()}

    async def mute_all(self, sid, live: LiveRoom, pid: str, data: MuteAll) -> dict:
        muted = live.room.mute_all(by=pid, hold=data.hold)
        for target in muted:
            await self.hub.emit_to(live, target, "muted", {"kind": "audio", "by": pid, "hold": data.hold, "all": True})
        await self.hub.record_step(live, pid, "participant.muted_all", {"hold": data.hold, "muted": muted})
        return {"muted": muted}

    async def release(self, sid, live: LiveRoom, pid: str, data: Release) -> dict:
        if data.participant_id is not None and live.room.participants.get(data.participant_id) is None:
            return fail("not_found", "No such participant.")
        released = live.room.release(data.participant_id, by=pid)
        for target in released:
            await self.hub.emit_to(live, target, "released", {"by": pid})
        await self.hub.record_step(live, pid, "participant.released", {"released": released})
        return {"released": released}

    async def caucus_timer(self, sid, live: LiveRoom, pid: str, data: CaucusTimer) -> dict:
        ends = live.room.set_caucus_timer(data.caucus_id, data.minutes, by=pid)
        ends_at = dt.datetime.fromtimestamp(ends, dt.timezone.utc).isoformat() if ends else None
        await self.hub.record_step(live, pid, "caucus.timer", {"caucus_id": data.caucus_id, "minutes": data.minutes,
                                                               "ends_at": ends_at})
        return {"ends_at": ends_at}

    async def caucus_broadcast(self, sid, live: LiveRoom, pid: str, data: Broadcast) -> dict:
        live.room.participant(pid).require("move")
        if not live.room.caucuses:
            return fail("bad_state", "No caucus is open.")
        out = {"text": data.text, "name": live.passes[pid].name, "at": _now()}
        to = [x for x, p in live.room.participants.items() if p.area in live.room.caucuses and x != pid]
        for target in to:
            await self.hub.emit_to(live, target, "caucus.broadcast", out)
        await self.hub.record_step(live, pid, "caucus.broadcast", {"recipients": len(to), "text": data.text,
                                                                   "caucuses": sorted(live.room.caucuses)})
        return {"recipients": len(to)}

    async def caucus_knock(self, sid, live: LiveRoom, pid: str, data: Empty) -> dict:
        area = self._area(live, pid)
        if area == LOBBY:
            return fail("in_lobby", "You can knock once the mediator has let you in.")
        if area == MAIN or area not in live.room.caucuses:
            return fail("bad_state", "Knocking is for asking the mediator into a caucus.")
        refused = self.hub.call_refused(live, pid, "knock")
        if refused:
            return refused
        out = {"participant_id": pid, "name": live.passes[pid].name, "caucus_id": area,
               "caucus": live.room.caucuses[area], "at": _now()}
        told = 0
        for other, part in list(live.room.participants.items()):
            if part.can("move") and part.area != area:
                await self.hub.emit_to(live, other, "caucus.knocked", out)
                told += 1
        await self.hub.record_step(live, pid, "caucus.knocked", {"caucus_id": area, "caucus": out["caucus"]})
        return {"told": told}


__all__ = ["install", "RoomTools"]
