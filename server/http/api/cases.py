"""Cases (filing, lookup, the institution's decisions, the record, evidence) and their sessions and join links."""

from __future__ import annotations

from urllib.parse import quote, unquote

from aiohttp import BodyPartReader, web

from server.core import serialize as ser
from server.core.errors import AppError, NotFound, Unauthorized, ValidationFailed
from server.http.util import (MAX_JSON_BYTES, json_body, malformed_body, parse_json, path_int, query_page, read_part,
                              readable_body, respond)
from server.core.policy import require_staff
from server.http.util import query_text
from server.core.schemas import AssignIn, CaseIn, CloseIn, InviteIn, RejectIn, SessionIn, TokenIn, TransferIn, WithdrawIn, parse
from server.core.security import TokenInvalid
from server.services.archive import records as archive_svc
from server.services import cases as case_svc
from server.services import sessions as session_svc
from server.services.cases import Upload
from server.core.workflow import STATUSES
from server.http.api.base import actor, api, case_for, db, settings
from server.http.client import caller
from server.http.api.openapi import BINARY

# The filing form as multipart: `case` is CaseIn as JSON, `evidence` the files (docs/api.md).
CASE_FORM = {
    "schema": {"type": "object", "required": ["case"], "properties": {
        "case": {"$ref": "#/components/schemas/CaseIn"},
        "evidence": {"type": "array", "items": BINARY,
                     "description": "up to MAX_EVIDENCE_FILES (5) files of MAX_EVIDENCE_MB (10) each"}}},
    "encoding": {"case": {"contentType": "application/json"},
                 "evidence": {"contentType": ", ".join(case_svc.ALLOWED_EVIDENCE)}},
}


@api.route("POST", "/cases", summary="File a case (JSON, or multipart with a 'case' JSON field and 'evidence' files)",
           who="anyone", body=CaseIn, status=201, consumes={"multipart/form-data": CASE_FORM})
async def file_case(request: web.Request) -> web.Response:
    cfg = settings(request)
    uploads: list[Upload] = []
    if request.content_type == "multipart/form-data":
        raw_case = None
        with readable_body():  # no boundary, a broken part header...: 400 malformed_body
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    raise malformed_body("a nested multipart part")
                if part.name == "case":
                    raw_case = await read_part(part, MAX_JSON_BYTES)
                elif part.name == "evidence":
                    data = await read_part(part, cfg.max_evidence_bytes, refuse=AppError(
                        f"'{part.filename}' is too large.", code="too_large", status=413,
                        fields={"evidence": "file_too_large"}))
                    # Some clients send RFC 5987 names (filename*=utf-8''...), percent-encoded.
                    uploads.append(Upload(unquote(part.filename or "file"), data))
                else:
                    raise ValidationFailed(f"Unexpected form field '{part.name}'.",
                                           fields={part.name or "_": "unexpected"})
        body = parse_json(raw_case, field="case") if raw_case else None
        if body is None:
            raise ValidationFailed("The 'case' field is missing.", fields={"case": "required"})
    else:
        body = await json_body(request)
    data = parse(CaseIn, body)
    async with db(request).session() as s:
        case, code = await case_svc.file_case(s, request.app["evidence_store"], data, uploads,
                                              max_bytes=cfg.max_evidence_bytes, max_files=cfg.max_evidence_files,
                                              caller=caller(request))
    return respond({"case": {"id": case.id, "number": case.number, "status": case.status}, "access_code": code}, 201)


@api.route("GET", "/cases", summary="Cases visible to the caller", who="staff",
           query={"status": "one or more statuses, comma-separated", "q": "number, title or party name",
                  "page": "1-based"})
async def list_cases(request: web.Request) -> web.Response:
    require_staff(actor(request))
    status = request.query.get("status") or None
    if status and any(x not in STATUSES for x in status.split(",")):
        raise ValidationFailed("Unknown status.", fields={"status": f"one of {', '.join(STATUSES)}"})
    q = query_text(request, "q", 100)
    page = query_page(request)
    async with db(request).read() as s:
        rows, total = await case_svc.list_cases(s, actor(request), status=status, q=q, page=page)
    return respond({"cases": [ser.case_summary(c) for c in rows], "total": total, "page": page,
                    "page_size": case_svc.PAGE_SIZE})


@api.route("GET", "/cases/{ref}", summary="One case with its history (applicant: number + X-Access-Code header)",
           who="the applicant, staff who may see the case")
async def get_case(request: web.Request) -> web.Response:
    async with db(request).read() as s:
        case, who = await case_for(request, s, request.match_info["ref"])
        hist = await case_svc.history(s, case.id)
    await archive_svc.log_access(db(request), who, case.id, via="api.case")
    public = not who.is_staff
    return respond({"case": ser.case_full(case, staff=who.is_staff),
                    "history": [ser.audit_entry(e, public=public) for e in hist]})


@api.route("POST", "/cases/{ref}/withdraw", summary="The applicant withdraws the case", who="the applicant",
           body=WithdrawIn)
async def withdraw(request: web.Request) -> web.Response:
    if request.headers.get("X-Access-Code") is None:
        raise Unauthorized("Send the case's access code in X-Access-Code.")
    data = parse(WithdrawIn, await json_body(request))
    async with db(request).session() as s:
        case, who = await case_for(request, s, request.match_info["ref"])
        case = await case_svc.withdraw(s, who, case.id, data)
    return respond({"case": ser.case_summary(case)})


def _decision(action, model=None, summary="", who="intake of the case's institution, admin"):
    async def handler(request: web.Request) -> web.Response:
        require_staff(actor(request))
        case_id = path_int(request, "case_id")
        args = [parse(model, await json_body(request))] if model else []
        async with db(request).session() as s:
            case = await action(s, actor(request), case_id, *args)
        return respond({"case": ser.case_summary(case)})
    return handler


for _name, _fn, _model, _summary, _who in [
    ("accept", case_svc.accept, None, "Accept a filed or transferred case", None),
    ("reject", case_svc.reject, RejectIn, "Reject a case with a reason", None),
    ("transfer", case_svc.transfer, TransferIn, "Transfer (分流) a case to another institution", None),
    ("assign", case_svc.assign, AssignIn, "Assign (or reassign) a mediator", None),
    ("archive", case_svc.archive, None, "Archive a concluded case", None),
    ("close", case_svc.close, CloseIn, "Conclude mediation as settled or failed", "the case's mediator"),
]:
    api.route("POST", "/cases/{case_id}/" + _name, summary=_summary, body=_model,
              who=_who or "intake of the case's institution, admin")(_decision(_fn, _model))


@api.route("GET", "/cases/{case_id}/record",
           summary="Full record: case, timeline, sessions (invitations, their events, chat transcript), recordings, "
                   "outcome, and the archive access log; a clerk's or admin's reading is logged (case.viewed)",
           who="admin, clerk, intake of the institution, the case's mediator")
async def record(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    async with db(request).read() as s:
        body = await archive_svc.case_record(s, actor(request), case_id)
    await archive_svc.log_access(db(request), actor(request), case_id, via="api.record")
    return respond(body)


@api.route("GET", "/cases/{case_id}/evidence/{evidence_id}", summary="Download an evidence file",
           who="staff who may see the case", produces={ct: BINARY for ct in case_svc.ALLOWED_EVIDENCE})
async def evidence_file(request: web.Request) -> web.StreamResponse:
    require_staff(actor(request))
    case_id, eid = path_int(request, "case_id"), path_int(request, "evidence_id")
    async with db(request).read() as s:
        case = await case_svc.view(s, actor(request), case_id)
    ev = next((e for e in case.evidence if e.id == eid), None)
    if ev is None:
        raise NotFound("No such evidence file.")
    data = await request.app["evidence_store"].get(ev.storage_key)
    await archive_svc.log_access(db(request), actor(request), case_id, via="api.evidence", evidence_id=eid)
    return web.Response(body=data, content_type=ev.content_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(ev.filename)}",
        "X-Content-SHA256": ev.sha256})


# --- sessions and join links ----------------------------------------------------------------------

@api.route("POST", "/cases/{case_id}/sessions", summary="Open a mediation session", who="the case's mediator",
           body=SessionIn, status=201, tag="sessions")
async def open_session(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    data = parse(SessionIn, await json_body(request))
    async with db(request).session() as s:
        sess = await session_svc.open_session(s, actor(request), case_id, data)
    return respond({"session": ser.session(sess)}, 201)


@api.route("GET", "/sessions/{session_id}", summary="One session with its invitations",
           who="staff who may see the case", tag="sessions")
async def get_session(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).read() as s:
        sess = await session_svc.get_session(s, sid)
        await case_svc.view(s, actor(request), sess.case_id)
        invites = await session_svc.invite_views(s, await session_svc.list_invites(s, sid))
    await archive_svc.log_access(db(request), actor(request), sess.case_id, via="api.session", session_id=sid)
    return respond({"session": {**ser.session(sess), "invites": invites}})


@api.route("POST", "/sessions/{session_id}/invites", summary="Create a join link", who="the case's mediator",
           body=InviteIn, status=201, tag="sessions")
async def create_invite(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    data = parse(InviteIn, await json_body(request))
    cfg = settings(request)
    async with db(request).session() as s:
        invite, token = await session_svc.create_invite(s, actor(request), sid, data, secret=cfg.secret_key,
                                                        default_seconds=cfg.join_token_default_seconds)
        [view] = await session_svc.invite_views(s, [invite])
    return respond({"url": f"{cfg.public_url}/join/{token}", "token": token,
                    "expires_at": ser.iso(invite.expires_at), "invite": view}, 201)


@api.route("POST", "/sessions/{session_id}/invites/{invite_id}/revoke", summary="Withdraw a join link",
           who="the case's mediator", tag="sessions")
async def revoke_invite(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid, iid = path_int(request, "session_id"), path_int(request, "invite_id")
    async with db(request).session() as s:
        invite = await session_svc.revoke_invite(s, actor(request), sid, iid)
    return respond({"invite": ser.invite(invite)})


@api.route("POST", "/sessions/{session_id}/end", summary="End the session", who="the case's mediator",
           tag="sessions")
async def end_session(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).session() as s:
        sess = await session_svc.end_session(s, actor(request), sid)
    return respond({"session": ser.session(sess)})


@api.route("POST", "/join-tokens/verify", summary="Check a join token: signature, expiry, revocation, session state",
           who="anyone", body=TokenIn, tag="sessions")
async def verify_token(request: web.Request) -> web.Response:
    data = parse(TokenIn, await json_body(request))
    async with db(request).read() as s:
        try:
            claims, invite, sess = await session_svc.verify_join_token(s, settings(request).secret_key, data.token)
        except TokenInvalid as exc:
            return respond({"valid": False, "error": {"code": exc.code, "message": exc.message}})
    return respond({"valid": True, "session_id": sess.id, "room_id": sess.room_id, "role": claims["role"],
                    "name": claims["name"], "participant": claims["sub"], "grants": claims["grants"],
                    "expires_at": claims["exp"]})
