"""Procedure routes (consent, identity codes, conflicts, recusal, deadlines, scheduling, transcript,
notifications), registered on the same `api` registry and so in docs/api.md and the OpenAPI document.

Imported by server/http/api/routes.py, which lists every route module.
"""
from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from server.core import serialize as ser
from server.http.api.base import actor, api, case_for, db, settings
from server.http.client import caller
from server.http.api.openapi import BINARY
from server.core.errors import Unauthorized, ValidationFailed
from server.http.util import json_body, path_int, query_id, respond
from server.core.policy import require_staff
from server.core.schemas import parse
from server.services import cases as case_svc
from server.services.notify import messages as notify
from server.services.procedure import deadlines
from server.services.procedure import rules as procedure
from server.services import sessions as session_svc
from server.services.procedure import transcript as transcript_svc

TAG = "procedure"


def _scheduled(result: procedure.Scheduled) -> dict:
    return {"session": ser.session(result.session),
            "plan": {"starts_at": result.plan.starts_at.isoformat(), "duration_minutes": result.plan.duration_minutes,
                     "revision": result.plan.revision},
            "links": [{"party_id": x.party_id, "name": x.name, "side": x.side, "url": x.url, "token": x.token,
                       "checks_url": x.url + "/checks", "access_code": x.code} for x in result.links]}


# --- rules and deadlines ---------------------------------------------------------------------------------------

@api.route("GET", "/deadlines/rules", summary="The deadline rule table (days, working or calendar days, what starts "
           "and meets each rule, who is reminded)", who="anyone", tag=TAG)
async def deadline_rules(request: web.Request) -> web.Response:
    cal = deadlines.calendar()
    return respond({"rules": deadlines.rules_table(), "holidays": sorted(d.isoformat() for d in cal.holidays),
                    "workdays": sorted(d.isoformat() for d in cal.workdays), "time_zone": str(deadlines.tz())})


@api.route("GET", "/deadlines", summary="Open deadlines of the cases visible to the caller, soonest first, with "
           "their state (running, due_soon, overdue)", who="staff",
           query={"state": "running, due_soon or overdue (comma-separated)"}, tag=TAG)
async def list_deadlines(request: web.Request) -> web.Response:
    require_staff(actor(request))
    raw = request.query.get("state") or ""
    states = set(raw.split(",")) if raw else None
    if states and not states <= {"running", "due_soon", "overdue"}:
        raise ValidationFailed("Unknown state.", fields={"state": "running, due_soon or overdue"})
    async with db(request).read() as s:
        rows = await deadlines.list_for(s, actor(request), states=states)
        items = [{**deadlines.flag(d), "case": {"id": c.id, "number": c.number, "title": c.title, "status": c.status}}
                 for c, d in rows]
    return respond({"deadlines": items})


# --- one case ---------------------------------------------------------------------------------------------------

@api.route("GET", "/cases/{case_id}/procedure", summary="The case's procedure: conflict declaration, each party's "
           "consent to online mediation, recusal requests, deadlines, scheduled sessions",
           who="staff who may see the case", tag=TAG)
async def case_procedure(request: web.Request) -> web.Response:
    require_staff(actor(request))
    async with db(request).read() as s:
        body = await procedure.case_overview(s, actor(request), path_int(request, "case_id"))
    return respond(body)


@api.route("POST", "/cases/{case_id}/conflict", summary="The assigned mediator declares no conflict of interest, "
           "or a conflict, which returns the case to intake for reassignment (case.unassign)",
           who="the case's mediator", body=procedure.ConflictIn, tag=TAG)
async def declare_conflict(request: web.Request) -> web.Response:
    require_staff(actor(request))
    data = parse(procedure.ConflictIn, await json_body(request))
    async with db(request).session() as s:
        out = await procedure.declare_conflict(s, actor(request), path_int(request, "case_id"), data)
        case = await case_svc.get_case(s, out.declaration.case_id)
        body = {"declaration": {"conflict": out.declaration.conflict, "reason": out.declaration.reason},
                "case": ser.case_summary(case)}
    return respond(body)


@api.route("POST", "/cases/{case_id}/parties/{party_id}/consent", summary="Record a party's consent (or refusal) "
           "to online mediation given in writing, by phone or in person", who="the case's mediator",
           body=procedure.StaffConsentIn, status=201, tag=TAG)
async def staff_consent(request: web.Request) -> web.Response:
    require_staff(actor(request))
    data = parse(procedure.StaffConsentIn, await json_body(request))
    async with db(request).session() as s:
        row = await procedure.consent_by_staff(s, actor(request), path_int(request, "case_id"),
                                               path_int(request, "party_id"), data)
    return respond({"consent": {"party_id": row.party_id, "agree": row.agree, "how": row.how}}, 201)


@api.route("POST", "/cases/{case_id}/parties/{party_id}/access-code", summary="Issue a party's personal access "
           "code for identity checks (replaces an earlier one); returned once and sent to the party",
           who="the case's mediator, intake of the institution", status=201, tag=TAG)
async def party_code(request: web.Request) -> web.Response:
    require_staff(actor(request))
    async with db(request).session() as s:
        code = await procedure.issue_party_code_for(s, actor(request), path_int(request, "case_id"),
                                                    path_int(request, "party_id"))
    return respond({"access_code": code}, 201)


@api.route("PUT", "/cases/{case_id}/parties/{party_id}/contact", summary="A party's e-mail, extra phone and "
           "language for notifications (the applicant may set their own with X-Access-Code)",
           who="the case's mediator, intake of the institution, the applicant", body=procedure.ContactIn, tag=TAG)
async def party_contact(request: web.Request) -> web.Response:
    data = parse(procedure.ContactIn, await json_body(request))
    case_id, party_id = path_int(request, "case_id"), path_int(request, "party_id")
    async with db(request).session() as s:
        who = actor(request)
        if request.headers.get("X-Access-Code") is not None and not who.is_staff:
            case = await case_svc.get_case(s, case_id)
            who = await case_svc.applicant_login(s, case.number, request.headers["X-Access-Code"],
                                                 request.headers.get("X-Phone"), caller=caller(request))
        elif not who.is_staff:
            raise Unauthorized("Log in as staff, or send the case's access code in X-Access-Code.")
        row = await procedure.set_party_contact(s, who, case_id, party_id, data)
    return respond({"contact": {"email": row.email, "phone": row.phone, "lang": row.lang}})


@api.route("POST", "/cases/{ref}/consent", summary="The applicant agrees (or not) to mediate online",
           who="the applicant", body=procedure.ConsentIn, status=201, tag=TAG)
async def applicant_consent(request: web.Request) -> web.Response:
    if request.headers.get("X-Access-Code") is None:
        raise Unauthorized("Send the case's access code in X-Access-Code.")
    data = parse(procedure.ConsentIn, await json_body(request))
    async with db(request).session() as s:
        case, who = await case_for(request, s, request.match_info["ref"])
        row = await procedure.consent_by_applicant(s, who, case.id, data.agree, how="api")
    return respond({"consent": {"party_id": row.party_id, "agree": row.agree, "how": row.how}}, 201)


@api.route("POST", "/cases/{ref}/recusal", summary="The applicant asks for a different mediator (回避申请) with a "
           "reason; intake decides", who="the applicant", body=procedure.RecusalIn, status=201, tag=TAG)
async def applicant_recusal(request: web.Request) -> web.Response:
    if request.headers.get("X-Access-Code") is None:
        raise Unauthorized("Send the case's access code in X-Access-Code.")
    data = parse(procedure.RecusalIn, await json_body(request))
    async with db(request).session() as s:
        case, who = await case_for(request, s, request.match_info["ref"])
        row = await procedure.recusal_by_applicant(s, who, case.id, data.reason)
        out = procedure.recusal_json(row)
    return respond({"recusal": out}, 201)


@api.route("GET", "/cases/{ref}/sessions", summary="The applicant's scheduled sessions (time and duration)",
           who="the applicant", tag=TAG)
async def applicant_sessions(request: web.Request) -> web.Response:
    if request.headers.get("X-Access-Code") is None:
        raise Unauthorized("Send the case's access code in X-Access-Code.")
    async with db(request).read() as s:
        case, who = await case_for(request, s, request.match_info["ref"])
        plans = await procedure.plans_for(s, case.id)
        rows = await session_svc.list_sessions(s, case.id)
    out = []
    for x in rows:
        plan = plans.get(x.id)
        out.append({"id": x.id, "status": x.status,
                    "starts_at": ser.iso(plan.starts_at if plan else x.scheduled_at),
                    "duration_minutes": plan.duration_minutes if plan else None})
    return respond({"sessions": out})


# --- recusal decisions --------------------------------------------------------------------------------------------

@api.route("GET", "/recusals", summary="Requests for a different mediator in the caller's cases",
           who="staff", query={"status": "pending, granted or refused", "case_id": "one case"}, tag=TAG)
async def list_recusals(request: web.Request) -> web.Response:
    require_staff(actor(request))
    status = request.query.get("status") or None
    if status and status not in ("pending", "granted", "refused"):
        raise ValidationFailed("Unknown status.", fields={"status": "pending, granted or refused"})
    case_id = query_id(request, "case_id")
    async with db(request).read() as s:
        rows = await procedure.recusals(s, actor(request), case_id=case_id, status=status)
    return respond({"recusals": [procedure.recusal_json(r) for r in rows]})


@api.route("POST", "/recusals/{request_id}/decide", summary="Intake grants (optionally naming the new mediator) or "
           "refuses a recusal request; granting returns the case to intake (case.unassign)",
           who="intake of the case's institution, admin", body=procedure.RecusalDecisionIn, tag=TAG)
async def decide_recusal(request: web.Request) -> web.Response:
    require_staff(actor(request))
    data = parse(procedure.RecusalDecisionIn, await json_body(request))
    async with db(request).session() as s:
        out = await procedure.decide_recusal(s, actor(request), path_int(request, "request_id"), data)
        case = await case_svc.get_case(s, out.request.case_id)
        body = {"recusal": procedure.recusal_json(out.request), "case": ser.case_summary(case)}
    return respond(body)


# --- scheduling -----------------------------------------------------------------------------------------------------

@api.route("POST", "/cases/{case_id}/schedule", summary="Schedule a session (start with its zone, duration): a join "
           "link for every party, an access code for each respondent, notifications with an .ics file, and a "
           "reminder before it", who="the case's mediator (after declaring no conflict)", body=procedure.ScheduleIn,
           status=201, tag=TAG)
async def schedule(request: web.Request) -> web.Response:
    require_staff(actor(request))
    data = parse(procedure.ScheduleIn, await json_body(request))
    async with db(request).session() as s:
        result = await procedure.schedule(s, actor(request), path_int(request, "case_id"), data,
                                          settings=settings(request))
        body = _scheduled(result)
    return respond(body, 201)


@api.route("POST", "/sessions/{session_id}/reschedule", summary="Move a session that has not started: new links and "
           "codes, the parties are told, the old reminder is withdrawn", who="the case's mediator",
           body=procedure.ScheduleIn, tag=TAG)
async def reschedule(request: web.Request) -> web.Response:
    require_staff(actor(request))
    data = parse(procedure.ScheduleIn, await json_body(request))
    async with db(request).session() as s:
        result = await procedure.reschedule(s, actor(request), path_int(request, "session_id"), data,
                                            settings=settings(request))
        body = _scheduled(result)
    return respond(body)


@api.route("GET", "/sessions/{session_id}/calendar.ics", summary="The session as an iCalendar file",
           who="staff who may see the case", tag=TAG, produces={"text/calendar": {"type": "string"}})
async def calendar_ics(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).read() as s:
        sess = await session_svc.get_session(s, sid)
        await case_svc.view(s, actor(request), sess.case_id)
        text, _ = await procedure.session_ics(s, sid, request["lang"], request["t"])
    return web.Response(body=text.encode(), headers={"Content-Type": "text/calendar; charset=utf-8",
                                                     "Content-Disposition": f'attachment; filename="session-{sid}.ics"'})


@api.route("GET", "/sessions/{session_id}/procedure", summary="Each party's consent, identity check (verified, "
           "failures) and notices still owed in this session", who="staff who may see the case", tag=TAG)
async def session_procedure(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).read() as s:
        sess = await session_svc.get_session(s, sid)
        case = await case_svc.view(s, actor(request), sess.case_id)
        rows = []
        for party in case.parties:
            p = procedure.Pass(participant_id=f"party-{party.id}", name=party.name, role="party", grants=set(),
                               session_id=sess.id, case_id=case.id, room_id=sess.room_id, invite_id=0, expires_at=0)
            rows.append(await procedure.participant_status(s, p, identity_check=settings(request).identity_check,
                                                           party=party))
    return respond({"session_id": sid, "identity_check": settings(request).identity_check, "parties": rows})


# --- the e-transcript ------------------------------------------------------------------------------------------------

@api.route("GET", "/sessions/{session_id}/transcript", summary="The session's e-transcript (笔录): entries, status, "
           "confirmations, the final PDF's SHA-256", who="staff who may see the case", tag=TAG)
async def transcript(request: web.Request) -> web.Response:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).read() as s:
        sess = await session_svc.get_session(s, sid)
        await case_svc.view(s, actor(request), sess.case_id)
        body = await transcript_svc.view(s, sid)
    return respond(body)


@api.route("GET", "/sessions/{session_id}/transcript.pdf", summary="The confirmed transcript as PDF "
           "(X-Content-SHA256 as in the audit chain)", who="staff who may see the case", tag=TAG,
           produces={"application/pdf": BINARY})
async def transcript_pdf(request: web.Request) -> web.StreamResponse:
    require_staff(actor(request))
    sid = path_int(request, "session_id")
    async with db(request).read() as s:
        path, number, sha256 = await transcript_svc.final_pdf(s, actor(request), sid, settings(request).data_dir)
    name = quote(f"{number}-transcript-{sid}.pdf")
    return web.FileResponse(path, headers={"Content-Type": "application/pdf", "X-Content-SHA256": sha256,
                                           "Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


# --- notifications ----------------------------------------------------------------------------------------------------

@api.route("PUT", "/auth/me/contact", summary="The logged-in staff member's e-mail, phone and language for "
           "notifications", who="staff", body=procedure.ContactIn, tag=TAG)
async def my_contact(request: web.Request) -> web.Response:
    user = require_staff(actor(request))
    data = parse(procedure.ContactIn, await json_body(request))
    async with db(request).session() as s:
        row = await procedure.set_contact(s, actor(request).ref(), "user", user.id, data)
    return respond({"contact": {"email": row.email, "phone": row.phone, "lang": row.lang}})


@api.route("GET", "/cases/{case_id}/notifications", summary="Notifications about a case: event, medium, masked "
           "address, delivery state and attempts", who="staff who may see the case", tag=TAG)
async def case_notifications(request: web.Request) -> web.Response:
    require_staff(actor(request))
    case_id = path_int(request, "case_id")
    async with db(request).read() as s:
        await case_svc.view(s, actor(request), case_id)
        rows = await notify.jobs_for_case(s, case_id)
    out = [{"id": j.id, "event": j.payload.get("event"), "medium": j.payload.get("medium"),
            "to": j.payload.get("masked_to"), "status": j.status, "attempts": j.attempts,
            "created_at": ser.iso(j.created_at), "send_after": ser.iso(j.next_attempt_at),
            "delivered_at": ser.iso(j.delivered_at)}
           for j in rows]
    return respond({"notifications": out})
