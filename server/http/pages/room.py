"""The live mediation room page: GET /room/{token}.

The page itself is static HTML plus the ES modules of web/static/room/; everything live (joining, the
lobby, media, chat, the mediator's controls) goes over socket.io (signaling/hub.py). Here we
only check the join link lightly (signature, expiry, revocation, session state) so that a
dead link gets a clear translated page instead of a room that cannot be entered; the real
check happens again on `join`. The token is in the URL, so the page sends no Referer.
"""
from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from yarl import URL

import web as webpkg

from server.core.errors import NotFound
from server.http.pages.common import _fmt_dt, asset_version
from server.core.i18n import LANGS, catalog
from server.core.schemas import CATEGORIES
from server.core.security import TokenInvalid
from server.services import cases as case_svc
from server.services import sessions as session_svc
from server.services.outcome import review as review_svc
from server.services.procedure import transcript as transcript_svc

ROLES = ("party", "mediator", "expert", "observer", "interpreter", "support")
# Scripts and styles only from this origin; media and websockets to this origin (ws: is covered
# by 'self' in CSP level 3); no framing.
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; style-src 'self'; "
       "script-src 'self'; connect-src {connect}; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")


def _csp(request: web.Request) -> str:
    """With several nodes the page's socket may go to the node hosting the room (or, when that
    node dies, to another one): those origins, and only those, may be connected to."""
    hub = request.app.get("hub")
    sources = ["'self'"]
    if hub is not None and hub.cluster.multi:
        for url in hub.cluster.node_urls():
            if url.startswith(("http://", "https://")):
                sources += [url, "ws" + url[4:]]
    return CSP.format(connect=" ".join(dict.fromkeys(sources)))


# The room's stylesheets and every module of its script (web/static/room/).
ASSET_VERSION = asset_version("room.css", "room-tools.css", *sorted(f"room/{p.name}" for p in (webpkg.STATIC / "room").glob("*.js")))
# Preloaded together, so a phone fetches the script's modules in one round, not one per import level.
ROOM_MODULES = sorted(p.name for p in (webpkg.STATIC / "room").glob("*.js") if p.name != "main.js")


def _strings(lang: str, t) -> dict[str, str]:
    """Every text the room's script shows: the room.* keys, plus the specialty names for expert invitations."""
    keys = set(catalog(lang)) | set(catalog("zh-CN"))
    out = {k: t(k) for k in sorted(keys) if k.startswith("room.")}
    for code in CATEGORIES:
        out[f"category.{code}"] = t(f"category.{code}")
    for level in ("county", "town"):
        out[f"level.{level}"] = t(f"level.{level}")
    return out


def _lang_urls(request: web.Request) -> dict[str, str]:
    base: URL = request.rel_url
    return {lang: str(base.update_query(lang=lang)) for lang in LANGS}


async def room_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    t = request["t"]
    lang = request["lang"]
    cfg = request.app["settings"]
    error_code = None
    info = None
    try:
        if not 10 <= len(token) <= 4096:
            raise TokenInvalid("token_invalid", "This join link is not valid.")
        async with request.app["db"].read() as s:
            try:
                claims, invite, sess = await session_svc.verify_join_token(s, cfg.secret_key, token)
                case = await case_svc.get_case(s, sess.case_id)
            except NotFound:
                raise TokenInvalid("token_invalid", "This join link is not valid.")
            info = {"name": str(claims.get("name") or invite.name or ""), "role": str(claims.get("role") or ""),
                    "number": case.number, "title": case.title,
                    "scheduled": _fmt_dt(request, sess.scheduled_at) if sess.scheduled_at else "",
                    "judge": bool(invite.judge),
                    "accompanies": str((claims.get("accompanies") or {}).get("name") or "")}
            # The court's online review (司法确认在线审查) says so on its page (services/outcome/review.py).
            review = await review_svc.review_of_session(s, sess.id)
            info["review_court"] = review.court_name if review is not None else ""
    except TokenInvalid as exc:
        error_code = exc.code
    status = 200 if error_code is None else (404 if error_code == "token_invalid" else 410)
    config = None
    if error_code is None:
        config = {
            "token": token,
            "lang": lang,
            "name": info["name"],
            "role": info["role"],
            "strings": _strings(lang, t),
            "roles": {r: t(f"room.role.{r}") for r in ROLES},
            "specialties": list(CATEGORIES),
            "evidence_max_mb": request.app["settings"].max_evidence_bytes // (1024 * 1024),
        }
    html = request.app["jinja"].get_template("room.html").render(
        t=t, lang=lang, lang_urls=_lang_urls(request), error_code=error_code, info=info, config=config,
        asset_v=ASSET_VERSION, room_modules=ROOM_MODULES,
        role_label=(t("room.role.judge") if info and info["judge"] else
                    t("room.role.accompanies", role=t(f"room.role.{info['role']}"), party=info["accompanies"])
                    if info and info["role"] in ROLES and info["accompanies"] else
                    t(f"room.role.{info['role']}") if info and info["role"] in ROLES else ""),
    )
    resp = web.Response(text=html, content_type="text/html", status=status)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = _csp(request)
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Permissions-Policy"] = "camera=(self), microphone=(self), display-capture=(self)"
    return resp


async def transcript_pdf(request: web.Request) -> web.StreamResponse:
    """The session's final e-transcript for whoever holds one of its join links as a party or the
    mediator (the room's "download" once `transcript.finalized` came; docs/protocol.md)."""
    token = request.match_info["token"]
    try:
        if not 10 <= len(token) <= 4096:
            raise TokenInvalid("token_invalid", "This join link is not valid.")
        async with request.app["db"].read() as s:
            try:
                claims, _invite, sess = await session_svc.verify_join_token(s, request.app["settings"].secret_key, token)
            except NotFound:
                raise TokenInvalid("token_invalid", "This join link is not valid.")
            if claims.get("role") not in ("party", "mediator"):
                raise web.HTTPForbidden(text="Only the parties and the mediator get the transcript.")
            case = await case_svc.get_case(s, sess.case_id)
            path, sha256 = await transcript_svc.final_pdf_of_session(s, sess.id, request.app["settings"].data_dir)
    except TokenInvalid:
        raise web.HTTPNotFound(text="This link is not valid.")
    except NotFound as exc:
        raise web.HTTPNotFound(text=exc.message)
    name = quote(f"{case.number}-transcript-{sess.id}.pdf")
    return web.FileResponse(path, headers={"Content-Type": "application/pdf", "X-Content-SHA256": sha256,
                                           "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                           "Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


def setup(app: web.Application) -> None:
    # The join link itself opens the room (check-in first); /room/ is kept as an alias.
    app.router.add_get("/join/{token}", room_page, name="join")
    app.router.add_get("/room/{token}", room_page, name="room")
    app.router.add_get("/room/{token}/transcript.pdf", transcript_pdf)
