"""The API's shared parts: the route registry (it also writes the OpenAPI document), who is
calling, the database and settings of the request's app, and the staff session cookie."""
from __future__ import annotations

from aiohttp import web

from server.core.errors import NotFound, Unauthorized
from server.core.policy import Actor, require_view
from server.core.schemas import check_text, parse_id
from server.http.api.openapi import ApiRouter
from server.http.client import caller
from server.services import cases as case_svc

api = ApiRouter("/api/v1")
SESSION_COOKIE = "mediation_session"


def actor(request: web.Request) -> Actor:
    return request["actor"]


def db(request: web.Request):
    return request.app["db"]


def settings(request: web.Request):
    return request.app["settings"]


def set_session_cookie(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", secure=settings(request).cookie_secure,
                    max_age=settings(request).staff_session_hours * 3600, path="/")


async def case_for(request: web.Request, s, ref: str):
    """Staff name a case by id or number; an applicant by number with X-Access-Code."""
    check_text(ref, "ref")
    code = request.headers.get("X-Access-Code")
    if code is not None and not actor(request).is_staff:
        who = await case_svc.applicant_login(s, ref, code, request.headers.get("X-Phone"), caller=caller(request))
        case = await case_svc.get_case(s, who.applicant_case_id)
        return case, who
    who = actor(request)
    if not who.is_staff:
        raise Unauthorized("Log in as staff, or send the case's access code in X-Access-Code.")
    case_id = parse_id(ref)
    case = await case_svc.get_case(s, case_id) if case_id is not None else await case_svc.get_case_by_number(s, ref)
    if case is None:
        raise NotFound("No such case.")
    require_view(who, case)
    return case, who
