"""Evidence on screen in the live room (docs/protocol.md, "Evidence"): the mediator, or a participant
the mediator allows, presents one of the case's evidence files to everyone in the presenter's area
(the main room or one caucus, never across); everyone there sees the same page and zoom and the
presenter's pointer. Each viewer fetches the page from a signed URL of their own, watermarked
with their name (server/services/evidence.py), and only while it is shown in their area.
Files added during the session arrive over HTTP (server/http/api/room.py) and wait for the
mediator's review.

Client events (acknowledged like every other):
- ``evidence.list {}`` → ``{evidence, showing, may_present}`` — anyone out of the lobby;
- ``evidence.present {evidence_id, page?}`` → ``{showing}`` — the mediator, or someone allowed;
- ``evidence.page {page, zoom?}`` → ``{showing}`` — the presenter (or the mediator in that area);
- ``evidence.pointer {x, y}`` → ``{sent}`` — the presenter; at most 20 a second, not audited;
- ``evidence.stop {}`` — the presenter, or the mediator in that area;
- ``evidence.allow {participant_id, allowed}`` — the mediator (the ``admit`` grant);
- ``evidence.review {evidence_id, accept}`` → ``{evidence}`` — the case's mediator.

Server events: ``evidence.shown`` (to each viewer, with its own ``url``), ``evidence.pointer``,
``evidence.stopped``, ``evidence.allowed`` (to the participant concerned), ``evidence.submitted``
and ``evidence.reviewed`` (to the mediator, and the submitter).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import ConfigDict, Field

from rooms.participant import LOBBY
from server.core.errors import AppError, Forbidden, NotFound
from server.core.schemas import Checked, Id as RowId
from server.core.security import TokenInvalid
from server.services import evidence as ev_svc
from server.services import live as live_svc
from server.services.cases import Upload, get_case
from signaling.schemas import Id

log = logging.getLogger("mediation.signaling.evidence")

URL_SECONDS = 600          # a viewer's page URL is good this long (and only while it is shown to them)
POINTER_INTERVAL = 0.05    # s between two pointer moves passed on: 20 a second
ZOOMS = (1.0, 4.0)
UNKNOWN = ("?",)           # "what this page shows is not known": the next sync sends it afresh


class _Ev(Checked):
    model_config = ConfigDict(extra="forbid")


class ListEv(_Ev):
    pass


class PresentEv(_Ev):
    evidence_id: RowId
    page: int = Field(default=1, ge=1, le=ev_svc.MAX_PAGES)


class PageEv(_Ev):
    page: int = Field(ge=1, le=ev_svc.MAX_PAGES)
    zoom: Annotated[float, Field(ge=ZOOMS[0], le=ZOOMS[1])] | None = None


class PointerEv(_Ev):
    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)


class StopEv(_Ev):
    pass


class AllowEv(_Ev):
    participant_id: Id
    allowed: bool


class ReviewEv(_Ev):
    evidence_id: RowId
    accept: bool


@dataclass
class Showing:
    evidence_id: int
    name: str
    content_type: str
    sha256: str
    pages: int
    page: int
    area: str
    presenter: str
    presenter_name: str
    case_number: str
    zoom: float = 1.0
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    started: float = field(default_factory=time.monotonic)
    pages_seen: list[int] = field(default_factory=list)
    viewers: dict[str, str] = field(default_factory=dict)  # participant id -> name, everyone who saw it


@dataclass
class Desk:
    """One room's presentations: one per area at most, who may present, what each page was sent."""
    shows: dict[str, Showing] = field(default_factory=dict)
    allowed: set[str] = field(default_factory=set)
    sent: dict[str, tuple] = field(default_factory=dict)
    pointer_at: dict[str, float] = field(default_factory=dict)


def _refuse(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


class Evidence:
    """The room side of evidence: held by the hub as ``hub.evidence`` (install)."""

    def __init__(self, hub):
        self.hub = hub
        self.desks: dict[str, Desk] = {}
        self.store = ev_svc.store_for(hub.settings)

    # ------------------------------------------------------------------ helpers

    def desk(self, live) -> Desk:
        return self.desks.setdefault(live.room.id, Desk())

    def may_present(self, live, pid: str) -> bool:
        part = live.room.participants.get(pid)
        return part is not None and (part.can("admit") or pid in self.desk(live).allowed)

    def sign(self, room_id: str, pid: str, evidence_id: int, page: int, exp: int) -> str:
        msg = f"evidence|{room_id}|{pid}|{evidence_id}|{page}|{exp}".encode()
        return hmac.new(self.hub.settings.secret_key.encode(), msg, hashlib.sha256).hexdigest()[:40]

    def url(self, live, pid: str, show: Showing) -> str:
        exp = int(time.time()) + URL_SECONDS
        sig = self.sign(live.room.id, pid, show.evidence_id, show.page, exp)
        return (f"/api/v1/room/evidence/{show.evidence_id}/pages/{show.page}"
                f"?room={live.room.id}&pid={pid}&exp={exp}&sig={sig}")

    def shown(self, live, pid: str, show: Showing) -> dict:
        return {"evidence_id": show.evidence_id, "name": show.name, "content_type": show.content_type,
                "page": show.page, "pages": show.pages, "zoom": show.zoom, "area": show.area,
                "presenter": {"id": show.presenter, "name": show.presenter_name},
                "started_at": show.started_at.isoformat(), "url": self.url(live, pid, show)}

    def showing_for(self, live, pid: str) -> Showing | None:
        part = live.room.participants.get(pid)
        if part is None or part.area == LOBBY:
            return None
        return self.desk(live).shows.get(part.area)

    async def sync(self, live) -> None:
        """Everyone connected sees what is presented in their area, and nothing else: after a
        join, a move, a caucus closing, a page turned. A presentation whose presenter left its
        area ends."""
        desk = self.desk(live)
        for area, show in list(desk.shows.items()):
            part = live.room.participants.get(show.presenter)
            if live.room.closed or part is None or part.area != area or show.presenter not in live.sids:
                await self.finish(live, area, reason="presenter_left" if not live.room.closed else "session_ended",
                                  by=None)
        if live.room.closed:
            self.desks.pop(live.room.id, None)
            return
        for pid in list(live.sids):
            show = self.showing_for(live, pid)
            key = (show.area, show.evidence_id, show.page, show.zoom, show.started) if show else None
            if desk.sent.get(pid) == key:
                continue
            before = desk.sent.get(pid)
            desk.sent[pid] = key
            if show is not None:
                p = live.passes.get(pid)
                show.viewers[pid] = p.name if p else pid
                await self.hub.emit_to(live, pid, "evidence.shown", self.shown(live, pid, show))
            elif before is not None:
                await self.hub.emit_to(live, pid, "evidence.stopped", {"reason": "left_area"})
        for pid in [x for x in desk.sent if x not in live.sids]:
            del desk.sent[pid]

    async def finish(self, live, area: str, *, reason: str, by: str | None) -> None:
        desk = self.desk(live)
        show = desk.shows.pop(area, None)
        if show is None:
            return
        for pid in list(live.sids):
            if desk.sent.get(pid) and desk.sent[pid][0] == area:
                desk.sent[pid] = None
                await self.hub.emit_to(live, pid, "evidence.stopped",
                                       {"evidence_id": show.evidence_id, "reason": reason})
        try:
            await self.hub.record_step(live, by, "evidence.stopped", {
                "evidence_id": show.evidence_id, "file": show.name, "sha256": show.sha256, "area": area,
                "reason": reason, "seconds": round(time.monotonic() - show.started, 1),
                "started_at": show.started_at.isoformat(), "pages": show.pages_seen,
                "viewers": [{"participant_id": k, "name": v} for k, v in show.viewers.items()],
                "presenter": show.presenter})
        except Exception:  # noqa: BLE001 - the room goes on; the log shows the gap
            log.exception("could not record the end of a presentation in room %s", live.room.id)

    def admitted(self, live, pid: str) -> bool:
        part = live.room.participants.get(pid)
        return part is not None and part.area != LOBBY

    def mine(self, live, pid: str) -> Showing:
        """The presentation in my area that I may steer (its presenter, or the mediator)."""
        part = live.room.participants[pid]
        show = self.desk(live).shows.get(part.area)
        if show is None:
            raise NotFound("Nothing is being presented here.")
        if show.presenter != pid and not part.can("admit"):
            raise Forbidden("Only the presenter can do this.")
        return show

    # ------------------------------------------------------------------ events

    async def list(self, sid, live, pid, data: ListEv) -> dict:
        if not self.admitted(live, pid):
            return _refuse("in_lobby", "Wait until the mediator lets you in.")
        mediator = live.room.participants[pid].can("admit")
        async with self.hub.db.read() as s:
            # A file added in the session is the mediator's to review first: the others see it once accepted.
            items = [ev_svc.view(e) for e in await ev_svc.list_for_case(s, live.case_id)
                     if mediator or e.review in (None, "accepted") or e.submitted_by == pid]
        show = self.showing_for(live, pid)
        return {"evidence": items, "may_present": self.may_present(live, pid),
                "showing": self.shown(live, pid, show) if show else None}

    async def present(self, sid, live, pid, data: PresentEv) -> dict:
        if not self.admitted(live, pid):
            return _refuse("in_lobby", "You can present once the mediator has let you in.")
        if not self.may_present(live, pid):
            raise Forbidden("The mediator has not allowed you to present evidence.")
        async with self.hub.db.read() as s:
            e, pages = await ev_svc.for_presenting(s, self.store, live.case_id, data.evidence_id, data.page)
            case = await get_case(s, live.case_id)
            number = case.number
        area = live.room.participants[pid].area
        desk = self.desk(live)
        if area in desk.shows:
            await self.finish(live, area, reason="replaced", by=pid)
        p = live.passes[pid]
        show = desk.shows[area] = Showing(evidence_id=e.id, name=e.filename, content_type=e.content_type,
                                          sha256=e.sha256, pages=pages, page=data.page, area=area, presenter=pid,
                                          presenter_name=p.name, case_number=number, pages_seen=[data.page])
        await self.hub.record_step(live, pid, "evidence.presented", {
            "evidence_id": e.id, "file": e.filename, "sha256": e.sha256, "page": data.page, "pages": pages,
            "area": area, "area_name": live.room.caucuses.get(area, "main")})
        await self.sync(live)
        return {"showing": self.shown(live, pid, show)}

    async def page(self, sid, live, pid, data: PageEv) -> dict:
        if not self.admitted(live, pid):
            return _refuse("in_lobby", "Wait until the mediator lets you in.")
        show = self.mine(live, pid)
        ev_svc.check_page(data.page, show.pages)
        zoom = show.zoom if data.zoom is None else round(data.zoom, 2)
        if (data.page, zoom) != (show.page, show.zoom):
            if data.page != show.page:
                show.pages_seen.append(data.page)
                await self.hub.record_step(live, pid, "evidence.paged", {
                    "evidence_id": show.evidence_id, "page": data.page, "area": show.area})
            show.page, show.zoom = data.page, zoom
            await self.sync(live)
        return {"showing": self.shown(live, pid, show)}

    async def pointer(self, sid, live, pid, data: PointerEv) -> dict:
        if not self.admitted(live, pid):
            return _refuse("in_lobby", "Wait until the mediator lets you in.")
        show = self.desk(live).shows.get(live.room.participants[pid].area)
        if show is None:
            raise NotFound("Nothing is being presented here.")
        if show.presenter != pid:
            raise Forbidden("Only the presenter moves the pointer.")
        desk, now = self.desk(live), time.monotonic()
        if now - desk.pointer_at.get(pid, 0.0) < POINTER_INTERVAL:
            return {"sent": False}  # too soon after the last one: dropped, the next one carries on
        desk.pointer_at[pid] = now
        out = {"evidence_id": show.evidence_id, "x": round(data.x, 4), "y": round(data.y, 4)}
        for other in list(live.sids):
            if other != pid and self.showing_for(live, other) is show:
                await self.hub.emit_to(live, other, "evidence.pointer", out)
        return {"sent": True}

    async def stop(self, sid, live, pid, data: StopEv) -> dict:
        if not self.admitted(live, pid):
            return _refuse("in_lobby", "Wait until the mediator lets you in.")
        show = self.mine(live, pid)
        await self.finish(live, show.area, reason="stopped", by=pid)
        return {}

    async def allow(self, sid, live, pid, data: AllowEv) -> dict:
        live.room.participant(pid).require("admit")
        target = live.room.participants.get(data.participant_id)
        if target is None:
            return _refuse("not_found", "No such participant.")
        if target.can("admit"):
            return _refuse("bad_request", "The mediator may always present.")
        desk = self.desk(live)
        if data.allowed:
            desk.allowed.add(target.id)
        else:
            desk.allowed.discard(target.id)
            for area, show in list(desk.shows.items()):
                if show.presenter == target.id:
                    await self.finish(live, area, reason="not_allowed", by=pid)
        await self.hub._staff_step(live, pid, target.id, "evidence.allowed", {"allowed": data.allowed})
        await self.hub.emit_to(live, target.id, "evidence.allowed", {"allowed": data.allowed})
        return {"participant_id": target.id, "allowed": data.allowed}

    async def review(self, sid, live, pid, data: ReviewEv) -> dict:
        async with self.hub.db.session() as s:
            e = await ev_svc.review(s, live.passes[pid], data.evidence_id, data.accept)
            item = ev_svc.view(e)
        await self.tell_reviewers(live, "evidence.reviewed", item)
        return {"evidence": item}

    async def on_joined(self, live, pid: str) -> None:
        desk = self.desk(live)
        if pid in desk.sent:
            desk.sent[pid] = UNKNOWN  # a rejoin: the page may show something stale, so say it again
        await self.sync(live)
        if pid in desk.allowed:
            await self.hub.emit_to(live, pid, "evidence.allowed", {"allowed": True})

    async def tell_reviewers(self, live, event: str, item: dict) -> None:
        """The mediator (whoever admits) and the participant who submitted the file."""
        for other, part in list(live.room.participants.items()):
            if part.can("admit") or other == item.get("submitted_by"):
                await self.hub.emit_to(live, other, event, {"evidence": item})

    # ------------------------------------------------------------------ HTTP (server/http/api/room.py)

    def _live_of(self, room_id: str, pid: str):
        live = self.hub.rooms.get(room_id)
        if live is None or live.room.closed or pid not in live.sids:
            return None
        return live

    async def page_image(self, *, room_id: str, pid: str, evidence_id: int, page: int, exp: str, sig: str) -> bytes:
        """A viewer's watermarked copy of the page shown in their area. The URL must be the one
        sent to them (signed, unexpired), and the page still shown where they are now."""
        good = self.sign(room_id, pid, evidence_id, page, int(exp)) \
            if exp.isascii() and exp.isdigit() and len(exp) <= 12 else ""
        if not good or not hmac.compare_digest(good, sig) or int(exp) < time.time():
            raise Forbidden("This page link is not valid (or has expired).")
        live = self._live_of(room_id, pid)
        show = self.showing_for(live, pid) if live is not None else None
        if show is None or show.evidence_id != evidence_id or show.page != page:
            raise NotFound("This page is not being shown to you.")
        async with self.hub.db.read() as s:
            e = await ev_svc.get_of_case(s, live.case_id, evidence_id)
        p = live.passes[pid]
        return await ev_svc.watermarked_page(self.store, e, page, viewer=p.name, case_number=show.case_number)

    async def uploader(self, token: str | None):
        """Who adds a file: a participant who is in the room now, out of the lobby (checked
        before the body is read)."""
        if not token:
            raise AppError("Send the join link's token in X-Join-Token.", code="token_missing", status=401)
        try:
            async with self.hub.db.read() as s:
                p = await live_svc.check_pass(s, self.hub.settings.secret_key, token, known=True)
        except TokenInvalid as exc:
            raise AppError(exc.message, code=exc.code, status=401) from None
        live = self._live_of(p.room_id, p.participant_id)
        if live is None:
            raise Forbidden("Join the session first.", code="not_joined")
        if not self.admitted(live, p.participant_id):
            raise Forbidden("You can add evidence once the mediator has let you in.", code="in_lobby")
        return live, p.participant_id

    async def upload(self, who, filename: str, data: bytes) -> dict:
        """The file, added through the filing's checks; the mediator is told."""
        live, pid = who
        if self._live_of(live.room.id, pid) is not live or not self.admitted(live, pid):
            raise Forbidden("You are no longer in the room.", code="not_joined")
        async with self.hub.db.session() as s:
            e = await ev_svc.submit_in_session(s, self.store, live.passes[pid], Upload(filename, data),
                                               max_bytes=self.hub.settings.max_evidence_bytes)
            item = ev_svc.view(e)
        await self.tell_reviewers(live, "evidence.submitted", item)
        return item


def install(hub) -> None:
    """Register the evidence events on the hub (called from signaling/server.py)."""
    desk = hub.evidence = Evidence(hub)
    hub.add_event("evidence.list", ListEv, desk.list)
    hub.add_event("evidence.present", PresentEv, desk.present)
    hub.add_event("evidence.page", PageEv, desk.page)
    hub.add_event("evidence.pointer", PointerEv, desk.pointer)
    hub.add_event("evidence.stop", StopEv, desk.stop)
    hub.add_event("evidence.allow", AllowEv, desk.allow)
    hub.add_event("evidence.review", ReviewEv, desk.review)
    hub.on_joined.append(desk.on_joined)
    hub.on_state.append(desk.sync)


__all__ = ["install", "Evidence"]
