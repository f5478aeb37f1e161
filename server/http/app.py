"""The aiohttp application: middlewares (errors, who is calling, language, CSRF, headers) and
create_app, which builds the system (server/system.py) and puts the HTTP edge and the live hub on it."""
from __future__ import annotations

import hmac
import logging
import secrets

import jinja2
from aiohttp import web

import web as webpkg

from server.core.errors import AppError, Forbidden
from server.core.i18n import pick_lang, translator
from server.core.policy import ANONYMOUS, Actor
from server.http import health, metrics
from server.http.phone import make_endpoint
from server.http.api.base import SESSION_COOKIE
from server.http.api.routes import api
from server.http.client import keep_devices
from server.http.pages import routes as pages
from server.http.pages.common import render_error
from server.http.util import read_form, respond
from server.infra.db import Database
from server.services import directory
from server.system import attach_live, build
from signaling.server import create_socketio

log = logging.getLogger("mediation")

CSRF_COOKIE = "mediation_csrf"
LANG_COOKIE = "lang"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: no session, CSRF or cookies


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except AppError as exc:
        if _is_api(request) or not request.get("t"):
            resp = respond(exc.to_json(), exc.status)
        else:
            resp = render_error(request, exc)
        resp.headers.update(getattr(exc, "headers", None) or {})  # e.g. Retry-After of a 429
        return resp
    except web.HTTPException as exc:
        if _is_api(request) and exc.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
            return respond({"error": {"code": code, "message": exc.reason}}, exc.status)
        if exc.status == 413 and request.get("t"):
            max_mb = request.app["settings"].max_evidence_bytes // (1024 * 1024)
            return render_error(request, AppError(f"The upload is too large (at most {max_mb} MB per file).",
                                                  code="too_large", status=413))
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = {"error": {"code": "internal_error", "message": "Something went wrong on the server."}}
        return respond(body, 500)


@web.middleware
async def context_middleware(request: web.Request, handler):
    """Who is calling, in which language, and CSRF protection for cookie-authenticated writes."""
    if request.path.startswith("/socket.io/"):
        return await handler(request)  # signaling authenticates each participant by join token
    if request.path in OPS_PATHS:
        return await handler(request)
    lang = pick_lang(request.query.get("lang"), request.cookies.get(LANG_COOKIE),
                     request.headers.get("Accept-Language"))
    request["lang"] = lang
    request["t"] = translator(lang)
    request["actor"] = ANONYMOUS
    request["staff_session"] = None
    bearer = request.headers.get("Authorization", "")
    via_bearer = bearer.startswith("Bearer ")
    token = bearer[7:].strip() if via_bearer else request.cookies.get(SESSION_COOKIE, "")
    if token:
        async with request.app["db"].read() as s:
            found = await directory.resolve_session(s, token)
        if found:
            request["actor"] = Actor(user=found[0])
            request["staff_session"] = found[1]
            request["session_token"] = token
    # Anonymous forms use a double-submit token bound to a random cookie by HMAC.
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    new_nonce = None
    if not nonce or len(nonce) > 100:
        nonce = new_nonce = secrets.token_urlsafe(16)
    request["csrf_token"] = (request["staff_session"].csrf_token if request["staff_session"]
                             else _anon_csrf(request.app["settings"].secret_key, nonce))
    if request.method in UNSAFE and not via_bearer:
        await _check_csrf(request)
    resp = await handler(request)
    keep_devices(request, resp)  # the device cookie, when a sign-in or filing made this browser known
    # Secure with an https:// PUBLIC_URL, like every other cookie (behind a TLS proxy the
    # request itself arrives over plain HTTP, so PUBLIC_URL decides, not the request's scheme).
    secure = request.app["settings"].cookie_secure
    if new_nonce and isinstance(resp, web.StreamResponse) and not resp.prepared:
        resp.set_cookie(CSRF_COOKIE, new_nonce, httponly=True, samesite="Lax", path="/", secure=secure)
    if request.query.get("lang") in ("zh-CN", "en") and isinstance(resp, web.StreamResponse) and not resp.prepared:
        resp.set_cookie(LANG_COOKIE, lang, samesite="Lax", path="/", max_age=365 * 86400, secure=secure)
    return resp


def _anon_csrf(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), nonce.encode(), "sha256").hexdigest()


async def _check_csrf(request: web.Request) -> None:
    if _is_api(request):
        # JSON API: a cookie-authenticated write must echo the session's CSRF token in a header;
        # anonymous calls (filing a case, login) carry no ambient authority to abuse.
        public = request.match_info.route.handler in api.public_handlers
        if request["staff_session"] is not None and not public:
            sent = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(sent, request["staff_session"].csrf_token):
                raise Forbidden("Missing or wrong X-CSRF-Token header.", code="csrf_failed")
        return
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise Forbidden("Unsupported form submission.", code="csrf_failed")
    sent = request.headers.get("X-CSRF-Token", "") or (await read_form(request)).get("csrf_token", "")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, request["csrf_token"]):
        raise Forbidden("This form has expired. Reload the page and try again.", code="csrf_failed")


@web.middleware
async def headers_middleware(request: web.Request, handler):
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/static/room/"):
        # The room's ES modules import each other without a version: revalidate every load, so a
        # deploy never mixes old and new modules (a 304 costs little).
        resp.headers["Cache-Control"] = "no-cache"
    return resp


def create_app(settings, *, db: Database | None = None, clock=None) -> web.Application:
    """The web entry point: the system (server/system.py) plus routes, pages, the live hub, probes.
    `clock` (tests) is handed to build()."""
    system = build(settings, db=db, clock=clock)
    app = web.Application(
        middlewares=[headers_middleware, error_middleware, context_middleware],
        client_max_size=settings.max_evidence_bytes * settings.max_evidence_files + 1024 * 1024,
    )
    app["system"] = system
    app["settings"] = settings
    app["db"] = system.db
    app["evidence_store"] = system.evidence
    app["outbox"] = system.outbox
    app["outcome"] = system.outcome
    app["jinja"] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(webpkg.TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        enable_async=False,
    )
    api.add_to(app)
    pages.setup(app)
    app.router.add_static("/static/", webpkg.STATIC, name="static")
    app["hub"] = create_socketio(app, system.db, settings)
    attach_live(system, app["hub"])
    health.setup(app)
    metrics.setup(app)
    # The telephone (SIP_LISTEN): its callers join through this node's own socket.io, like a page.
    app["phone"] = make_endpoint(system) if settings.sip_listen else None

    async def start(app):
        # What a killed process was recording is finalised and attached before anyone joins.
        found = await system.recover()
        if found:
            log.warning("recovered interrupted recordings: %s", ", ".join(found))
        await system.start_workers()
        if app["phone"] is not None:
            await app["phone"].start()

    async def stop_phone(app):
        if app["phone"] is not None:  # calls leave their rooms before the hub closes them
            await app["phone"].stop()

    async def stop(app):
        await system.close()

    app.on_startup.append(start)
    app.on_shutdown.insert(0, stop_phone)
    app.on_cleanup.append(stop)
    return app
