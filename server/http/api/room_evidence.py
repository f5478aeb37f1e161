"""Evidence in the live room over HTTP: a participant adds a file during the session (a phone
photo, say), and each viewer fetches their own watermarked copy of the page presented in their
area. The caller is a participant of the live session: the join link's token (`X-Join-Token`)
for the upload, the signed URL the room sent them (`evidence.shown`) for a page. The rules are
in signaling/evidence_events.py and server/services/evidence.py; docs/protocol.md, "Evidence".
Imported by server/http/api/routes.py, which lists every route module.
"""
from __future__ import annotations

from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from server.core.errors import AppError, NotFound, ValidationFailed
from server.http.api.base import api, settings
from server.http.api.openapi import BINARY
from server.http.util import malformed_body, path_int, read_part, readable_body, respond
from server.services import cases as case_svc

UPLOAD_FORM = {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {**BINARY, "description": "one file of at most MAX_EVIDENCE_MB (10): an image or PDF (or audio, "
                                           "MP4, as at filing), its type sniffed from its content"}}},
    "encoding": {"file": {"contentType": ", ".join(case_svc.ALLOWED_EVIDENCE)}},
}


def _desk(request: web.Request):
    hub = request.app.get("hub")
    if hub is None or getattr(hub, "evidence", None) is None:
        raise NotFound("The live room is not available here.")
    return hub.evidence


@api.route("POST", "/room/evidence", summary="Add a file to the case's evidence during the live session "
           "(multipart, one 'file' part): the filing's checks (type by content, size, SHA-256), marked as "
           "submitted in this session, waiting for the mediator's review; answers the item (201)",
           who="a participant in the live session, out of the lobby (X-Join-Token)", tag="room", public=True,
           status=201, consumes={"multipart/form-data": UPLOAD_FORM})
async def add_evidence(request: web.Request) -> web.Response:
    desk = _desk(request)
    who = await desk.uploader(request.headers.get("X-Join-Token"))
    if request.content_type != "multipart/form-data":
        raise ValidationFailed("Send the file as multipart/form-data, in a part named 'file'.",
                               fields={"file": "required"})
    upload = None
    with readable_body():
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise malformed_body("a nested multipart part")
            if part.name != "file" or upload is not None:
                raise ValidationFailed(f"Unexpected form field '{part.name}'.", fields={part.name or "_": "unexpected"})
            data = await read_part(part, settings(request).max_evidence_bytes, refuse=AppError(
                f"'{part.filename}' is too large.", code="too_large", status=413, fields={"file": "file_too_large"}))
            upload = (unquote(part.filename or "file"), data)
    if upload is None:
        raise ValidationFailed("The 'file' part is missing.", fields={"file": "required"})
    item = await desk.upload(who, *upload)
    return respond({"evidence": item}, 201)


@api.route("GET", "/room/evidence/{evidence_id}/pages/{page}", summary="The viewer's own watermarked copy of the "
           "page presented in their area (JPEG, never cached); 403 for a bad or expired link, 404 once it is not "
           "shown to them", who="the participant the signed URL of `evidence.shown` was made for, while in that "
           "area", tag="room", public=True, query={"room": "room id", "pid": "participant id", "exp": "expiry",
                                                   "sig": "signature"},
           produces={"image/jpeg": BINARY})
async def evidence_page(request: web.Request) -> web.Response:
    desk = _desk(request)
    q = request.query
    page = path_int(request, "page")
    body = await desk.page_image(room_id=q.get("room", ""), pid=q.get("pid", ""),
                                 evidence_id=path_int(request, "evidence_id"), page=page,
                                 exp=q.get("exp", ""), sig=q.get("sig", ""))
    return web.Response(body=body, content_type="image/jpeg",
                        headers={"Cache-Control": "private, no-store", "X-Robots-Tag": "noindex"})
