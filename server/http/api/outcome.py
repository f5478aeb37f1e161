"""Outcome routes on the shared `api` registry: agreements, signatures, verification, court hand-off.

Parties authenticate with their personal link's token (`X-Party-Token`), or, for the applicant,
with the case number and access code (`X-Case-Number`, `X-Access-Code`, optionally `X-Phone`).
The proof names the party; nothing in a body can name another one.
Imported by server/http/api/routes.py, which lists every route module.
"""
from __future__ import annotations

import hashlib
from urllib.parse import quote

from aiohttp import web

from server.http.api.base import actor, api, db, settings
from server.http.client import caller
from server.http.api.openapi import BINARY
from server.core.errors import AppError, NotFound, Unauthorized, ValidationFailed
from server.http.util import json_body, path_int, respond
from server.core.policy import require_staff
from server.core.schemas import parse
from server.services.outcome import agreements as agr
from server.services import cases as case_svc
from server.services.outcome import court as court_svc
from server.services.outcome import review as review_svc

MAX_PDF_BYTES = 20 * 1024 * 1024
PDF = {"application/pdf": BINARY}
PARTY = "a party: X-Party-Token (personal link) or the applicant's X-Case-Number + X-Access-Code"


def runtime(request) -> court_svc.OutcomeRuntime:
    """The outcome runtime of the app's system (server/system.py): configuration, seal, court outbox."""
    return request.app["system"].outcome


def client_meta(request) -> dict:
    return {"ip": request.remote or "", "user_agent": request.headers.get("User-Agent", "")}


async def party_from_headers(request, s, *, touch: bool = False):
    token = request.headers.get("X-Party-Token")
    if token:
        return await agr.resolve_link(s, token, touch=touch)
    number, code = request.headers.get("X-Case-Number"), request.headers.get("X-Access-Code")
    if number and code:
        who = await case_svc.applicant_login(s, number, code, request.headers.get("X-Phone"), caller=caller(request))
        case = await case_svc.get_case(s, who.applicant_case_id)
        return case, agr.actor_party(who, case)
    raise Unauthorized("Send your personal link's token in X-Party-Token, or the case number and access code.")


async def agreement_body(s, case, ag, *, staff: bool) -> dict:
    sigs = await agr.signatures(s, ag.id) if ag is not None else []
    body = {"agreement": agr.view(ag, case, sigs, staff=staff) if ag is not None else None}
    if ag is not None:
        body["comments"] = [agr.comment_view(c) for c in await agr.comments(s, ag.id)]
    return body


# --- the mediator and staff ------------------------------------------------------------------------------

@api.route("GET", "/cases/{case_id}/agreement", summary="The case's settlement agreement: text, signers, comments, "
           "templates by category, court submissions", who="staff who may see the case", tag="outcome")
async def get_agreement(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    async with db(request).read() as s:
        case, ag = await agr.staff_view(s, actor(request), case_id)
        body = await agreement_body(s, case, ag, staff=True)
        body["templates"] = {k: agr.template_terms(case, k) for k in agr.TEMPLATES}
        body["submissions"] = [court_svc.submission_view(x, m, case) for x, m in
                               await court_svc.list_submissions(s, case.id)]
    return respond(body)


@api.route("PUT", "/cases/{case_id}/agreement", summary="Create or change the draft (template by category, facts, "
           "terms, performance deadline); refused with 409 agreement_final once finalised; live-room participants "
           "get agreement.draft", who="the case's mediator", body=agr.DraftIn, tag="outcome")
async def put_agreement(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    data = parse(agr.DraftIn, await json_body(request))
    async with db(request).session() as s:
        ag = await agr.save_draft(s, actor(request), case_id, data)
        case = await case_svc.get_case(s, case_id)
        body = {"agreement": agr.view(ag, case, [])}
    return respond(body)


@api.route("POST", "/cases/{case_id}/agreement/finalise", summary="Fix the text: its SHA-256 is set and edits are "
           "refused from now on", who="the case's mediator", body=agr.FinaliseIn, tag="outcome")
async def finalise_agreement(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    data = parse(agr.FinaliseIn, await json_body(request))
    async with db(request).session() as s:
        ag = await agr.finalise(s, actor(request), case_id, data)
        case = await case_svc.get_case(s, case_id)
        body = {"agreement": agr.view(ag, case, [])}
    return respond(body)


@api.route("POST", "/cases/{case_id}/agreement/links", summary="A party's personal link (sign, confirm the court "
           "application, ask for a filing); may record the party's ID number; replaces the party's earlier link",
           who="the case's mediator", body=agr.LinkIn, status=201, tag="outcome")
async def party_link(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    data = parse(agr.LinkIn, await json_body(request))
    async with db(request).session() as s:
        link, token, party = await agr.issue_link(s, actor(request), case_id, data)
    url = f"{settings(request).public_url}/outcome/p/{token}"
    return respond({"url": url, "token": token, "expires_at": link.expires_at.isoformat(),
                    "party": {"id": party.id, "name": party.name, "side": party.side}}, 201)


@api.route("POST", "/cases/{case_id}/agreement/sign", summary="The mediator signs the final text (PNG signature as a "
           "data URL, and the text_sha256 reviewed); the last signature puts the agreement into effect",
           who="the case's mediator", body=agr.SignIn, tag="outcome")
async def mediator_sign(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    data = parse(agr.SignIn, await json_body(request))
    rt = runtime(request)
    async with db(request).session() as s:
        ag, sig, effective = await agr.sign_as_mediator(s, rt.sign_ctx(), actor(request), case_id, data,
                                                        **client_meta(request))
        case = await case_svc.get_case(s, case_id)
        body = {"agreement": agr.view(ag, case, await agr.signatures(s, ag.id)), "effective": effective}
    return respond(body)


@api.route("GET", "/cases/{case_id}/agreement/pdf", summary="The signed agreement PDF (X-Content-SHA256 is its "
           "recorded hash)", who="staff who may see the case", tag="outcome", produces=PDF)
async def agreement_pdf(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    async with db(request).read() as s:
        case, ag = await agr.staff_view(s, actor(request), case_id)
    if ag is None:
        raise NotFound("There is no agreement.")
    return pdf_response(await agr.read_pdf(runtime(request).store, ag), case.number, ag.pdf_sha256)


def pdf_response(data: bytes, number: str, digest: str | None) -> web.Response:
    name = f"{number}-调解协议书.pdf"
    return web.Response(body=data, content_type="application/pdf", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}", "X-Content-SHA256": digest or "",
        "Cache-Control": "no-store"})


async def verify_bytes(request, data: bytes) -> dict:
    """Signature check with pyHanko, and whether the file is the one recorded with a case."""
    from server.infra import pdf
    rt = runtime(request)
    digest = hashlib.sha256(data).hexdigest()
    check = await pdf.verify(data, rt.identity().trust_roots)
    async with db(request).read() as s:
        found = await agr.find_by_pdf_hash(s, digest)
        record = None
        if found is not None:
            ag, case = found
            record = {"case_id": case.id, "case_number": case.number, "agreement_id": ag.id,
                      "effective_at": ag.effective_at.isoformat() if ag.effective_at else None,
                      "text_sha256": ag.text_sha256, "pdf_sha256": ag.pdf_sha256}
    claimed = check.keyword("case")
    return {"ok": check.ok and record is not None, "sha256": digest, "size": len(data),
            "signature": check.to_json(), "matches_record": record is not None, "record": record,
            "claims_case": claimed}


@api.route("POST", "/agreements/verify", summary="Check a PDF (request body: the file, application/pdf): its PAdES "
           "signature and whether it is exactly the signed agreement recorded with a case", who="staff",
           tag="outcome", consumes={"application/pdf": BINARY, "application/octet-stream": BINARY})
async def verify(request: web.Request) -> web.Response:
    require_staff(actor(request))
    if request.content_type not in ("application/pdf", "application/octet-stream"):
        raise AppError("Send the PDF itself as the body (Content-Type: application/pdf).",
                       code="unsupported_media_type", status=415)
    data = await request.content.read(MAX_PDF_BYTES + 1)
    if len(data) > MAX_PDF_BYTES:
        raise AppError("The file is too large.", code="too_large", status=413)
    if not data:
        raise ValidationFailed("The file is empty.", fields={"file": "empty"})
    return respond(await verify_bytes(request, data))


@api.route("POST", "/cases/{case_id}/confirmation", summary="Prepare (or change the court of) the joint application "
           "for judicial confirmation; every party then confirms it", who="the case's mediator",
           body=court_svc.ConfirmationIn, tag="court")
async def mediator_confirmation(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    data = parse(court_svc.ConfirmationIn, await json_body(request))
    rt = runtime(request)
    async with db(request).session() as s:
        sub = await court_svc.start_confirmation(s, rt.cfg, rt.sign_ctx(), actor(request), case_id, data)
        case = await case_svc.get_case(s, case_id)
        body = {"submission": court_svc.submission_view(sub, None, case)}
    return respond(body)


@api.route("GET", "/cases/{case_id}/submissions", summary="Court submissions of the case with their delivery state, "
           "and the court's online review sessions (reviews)",
           who="staff who may see the case", tag="court")
async def submissions(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    async with db(request).read() as s:
        case = await case_svc.view(s, actor(request), case_id)
        rows = [court_svc.submission_view(x, m, case) for x, m in await court_svc.list_submissions(s, case.id)]
        reviews = await review_svc.case_views(s, case)
    return respond({"submissions": rows, "reviews": reviews})


@api.route("POST", "/cases/{case_id}/submissions/{submission_id}/retry", summary="Try the delivery again now",
           who="the case's mediator", tag="court")
async def retry(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id, sid = path_int(request, "case_id"), path_int(request, "submission_id")
    async with db(request).session() as s:
        sub = await court_svc.retry_now(s, actor(request), case_id, sid)
        body = {"submission": court_svc.submission_view(sub)}
    return respond(body)


@api.route("GET", "/courts", summary="Courts that take applications (configurable: COURTS)", who="anyone", tag="court")
async def courts(request: web.Request) -> web.Response:
    return respond({"courts": runtime(request).cfg.courts, "bases": list(court_svc.BASES)})


@api.route("POST", "/court/callback", summary="The court's answer (accepted, confirmed, rejected, filed) for a "
           "submission key; body signed with HMAC-SHA256 (COURT_CALLBACK_SECRET) in X-Court-Signature: sha256=<hex>",
           who="the court", body=court_svc.CallbackIn, tag="court")
async def court_callback(request: web.Request) -> web.Response:
    raw = await request.read()
    if len(raw) > 64 * 1024:
        raise AppError("The request body is too large.", code="too_large", status=413)
    court_svc.check_callback_signature(runtime(request).cfg, raw, request.headers.get("X-Court-Signature"))
    body = await json_body(request)
    data = parse(court_svc.CallbackIn, body)
    async with db(request).session() as s:
        sub = await court_svc.record_answer(s, data)
        out = {"submission": court_svc.submission_view(sub)}
    return respond(out)


# --- parties ---------------------------------------------------------------------------------------------

@api.route("GET", "/party/agreement", summary="The agreement as a party sees it, and whether they still sign "
           "(id_required: give the last 6 of the ID number)", who=PARTY, tag="outcome")
async def party_agreement(request: web.Request) -> web.Response:
    async with db(request).read() as s:
        case, who = await party_from_headers(request, s)
        ag = await agr.get_for_case(s, case.id)
        body = await agreement_body(s, case, ag, staff=False)
        party = next(p for p in case.parties if p.id == who.party_id)
    body["me"] = {"party_id": who.party_id, "name": who.name, "side": who.side, "via": who.via,
                  "id_required": bool(party.id_number)}
    body["case"] = {"id": case.id, "number": case.number, "status": case.status, "title": case.title}
    return respond(body)


@api.route("POST", "/party/agreement/sign", summary="Sign the final text as oneself (PNG signature, text_sha256, "
           "id_last6 when an ID number is on file)", who=PARTY, body=agr.SignIn, tag="outcome")
async def party_sign(request: web.Request) -> web.Response:
    data = parse(agr.SignIn, await json_body(request))
    rt = runtime(request)
    async with db(request).session() as s:
        case, who = await party_from_headers(request, s, touch=True)
        ag, sig, effective = await agr.sign_as_party(s, rt.sign_ctx(), who, data, **client_meta(request))
        body = {"agreement": agr.view(ag, case, await agr.signatures(s, ag.id), staff=False), "effective": effective}
    return respond(body)


@api.route("POST", "/party/agreement/comments", summary="Comment on the draft", who=PARTY, body=agr.CommentIn,
           status=201, tag="outcome")
async def party_comment(request: web.Request) -> web.Response:
    data = parse(agr.CommentIn, await json_body(request))
    async with db(request).session() as s:
        case, who = await party_from_headers(request, s)
        _ag, c = await agr.add_comment(s, case.id, agr.CommentAuthor("party", str(who.party_id), who.name, "party",
                                                                    "portal"), data.text)
        body = {"comment": agr.comment_view(c)}
    return respond(body, 201)


@api.route("GET", "/party/agreement/pdf", summary="The signed agreement PDF", who=PARTY, tag="outcome", produces=PDF)
async def party_pdf(request: web.Request) -> web.Response:
    async with db(request).read() as s:
        case, _who = await party_from_headers(request, s)
        ag = await agr.get_for_case(s, case.id)
    if ag is None:
        raise NotFound("There is no agreement.")
    return pdf_response(await agr.read_pdf(runtime(request).store, ag), case.number, ag.pdf_sha256)


@api.route("GET", "/party/court", summary="Judicial confirmation or filing: status, deadline, court options, the "
           "court's online review sessions (reviews)",
           who=PARTY, tag="court")
async def party_court(request: web.Request) -> web.Response:
    rt = runtime(request)
    async with db(request).read() as s:
        case, who = await party_from_headers(request, s)
        ag = await agr.get_for_case(s, case.id)
        subs = [court_svc.submission_view(x, m, case) for x, m in await court_svc.list_submissions(s, case.id)]
        reviews = await review_svc.case_views(s, case)
    return respond({"case": {"number": case.number, "status": case.status}, "reviews": reviews,
                    "deadline": ag.confirmation_deadline.isoformat() if ag and ag.confirmation_deadline else None,
                    "days_left": court_svc.days_left(ag.confirmation_deadline) if ag else None,
                    "courts": court_svc.court_options(rt.cfg, case), "submissions": subs})


@api.route("POST", "/party/confirmation", summary="Prepare the joint application for judicial confirmation with the "
           "court (and confirm it oneself); within 30 days of the agreement taking effect", who=PARTY,
           body=court_svc.ConfirmationIn, tag="court")
async def party_confirmation(request: web.Request) -> web.Response:
    data = parse(court_svc.ConfirmationIn, await json_body(request))
    rt = runtime(request)
    async with db(request).session() as s:
        case, who = await party_from_headers(request, s)
        sub = await court_svc.start_confirmation(s, rt.cfg, rt.sign_ctx(), who, case.id, data)
        body = {"submission": court_svc.submission_view(sub, None, case)}
    return respond(body)


@api.route("POST", "/party/confirmation/confirm", summary="Confirm the prepared application; the last party's "
           "confirmation sends the package to the court", who=PARTY, tag="court")
async def party_confirm(request: web.Request) -> web.Response:
    rt = runtime(request)
    async with db(request).session() as s:
        case, who = await party_from_headers(request, s)
        sub = await court_svc.confirm_application(s, rt.cfg, rt.sign_ctx(), who, case.id)
        body = {"submission": court_svc.submission_view(sub, None, case)}
    return respond(body)


@api.route("POST", "/party/filing", summary="One click after a failed mediation: ask for a court filing (诉讼立案) "
           "with a draft complaint, the mediation record summary and the parties", who=PARTY,
           body=court_svc.FilingIn, status=201, tag="court")
async def party_filing(request: web.Request) -> web.Response:
    body_in = await json_body(request)
    data = parse(court_svc.FilingIn, body_in)
    rt = runtime(request)
    async with db(request).session() as s:
        case, who = await party_from_headers(request, s)
        sub = await court_svc.request_filing(s, rt.cfg, rt.sign_ctx(), who, case.id, data)
        body = {"submission": court_svc.submission_view(sub, None, case)}
    return respond(body, 201)
