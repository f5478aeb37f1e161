"""The institution staff's pages: login and logout, the case lists (queue, cases, my cases), one
case's page with its decisions (accept, reject, transfer, assign, close, archive, open a
session), and a session's join links, their revocation, the mediator's own way in and the end.
"""
from __future__ import annotations

import datetime as dt
import math
from urllib.parse import urlencode

from aiohttp import web

from server.core import serialize as ser
from server.http.api.base import SESSION_COOKIE, set_session_cookie
from server.http.client import caller
from server.core.errors import AppError, Conflict, NotFound, Unauthorized, ValidationFailed
from server.core.policy import ACCOMPANYING_ROLES, require_staff
from server.core.schemas import AssignIn, CloseIn, InviteIn, LoginIn, RejectIn, SessionIn, TransferIn, check_text, whole_number
from server.services import cases as case_svc
from server.services import directory, queries
from server.services import sessions as session_svc
from server.core.workflow import STATUSES
from server.http.util import read_form, tr as _tr
from server.http.pages.common import (
    FormInvalid, _clean, _db, _error_text, _opt_int, _path_id, _put, _read, _safe_next, _settings,
    _timeline_item, _tz, check, redirect, render, service_fields,
)

# Filter chips of the staff case lists: name -> statuses (None: all).
CHIPS = [
    ("all", None),
    ("pending", ["filed", "transferred"]),
    ("to_assign", ["accepted"]),
    ("ongoing", ["assigned", "in_mediation"]),
    ("concluded", ["settled", "failed", "rejected", "withdrawn"]),
    ("archived", ["archived"]),
]
INVITE_DURATIONS = [("", "invite.expires.default"), ("7200", "invite.expires.2h"),
                    ("86400", "invite.expires.1d"), ("259200", "invite.expires.3d"),
                    ("604800", "invite.expires.7d")]


# --- staff login --------------------------------------------------------------------------------------

async def login_form(request: web.Request) -> web.Response:
    return render(request, "login.html", form={"next": _safe_next(request.query.get("next"))}, errors={})


async def login_submit(request: web.Request) -> web.Response:
    t = request["t"]
    post = await read_form(request)
    form = {"username": _clean(post.get("username"), 64), "next": _safe_next(post.get("next"))}
    errors: dict[str, str] = {}
    refused: AppError | None = None
    try:
        data = check(request, LoginIn, {"username": form["username"], "password": post.get("password") or ""})
        async with _db(request).session() as s:
            user, token, _csrf = await directory.login(s, data.username, data.password,
                                                       _settings(request).staff_session_hours, caller=caller(request))
    except FormInvalid as exc:
        errors = exc.fields
    except Unauthorized:
        errors = {"_": t("error.bad_credentials")}
    except AppError as exc:
        if exc.code != "too_many_attempts":
            raise
        errors, refused = {"_": _error_text(request, exc)}, exc
    else:
        resp = redirect(request, form["next"], msg=t("flash.welcome", name=user.name or user.username))
        set_session_cookie(request, resp, token)
        return resp
    resp = render(request, "login.html", status=refused.status if refused else 422 if "_" not in errors else 401,
                  here="/login", form=form, errors=errors)
    if refused is not None:
        resp.headers.update(getattr(refused, "headers", {}))  # Retry-After
    return resp


async def logout(request: web.Request) -> web.Response:
    if request.get("session_token"):
        async with _db(request).session() as s:
            await directory.logout(s, request["session_token"])
    resp = redirect(request, "/", msg=request["t"]("flash.logged_out"), kind="info")
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


async def staff_home(request: web.Request) -> web.Response:
    user = require_staff(request["actor"])
    target = {"mediator": "/staff/my", "clerk": "/staff/cases"}.get(user.role, "/staff/queue")
    return redirect(request, target)


# --- staff: case lists ------------------------------------------------------------------------------

def _list_view(mode: str):
    async def handler(request: web.Request) -> web.Response:
        actor = request["actor"]
        require_staff(actor)
        chip = request.query.get("chip", "")
        status = request.query.get("status", "")
        statuses = None
        if status in STATUSES:
            statuses, chip = [status], ""
        else:
            status = ""
            chip = chip if chip in dict(CHIPS) else "all"
            statuses = dict(CHIPS)[chip]
        q = check_text(_clean(request.query.get("q"), 100), "q")
        page = whole_number(request.query.get("page", "1")) or 1
        page = page if page < 100000 else 1  # an unusable page number shows the first page
        mine = mode == "my"
        async with _read(request) as s:
            rows, total = await case_svc.list_cases(s, actor, status=",".join(statuses) if statuses else None,
                                                    q=q or None, page=page, mine=mine)
            counts = await queries.status_counts(s, actor, mine=mine)
            cases = [ser.case_summary(c) for c in rows]
        chips = [{"name": name, "count": sum(counts.get(x, 0) for x in (sts or counts.keys())),
                  "active": chip == name} for name, sts in CHIPS]
        pages = max(1, math.ceil(total / case_svc.PAGE_SIZE))
        base = {"q": q} if q else {}
        if status:
            base["status"] = status
        elif chip != "all":
            base["chip"] = chip

        def page_url(n):
            return f"{request.path}?{urlencode({**base, 'page': n})}"

        return render(request, "staff/cases.html", mode=mode, cases=cases, total=total, page=page, pages=pages,
                      chips=chips, status_filter=status, statuses=STATUSES, q=q, page_url=page_url,
                      chip_url=lambda name: request.path + "?" + urlencode({"chip": name, **({"q": q} if q else {})}))
    return handler


# --- staff: one case ------------------------------------------------------------------------------------

def _invite_state(invite, now) -> str:
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at < now:
        return "expired"
    if invite.single_use and invite.used_at is not None:
        return "used"
    return "active"


async def _render_case(request, case_id: int, *, errors: dict | None = None, form: dict | None = None,
                       open_form: str = "", status: int = 200, banner: str = "") -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    now = dt.datetime.now(dt.timezone.utc)
    async with _read(request) as s:
        case = await case_svc.view(s, actor, case_id)
        hist = [ser.audit_entry(e) for e in await case_svc.history(s, case.id)]
        actions = queries.allowed_actions(actor, case)
        sessions = []
        for x in await session_svc.list_sessions(s, case.id):
            rows = await session_svc.list_invites(s, x.id)
            invites = [{**view, "state": _invite_state(i, now)}
                       for i, view in zip(rows, await session_svc.invite_views(s, rows))]
            sessions.append({**ser.session(x), "invites": invites})
        all_insts = await directory.list_institutions(s, include_inactive=True)
        inst_names = {i.id: i.name for i in all_insts}
        transfer_to = ([ser.institution(i) for i in all_insts if i.active and i.id != case.institution_id]
                       if "transfer" in actions else [])
        mediators = (await case_svc.mediator_workloads(s, actor, case.institution_id)
                     if "assign" in actions else [])
        experts = ([ser.expert(e) for e in await directory.list_experts(s, actor)]
                   if "manage_sessions" in actions else [])
        data = ser.case_full(case, staff=True)
    timeline = [_timeline_item(request, e, inst_names) for e in hist]
    return render(request, "staff/case.html", status=status, here=f"/staff/cases/{case_id}", case=data,
                  timeline=timeline, actions=actions, case_actions=actions - {"manage_sessions"},
                  sessions=sessions, transfer_to=transfer_to,
                  mediators=mediators, experts=experts, errors=errors or {}, form=form or {},
                  open_form=open_form, banner=banner, durations=INVITE_DURATIONS,
                  public_url=_settings(request).public_url, readonly=not actions)


async def case_page(request: web.Request) -> web.Response:
    case_id = _path_id(request, "case_id")
    if request["actor"].user is not None and request["actor"].user.role == "clerk":
        return redirect(request, f"/archive/cases/{case_id}")  # a clerk's case page is the archive record
    return await _render_case(request, case_id)


def _local_datetime(request, value: str):
    """A datetime-local input (no zone) is read in the centre's time zone."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return value  # the model reports it
    return parsed.replace(tzinfo=_tz(request)) if parsed.tzinfo is None else parsed


async def case_action(request: web.Request) -> web.Response:
    """One endpoint per case action: POST /staff/cases/{id}/{action}."""
    actor = request["actor"]
    require_staff(actor)
    t = request["t"]
    case_id = _path_id(request, "case_id")
    action = request.match_info["action"]
    post = await read_form(request)
    form = {k: _clean(v, 2000) for k, v in post.items() if isinstance(v, str) and k != "csrf_token"}
    try:
        async with _db(request).session() as s:
            if action == "accept":
                await case_svc.accept(s, actor, case_id)
            elif action == "reject":
                await case_svc.reject(s, actor, case_id, check(request, RejectIn, {"reason": form.get("reason", "")}))
            elif action == "transfer":
                body: dict = {"reason": form.get("reason", "")}
                _put(body, "institution_id", _opt_int(form.get("institution_id")))
                await case_svc.transfer(s, actor, case_id, check(request, TransferIn, body))
            elif action == "assign":
                body = {}
                _put(body, "mediator_id", _opt_int(form.get("mediator_id")))
                await case_svc.assign(s, actor, case_id, check(request, AssignIn, body))
            elif action == "archive":
                await case_svc.archive(s, actor, case_id)
            elif action == "close":
                body = {"note": form.get("note", "")}
                _put(body, "result", form.get("result"))
                await case_svc.close(s, actor, case_id, check(request, CloseIn, body))
            elif action == "session":
                body = {}
                _put(body, "scheduled_at", _local_datetime(request, form.get("scheduled_at", "")))
                await session_svc.open_session(s, actor, case_id, check(request, SessionIn, body))
            else:
                raise NotFound("No such action.")
    except FormInvalid as exc:
        return await _render_case(request, case_id, errors=exc.fields, form=form, open_form=action, status=422)
    except ValidationFailed as exc:
        errs = service_fields(request, exc)
        if exc.code != "validation_failed":
            return await _render_case(request, case_id, banner=_error_text(request, exc), form=form,
                                      open_form=action, status=exc.status)
        return await _render_case(request, case_id, errors=errs, form=form, open_form=action, status=exc.status)
    except Conflict as exc:
        return await _render_case(request, case_id, banner=_error_text(request, exc), status=exc.status)
    if action == "transfer" and actor.user.role != "admin":
        # The case now belongs to another institution; this officer may no longer see it.
        return redirect(request, "/staff/queue", msg=t("flash.transfer"))
    return redirect(request, f"/staff/cases/{case_id}", msg=t(f"flash.{action}"))


async def _session_case(request, session_id: int) -> int:
    async with _read(request) as s:
        sess = await session_svc.get_session(s, session_id)
        case = await case_svc.view(s, request["actor"], sess.case_id)
        return case.id


async def invite_create(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    t = request["t"]
    sid = _path_id(request, "session_id")
    case_id = await _session_case(request, sid)
    post = await read_form(request)
    form = {k: _clean(v, 200) for k, v in post.items() if isinstance(v, str) and k != "csrf_token"}
    role = form.get("role", "")
    body: dict = {"role": role} if role else {}
    if role == "party":
        _put(body, "party_id", _opt_int(form.get("party_id")))
    elif role in ACCOMPANYING_ROLES:  # the party they accompany, and their own name
        _put(body, "party_id", _opt_int(form.get("party_id")))
        _put(body, "name", form.get("name"))
    elif role == "expert":
        if form.get("expert_id"):
            _put(body, "expert_id", _opt_int(form.get("expert_id")))
        else:
            _put(body, "name", form.get("name"))
    elif role == "observer":
        _put(body, "name", form.get("name"))
    _put(body, "expires_in", _opt_int(form.get("expires_in")))
    cfg = _settings(request)
    open_form = f"invite-{sid}"
    try:
        data = check(request, InviteIn, body)
        async with _db(request).session() as s:
            invite, token = await session_svc.create_invite(s, actor, sid, data, secret=cfg.secret_key,
                                                            default_seconds=cfg.join_token_default_seconds)
            name, role = invite.name, invite.role
            dial_in = {"number": (await session_svc.get_session(s, sid)).dial_in, "pin": invite.pin} \
                if cfg.sip_listen else None
    except FormInvalid as exc:
        return await _render_case(request, case_id, errors=exc.fields, form=form, open_form=open_form, status=422)
    except ValidationFailed as exc:
        return await _render_case(request, case_id, errors=service_fields(request, exc), form=form,
                                  open_form=open_form, status=422)
    except Conflict as exc:
        return await _render_case(request, case_id, banner=_error_text(request, exc), status=exc.status)
    url = f"{cfg.public_url}/join/{token}"
    return redirect(request, f"/staff/cases/{case_id}#session-{sid}",
                    msg=t("flash.invite", name=name, role=_tr(request, "jrole", role)), link=url, dial_in=dial_in)


async def session_enter(request: web.Request) -> web.Response:
    """The mediator's own way in: a fresh mediator link, followed at once (it is not shown to anyone)."""
    actor = request["actor"]
    require_staff(actor)
    sid = _path_id(request, "session_id")
    case_id = await _session_case(request, sid)
    cfg = _settings(request)
    try:
        async with _db(request).session() as s:
            _invite, token = await session_svc.create_invite(s, actor, sid, InviteIn(role="mediator"),
                                                             secret=cfg.secret_key,
                                                             default_seconds=cfg.join_token_default_seconds)
    except Conflict as exc:
        return await _render_case(request, case_id, banner=_error_text(request, exc), status=exc.status)
    return redirect(request, f"/join/{token}")


async def invite_revoke(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    sid, iid = _path_id(request, "session_id"), _path_id(request, "invite_id")
    case_id = await _session_case(request, sid)
    async with _db(request).session() as s:
        await session_svc.revoke_invite(s, actor, sid, iid)
    return redirect(request, f"/staff/cases/{case_id}#session-{sid}", msg=request["t"]("flash.revoked"))


async def session_end(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    sid = _path_id(request, "session_id")
    case_id = await _session_case(request, sid)
    try:
        async with _db(request).session() as s:
            await session_svc.end_session(s, actor, sid)
    except Conflict as exc:
        return await _render_case(request, case_id, banner=_error_text(request, exc), status=exc.status)
    return redirect(request, f"/staff/cases/{case_id}#session-{sid}", msg=request["t"]("flash.session_ended"))


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/login", login_form, name="login")
    r.add_post("/login", login_submit)
    r.add_post("/logout", logout)
    r.add_get("/staff", staff_home)
    r.add_get("/staff/queue", _list_view("queue"))
    r.add_get("/staff/cases", _list_view("cases"))
    r.add_get("/staff/my", _list_view("my"))
    r.add_get("/staff/cases/{case_id}", case_page)
    r.add_post("/staff/cases/{case_id}/{action}", case_action)
    r.add_post("/staff/sessions/{session_id}/invites", invite_create)
    r.add_post("/staff/sessions/{session_id}/invites/{invite_id}/revoke", invite_revoke)
    r.add_post("/staff/sessions/{session_id}/end", session_end)
    r.add_post("/staff/sessions/{session_id}/enter", session_enter)
