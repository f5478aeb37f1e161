"""Staff login and the directory: institutions, staff accounts, mediators, the expert pool, metadata."""

from __future__ import annotations


from aiohttp import web

from server.core import serialize as ser
from server.http.util import json_body, path_int, query_id, query_text, respond
from server.core.policy import require_staff
from server.core.schemas import CATEGORIES, CASE_TYPES, ExpertIn, InstitutionIn, LoginIn, UserIn, UserPatch, parse
from server.services import cases as case_svc
from server.services import directory
from server.core.workflow import STATUSES
from server.http.api.base import SESSION_COOKIE, actor, api, db, set_session_cookie, settings
from server.http.client import caller


# --- auth -----------------------------------------------------------------------------------

@api.route("POST", "/auth/login", summary="Staff login; returns a bearer token and sets the session cookie",
           who="anyone", body=LoginIn, tag="auth")
async def login(request: web.Request) -> web.Response:
    data = parse(LoginIn, await json_body(request))
    async with db(request).session() as s:
        user, token, csrf = await directory.login(s, data.username, data.password, settings(request).staff_session_hours,
                                                  caller=caller(request))
    resp = respond({"token": token, "csrf_token": csrf, "user": ser.user(user)})
    set_session_cookie(request, resp, token)
    return resp


@api.route("POST", "/auth/logout", summary="End the staff session", who="staff", tag="auth")
async def logout(request: web.Request) -> web.Response:
    require_staff(actor(request))
    async with db(request).session() as s:
        await directory.logout(s, request["session_token"])
    resp = respond({"ok": True})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


@api.route("GET", "/auth/me", summary="The logged-in staff member", who="staff", tag="auth")
async def me(request: web.Request) -> web.Response:
    user = require_staff(actor(request))
    return respond({"user": ser.user(user), "csrf_token": request["staff_session"].csrf_token})


# --- directory --------------------------------------------------------------------------------

@api.route("GET", "/institutions", summary="Institutions that take cases", who="anyone", tag="directory")
async def institutions(request: web.Request) -> web.Response:
    async with db(request).read() as s:
        rows = await directory.list_institutions(s)
    return respond({"institutions": [ser.institution(i) for i in rows]})


@api.route("POST", "/institutions", summary="Add an institution", who="admin", body=InstitutionIn, status=201,
           tag="directory")
async def add_institution(request: web.Request) -> web.Response:
    require_staff(actor(request), "admin")
    data = parse(InstitutionIn, await json_body(request))
    async with db(request).session() as s:
        inst = await directory.add_institution(s, actor(request), data)
    return respond({"institution": ser.institution(inst)}, 201)


@api.route("GET", "/users", summary="Staff accounts", who="admin", tag="directory")
async def users(request: web.Request) -> web.Response:
    async with db(request).read() as s:
        rows = await directory.list_users(s, actor(request))
    return respond({"users": [ser.user(u) for u in rows]})


@api.route("POST", "/users", summary="Add a staff account", who="admin", body=UserIn, status=201, tag="directory")
async def add_user(request: web.Request) -> web.Response:
    require_staff(actor(request), "admin")
    data = parse(UserIn, await json_body(request))
    async with db(request).session() as s:
        user = await directory.add_user(s, actor(request), data)
    return respond({"user": ser.user(user)}, 201)


@api.route("PATCH", "/users/{user_id}", summary="Deactivate, rename or reset the password of an account",
           who="admin", body=UserPatch, tag="directory")
async def patch_user(request: web.Request) -> web.Response:
    require_staff(actor(request), "admin")
    uid = path_int(request, "user_id")
    data = parse(UserPatch, await json_body(request))
    async with db(request).session() as s:
        user = await directory.update_user(s, actor(request), uid, data)
    return respond({"user": ser.user(user)})


@api.route("GET", "/mediators", summary="Mediators with their open-case workload", who="intake, admin",
           query={"institution_id": "admin only: one institution"}, tag="directory")
async def mediators(request: web.Request) -> web.Response:
    require_staff(actor(request), "intake", "admin")
    institution_id = query_id(request, "institution_id")
    async with db(request).read() as s:
        rows = await case_svc.mediator_workloads(s, actor(request), institution_id)
    return respond({"mediators": rows})


@api.route("GET", "/experts", summary="The expert pool", who="staff",
           query={"specialty": "filter", "level": "county or town"}, tag="directory")
async def experts(request: web.Request) -> web.Response:
    require_staff(actor(request))
    async with db(request).read() as s:
        rows = await directory.list_experts(s, actor(request), query_text(request, "specialty", 40),
                                            query_text(request, "level", 40))
    return respond({"experts": [ser.expert(e) for e in rows]})


@api.route("POST", "/experts", summary="Add an expert to the pool", who="admin", body=ExpertIn, status=201,
           tag="directory")
async def add_expert(request: web.Request) -> web.Response:
    require_staff(actor(request), "admin")
    data = parse(ExpertIn, await json_body(request))
    async with db(request).session() as s:
        e = await directory.add_expert(s, actor(request), data)
    return respond({"expert": ser.expert(e)}, 201)


# --- cases ------------------------------------------------------------------------------------

@api.route("GET", "/meta", summary="Case types, categories and statuses", who="anyone", tag="directory")
async def meta(request: web.Request) -> web.Response:
    return respond({"types": CASE_TYPES, "categories": CATEGORIES, "statuses": STATUSES})
