"""Portal pages and parts for the procedural rules (server/services/procedure/rules.py).

- /join/<token>/checks: the step page a participant goes through before the live room
  (consent to online mediation, identity, notices) on a phone, over socket.io; it ends with a
  link to /room/<token>. It also takes a request for a different mediator.
- Staff case page part (web/templates/procedure/case_panel.html, included by staff/case.html):
  the mediator's conflict-of-interest declaration, scheduling with notifications and .ics, party
  access codes, consent given offline, contacts; intake's decisions on recusal requests;
  deadlines. The staff lists show deadline flags (procedure/list_flags.html).
- The applicant's page on /lookup (procedure/lookup_panel.html): consent to online mediation,
  the scheduled sessions with .ics files, an e-mail address for notices, a recusal request.

The parts are included into the existing templates; their data is loaded by a middleware for
those pages into a context variable that the `procedure()` template function returns, so
the pages' own handlers need not know about them.

One module (~430 lines): the step page, the staff parts and the applicant's part share the data middleware.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import quote

from aiohttp import web

from server.http.pages import common as pages
from server.core.errors import AppError, Conflict, NotFound, ValidationFailed
from server.http.pages.common import _applicant, _db, _path_id, _read, _sign, _unsign, redirect, render
from server.core.policy import require_staff
from server.core.schemas import parse, parse_id, whole_number
from server.services import cases as case_svc
from server.services.procedure import deadlines
from server.services.procedure import panels
from server.services.procedure import rules as procedure
from server.services import sessions as session_svc
from server.services.procedure import transcript as transcript_svc
from server.core.i18n import catalog
from server.core.security import TokenInvalid
from server.http.util import has_key, read_form

SCHEDULED_COOKIE = "mediation_scheduled"
CASE_PAGE = re.compile(r"^/staff/cases/([0-9]{1,18})(?:/[a-z_]+)?$")
LISTS = ("/staff/queue", "/staff/my", "/staff/cases")


# --- data for the included parts ------------------------------------------------------------------------------

async def _case_data(request, case_id: int) -> dict:
    async with _read(request) as s:
        return await panels.case_panel(s, request["actor"], case_id, dt.datetime.now(dt.timezone.utc))


async def _list_data(request) -> dict:
    async with _read(request) as s:
        return await panels.list_flags(s, request["actor"], dt.datetime.now(dt.timezone.utc))


async def _lookup_data(request) -> dict:
    async with _read(request) as s:
        found = await _applicant(request, s)
        if found is None:
            return {}
        return await panels.lookup_panel(s, found[1])


async def _part_data(request: web.Request) -> dict | None:
    if request.get("actor") is not None and request["actor"].user is not None:
        m = CASE_PAGE.match(request.path)
        if m and parse_id(m.group(1)) is not None:
            return {"case": await _case_data(request, int(m.group(1)))}
        if request.path in LISTS and request.method == "GET":
            return {"lists": await _list_data(request)}
    elif request.path == "/lookup/case" and request.method == "GET":
        return {"lookup": await _lookup_data(request)}
    return None


data_middleware, _template_data = pages.page_part("procedure", _part_data)


# --- the step page ----------------------------------------------------------------------------------------------

STEP_KEYS = ("procedure.page.", "procedure.notice.", "procedure.offline.", "procedure.error.", "procedure.refusal.")


async def checks_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    t = request["t"]
    cfg = request.app["settings"]
    try:
        if not 10 <= len(token) <= 4096:
            raise TokenInvalid("token_invalid", "This join link is not valid.")
        async with _read(request) as s:
            p = await procedure.peek_pass(s, cfg.secret_key, token)
            case = await case_svc.get_case(s, p.case_id)
            info = {"name": p.name, "role": p.role, "number": case.number, "title": case.title,
                    "institution": case.institution.name}
    except TokenInvalid as exc:
        status = 404 if exc.code == "token_invalid" else 410
        return render(request, "join.html", status=status, error_code=exc.code, info=None)
    keys = set(catalog(request["lang"])) | set(catalog("zh-CN"))
    strings = {k: t(k) for k in sorted(keys) if k.startswith(STEP_KEYS)}
    config = {"token": token, "lang": request["lang"], "strings": strings, "room_url": f"/room/{token}",
              "identity_check": bool(cfg.identity_check)}
    resp = render(request, "procedure/checks.html", info=info, config_json=json.dumps(config, ensure_ascii=False)
                  .replace("</", "<\\/"))
    resp.headers["Referrer-Policy"] = "no-referrer"  # the token is in the address
    return resp


# --- staff: the case part ---------------------------------------------------------------------------------------

def _back(case_id: int, anchor: str = "procedure") -> str:
    return f"/staff/cases/{case_id}#{anchor}"


async def _form(request) -> dict:
    post = await read_form(request)
    return {k: (v.strip()[:2000] if isinstance(v, str) else "") for k, v in post.items() if k != "csrf_token"}


def _problem(request, exc: AppError) -> str:
    t = request["t"]
    key = f"procedure.error.{exc.code}"
    if exc.code in ("validation_failed", "bad_request") and exc.fields:
        return t("procedure.error.form")
    if has_key(request, key):
        return t(key)
    return pages._error_text(request, exc)


async def declare(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    case_id = _path_id(request, "case_id")
    form = await _form(request)
    t = request["t"]
    try:
        data = parse(procedure.ConflictIn, {"conflict": form.get("conflict") == "yes", "reason": form.get("reason", "")})
        async with _db(request).session() as s:
            await procedure.declare_conflict(s, actor, case_id, data)
    except AppError as exc:
        return redirect(request, _back(case_id), msg=_problem(request, exc), kind="error")
    if data.conflict:
        return redirect(request, "/staff/my", msg=t("procedure.flash.conflict_declared"))
    return redirect(request, _back(case_id), msg=t("procedure.flash.no_conflict"))


def _local_start(request, date: str, time: str):
    try:
        naive = dt.datetime.fromisoformat(f"{date}T{time}")
    except ValueError:
        raise ValidationFailed("Give the date and time.", fields={"starts_at": "invalid"})
    return naive.replace(tzinfo=pages._tz(request))


def _schedule_input(request, form: dict) -> procedure.ScheduleIn:
    starts = _local_start(request, form.get("date", ""), form.get("time", ""))
    minutes = form.get("duration", "60")
    return parse(procedure.ScheduleIn, {"starts_at": starts.isoformat(),
                                        "duration_minutes": whole_number(minutes) or 0,
                                        "notify": form.get("notify") == "yes"})


def _scheduled_redirect(request, case_id: int, result: procedure.Scheduled, msg_key: str) -> web.Response:
    links = [{"name": x.name, "side": x.side, "url": x.url, "code": x.code} for x in result.links]
    resp = redirect(request, f"/staff/procedure/sessions/{result.session.id}/scheduled",
                    msg=request["t"](msg_key))
    pages._set_cookie(request, resp, SCHEDULED_COOKIE,
                      _sign(request, "scheduled", {"sid": result.session.id, "case_id": case_id, "links": links}, 600),
                      path=f"/staff/procedure/sessions/{result.session.id}/scheduled", max_age=600, samesite="Strict")
    return resp


async def schedule(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    case_id = _path_id(request, "case_id")
    form = await _form(request)
    try:
        data = _schedule_input(request, form)
        async with _db(request).session() as s:
            result = await procedure.schedule(s, actor, case_id, data, settings=request.app["settings"])
    except AppError as exc:
        return redirect(request, _back(case_id, "schedule"), msg=_problem(request, exc), kind="error")
    return _scheduled_redirect(request, case_id, result, "procedure.flash.scheduled")


async def reschedule(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    sid = _path_id(request, "session_id")
    form = await _form(request)
    async with _read(request) as s:
        sess = await session_svc.get_session(s, sid)
        case_id = (await case_svc.view(s, actor, sess.case_id)).id
    try:
        data = _schedule_input(request, form)
        async with _db(request).session() as s:
            result = await procedure.reschedule(s, actor, sid, data, settings=request.app["settings"])
    except AppError as exc:
        return redirect(request, _back(case_id, f"session-{sid}"), msg=_problem(request, exc), kind="error")
    return _scheduled_redirect(request, case_id, result, "procedure.flash.rescheduled")


async def scheduled_page(request: web.Request) -> web.Response:
    """The links and access codes of a scheduling, shown once to the mediator (like the filing's code)."""
    require_staff(request["actor"])
    sid = _path_id(request, "session_id")
    data = _unsign(request, "scheduled", request.cookies.get(SCHEDULED_COOKIE))
    if not data or data.get("sid") != sid:
        async with _read(request) as s:
            sess = await session_svc.get_session(s, sid)
            case = await case_svc.view(s, request["actor"], sess.case_id)
        return redirect(request, _back(case.id, f"session-{sid}"))
    resp = render(request, "procedure/scheduled.html", data=data, hide_lang_switch=True)
    resp.del_cookie(SCHEDULED_COOKIE, path=f"/staff/procedure/sessions/{sid}/scheduled")
    return resp


async def party_code(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    case_id, party_id = _path_id(request, "case_id"), _path_id(request, "party_id")
    try:
        async with _db(request).session() as s:
            code = await procedure.issue_party_code_for(s, actor, case_id, party_id)
            name = (await procedure.party_of_case(s, case_id, party_id)).name
    except AppError as exc:
        return redirect(request, _back(case_id), msg=_problem(request, exc), kind="error")
    return redirect(request, _back(case_id), msg=request["t"]("procedure.flash.code", name=name, code=code))


async def party_consent(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    case_id, party_id = _path_id(request, "case_id"), _path_id(request, "party_id")
    form = await _form(request)
    try:
        data = parse(procedure.StaffConsentIn, {"agree": form.get("agree") == "yes", "how": form.get("how", ""),
                                                "note": form.get("note", "")})
        async with _db(request).session() as s:
            await procedure.consent_by_staff(s, actor, case_id, party_id, data)
    except AppError as exc:
        return redirect(request, _back(case_id), msg=_problem(request, exc), kind="error")
    return redirect(request, _back(case_id), msg=request["t"]("procedure.flash.consent_recorded"))


async def party_contact(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    case_id, party_id = _path_id(request, "case_id"), _path_id(request, "party_id")
    form = await _form(request)
    try:
        data = parse(procedure.ContactIn, {"email": form.get("email", ""), "lang": form.get("lang") or None})
        async with _db(request).session() as s:
            await procedure.set_party_contact(s, actor, case_id, party_id, data)
    except AppError as exc:
        return redirect(request, _back(case_id), msg=_problem(request, exc), kind="error")
    return redirect(request, _back(case_id), msg=request["t"]("procedure.flash.contact_saved"))


async def recusal_decide(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    rid = _path_id(request, "request_id")
    form = await _form(request)
    async with _read(request) as s:
        case_id = await procedure.recusal_case_id(s, rid)
    try:
        data = parse(procedure.RecusalDecisionIn, {"grant": form.get("decision") == "grant", "note": form.get("note", ""),
                                                   "mediator_id": pages._opt_int(form.get("mediator_id"))})
        async with _db(request).session() as s:
            await procedure.decide_recusal(s, actor, rid, data)
    except AppError as exc:
        return redirect(request, _back(case_id), msg=_problem(request, exc), kind="error")
    key = "procedure.flash.recusal_granted" if data.grant else "procedure.flash.recusal_refused"
    return redirect(request, _back(case_id), msg=request["t"](key))


def _ics_response(text: str, name: str) -> web.Response:
    return web.Response(body=text.encode("utf-8"), headers={
        "Content-Type": "text/calendar; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": f"attachment; filename=\"{name}\""})


async def staff_ics(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    sid = _path_id(request, "session_id")
    async with _read(request) as s:
        sess = await session_svc.get_session(s, sid)
        await case_svc.view(s, actor, sess.case_id)
        text, _ = await procedure.session_ics(s, sid, request["lang"], request["t"])
    return _ics_response(text, f"session-{sid}.ics")


async def transcript_pdf(request: web.Request) -> web.StreamResponse:
    actor = request["actor"]
    require_staff(actor)
    sid = _path_id(request, "session_id")
    async with _read(request) as s:
        path, number, sha256 = await transcript_svc.final_pdf(s, actor, sid, request.app["settings"].data_dir)
    name = f"{number}-transcript-{sid}.pdf"
    return web.FileResponse(path, headers={"Content-Type": "application/pdf", "X-Content-SHA256": sha256,
                                           "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})


async def deadlines_page(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    now = dt.datetime.now(dt.timezone.utc)
    async with _read(request) as s:
        rows = await deadlines.list_for(s, actor, now=now)
        items = [{"case": {"id": c.id, "number": c.number, "title": c.title, "status": c.status},
                  "flag": deadlines.flag(d, now)} for c, d in rows]
    return render(request, "procedure/deadlines.html", items=items, rules=deadlines.rules_table())


# --- the applicant on /lookup -------------------------------------------------------------------------------------

async def _applicant_or_back(request, s):
    found = await _applicant(request, s)
    if found is None:
        raise _Expired()
    return found


class _Expired(Exception):
    pass


async def lookup_post(request: web.Request) -> web.Response:
    t = request["t"]
    what = request.match_info["what"]
    form = await _form(request)
    try:
        async with _db(request).session() as s:
            who, case = await _applicant_or_back(request, s)
            if what == "consent":
                await procedure.consent_by_applicant(s, who, case.id, form.get("agree") == "yes")
                msg = t("procedure.flash.consent_yes" if form.get("agree") == "yes" else "procedure.flash.consent_no")
            elif what == "recusal":
                data = parse(procedure.RecusalIn, {"reason": form.get("reason", "")})
                await procedure.recusal_by_applicant(s, who, case.id, data.reason)
                msg = t("procedure.flash.recusal_sent")
            elif what == "contact":
                applicant = next(p for p in case.parties if p.side == "applicant")
                data = parse(procedure.ContactIn, {"email": form.get("email", ""), "lang": request["lang"]})
                await procedure.set_party_contact(s, who, case.id, applicant.id, data)
                msg = t("procedure.flash.contact_saved")
            else:
                raise NotFound("No such action.")
    except _Expired:
        return redirect(request, "/lookup", msg=t("lookup.expired"), kind="info")
    except (ValidationFailed, Conflict) as exc:
        return redirect(request, "/lookup/case#procedure", msg=_problem(request, exc), kind="error")
    return redirect(request, "/lookup/case#procedure", msg=msg)


async def lookup_ics(request: web.Request) -> web.Response:
    sid = _path_id(request, "session_id")
    async with _read(request) as s:
        found = await _applicant(request, s)
        if found is None:
            return redirect(request, "/lookup", msg=request["t"]("lookup.expired"), kind="info")
        sess = await session_svc.get_session(s, sid)
        if sess.case_id != found[1].id:
            raise NotFound("No such session.")
        text, _ = await procedure.session_ics(s, sid, request["lang"], request["t"])
    return _ics_response(text, f"session-{sid}.ics")


# --- wiring -------------------------------------------------------------------------------------------------------

def setup(app: web.Application) -> None:
    """Called from server/http/pages/routes.py."""
    r = app.router
    r.add_get("/join/{token}/checks", checks_page)
    r.add_post("/staff/procedure/cases/{case_id}/declare", declare)
    r.add_post("/staff/procedure/cases/{case_id}/schedule", schedule)
    r.add_post("/staff/procedure/sessions/{session_id}/reschedule", reschedule)
    r.add_get("/staff/procedure/sessions/{session_id}/scheduled", scheduled_page)
    r.add_get("/staff/procedure/sessions/{session_id}/calendar.ics", staff_ics)
    r.add_get("/staff/procedure/sessions/{session_id}/transcript.pdf", transcript_pdf)
    r.add_post("/staff/procedure/cases/{case_id}/parties/{party_id}/code", party_code)
    r.add_post("/staff/procedure/cases/{case_id}/parties/{party_id}/consent", party_consent)
    r.add_post("/staff/procedure/cases/{case_id}/parties/{party_id}/contact", party_contact)
    r.add_post("/staff/procedure/recusals/{request_id}/decide", recusal_decide)
    r.add_get("/staff/deadlines", deadlines_page)
    r.add_post("/lookup/procedure/{what}", lookup_post)
    r.add_get("/lookup/procedure/sessions/{session_id}/calendar.ics", lookup_ics)
    app.middlewares.append(data_middleware)
    env = app["jinja"]
    env.globals["procedure"] = _template_data
    env.globals["procedure_asset_v"] = pages.asset_version("procedure.css", "procedure.js")
