"""Portal pages: server-rendered HTML for residents, institution staff, mediators and admins.

Every page calls the services in server/services (which hold the rules and the role checks);
handlers here only read forms, call a service, and render a template or redirect (POST ->
redirect -> GET). All text goes through the translator in request["t"].

Proof of the applicant on /lookup: after number + phone + access code have been checked by
services.cases.applicant_login, the browser gets a short-lived (20 min) HMAC-signed cookie that
names only the case id. It is HttpOnly, SameSite=Strict and limited to the /lookup path, so the
access code is never put in a URL, a hidden field or a cookie, and the proof expires by itself.

The access code after filing is shown once: the POST redirects to /file/done and carries number
and code in a signed HttpOnly cookie limited to that path (SameSite=Strict, 15 min at most),
which is deleted by the response that shows it; a reload then says the page has expired.
One-time messages after an action ("flash") travel the same way in a signed cookie.

One module (~1,100 lines) of the residents', staff and admin pages with their shared helpers; the next split is those helpers into their own module.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import math
import time
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.core import serialize as ser
from server.http.api.base import SESSION_COOKIE, set_session_cookie
from server.core.errors import AppError, Conflict, NotFound, Unauthorized, ValidationFailed
from server.core.policy import Actor, require_staff
from server.core.schemas import CASE_TYPES, CATEGORIES, EXPERT_LEVELS, INSTITUTION_KINDS, ROLES, AssignIn, CaseIn, CloseIn, ExpertIn, InstitutionIn, InviteIn, LoginIn, RejectIn, SessionIn, TransferIn, UserIn, UserPatch, WithdrawIn
from server.services import cases as case_svc
from server.services import directory, queries
from server.services import sessions as session_svc
from server.services.cases import Upload
from server.core.workflow import STATUSES
from server.http.util import has_key as _has_key, tr as _tr

FLASH_COOKIE = "mediation_flash"
FILED_COOKIE = "mediation_filed"
APPLICANT_COOKIE = "mediation_applicant"
APPLICANT_SECONDS = 20 * 60
DEFAULT_TZ = "Asia/Shanghai"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

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
EVIDENCE_ACCEPT = "image/jpeg,image/png,image/webp,application/pdf,audio/mpeg,audio/mp4,audio/wav,video/mp4"
RESPONDENT_ROWS = 3
MAX_RESPONDENTS = 20


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
             link: str | None = None) -> web.Response:
    """303 See Other (POST-redirect-GET), optionally with a one-time message for the next page."""
    resp = web.Response(status=303, headers={"Location": location})
    if msg:
        payload = {"msg": msg, "kind": kind}
        if link:
            payload["link"] = link
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
    if exc.code == "too_many_attempts":
        return t("error.too_many_attempts", minutes=(exc.fields or {}).get("retry_after_minutes", 15))
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


# Inputs that are a choice (select, radio): "please choose" reads better than "required".
_CHOICE_FIELDS = {"type", "category", "institution_id", "mediator_id", "role", "party_id", "expert_id", "result",
                  "kind", "level", "specialty"}


def _msg_kw(request) -> dict:
    cfg = _settings(request)
    return {"files": cfg.max_evidence_files, "mb": cfg.max_evidence_bytes // (1024 * 1024)}


def _pydantic_message(request, err: dict) -> str:
    t = request["t"]
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    if kind == "missing" and err.get("loc") and err["loc"][-1] in _CHOICE_FIELDS:
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
    value = _clean(value, 20)
    if not value:
        return None
    return int(value) if value.isdigit() and len(value) < 18 else value


def _put(d: dict, key: str, value) -> None:
    """Put a value unless it is missing, so the model's own 'required' message applies."""
    if value not in (None, ""):
        d[key] = value


# --- public pages ----------------------------------------------------------------------------------

async def home(request: web.Request) -> web.Response:
    async with _read(request) as s:
        institutions = [ser.institution(i) for i in await directory.list_institutions(s)]
    return render(request, "home.html", institutions=institutions)


async def _institution_options(request) -> list[dict]:
    async with _read(request) as s:
        return [ser.institution(i) for i in await directory.list_institutions(s)]


def _blank_case_form() -> dict:
    return {"type": "mediation", "category": "", "title": "", "description": "", "institution_id": "",
            "applicant": {"name": "", "phone": "", "id_number": "", "address": ""},
            "respondents": [{"name": "", "phone": "", "address": ""} for _ in range(RESPONDENT_ROWS)]}


async def _render_file_form(request, form: dict, errors: dict, status: int = 200) -> web.Response:
    cfg = _settings(request)
    return render(request, "file.html", status=status, here="/file", form=form, errors=errors,
                  institutions=await _institution_options(request), types=CASE_TYPES, categories=CATEGORIES,
                  max_files=cfg.max_evidence_files, max_mb=cfg.max_evidence_bytes // (1024 * 1024),
                  evidence_accept=EVIDENCE_ACCEPT, max_respondents=MAX_RESPONDENTS)


async def file_form(request: web.Request) -> web.Response:
    form = _blank_case_form()
    inst = request.query.get("institution", "")
    if inst.isdigit():
        form["institution_id"] = inst
    return await _render_file_form(request, form, {})


def _case_form_from_post(post) -> tuple[dict, dict, list[int]]:
    """(what to show again, what to validate, row index of each kept respondent)."""
    form = {k: _clean(post.get(k)) for k in ("type", "category", "title", "description", "institution_id")}
    form["applicant"] = {k: _clean(post.get(f"applicant.{k}"), 300)
                         for k in ("name", "phone", "id_number", "address")}
    rows = []
    for i in range(MAX_RESPONDENTS):
        row = {k: _clean(post.get(f"respondents.{i}.{k}"), 300) for k in ("name", "phone", "address")}
        if i >= RESPONDENT_ROWS and f"respondents.{i}.name" not in post:
            break
        rows.append(row)
    form["respondents"] = rows
    data: dict = {}
    for k in ("type", "category", "title", "description"):
        _put(data, k, form[k])
    _put(data, "institution_id", _opt_int(form["institution_id"]))
    applicant: dict = {}
    for k in ("name", "phone", "id_number", "address"):
        _put(applicant, k, form["applicant"][k])
    data["applicant"] = applicant
    kept = [i for i, r in enumerate(rows) if any(r.values())]
    data["respondents"] = [{k: v for k, v in rows[i].items() if v} for i in kept]
    return form, data, kept


async def file_submit(request: web.Request) -> web.Response:
    cfg = _settings(request)
    post = await request.post()
    form, data, kept = _case_form_from_post(post)
    uploads = []
    for field in post.getall("evidence", []):
        if isinstance(field, web.FileField) and field.filename:
            uploads.append(Upload(field.filename, field.file.read(cfg.max_evidence_bytes + 1)))
    try:
        case_in = check(request, CaseIn, data)
        async with _db(request).session() as s:
            case, code = await case_svc.file_case(s, request.app["evidence_store"], case_in, uploads,
                                                  max_bytes=cfg.max_evidence_bytes, max_files=cfg.max_evidence_files)
            await s.refresh(case, attribute_names=["institution"])
            number, institution = case.number, case.institution.name
    except FormInvalid as exc:
        errors = exc.fields
    except ValidationFailed as exc:
        errors = service_fields(request, exc)
    else:
        resp = redirect(request, "/file/done")
        _set_cookie(request, resp, FILED_COOKIE,
                    _sign(request, "filed", {"number": number, "code": code, "institution": institution}, 900),
                    path="/file/done", max_age=900, samesite="Strict")
        return resp
    # Respondent errors name the n-th kept row; point them at the row the user typed in.
    fixed = {}
    for path, msg in errors.items():
        parts = path.split(".")
        if parts[0] == "respondents" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(kept):
            parts[1] = str(kept[int(parts[1])])
        fixed[".".join(parts)] = msg
    if uploads and "evidence" not in fixed:
        fixed["evidence_again"] = request["t"]("file.evidence_again")
    return await _render_file_form(request, form, fixed, status=422)


async def file_done(request: web.Request) -> web.Response:
    data = _unsign(request, "filed", request.cookies.get(FILED_COOKIE))
    # No language switch here: following it would reload the page, and the code is shown only once.
    resp = render(request, "filed.html", filed=data, hide_lang_switch=data is not None)
    if request.cookies.get(FILED_COOKIE):
        # The access code is shown once: the cookie carrying it is gone after this page.
        resp.del_cookie(FILED_COOKIE, path="/file/done")
    return resp


async def lookup_form(request: web.Request) -> web.Response:
    if _unsign(request, "applicant", request.cookies.get(APPLICANT_COOKIE)):
        return render(request, "lookup.html", form={}, errors={}, has_view=True)
    return render(request, "lookup.html", form={}, errors={}, has_view=False)


async def lookup_submit(request: web.Request) -> web.Response:
    t = request["t"]
    post = await request.post()
    form = {"number": _clean(post.get("number"), 40).upper(), "phone": _clean(post.get("phone"), 30)}
    code = _clean(post.get("code"), 32).upper()
    errors = {}
    for k, v in (("number", form["number"]), ("phone", form["phone"]), ("code", code)):
        if not v:
            errors[k] = t("err.required")
    if not errors:
        try:
            async with _read(request) as s:
                who = await case_svc.applicant_login(s, form["number"], code, form["phone"])
        except Unauthorized:
            errors["_"] = t("error.bad_access_code")
        except AppError as exc:
            if exc.code != "too_many_attempts":
                raise
            errors["_"] = _error_text(request, exc)
        else:
            resp = redirect(request, "/lookup/case")
            _set_cookie(request, resp, APPLICANT_COOKIE,
                        _sign(request, "applicant", {"cid": who.applicant_case_id}, APPLICANT_SECONDS),
                        path="/lookup", max_age=APPLICANT_SECONDS, samesite="Strict")
            return resp
    return render(request, "lookup.html", status=422 if "_" not in errors else 401, here="/lookup",
                  form=form, errors=errors, has_view=False)


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


async def _render_applicant_case(request, *, errors=None, status=200) -> web.Response:
    async with _read(request) as s:
        found = await _applicant(request, s)
        if found is None:
            return redirect(request, "/lookup", msg=request["t"]("lookup.expired"), kind="info")
        who, case = found
        case = await case_svc.view(s, who, case.id)
        hist = [ser.audit_entry(e, public=True) for e in await case_svc.history(s, case.id)]
        actions = queries.allowed_actions(who, case)
        inst_names = {i.id: i.name for i in await directory.list_institutions(s, include_inactive=True)}
        data = ser.case_full(case, staff=False)
    timeline = [_timeline_item(request, e, inst_names) for e in hist]
    return render(request, "lookup_case.html", status=status, here="/lookup/case", case=data,
                  timeline=timeline, can_withdraw="withdraw" in actions, errors=errors or {})


async def lookup_case(request: web.Request) -> web.Response:
    return await _render_applicant_case(request)


async def lookup_withdraw(request: web.Request) -> web.Response:
    t = request["t"]
    post = await request.post()
    if post.get("confirm") != "yes":
        return await _render_applicant_case(request, errors={"confirm": t("lookup.withdraw_confirm_needed")},
                                            status=422)
    try:
        data = check(request, WithdrawIn, {"reason": _clean(post.get("reason"), 2000)})
        async with _db(request).session() as s:
            found = await _applicant(request, s)
            if found is None:
                return redirect(request, "/lookup", msg=t("lookup.expired"), kind="info")
            await case_svc.withdraw(s, found[0], found[1].id, data)
    except FormInvalid as exc:
        return await _render_applicant_case(request, errors=exc.fields, status=422)
    except Conflict as exc:
        return await _render_applicant_case(request, errors={"_": _error_text(request, exc)}, status=409)
    return redirect(request, "/lookup/case", msg=t("flash.withdrawn"))


async def lookup_leave(request: web.Request) -> web.Response:
    resp = redirect(request, "/lookup", msg=request["t"]("lookup.left"), kind="info")
    resp.del_cookie(APPLICANT_COOKIE, path="/lookup")
    return resp


# --- staff login --------------------------------------------------------------------------------------

async def login_form(request: web.Request) -> web.Response:
    return render(request, "login.html", form={"next": _safe_next(request.query.get("next"))}, errors={})


async def login_submit(request: web.Request) -> web.Response:
    t = request["t"]
    post = await request.post()
    form = {"username": _clean(post.get("username"), 64), "next": _safe_next(post.get("next"))}
    errors: dict[str, str] = {}
    try:
        data = check(request, LoginIn, {"username": form["username"], "password": post.get("password") or ""})
        async with _db(request).session() as s:
            user, token, _csrf = await directory.login(s, data.username, data.password,
                                                       _settings(request).staff_session_hours)
    except FormInvalid as exc:
        errors = exc.fields
    except Unauthorized:
        errors = {"_": t("error.bad_credentials")}
    except AppError as exc:
        if exc.code != "too_many_attempts":
            raise
        errors = {"_": _error_text(request, exc)}
    else:
        resp = redirect(request, form["next"], msg=t("flash.welcome", name=user.name or user.username))
        set_session_cookie(request, resp, token)
        return resp
    return render(request, "login.html", status=422 if "_" not in errors else 401, here="/login",
                  form=form, errors=errors)


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
        q = _clean(request.query.get("q"), 100)
        raw_page = request.query.get("page", "1")
        page = int(raw_page) if raw_page.isdigit() and 0 < int(raw_page) < 100000 else 1
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
        details.append(t("timeline.invite", role=_tr(request, "jrole", d["role"]), name=d.get("name", "")))
    if d.get("scheduled_at"):
        details.append(t("timeline.scheduled", at=_fmt_dt(request, d["scheduled_at"])))
    if d.get("evidence"):
        details.append(t("timeline.evidence", n=len(d["evidence"])))
    actor = e.get("actor") or ""
    if e.get("actor_type") == "applicant":
        actor = t("timeline.applicant", name=actor) if actor else t("party.side.applicant")
    return {"action": _tr(request, "action", e.get("action")), "at": _fmt_dt(request, e.get("at")),
            "actor": actor, "details": details, "seq": e.get("seq"), "hash": e.get("hash")}


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
            invites = [{**ser.invite(i), "state": _invite_state(i, now)} for i in await session_svc.list_invites(s, x.id)]
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


def _path_id(request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound("No such item.")
    return int(raw)


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
    post = await request.post()
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
    post = await request.post()
    form = {k: _clean(v, 200) for k, v in post.items() if isinstance(v, str) and k != "csrf_token"}
    role = form.get("role", "")
    body: dict = {"role": role} if role else {}
    if role == "party":
        _put(body, "party_id", _opt_int(form.get("party_id")))
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
    except FormInvalid as exc:
        return await _render_case(request, case_id, errors=exc.fields, form=form, open_form=open_form, status=422)
    except ValidationFailed as exc:
        return await _render_case(request, case_id, errors=service_fields(request, exc), form=form,
                                  open_form=open_form, status=422)
    except Conflict as exc:
        return await _render_case(request, case_id, banner=_error_text(request, exc), status=exc.status)
    url = f"{cfg.public_url}/join/{token}"
    return redirect(request, f"/staff/cases/{case_id}#session-{sid}",
                    msg=t("flash.invite", name=name, role=_tr(request, "jrole", role)), link=url)


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


# --- admin -------------------------------------------------------------------------------------------

async def _render_institutions(request, *, form=None, errors=None, status=200) -> web.Response:
    require_staff(request["actor"], "admin")
    async with _read(request) as s:
        rows = [ser.institution(i) for i in await directory.list_institutions(s, include_inactive=True)]
    return render(request, "admin/institutions.html", status=status, here="/admin/institutions",
                  institutions=rows, kinds=INSTITUTION_KINDS, form=form or {"kind": "people"}, errors=errors or {})


async def institutions_page(request: web.Request) -> web.Response:
    return await _render_institutions(request)


async def institutions_add(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor, "admin")
    post = await request.post()
    form = {k: _clean(post.get(k), 200) for k in ("name", "kind", "area", "prefix")}
    form["prefix"] = form["prefix"].upper()
    body = {"name": form["name"], "area": form["area"]}
    _put(body, "kind", form["kind"])
    _put(body, "prefix", form["prefix"])
    try:
        data = check(request, InstitutionIn, body)
        async with _db(request).session() as s:
            inst = await directory.add_institution(s, actor, data)
            name = inst.name
    except FormInvalid as exc:
        return await _render_institutions(request, form=form, errors=exc.fields, status=422)
    except (ValidationFailed, Conflict) as exc:
        return await _render_institutions(request, form=form, errors=service_fields(request, exc), status=exc.status)
    return redirect(request, "/admin/institutions", msg=request["t"]("flash.institution_added", name=name))


async def _render_users(request, *, form=None, errors=None, status=200) -> web.Response:
    actor = request["actor"]
    async with _read(request) as s:
        users = [ser.user(u) for u in await directory.list_users(s, actor)]
        insts = [ser.institution(i) for i in await directory.list_institutions(s, include_inactive=True)]
    names = {i["id"]: i["name"] for i in insts}
    for u in users:
        u["institution"] = names.get(u["institution_id"], "")
    return render(request, "admin/users.html", status=status, here="/admin/users", users=users,
                  institutions=[i for i in insts if i["active"]], roles=ROLES,
                  form=form or {"role": "mediator"}, errors=errors or {},
                  add_open=any(not k.startswith("user-") for k in (errors or {})))


async def users_page(request: web.Request) -> web.Response:
    return await _render_users(request)


async def users_add(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor, "admin")
    post = await request.post()
    form = {k: _clean(post.get(k), 100) for k in ("username", "role", "institution_id", "name")}
    body = {"username": form["username"], "password": post.get("password") or "", "name": form["name"]}
    _put(body, "role", form["role"])
    _put(body, "institution_id", _opt_int(form["institution_id"]))
    try:
        data = check(request, UserIn, body)
        async with _db(request).session() as s:
            user = await directory.add_user(s, actor, data)
            username = user.username
    except FormInvalid as exc:
        return await _render_users(request, form=form, errors=exc.fields, status=422)
    except (ValidationFailed, Conflict) as exc:
        return await _render_users(request, form=form, errors=service_fields(request, exc), status=exc.status)
    return redirect(request, "/admin/users", msg=request["t"]("flash.user_added", name=username))


async def users_update(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor, "admin")
    t = request["t"]
    uid = _path_id(request, "user_id")
    post = await request.post()
    op = post.get("op")
    if op == "deactivate":
        body, msg = {"active": False}, "flash.user_deactivated"
    elif op == "activate":
        body, msg = {"active": True}, "flash.user_activated"
    elif op == "password":
        body, msg = {"password": post.get("password") or ""}, "flash.password_reset"
    else:
        raise ValidationFailed("Unknown operation.")
    try:
        data = check(request, UserPatch, body)
        async with _db(request).session() as s:
            user = await directory.update_user(s, actor, uid, data)
            name = user.username
    except FormInvalid as exc:
        return await _render_users(request, errors={f"user-{uid}": next(iter(exc.fields.values()))}, status=422)
    except ValidationFailed as exc:
        return await _render_users(request, errors={f"user-{uid}": next(iter(service_fields(request, exc).values()))},
                                   status=exc.status)
    return redirect(request, "/admin/users", msg=t(msg, name=name))


async def _render_experts(request, *, form=None, errors=None, status=200) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    specialty = _clean(request.query.get("specialty"), 40)
    level = request.query.get("level", "")
    level = level if level in EXPERT_LEVELS else ""
    async with _read(request) as s:
        every = await directory.list_experts(s, actor)
        rows = [ser.expert(e) for e in every
                if (not specialty or e.specialty == specialty) and (not level or e.level == level)]
    specialties = sorted({e.specialty for e in every} | set(CATEGORIES),
                         key=lambda x: (x not in CATEGORIES, CATEGORIES.index(x) if x in CATEGORIES else 0, x))
    return render(request, "admin/experts.html", status=status, here="/admin/experts", experts=rows,
                  specialties=specialties, levels=EXPERT_LEVELS, specialty=specialty, level=level,
                  can_add=actor.user.role == "admin", form=form or {"level": "county"}, errors=errors or {})


async def experts_page(request: web.Request) -> web.Response:
    return await _render_experts(request)


async def experts_add(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor, "admin")
    post = await request.post()
    form = {k: _clean(post.get(k), 200) for k in ("name", "specialty", "level", "organisation", "phone")}
    body = {k: v for k, v in form.items() if k in ("organisation", "phone")}
    for k in ("name", "specialty", "level"):
        _put(body, k, form[k])
    try:
        data = check(request, ExpertIn, body)
        async with _db(request).session() as s:
            expert = await directory.add_expert(s, actor, data)
            name = expert.name
    except FormInvalid as exc:
        return await _render_experts(request, form=form, errors=exc.fields, status=422)
    except ValidationFailed as exc:
        return await _render_experts(request, form=form, errors=service_fields(request, exc), status=exc.status)
    return redirect(request, "/admin/experts", msg=request["t"]("flash.expert_added", name=name))


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


def _asset_version() -> str:
    import web as webpkg
    h = hashlib.sha256()
    for name in ("portal.css", "portal.js"):
        p = webpkg.STATIC / name
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:10]


ASSET_VERSION = _asset_version()


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/", home, name="home")
    r.add_get("/file", file_form, name="file")
    r.add_post("/file", file_submit)
    r.add_get("/file/done", file_done)
    r.add_get("/lookup", lookup_form, name="lookup")
    r.add_post("/lookup", lookup_submit)
    r.add_get("/lookup/case", lookup_case)
    r.add_post("/lookup/withdraw", lookup_withdraw)
    r.add_post("/lookup/leave", lookup_leave)
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
    r.add_get("/admin/institutions", institutions_page)
    r.add_post("/admin/institutions", institutions_add)
    r.add_get("/admin/users", users_page)
    r.add_post("/admin/users", users_add)
    r.add_post("/admin/users/{user_id}", users_update)
    r.add_get("/admin/experts", experts_page)
    r.add_post("/admin/experts", experts_add)
    app.middlewares.append(not_found_middleware)
    env = app["jinja"]
    env.globals["pairs"] = lambda rows, key, label: [(r[key], r[label]) for r in rows]
