"""The residents' pages: home, filing a case (/file, /file/done), looking it up (/lookup) and
withdrawing it; the helpers they use are in common.py.

Proof of the applicant on /lookup: after number + phone + access code have been checked by
services.cases.applicant_login, the browser gets a short-lived (20 min) HMAC-signed cookie that
names only the case id. It is HttpOnly, SameSite=Strict and limited to the /lookup path, so the
access code is never put in a URL, a hidden field or a cookie, and the proof expires by itself.

The access code after filing is shown once: the POST redirects to /file/done and carries number
and code in a signed HttpOnly cookie limited to that path (SameSite=Strict, 15 min at most),
which is deleted by the response that shows it; a reload then says the page has expired.
"""
from __future__ import annotations

from aiohttp import web

from server.core import serialize as ser
from server.core.errors import AppError, Conflict, Unauthorized, ValidationFailed
from server.core.schemas import CASE_TYPES, CATEGORIES, CaseIn, WithdrawIn, has_control, parse_id
from server.services import cases as case_svc
from server.services import directory, queries
from server.services.cases import Upload
from server.http.client import caller
from server.http.util import read_form
from server.http.pages.common import (
    APPLICANT_COOKIE, FormInvalid, _applicant, _clean, _db, _error_text, _opt_int, _put, _read, _set_cookie,
    _settings, _sign, _timeline_item, _unsign, check, redirect, render, service_fields,
)

FILED_COOKIE = "mediation_filed"
APPLICANT_SECONDS = 20 * 60
EVIDENCE_ACCEPT = "image/jpeg,image/png,image/webp,application/pdf,audio/mpeg,audio/mp4,audio/wav,video/mp4"
RESPONDENT_ROWS = 3
MAX_RESPONDENTS = 20


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
    inst = parse_id(request.query.get("institution"))
    if inst is not None:
        form["institution_id"] = str(inst)
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
    post = await read_form(request)
    form, data, kept = _case_form_from_post(post)
    uploads = []
    for field in post.getall("evidence", []):
        if isinstance(field, web.FileField) and field.filename:
            uploads.append(Upload(field.filename, field.file.read(cfg.max_evidence_bytes + 1)))
    try:
        case_in = check(request, CaseIn, data)
        async with _db(request).session() as s:
            case, code = await case_svc.file_case(s, request.app["evidence_store"], case_in, uploads,
                                                  max_bytes=cfg.max_evidence_bytes, max_files=cfg.max_evidence_files,
                                                  caller=caller(request))
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
    post = await read_form(request)
    form = {"number": _clean(post.get("number"), 40).upper(), "phone": _clean(post.get("phone"), 30)}
    code = _clean(post.get("code"), 32).upper()
    errors = {}
    refused: AppError | None = None
    for k, v in (("number", form["number"]), ("phone", form["phone"]), ("code", code)):
        if not v:
            errors[k] = t("err.required")
        elif has_control(v):
            errors[k] = t("err.control")
    if not errors:
        try:
            async with _read(request) as s:
                who = await case_svc.applicant_login(s, form["number"], code, form["phone"], caller=caller(request))
        except Unauthorized:
            errors["_"] = t("error.bad_access_code")
        except AppError as exc:
            if exc.code != "too_many_attempts":
                raise
            errors["_"], refused = _error_text(request, exc), exc
        else:
            resp = redirect(request, "/lookup/case")
            _set_cookie(request, resp, APPLICANT_COOKIE,
                        _sign(request, "applicant", {"cid": who.applicant_case_id}, APPLICANT_SECONDS),
                        path="/lookup", max_age=APPLICANT_SECONDS, samesite="Strict")
            return resp
    resp = render(request, "lookup.html", status=refused.status if refused else 422 if "_" not in errors else 401,
                  here="/lookup", form=form, errors=errors, has_view=False)
    if refused is not None:
        resp.headers.update(getattr(refused, "headers", {}))  # Retry-After
    return resp


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
    post = await read_form(request)
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
