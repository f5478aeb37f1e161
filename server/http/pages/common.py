"""What every page module shares: rendering a template with the common context (navigation,
language links, the one-time message, CSP), the error page, POST-redirect-GET, HMAC-signed
cookies, forms checked with the API's pydantic models and their messages translated, dates in
the centre's time zone, one entry of a case's timeline, the applicant's proof from the /lookup
cookie, and the friendly 404/405 pages.

Every page calls the services in server/services (which hold the rules and the role checks);
handlers only read forms, call a service, and render a template or redirect (POST -> redirect ->
GET). All text goes through the translator in request["t"].

One-time messages after an action ("flash") travel in a signed HttpOnly cookie (5 min at most),
deleted by the page that shows them.
"""
from __future__ import annotations

import base64
import contextvars
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from typing import Awaitable, Callable
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.core.errors import AppError, NotFound, Unauthorized
from server.core.policy import Actor
from server.services import cases as case_svc
from server.core.schemas import CONTROL_MESSAGE, DATE_MAX, DATE_MESSAGE, DATE_MIN, whole_number
from server.http.util import has_key as _has_key, path_int, tr as _tr

FLASH_COOKIE = "mediation_flash"
APPLICANT_COOKIE = "mediation_applicant"
DEFAULT_TZ = "Asia/Shanghai"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class FormInvalid(Exception):
    """Field messages (already translated) for a form that is shown again."""

    def __init__(self, fields: dict[str, str]):
        super().__init__("form invalid")
        self.fields = fields


# --- small helpers -----------------------------------------------------------------------------

def _settings(request):
    return request.app["settings"]


def _db(request):
    return request.app["db"]


def _read(request):
    """A read-only unit of work (no write lock on SQLite) where the database offers one."""
    db = request.app["db"]
    return db.read() if hasattr(db, "read") else db.session()


def _tz(request) -> ZoneInfo:
    return ZoneInfo(getattr(_settings(request), "display_tz", None) or DEFAULT_TZ)


def _fmt_dt(request, value, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(_tz(request)).strftime(fmt)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(request, purpose: str, payload: dict, seconds: int) -> str:
    body = _b64(json.dumps({**payload, "exp": int(time.time()) + seconds}, ensure_ascii=False).encode())
    mac = hmac.new(_settings(request).secret_key.encode(), f"{purpose}.{body}".encode(), hashlib.sha256)
    return f"{body}.{_b64(mac.digest())}"


def _unsign(request, purpose: str, value: str | None) -> dict | None:
    if not value or len(value) > 3500 or "." not in value:
        return None
    body, _, sig = value.rpartition(".")
    mac = hmac.new(_settings(request).secret_key.encode(), f"{purpose}.{body}".encode(), hashlib.sha256)
    try:
        if not hmac.compare_digest(_unb64(sig), mac.digest()):
            return None
        data = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("exp", 0) < time.time():
        return None
    return data


def _set_cookie(request, resp, name: str, value: str, *, path: str = "/", max_age: int | None = None,
                samesite: str = "Lax") -> None:
    resp.set_cookie(name, value, httponly=True, samesite=samesite, path=path, max_age=max_age,
                    secure=_settings(request).cookie_secure)


def redirect(request, location: str, *, msg: str | None = None, kind: str = "ok",
             link: str | None = None, dial_in: dict | None = None) -> web.Response:
    """303 See Other (POST-redirect-GET), optionally with a one-time message for the next page."""
    resp = web.Response(status=303, headers={"Location": location})
    if msg:
        payload = {"msg": msg, "kind": kind}
        if link:
            payload["link"] = link
        if dial_in:  # joining by telephone: the session number and the link's PIN, shown once too
            payload["dial_in"] = dial_in
        _set_cookie(request, resp, FLASH_COOKIE, _sign(request, "flash", payload, 300), max_age=300)
    return resp


def _safe_next(value: str | None, default: str = "/staff") -> str:
    if not value or not value.startswith("/") or value.startswith("//") or len(value) > 500 \
            or any(c in value for c in "\\\t\r\n ") or not value.isprintable():
        return default
    return value


def _login_redirect(request) -> web.Response:
    if request.method in ("GET", "HEAD"):
        target = request.path_qs
    else:
        ref = request.headers.get("Referer", "")
        host = f"://{request.host}"
        target = ref.split(host, 1)[1] if host in ref else "/staff"
    return redirect(request, "/login?" + urlencode({"next": _safe_next(target)}),
                    msg=request["t"]("login.required"), kind="info")


def _lang_urls(request, here: str | None) -> dict[str, str]:
    from yarl import URL
    base = URL(here) if here else request.rel_url
    return {lang: str(base.update_query(lang=lang)) for lang in ("zh-CN", "en")}


def _nav(request) -> list[tuple[str, str]]:
    user = request["actor"].user
    if user is None:
        return [("/", "nav.home"), ("/file", "nav.file"), ("/lookup", "nav.lookup")]
    items: list[tuple[str, str]] = []
    if user.role in ("intake", "admin"):
        items.append(("/staff/queue", "nav.queue"))
    if user.role == "mediator":
        items.append(("/staff/my", "nav.my_cases"))
    if user.role == "clerk":
        items.append(("/staff/cases", "nav.cases"))
    if user.role in ("clerk", "admin"):
        items += [("/archive", "archive.nav"), ("/analytics", "analytics.nav")]
    if user.role == "admin":
        items += [("/admin/institutions", "nav.institutions"), ("/admin/users", "nav.users"),
                  ("/admin/experts", "nav.experts")]
    elif user.role in ("mediator", "intake"):
        items.append(("/admin/experts", "nav.expert_pool"))
    return items


def render(request, template: str, status: int = 200, *, here: str | None = None, **ctx) -> web.Response:
    """Render a page with the common context; consumes the one-time message if there is one."""
    t = request["t"]
    flash = _unsign(request, "flash", request.cookies.get(FLASH_COOKIE))
    user = request["actor"].user
    env = request.app["jinja"]
    base = {
        "t": t, "lang": request["lang"], "user": user, "csrf_token": request["csrf_token"],
        "path": request.path, "nav": _nav(request), "flash": flash,
        "lang_urls": _lang_urls(request, here), "tr": lambda prefix, v: _tr(request, prefix, v),
        "options": lambda prefix, values: [(v, _tr(request, prefix, v)) for v in values],
        "fmt_dt": lambda v, fmt="%Y-%m-%d %H:%M": _fmt_dt(request, v, fmt),
        "asset_v": ASSET_VERSION,
    }
    html = env.get_template(template).render(**base, **ctx)
    resp = web.Response(text=html, content_type="text/html", status=status)
    if request.cookies.get(FLASH_COOKIE):
        resp.del_cookie(FLASH_COOKIE, path="/")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = CSP
    return resp


def _error_text(request, exc: AppError) -> str:
    t = request["t"]
    if exc.code == "illegal_transition" and isinstance(exc.fields, dict):
        return t("error.illegal_transition", status=_tr(request, "status", exc.fields.get("status")),
                 action=_tr(request, "do", exc.fields.get("action")))
    if exc.code == "too_many_attempts":  # server/core/throttle.py: which wait, and how long
        fields = exc.fields or {}
        if fields.get("scope") == "account":
            return t("error.too_many_attempts_account", minutes=fields.get("retry_after_minutes", 60))
        if fields.get("retry_after", 60) < 60:
            return t("error.too_many_attempts_seconds", seconds=fields["retry_after"])
        return t("error.too_many_attempts", minutes=fields.get("retry_after_minutes", 15))
    if exc.code == "validation_failed" and exc.fields:
        # A query or path refused by a rule the forms share (a control character, a date out of range).
        keys = {_RULE_MESSAGES.get(str(m)) for m in exc.fields.values()}
        if len(keys) == 1 and None not in keys:
            return t(keys.pop(), **_msg_kw(request))
    key = f"error.{exc.code}"
    if exc.code == "too_large":
        return t(key, mb=request.app["settings"].max_evidence_bytes // (1024 * 1024))
    if _has_key(request, key):
        return t(key)
    key = f"error.status.{exc.status}"
    return t(key) if _has_key(request, key) else t("error.status.400")


def render_error(request, exc: AppError) -> web.Response:
    """Called by the error middleware for an AppError on a page (not /api)."""
    if isinstance(exc, Unauthorized) and exc.code == "unauthorized":
        return _login_redirect(request)
    t = request["t"]
    title_key = f"error.title.{exc.code}"
    if not _has_key(request, title_key):
        title_key = f"error.title.{exc.status}"
    back = ""
    if exc.code == "csrf_failed":
        ref, host = request.headers.get("Referer", ""), f"://{request.host}"
        back = _safe_next(ref.split(host, 1)[1] if host in ref else "", "")
    return render(request, "error.html", status=exc.status, here="/" if request.method != "GET" else None,
                  title=t(title_key) if _has_key(request, title_key) else t("error.title.400"),
                  message=_error_text(request, exc), code=exc.code, err_status=exc.status, back=back)


# --- form parsing and error messages ----------------------------------------------------------------

_SERVICE_FIELD_MESSAGES = {
    "unknown institution": "err.unknown_institution",
    "same institution": "err.same_institution",
    "too_many_files": "err.too_many_files",
    "empty_file": "err.empty_file",
    "file_too_large": "err.file_too_large",
    "file_type_not_allowed": "err.file_type",
    "not a mediator of this institution": "err.not_mediator",
    "required for a party": "err.choose_party",
    "not a party of this case": "err.choose_party",
    "not in the expert pool": "err.choose_expert",
    "required": "err.required",
    "timezone required": "err.datetime",
    "taken": "err.taken",
    "required for this role": "err.institution_for_role",
    "self": "err.self_deactivate",
}
# The rules every input follows (server/core/schemas.py), as a service or a reader words them.
_RULE_MESSAGES = {CONTROL_MESSAGE: "err.control", DATE_MESSAGE: "err.date_range"}
_SERVICE_FIELD_MESSAGES.update(_RULE_MESSAGES)


# Inputs that are a choice (select, radio): "please choose" reads better than "required".
_CHOICE_FIELDS = {"type", "category", "institution_id", "mediator_id", "role", "party_id", "expert_id", "result",
                  "kind", "level", "specialty"}


def _msg_kw(request) -> dict:
    cfg = _settings(request)
    return {"files": cfg.max_evidence_files, "mb": cfg.max_evidence_bytes // (1024 * 1024),
            "min": DATE_MIN.isoformat(), "max": DATE_MAX.isoformat()}


def _pydantic_message(request, err: dict) -> str:
    t = request["t"]
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    choice = bool(err.get("loc")) and err["loc"][-1] in _CHOICE_FIELDS
    if kind == "control_character":
        return t("err.control")
    if kind == "date_range":
        return t("err.date_range", **_msg_kw(request))
    if kind == "missing" and choice:
        return t("err.choose")
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return t("err.required")
    if kind == "string_too_short":
        return t("err.too_short", n=ctx.get("min_length"))
    if kind in ("string_too_long", "too_long"):
        return t("err.too_long", n=ctx.get("max_length"))
    if kind in ("literal_error", "int_parsing", "int_type", "greater_than", "enum"):
        return t("err.choose")
    if kind.startswith("datetime"):
        return t("err.datetime")
    if kind == "string_pattern_mismatch":
        return t("err.pattern")
    if kind == "less_than_equal" and choice:  # an id beyond any row (docs/api.md, "Accepted input")
        return t("err.choose")
    if kind in ("greater_than_equal", "less_than_equal"):
        return t("err.range")
    msg = str(err.get("msg", ""))
    if "phone" in msg:
        return t("err.phone")
    if "identity" in msg:
        return t("err.id_number")
    if "letters, digits" in msg:
        return t("err.username")
    return t("err.invalid")


def check(request, model: type[BaseModel], data: dict) -> BaseModel:
    """Validate a form with the same pydantic model the API uses; messages come translated."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "_"
            fields.setdefault(path, _pydantic_message(request, err))
        raise FormInvalid(fields)


def service_fields(request, exc: AppError) -> dict[str, str]:
    """Field messages of a ValidationFailed/Conflict raised by a service, translated."""
    t = request["t"]
    out = {}
    for path, msg in (exc.fields or {}).items():
        key = _SERVICE_FIELD_MESSAGES.get(str(msg))
        out[path] = t(key, **_msg_kw(request)) if key else t("err.invalid")
    if not out:
        out["_"] = _error_text(request, exc)
    return out


def _clean(value, limit: int = 10000) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _opt_int(value) -> int | str | None:
    """A number field: its int (ASCII digits), else the text itself, for the model to refuse."""
    value = _clean(value, 20)
    if not value:
        return None
    n = whole_number(value)
    return value if n is None else n


def _put(d: dict, key: str, value) -> None:
    """Put a value unless it is missing, so the model's own 'required' message applies."""
    if value not in (None, ""):
        d[key] = value


# --- shared by several audiences' pages -------------------------------------------------------------

_path_id = path_int  # the API's: one rule for ids in paths (docs/api.md, "Accepted input")


def _timeline_item(request, e: dict, inst_names: dict) -> dict:
    t = request["t"]
    d = e.get("data") or {}
    details = []
    if d.get("from") and d.get("to") and d["from"] != d["to"]:
        details.append(t("timeline.status_change", **{"from": _tr(request, "status", d["from"]),
                                                       "to": _tr(request, "status", d["to"])}))
    if d.get("to_institution"):
        details.append(t("timeline.to_institution",
                         name=inst_names.get(d["to_institution"], str(d["to_institution"]))))
    if d.get("mediator"):
        details.append(t("timeline.mediator", name=d["mediator"]))
    if d.get("reason"):
        details.append(t("timeline.reason", reason=d["reason"]))
    if d.get("note"):
        details.append(t("timeline.note", note=d["note"]))
    if e.get("action", "").startswith("invite.") and d.get("role"):
        role = _tr(request, "jrole", d["role"])
        if d.get("accompanies"):  # an interpreter or support person, with the party they accompany
            role = t("jrole.accompanies", role=role, party=d["accompanies"])
        details.append(t("timeline.invite", role=role, name=d.get("name", "")))
    if d.get("scheduled_at"):
        details.append(t("timeline.scheduled", at=_fmt_dt(request, d["scheduled_at"])))
    if d.get("evidence"):
        details.append(t("timeline.evidence", n=len(d["evidence"])))
    actor = e.get("actor") or ""
    if e.get("actor_type") == "applicant":
        actor = t("timeline.applicant", name=actor) if actor else t("party.side.applicant")
    return {"action": _tr(request, "action", e.get("action")), "at": _fmt_dt(request, e.get("at")),
            "actor": actor, "details": details, "seq": e.get("seq"), "hash": e.get("hash")}


async def _applicant(request, s) -> tuple[Actor, object] | None:
    proof = _unsign(request, "applicant", request.cookies.get(APPLICANT_COOKIE))
    if not proof or not isinstance(proof.get("cid"), int):
        return None
    try:
        case = await case_svc.get_case(s, proof["cid"])
    except NotFound:
        return None
    applicant = next((p for p in case.parties if p.side == "applicant"), None)
    who = Actor(applicant_case_id=case.id, applicant_name=applicant.name if applicant else "")
    return who, case


# --- wiring -------------------------------------------------------------------------------------------------

@web.middleware
async def not_found_middleware(request: web.Request, handler):
    """Friendly pages for unknown addresses and wrong methods (the API keeps its JSON errors)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405) and not request.path.startswith(("/api/", "/static/", "/socket.io")) \
                and request.get("t"):
            return render_error(request, AppError(exc.reason, status=exc.status,
                                                  code="not_found" if exc.status == 404 else "method_not_allowed"))
        raise


def asset_version(*names: str) -> str:
    """A short hash of static files, for cache-busting their URLs."""
    import web as webpkg
    h = hashlib.sha256()
    for name in names:
        p = webpkg.STATIC / name
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:10]


def page_part(name: str, load: Callable[[web.Request], Awaitable[dict | None]]):
    """A part that other pages' templates include (the procedure's, the follow-through's): a middleware
    runs `load(request)` (None: nothing for this page) and the template reads the data with the getter.
    A part that fails leaves the page as it was without it: an AppError silently, anything else logged."""
    data_var: contextvars.ContextVar[dict] = contextvars.ContextVar(f"{name}_page_data", default={})
    log = logging.getLogger(f"mediation.{name}")

    @web.middleware
    async def middleware(request: web.Request, handler):
        try:
            data = await load(request)
        except AppError:
            data = None
        except Exception:  # noqa: BLE001 - a part must never take the page down with it
            log.exception("%s part of %s failed", name, request.path)
            data = None
        if data is None:
            return await handler(request)
        token = data_var.set(data)
        try:
            return await handler(request)
        finally:
            data_var.reset(token)

    return middleware, data_var.get


ASSET_VERSION = asset_version("portal.css", "portal.js")


def setup(app: web.Application) -> None:
    """After the residents', staff and admin routes: the friendly 404/405 pages and the templates' pairs()."""
    app.middlewares.append(not_found_middleware)
    env = app["jinja"]
    env.globals["pairs"] = lambda rows, key, label: [(r[key], r[label]) for r in rows]
