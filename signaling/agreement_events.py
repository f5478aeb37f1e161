"""The settlement agreement in the live room: the mediator drafts, everyone admitted sees it change and comments.

Client events (acknowledged like every other):
- ``agreement.get {}`` → ``{ok, agreement}`` (``null`` before a draft exists) — anyone out of the lobby;
- ``agreement.update {template?, facts?, terms?, performance_deadline?, version?}`` → ``{ok, agreement}`` —
  the case's mediator; refused with ``agreement_final`` once finalised, ``version_conflict`` when
  ``version`` is stale;
- ``agreement.finalise {version?}`` → ``{ok, agreement}`` — the mediator;
- ``agreement.comment {text}`` → ``{ok, comment}`` — anyone out of the lobby.

Server events:
- ``agreement.draft`` — the agreement as it now stands, to everyone in the main area (and to the
  mediator wherever they are), after every change made here or through the REST API;
- ``agreement.comment`` — a comment: from the main area to everyone there, from a caucus only to
  the mediator (and its author).
"""
from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from rooms.participant import LOBBY, MAIN
from server.core.errors import Forbidden
from server.core.schemas import Checked, Day
from server.services.outcome import agreements as agr
from server.services import live as live_svc
from server.services.cases import get_case

log = logging.getLogger("mediation.signaling.agreement")

Template = Literal["labour", "family", "neighbour", "property", "medical", "fishery", "shipping", "construction",
                   "consumer", "other"]


class _Ev(Checked):
    model_config = ConfigDict(extra="forbid")


class GetEv(_Ev):
    pass


class UpdateEv(_Ev):
    template: Template | None = None
    facts: Annotated[str, StringConstraints(max_length=10000)] | None = None
    terms: list[Annotated[str, StringConstraints(min_length=1, max_length=2000)]] | None = Field(default=None,
                                                                                                max_length=30)
    performance_deadline: Day | None = None
    version: int | None = Field(default=None, ge=1)


class FinaliseEv(_Ev):
    version: int | None = Field(default=None, ge=1)


class CommentEv(_Ev):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


async def _current(hub, case_id: int) -> dict | None:
    async with hub.db.read() as s:
        ag = await agr.get_for_case(s, case_id)
        if ag is None:
            return None
        case = await get_case(s, case_id)
        sigs = await agr.signatures(s, ag.id)
        return agr.view(ag, case, sigs, staff=False)


def _rooms_of(hub, case_id: int):
    return [live for live in list(hub.rooms.values()) if live.case_id == case_id]


def _sees_main(live, pid: str) -> bool:
    part = live.room.participants.get(pid)
    if part is None:
        return False
    return part.area == MAIN or part.role == "mediator"


async def broadcast_agreement(hub, case_id: int, data: dict | None = None) -> None:
    """Push the agreement to everyone in the main area of the case's live room(s), on whichever
    node hosts them (best effort)."""
    await hub.cluster.command("agreement.draft", case_id=case_id, data=data)


async def _agreement_here(hub, case_id: int, data: dict | None = None) -> None:
    rooms = _rooms_of(hub, case_id)
    if not rooms:
        return
    try:
        data = data if data is not None else await _current(hub, case_id)
    except Exception:  # noqa: BLE001 - a failed push must not fail the change itself
        log.exception("could not read the agreement of case %s", case_id)
        return
    if data is None:
        return
    for live in rooms:
        for pid in list(live.sids):
            if _sees_main(live, pid):
                await hub.emit_to(live, pid, "agreement.draft", data)


async def broadcast_comment(hub, case_id: int, comment: dict, *, to_all: bool, author_pid: str | None = None,
                            area: str = MAIN) -> None:
    await hub.cluster.command("agreement.comment", case_id=case_id, comment=comment, to_all=to_all,
                              author_pid=author_pid, area=area)


async def _comment_here(hub, case_id: int, comment: dict, *, to_all: bool, author_pid: str | None = None,
                        area: str = MAIN) -> None:
    for live in _rooms_of(hub, case_id):
        for pid in list(live.sids):
            part = live.room.participants.get(pid)
            if part is None or part.area == LOBBY and part.role != "mediator":
                continue
            if part.role == "mediator" or pid == author_pid or (to_all and part.area == area):
                await hub.emit_to(live, pid, "agreement.comment", comment)


def install(hub) -> None:
    """Register the agreement events on the hub (called from signaling/server.py). Changes made
    here reach the room through the services' AgreementChanged event (Hub.agreement_changed)."""
    hub.cluster.on("agreement.draft", lambda **kw: _agreement_here(hub, **kw))
    hub.cluster.on("agreement.comment", lambda **kw: _comment_here(hub, **kw))

    def admitted(live, pid: str) -> bool:
        part = live.room.participants.get(pid)
        return part is not None and part.area != LOBBY

    async def get(sid, live, pid, data: GetEv) -> dict:
        if not admitted(live, pid):
            return {"ok": False, "error": {"code": "in_lobby", "message": "Wait until the mediator lets you in."}}
        return {"agreement": await _current(hub, live.case_id)}

    async def update(sid, live, pid, data: UpdateEv) -> dict:
        p = live.passes[pid]
        body = agr.DraftIn(**data.model_dump(exclude_none=True))
        async with hub.db.session() as s:
            actor = await live_svc.mediator_actor(s, p)
            ag = await agr.save_draft(s, actor, live.case_id, body)
            case = await get_case(s, live.case_id)
            view = agr.view(ag, case, [], staff=False)
        return {"agreement": view}

    async def finalise(sid, live, pid, data: FinaliseEv) -> dict:
        p = live.passes[pid]
        async with hub.db.session() as s:
            actor = await live_svc.mediator_actor(s, p)
            ag = await agr.finalise(s, actor, live.case_id, agr.FinaliseIn(version=data.version))
            case = await get_case(s, live.case_id)
            view = agr.view(ag, case, [], staff=False)
        return {"agreement": view}

    async def comment(sid, live, pid, data: CommentEv) -> dict:
        if not admitted(live, pid):
            raise Forbidden("Wait until the mediator lets you in.")
        p = live.passes[pid]
        area = live.room.participants[pid].area
        async with hub.db.session() as s:
            _ag, c = await agr.add_comment(s, live.case_id, agr.CommentAuthor("participant", p.participant_id, p.name,
                                                                              p.role, area), data.text,
                                           session_id=live.session_id)
            out = agr.comment_view(c)
        return {"comment": out}

    async def on_joined(live, pid: str) -> None:
        if _sees_main(live, pid):
            data = await _current(hub, live.case_id)
            if data is not None:
                await hub.emit_to(live, pid, "agreement.draft", data)

    hub.add_event("agreement.get", GetEv, get)
    hub.add_event("agreement.update", UpdateEv, update)
    hub.add_event("agreement.finalise", FinaliseEv, finalise)
    hub.add_event("agreement.comment", CommentEv, comment)
    hub.on_joined.append(on_joined)


__all__ = ["install", "broadcast_agreement", "broadcast_comment"]
