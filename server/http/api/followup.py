"""After the agreement (docs/procedure.md, "After the agreement"): obligations and the parties' reports,
follow-up and review tasks, satisfaction ratings, the enforcement application.

Parties authenticate as for the agreement (server/http/api/outcome.py): `X-Party-Token`, or the
applicant's `X-Case-Number` + `X-Access-Code`. The rules are in server/services/outcome/
(performance.py, followup.py, satisfaction.py, enforcement.py); these handlers parse and call them.
Imported by server/http/api/routes.py, which lists every route module.
"""
from __future__ import annotations

from aiohttp import web

from server.core.errors import AppError, ValidationFailed
from server.core.policy import require_staff
from server.core.schemas import check_text, parse
from server.http.api.base import actor, api, db, settings
from server.http.api.openapi import BINARY
from server.http.api.outcome import PARTY, party_from_headers, runtime
from server.http.util import json_body, path_int, respond
from server.services import cases as case_svc
from server.services.outcome import court as court_svc
from server.services.outcome import enforcement
from server.services.outcome import followup, performance, review, satisfaction


# --- staff ---------------------------------------------------------------------------------------------------

@api.route("GET", "/cases/{case_id}/obligations", summary="The agreement's watched obligations: who owes what by "
           "when, the state (running, due_soon, overdue, claimed, performed, not_performed, disputed, withdrawn) "
           "and every party's reports", who="staff who may see the case", tag="followup")
async def case_obligations(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    async with db(request).read() as s:
        rows = await performance.staff_list(s, actor(request), case_id)
    return respond({"obligations": rows})


@api.route("PATCH", "/cases/{case_id}/obligations/{obligation_id}", summary="Correct a watched term before anyone "
           "reported on it: the obliged party, the last day, or withdraw it (no obligation)",
           who="the case's mediator", body=performance.ObligationPatch, tag="followup")
async def correct_obligation(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id, oid = path_int(request, "case_id"), path_int(request, "obligation_id")
    data = parse(performance.ObligationPatch, await json_body(request))
    async with db(request).session() as s:
        ob = await performance.correct(s, actor(request), case_id, oid, data)
        case = await case_svc.get_case(s, case_id)
        out = performance.view(ob, case, (await performance.reports_for(s, [ob.id])).get(ob.id, []))
    return respond({"obligation": out})


@api.route("GET", "/cases/{case_id}/followups", summary="After the case: its follow-up and review tasks (with their "
           "state) and the parties' satisfaction ratings", who="staff who may see the case", tag="followup")
async def case_followups(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    async with db(request).read() as s:
        case = await case_svc.view(s, actor(request), case_id)
        tasks = await followup.case_views(s, case, actor=actor(request))
        ratings = await satisfaction.case_views(s, case)
    return respond({"tasks": tasks, "ratings": ratings})


@api.route("GET", "/followups", summary="Follow-up (回访) and review tasks of the cases visible to the caller, "
           "soonest due first (status=open by default, done, or all)", who="staff", query={
               "status": "open (default), done or all"}, tag="followup")
async def followups(request: web.Request) -> web.Response:
    require_staff(actor(request))
    status = request.query.get("status", "open")
    if status not in ("open", "done", "all"):
        raise ValidationFailed("status is open, done or all.", fields={"status": "open, done or all"})
    async with db(request).read() as s:
        rows = await followup.list_for(s, actor(request), status=None if status == "all" else status)
    return respond({"tasks": rows})


@api.route("POST", "/followups/{task_id}/complete", summary="Record a task's outcome: a follow-up (reached, performed, "
           "new_dispute, unreachable) by the case's mediator, a review of a poor rating (resolved, explained, "
           "unfounded) by intake of the institution or an admin; meets its deadline",
           who="the case's mediator (follow-up), intake of the institution or admin (review)",
           body=followup.TaskDoneIn, tag="followup")
async def complete_task(request: web.Request) -> web.Response:
    require_staff(actor(request))
    task_id = path_int(request, "task_id")
    data = parse(followup.TaskDoneIn, await json_body(request))
    async with db(request).session() as s:
        task = await followup.complete(s, actor(request), task_id, data)
        case = await case_svc.get_case(s, task.case_id)
        out = followup.view(task, case, {})
    return respond({"task": out})


# --- parties -------------------------------------------------------------------------------------------------

@api.route("GET", "/party/obligations", summary="The obligations of one's case, with one's own reports and what one "
           "may still report", who=PARTY, tag="followup")
async def party_obligations(request: web.Request) -> web.Response:
    async with db(request).read() as s:
        case, who = await party_from_headers(request, s)
        rows = await performance.case_views(s, case, me=who.party_id)
    return respond({"obligations": rows, "me": {"party_id": who.party_id, "name": who.name}})


@api.route("POST", "/party/obligations/{obligation_id}/report", summary="Report an obligation of one's case as "
           "performed (any time) or not performed (after its last day); the latest report of each party counts",
           who=PARTY, body=performance.ReportIn, status=201, tag="followup")
async def party_report(request: web.Request) -> web.Response:
    oid = path_int(request, "obligation_id")
    data = parse(performance.ReportIn, await json_body(request))
    async with db(request).session() as s:
        case, who = await party_from_headers(request, s, touch=True)
        ob = await performance.report(s, who, oid, data)
        out = performance.view(ob, case, (await performance.reports_for(s, [ob.id])).get(ob.id, []),
                               me=who.party_id)
    return respond({"obligation": out}, 201)


@api.route("GET", "/party/rating", summary="Whether one may still rate the service (好差评) and one's rating",
           who=PARTY, tag="followup")
async def party_rating(request: web.Request) -> web.Response:
    async with db(request).read() as s:
        case, who = await party_from_headers(request, s)
        out = await satisfaction.party_view(s, case, who.party_id)
    return respond(out)


@api.route("POST", "/party/rating", summary="Rate the service once per matter: level 5 (very satisfied) to 1 (very "
           "dissatisfied), optional comment; 2 and 1 open a review task for the institution", who=PARTY,
           body=satisfaction.RatingIn, status=201, tag="followup")
async def party_rate(request: web.Request) -> web.Response:
    data = parse(satisfaction.RatingIn, await json_body(request))
    async with db(request).session() as s:
        case, who = await party_from_headers(request, s, touch=True)
        r = await satisfaction.rate(s, who, data)
        out = satisfaction.view(r, {who.party_id: who.name})
    return respond({"rating": out}, 201)


@api.route("POST", "/party/enforcement", summary="One click when an obligation of a confirmed agreement was not "
           "performed: apply for enforcement (申请强制执行) at the court that confirmed it; the package (application, "
           "agreement, confirmation ruling or answer, non-performance report) goes through the court outbox",
           who=PARTY, body=enforcement.EnforcementIn, status=201, tag="court")
async def party_enforcement(request: web.Request) -> web.Response:
    data = parse(enforcement.EnforcementIn, await json_body(request))
    rt = runtime(request)
    async with db(request).session() as s:
        case, who = await party_from_headers(request, s, touch=True)
        sub = await enforcement.apply(s, rt.cfg, rt.sign_ctx(), who, case.id, data)
        out = court_svc.submission_view(sub, None, case)
    return respond({"submission": out}, 201)


# --- the court -----------------------------------------------------------------------------------------------

@api.route("POST", "/court/callback/ruling", summary="The court's ruling (裁定书, the PDF itself as the body, "
           "application/pdf) on a judicial confirmation it has decided: stored with the case and its SHA-256 in the "
           "audit chain; X-Court-Signature: sha256=<HMAC-SHA256 of the submission key, a line feed and the body> "
           "(COURT_CALLBACK_SECRET); the same file again changes nothing", who="the court",
           query={"submission": "the submission key", "judge": "the judge's name (optional)"}, tag="court",
           consumes={"application/pdf": BINARY})
async def court_ruling(request: web.Request) -> web.Response:
    key = check_text(request.query.get("submission", ""), "submission")
    judge = check_text(request.query.get("judge", ""), "judge")
    if not 8 <= len(key) <= 64 or len(judge) > 100:
        raise ValidationFailed("Give the submission key (and at most 100 characters of the judge's name).",
                               fields={"submission" if not 8 <= len(key) <= 64 else "judge": "invalid"})
    data = await request.content.read(court_svc.MAX_RULING_BYTES + 1)
    if len(data) > court_svc.MAX_RULING_BYTES:
        raise AppError("The ruling is too large.", code="too_large", status=413)
    rt = runtime(request)
    court_svc.check_ruling_signature(rt.cfg, key, data, request.headers.get("X-Court-Signature"))
    if request.content_type != "application/pdf":
        raise AppError("Send the ruling itself as the body (Content-Type: application/pdf).",
                       code="unsupported_media_type", status=415)
    async with db(request).session() as s:
        sub = await court_svc.attach_ruling(s, rt.store, key, data, judge)
        out = court_svc.submission_view(sub)
    return respond({"submission": out})


@api.route("POST", "/court/callback/review", summary="The court asks for an online review session (司法确认在线审查) "
           "of a judicial-confirmation application it received and has not decided: a session of the case at "
           "starts_at; the parties get their links through the notification outbox, the judge's observer link "
           "(judge_url) is in the answer; body signed like /court/callback (X-Court-Signature: sha256=<HMAC-SHA256 "
           "of the body>); refused: not_pending, review_open (one open review per application), a time in the past",
           who="the court", body=review.ReviewIn, status=201, tag="court")
async def court_review(request: web.Request) -> web.Response:
    raw = await request.read()
    if len(raw) > 64 * 1024:
        raise AppError("The request body is too large.", code="too_large", status=413)
    court_svc.check_callback_signature(runtime(request).cfg, raw, request.headers.get("X-Court-Signature"))
    data = parse(review.ReviewIn, await json_body(request))
    async with db(request).session() as s:
        opened = await review.open_review(s, data, settings=settings(request))
        case = await case_svc.get_case(s, opened.review.case_id)
        view = next(v for v in await review.case_views(s, case) if v["id"] == opened.review.id)
    return respond({"review": view, "judge_url": opened.judge_url, "judge_token": opened.judge_token,
                    "judge_expires_at": opened.judge_invite.expires_at.isoformat()}, 201)
