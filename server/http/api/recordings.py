"""Recordings of a session: the list with its timeline, file playback, and verification."""
from __future__ import annotations

from aiohttp import web

from server.http.api.base import actor, api, db, settings
from server.http.api.openapi import BINARY
from server.core.errors import NotFound
from server.http.util import path_int, respond
from server.core.policy import require_staff
from server.services import cases as case_svc
from server.services import recordings as rec_svc
from server.services import sessions as session_svc

@api.route("GET", "/sessions/{session_id}/recordings", summary="A session's recordings with its timeline",
           who="staff who may see the case", tag="recordings")
async def list_recordings(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).read() as s:
        return respond(await rec_svc.session_view(s, actor(request), sid))


@api.route("GET", "/recordings/{file_id}/file", summary="One recording file (WebM/Matroska; Range requests work)",
           who="staff who may see the case", tag="recordings",
           produces={"video/webm": BINARY, "video/x-matroska": BINARY})
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
