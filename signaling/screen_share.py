"""Screen sharing in the live room (docs/protocol.md, "Screen sharing"). A share is one more video
m-line of the sharer's publish connection, named "screen" in `rtc.offer`'s `tracks`
(rooms/peers.py); the room forwards it to the sharer's area only, one share per area
(rooms/room.py). This module adds the mediator's stop and writes every share down.

Client event (acknowledged like every other):
- ``screen.stop {participant_id?}`` — one's own share (no id), or anyone's by the mediator
  (the ``move`` grant); ``bad_state`` when that person shares nothing.

Server event: ``screen.stopped {reason, by?}`` to the sharer's page when the server ended the
share (``stopped_by``: someone stopped it; ``moved``: the sharer changed area): the page stops
its capture and turns the m-line inactive.

The record: ``screen.started`` (area, producer) and ``screen.stopped`` (area, reason, seconds,
started_at, who stopped it).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from server.services import live as live_svc
from signaling.hub import Hub, LiveRoom, fail
from signaling.schemas import Event, Id


class StopEv(Event):
    participant_id: Id | None = None  # none: my own share


@dataclass
class _Share:
    pass_: live_svc.Pass | None
    area: str
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    started: float = field(default_factory=time.monotonic)


def install(hub: Hub) -> "ScreenShare":
    return ScreenShare(hub)


class ScreenShare:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.shares: dict[str, _Share] = {}  # producer id -> the share as it began
        hub.add_event("screen.stop", StopEv, self.stop)
        hub.on_share.append(self.changed)

    async def stop(self, sid, live: LiveRoom, pid: str, data: StopEv) -> dict:
        target = data.participant_id or pid
        if live.room.participants.get(target) is None:
            return fail("not_found", "No such participant.")
        live.room.stop_share(target, by=pid)  # grants and "is sharing" checked by the room
        return {}

    async def changed(self, live: LiveRoom, producer, started: bool, reason: str | None, by: str | None) -> None:
        sharer = producer.participant_id
        if started:
            part = live.room.participants.get(sharer)
            share = self.shares[producer.id] = _Share(live.passes.get(sharer), part.area if part else "?")
            await self._record(live, share, None, "screen.started", {"area": share.area, "producer_id": producer.id})
            return
        share = self.shares.pop(producer.id, None) or _Share(live.passes.get(sharer), "?")
        if reason == "stopped_by" and by == sharer:
            reason = "stopped"
        out: dict = {"reason": reason}
        if reason in ("stopped_by", "moved"):
            actor = live.passes.get(by) if by else None
            if actor is not None:
                out["by"] = {"id": actor.participant_id, "name": actor.name}
            await self.hub.emit_to(live, sharer, "screen.stopped", out)
        data = {"area": share.area, "producer_id": producer.id, "reason": reason,
                "seconds": round(time.monotonic() - share.started, 1), "started_at": share.started_at.isoformat()}
        if reason == "stopped_by" and "by" in out:
            data["stopped_by"] = out["by"]
        await self._record(live, share, by if reason == "stopped_by" else None, "screen.stopped", data)

    async def _record(self, live: LiveRoom, share: _Share, by: str | None, action: str, data: dict) -> None:
        actor = live.passes.get(by) if by else None
        async with self.hub.db.session() as s:
            if share.pass_ is not None:
                await live_svc.record(s, share.pass_, action, data, actor=actor.ref() if actor else None)
            else:
                await live_svc.record_system(s, live.case_id, live.session_id, action, data)


__all__ = ["install", "ScreenShare"]
