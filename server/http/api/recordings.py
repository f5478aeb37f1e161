"""Recordings of a session: the list with its timeline, file playback, and verification."""
from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from server.http.api.base import actor, api, db, settings
from server.core.errors import NotFound
from server.http.util import path_int, respond
from server.core.models import AuditEntry
from server.core.policy import require_staff
from server.services import cases as case_svc
from server.services import recordings as rec_svc
from server.services import sessions as session_svc
from server.core import serialize as ser

TIMELINE = ("participant.joined", "participant.left", "participant.admitted", "participant.moved",
            "participant.removed", "participant.denied", "recording.requested", "recording.consent",
            "recording.refused", "recording.started", "recording.stopped", "recording.interrupted",
            "recording.caucus", "caucus.created", "caucus.closed", "session.ended", "session.interrupted")


async def session_recordings(s, who, session_id: int) -> dict:
    sess = await session_svc.get_session(s, session_id)
    case = await case_svc.view(s, who, sess.case_id)
    runs = [rec_svc.run_json(run, files) for run, files in await rec_svc.runs_of(s, sess.id)]
    events = (await s.execute(select(AuditEntry).where(AuditEntry.session_id == sess.id,
                                                       AuditEntry.action.in_(TIMELINE))
                              .order_by(AuditEntry.seq))).scalars().all()
    return {"session": ser.session(sess), "case": {"id": case.id, "number": case.number, "title": case.title},
            "runs": runs, "timeline": [ser.audit_entry(e) for e in events]}


@api.route("GET", "/sessions/{session_id}/recordings", summary="A session's recordings with its timeline",
           who="staff who may see the case", tag="recordings")
async def list_recordings(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).read() as s:
        return respond(await session_recordings(s, actor(request), sid))


@api.route("GET", "/recordings/{file_id}/file", summary="One recording file (WebM/Matroska; Range requests work)",
           who="staff who may see the case", tag="recordings")
async def recording_file(request: web.Request) -> web.StreamResponse:
    require_staff(actor(request))
    fid = path_int(request, "file_id")
    async with db(request).read() as s:
        row = await rec_svc.file_row(s, fid)
        sess = await session_svc.get_session(s, row.session_id)
        await case_svc.view(s, actor(request), sess.case_id)
    path = rec_svc.store_for(settings(request)).path(row.key)
    if not path.exists():
        raise NotFound("The recording file is missing from storage.")
    content_type = "video/webm" if row.container == "webm" else "video/x-matroska"
    return web.FileResponse(path, headers={"Content-Type": content_type, "X-Content-SHA256": row.sha256,
                                           "Cache-Control": "private, max-age=3600"})


@api.route("POST", "/sessions/{session_id}/recordings/verify",
           summary="Recheck every recording file's hash and the manifests' signatures",
           who="staff who may see the case", tag="recordings")
async def verify_recordings(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).read() as s:
        sess = await session_svc.get_session(s, sid)
        await case_svc.view(s, actor(request), sess.case_id)
        problems = await rec_svc.verify_session(s, settings(request), sid)
    return respond({"ok": not problems, "problems": problems})
