"""Pages after the agreement (docs/procedure.md, "After the agreement"): the parts the staff case page, the
staff lists and the parties' outcome page include, and their forms.

- Staff case page (web/templates/followup/case_panel.html, included by staff/case.html): the
  watched obligations with every report (the mediator corrects one nobody reported on yet), the
  follow-up and review tasks with their outcome form, the ratings, the court's online reviews.
- Staff lists (followup/list_flags.html): obligations overdue without a report, not performed,
  disputed or only claimed. Follow-up and review tasks are deadlines and show with them.
- The parties' page (/lookup/outcome and /outcome/p/{token}; followup/party_panel.html): report
  an obligation as performed or not, rate the service once, apply for enforcement; the court's online
  review of their judicial-confirmation application (when, which court and judge, the decision).

As in server/http/pages/procedure.py, a middleware loads the parts' data for those pages into a
context variable the `followup()` template function returns; handlers call the services in
server/services/outcome/ and redirect back with the result (POST -> redirect -> GET).
"""
from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from server.core.errors import AppError, NotFound, Unauthorized
from server.core.policy import require_case_mediator, require_staff
from server.core.schemas import parse
from server.http.api.outcome import runtime
from server.http.pages import common as P
from server.http.util import has_key, read_form
from server.services import cases as case_svc
from server.services.outcome import agreements as agr
from server.services.outcome import court as court_svc
from server.services.outcome import enforcement, followup, performance, review, satisfaction
from server.services.queries import may


CASE_PAGE = re.compile(r"^/staff/cases/(\d{1,18})(?:/[a-z_]+)?$")
PARTY_LINK = re.compile(r"^/outcome/p/([A-Za-z0-9_-]{20,100})(?:/[a-z_]+(?:/[a-z_]+(?:/\d{1,18})?)?)?$")
PARTY_LOOKUP = re.compile(r"^/lookup/outcome(?:/[a-z_]+(?:/[a-z_]+(?:/\d{1,18})?)?)?$")
LISTS = ("/staff/queue", "/staff/my", "/staff/cases")


# --- data for the included parts -----------------------------------------------------------------------------

async def _case_data(request, case_id: int) -> dict:
    actor = request["actor"]
    now = dt.datetime.now(dt.timezone.utc)
    async with P._read(request) as s:
        try:
            case = await case_svc.view(s, actor, case_id)
        except AppError:
            return {}
        data = {"case_id": case.id, "is_mediator": may(require_case_mediator, actor, case),
                "parties": [{"id": p.id, "name": p.name, "side": p.side} for p in case.parties]}
        data["obligations"] = await performance.case_views(s, case, now)
        data["tasks"] = await followup.case_views(s, case, now, actor)
        data["ratings"] = await satisfaction.case_views(s, case)
        data["reviews"] = await review.case_views(s, case)
    return data


async def _party_data(request, token: str | None) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    async with P._read(request) as s:
        if token:
            try:
                case, who = await agr.resolve_link(s, token)
            except Unauthorized:
                return {}
        else:
            found = await P._applicant(request, s)
            if found is None:
                return {}
            case = found[1]
            who = agr.actor_party(found[0], case)
        data = {"base": f"/outcome/p/{token}" if token else "/lookup/outcome", "party_id": who.party_id}
        obligations = await performance.case_views(s, case, now, me=who.party_id)
        data["obligations"] = [o for o in obligations if o["me"]["concerned"] and o["status"] != "withdrawn"]
        data["rating"] = await satisfaction.party_view(s, case, who.party_id)
        data["eligible"] = performance.eligible_for_enforcement(obligations, who.party_id)
        data["confirmed"] = await enforcement.confirmed_submission(s, case.id) is not None
        # The party's own application, and those the other side made (the obliged party sees them too).
        subs = await enforcement.applications(s, case.id)
        mine = next((x for x in subs if x.applicant_party_id == who.party_id), None)
        data["enforcement"] = court_svc.submission_view(mine) if mine is not None else None
        data["enforcement_others"] = [court_svc.submission_view(x) for x in subs if x is not mine]
        data["reviews"] = await review.case_views(s, case)
    return data


async def _part_data(request: web.Request) -> dict | None:
    m = PARTY_LINK.match(request.path)
    if m:
        return {"party": await _party_data(request, m.group(1))}
    if PARTY_LOOKUP.match(request.path):
        return {"party": await _party_data(request, None)}
    if request.get("actor") is not None and request["actor"].user is not None:
        m = CASE_PAGE.match(request.path)
        if m:
            return {"case": await _case_data(request, int(m.group(1)))}
        if request.path in LISTS and request.method == "GET":
            async with P._read(request) as s:
                return {"lists": await performance.flags(s, request["actor"])}
    return None


data_middleware, _template_data = P.page_part("follow-through", _part_data)


# --- forms ---------------------------------------------------------------------------------------------------

def _problem(request, exc: AppError) -> str:
    t = request["t"]
    key = f"followup.error.{exc.code}"
    if has_key(request, key):
        return t(key)
    if exc.code == "validation_failed" and exc.fields:
        return t("followup.error.form")
    return P._error_text(request, exc)


async def _form(request) -> dict:
    post = await read_form(request)
    return {k: (v.strip()[:2000] if isinstance(v, str) else "") for k, v in post.items() if k != "csrf_token"}


async def complete_task(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    task_id = P._path_id(request, "task_id")
    form = await _form(request)
    back = request.headers.get("Referer", "")
    case_id = None
    try:
        data = parse(followup.TaskDoneIn, {"outcome": form.get("outcome", ""), "note": form.get("note", "")})
        async with P._db(request).session() as s:
            task = await followup.complete(s, actor, task_id, data)
            case_id = task.case_id
    except AppError as exc:
        cid = P._opt_int(form.get("case_id"))
        target = f"/staff/cases/{cid}#followup" if isinstance(cid, int) else P._safe_next(
            back.split(f"://{request.host}", 1)[-1] if back else "", "/staff")
        return P.redirect(request, target, msg=_problem(request, exc), kind="error")
    return P.redirect(request, f"/staff/cases/{case_id}#followup", msg=request["t"]("followup.flash.task_done"))


async def correct_obligation(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    case_id, oid = P._path_id(request, "case_id"), P._path_id(request, "obligation_id")
    form = await _form(request)
    body: dict = {"withdrawn": form.get("withdrawn") == "yes"}
    P._put(body, "obligor_party_id", P._opt_int(form.get("obligor_party_id")))
    P._put(body, "due_on", form.get("due_on"))
    try:
        data = parse(performance.ObligationPatch, body)
        async with P._db(request).session() as s:
            await performance.correct(s, actor, case_id, oid, data)
    except AppError as exc:
        return P.redirect(request, f"/staff/cases/{case_id}#followup", msg=_problem(request, exc), kind="error")
    return P.redirect(request, f"/staff/cases/{case_id}#followup", msg=request["t"]("followup.flash.corrected"))


class _Party:
    """The applicant (/lookup/outcome, the /lookup cookie) or a party by personal link (/outcome/p/{token})."""

    def __init__(self, request):
        self.token = request.match_info.get("token")
        self.base = f"/outcome/p/{self.token}" if self.token else "/lookup/outcome"

    async def who(self, request, s):
        if self.token:
            try:
                return await agr.resolve_link(s, self.token, touch=True)
            except Unauthorized:
                raise NotFound("This link is not valid.", code="link_invalid")
        found = await P._applicant(request, s)
        if found is None:
            return None
        return found[1], agr.actor_party(found[0], found[1])


async def party_post(request: web.Request) -> web.Response:
    page = _Party(request)
    t = request["t"]
    what = request.match_info["what"]
    form = await _form(request)
    anchor = {"rating": "#rating", "enforcement": "#enforcement"}.get(what, "#obligations")
    try:
        async with P._db(request).session() as s:
            found = await page.who(request, s)
            if found is None:
                return P.redirect(request, "/lookup", msg=t("lookup.expired"), kind="info")
            case, who = found
            if what == "report":
                oid = P._path_id(request, "obligation_id") if "obligation_id" in request.match_info else None
                if oid is None:
                    raise NotFound("No such obligation.")
                performed = {"yes": True, "no": False}.get(form.get("performed", ""))
                data = parse(performance.ReportIn, {"performed": performed, "note": form.get("note", "")}
                             if performed is not None else {"note": form.get("note", "")})
                await performance.report(s, who, oid, data)
                msg = t("followup.flash.reported")
            elif what == "rating":
                body: dict = {"comment": form.get("comment", "")}
                P._put(body, "level", P._opt_int(form.get("level")))
                data = parse(satisfaction.RatingIn, body)
                await satisfaction.rate(s, who, data)
                msg = t("followup.flash.rated")
            elif what == "enforcement":
                rt = runtime(request)
                await enforcement.apply(s, rt.cfg, rt.sign_ctx(), who, case.id, enforcement.EnforcementIn())
                msg = t("followup.flash.enforcement_sent")
            else:
                raise NotFound("No such action.")
    except AppError as exc:
        if exc.code == "link_invalid" or (exc.status == 404 and what not in ("report",)):
            raise
        return P.redirect(request, page.base + anchor, msg=_problem(request, exc), kind="error")
    return P.redirect(request, page.base + anchor, msg=msg)


# --- wiring ----------------------------------------------------------------------------------------------------

def setup(app: web.Application) -> None:
    """Called from server/http/pages/routes.py."""
    r = app.router
    r.add_post("/staff/followup/tasks/{task_id}/complete", complete_task)
    r.add_post("/staff/followup/cases/{case_id}/obligations/{obligation_id}", correct_obligation)
    r.add_post("/lookup/outcome/follow/{what}", party_post)
    r.add_post("/lookup/outcome/follow/{what}/{obligation_id}", party_post)
    r.add_post("/outcome/p/{token}/follow/{what}", party_post)
    r.add_post("/outcome/p/{token}/follow/{what}/{obligation_id}", party_post)
    app.middlewares.append(data_middleware)
    env = app["jinja"]
    env.globals["followup"] = _template_data
    env.globals["followup_asset_v"] = P.asset_version("followup.css")
