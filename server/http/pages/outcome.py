"""Outcome pages: the mediator's agreement page, the parties' signing and court pages, the clerk's verification.

- /staff/cases/{id}/agreement — draft from a template, finalise, personal links for the parties,
  the mediator's signature, the signed PDF, judicial confirmation and delivery state;
- /lookup/outcome — the applicant (after /lookup: number + phone + access code);
- /outcome/p/{token} — any party through the personal link the mediator issued;
- /staff/agreements/verify — upload a PDF: signature and whether it is the file on record.

All rules are in server/services/outcome/agreements.py and court.py; handlers read forms, call them,
and redirect (POST → redirect → GET) or show the page again with the error.
"""
from __future__ import annotations

import datetime as dt

from aiohttp import web

from server.core import serialize as ser
from server.http.pages import common as P
from server.http.api.outcome import pdf_response, runtime, verify_bytes
from server.core.errors import AppError, Conflict, NotFound, Unauthorized, ValidationFailed
from server.core.policy import require_staff
from server.core.schemas import CATEGORIES
from server.services.outcome import agreements as agr
from server.services.outcome import court as court_svc
from server.services import queries
from server.http.util import read_form

MAX_UPLOAD = 20 * 1024 * 1024
FIELD_KEYS = {
    "empty": "outcome.err.signature_empty", "not_png": "outcome.err.signature_invalid",
    "invalid": "outcome.err.signature_invalid", "bad_size": "outcome.err.signature_invalid",
    "required": "err.required", "blanks left": "outcome.err.blanks_left", "unknown court": "err.choose",
    "not a basic-level court": "outcome.err.basic_court", "differs from the one on file": "outcome.err.id_differs",
    "not a party of this case": "err.choose_party",
}


def _message(request, exc: AppError) -> str:
    t = request["t"]
    key = f"outcome.error.{exc.code}"
    if P._has_key(request, key):
        return t(key)
    return P._error_text(request, exc)


def _field_errors(request, exc: AppError) -> dict[str, str]:
    t = request["t"]
    out = {}
    for k, v in (exc.fields or {}).items():
        key = FIELD_KEYS.get(str(v))
        out[k] = t(key) if key else t("err.invalid")
    return out


def _days_left(deadline) -> int | None:
    return court_svc.days_left(deadline) if deadline else None


def _sig_rows(request, rows: list[dict]) -> list[dict]:
    for r in rows:
        r["role_label"] = (P._tr(request, "party.side", r["side"]) if r["role"] == "party"
                           else request["t"]("outcome.role.mediator"))
        r["method_label"] = P._tr(request, "outcome.method", r["method"]) if r["method"] else ""
    return rows


def _sub_rows(request, subs: list[dict]) -> list[dict]:
    for x in subs:
        x["kind_label"] = P._tr(request, "outcome.kind", x["kind"])
        x["status_label"] = P._tr(request, "outcome.sub_status", x["status"])
        x["basis_label"] = P._tr(request, "outcome.basis", x["basis"]) if x["basis"] else ""
    return subs


# --- staff ---------------------------------------------------------------------------------------------------

async def _render_staff(request, case_id: int, *, errors=None, form=None, banner="", status=200) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    rt = runtime(request)
    async with P._read(request) as s:
        case, ag = await agr.staff_view(s, actor, case_id)
        sigs = await agr.signatures(s, ag.id) if ag else []
        comments = [agr.comment_view(c) for c in await agr.comments(s, ag.id)] if ag else []
        subs = [court_svc.submission_view(x, m, case) for x, m in await court_svc.list_submissions(s, case.id)]
        actions = queries.allowed_actions(actor, case)
        case_d = ser.case_full(case, staff=True)
        templates = {k: "\n".join(agr.template_terms(case, k)) for k in agr.TEMPLATES}
        view = agr.view(ag, case, sigs) if ag else None
        options = court_svc.court_options(rt.cfg, case)
    is_mediator = "manage_sessions" in actions
    content = (view or {}).get("content") or {}
    if form is None:
        form = {"template": content.get("template") or (case.category if case.category in CATEGORIES else "other"),
                "facts": content.get("facts") if view else case.description,
                "terms": "\n".join(content.get("terms") or []) if view else templates.get(case.category, ""),
                "performance_deadline": content.get("performance_deadline") or ""}
    confirmation = next((x for x in subs if x["kind"] == "judicial_confirmation"), None)
    return P.render(
        request, "outcome/staff.html", status=status, here=f"/staff/cases/{case_id}/agreement", case=case_d,
        ag=view, signers=_sig_rows(request, view["signers"]) if view else [], comments=comments,
        submissions=_sub_rows(request, subs), confirmation=confirmation, is_mediator=is_mediator,
        can_draft=is_mediator and case.status == "in_mediation" and (view is None or view["status"] == "draft"),
        mediator_signed=any(x.signer_key == "mediator" for x in sigs), form=form, errors=errors or {},
        banner=banner, templates=templates, categories=CATEGORIES, courts=options, bases=court_svc.BASES,
        days_left=_days_left(ag.confirmation_deadline if ag else None),
        can_link=is_mediator and case.status in ("in_mediation", "settled", "failed"))


async def staff_page(request: web.Request) -> web.Response:
    return await _render_staff(request, P._path_id(request, "case_id"))


async def staff_action(request: web.Request) -> web.Response:
    actor = request["actor"]
    require_staff(actor)
    t = request["t"]
    case_id = P._path_id(request, "case_id")
    op = request.match_info["op"]
    post = await read_form(request)
    form = {k: P._clean(v, 12000) for k, v in post.items() if isinstance(v, str) and k not in ("csrf_token",
                                                                                              "signature")}
    rt = runtime(request)
    here = f"/staff/cases/{case_id}/agreement"
    link = None
    try:
        if op in ("save", "finalise"):
            body: dict = {}
            if op == "save":
                for k in ("template", "facts", "performance_deadline"):
                    P._put(body, k, form.get(k))
                if "facts" in form and "facts" not in body:
                    body["facts"] = ""
                if "terms" in form:
                    body["terms"] = [x.strip() for x in form["terms"].splitlines() if x.strip()]
            P._put(body, "version", P._opt_int(form.get("version")))
            if op == "save":
                data = P.check(request, agr.DraftIn, body)
                async with P._db(request).session() as s:
                    await agr.save_draft(s, actor, case_id, data)
                msg = t("outcome.flash.saved")
            else:
                data = P.check(request, agr.FinaliseIn, body)
                async with P._db(request).session() as s:
                    await agr.finalise(s, actor, case_id, data)
                msg = t("outcome.flash.finalised")
        elif op == "link":
            body = {}
            P._put(body, "party_id", P._opt_int(form.get("party_id")))
            P._put(body, "id_number", form.get("id_number"))
            data = P.check(request, agr.LinkIn, body)
            async with P._db(request).session() as s:
                _link, token, party = await agr.issue_link(s, actor, case_id, data)
                name = party.name
            link = f"{P._settings(request).public_url}/outcome/p/{token}"
            msg = t("outcome.flash.link", name=name)
        elif op == "sign":
            data = P.check(request, agr.SignIn, {"signature": P._clean(post.get("signature"), 10**6),
                                                 "text_sha256": form.get("text_sha256", ""),
                                                 "agree": form.get("agree") == "yes"})
            async with P._db(request).session() as s:
                _ag, _sig, effective = await agr.sign_as_mediator(s, rt.sign_ctx(), actor, case_id, data,
                                                                  ip=request.remote or "",
                                                                  user_agent=request.headers.get("User-Agent", ""))
            msg = t("outcome.flash.effective") if effective else t("outcome.flash.signed")
        elif op == "confirmation":
            body = {}
            P._put(body, "court_id", form.get("court_id"))
            P._put(body, "basis", form.get("basis"))
            data = P.check(request, court_svc.ConfirmationIn, body)
            async with P._db(request).session() as s:
                await court_svc.start_confirmation(s, rt.cfg, rt.sign_ctx(), actor, case_id, data)
            msg = t("outcome.flash.application_prepared")
        elif op == "retry":
            sid = P._opt_int(form.get("submission_id"))
            if not isinstance(sid, int):
                raise NotFound("No such submission.")
            async with P._db(request).session() as s:
                await court_svc.retry_now(s, actor, case_id, sid)
            msg = t("outcome.flash.retry")
        else:
            raise NotFound("No such action.")
    except P.FormInvalid as exc:
        return await _render_staff(request, case_id, errors=exc.fields, form=form if op == "save" else None,
                                   status=422)
    except (ValidationFailed, Conflict, Unauthorized) as exc:
        errs = _field_errors(request, exc)
        return await _render_staff(request, case_id, errors=errs, form=form if op == "save" else None,
                                   banner="" if errs and exc.code == "validation_failed" else _message(request, exc),
                                   status=exc.status)
    return P.redirect(request, here + ("#signers" if op in ("link", "sign") else ""), msg=msg, link=link)


async def staff_pdf(request: web.Request) -> web.Response:
    require_staff(request["actor"])
    case_id = P._path_id(request, "case_id")
    async with P._read(request) as s:
        case, ag = await agr.staff_view(s, request["actor"], case_id)
    if ag is None:
        raise NotFound("There is no agreement.")
    return pdf_response(await agr.read_pdf(runtime(request).store, ag), case.number, ag.pdf_sha256)


# --- clerk: verify a file ----------------------------------------------------------------------------------

async def verify_page(request: web.Request) -> web.Response:
    require_staff(request["actor"])
    return P.render(request, "outcome/verify.html", here="/staff/agreements/verify", result=None, errors={})


async def verify_submit(request: web.Request) -> web.Response:
    require_staff(request["actor"])
    t = request["t"]
    post = await read_form(request)
    f = post.get("file")
    if not isinstance(f, web.FileField) or not f.filename:
        return P.render(request, "outcome/verify.html", status=422, result=None,
                        errors={"file": t("outcome.verify.choose_file")})
    data = f.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD or not data:
        return P.render(request, "outcome/verify.html", status=422, result=None,
                        errors={"file": t("outcome.verify.bad_file")})
    result = await verify_bytes(request, data)
    result["filename"] = f.filename
    return P.render(request, "outcome/verify.html", result=result, errors={})


# --- parties ------------------------------------------------------------------------------------------------

class PartyPage:
    """The applicant (/lookup/outcome, cookie from /lookup) or a party by personal link (/outcome/p/{token})."""

    def __init__(self, request: web.Request):
        self.request = request
        self.token = request.match_info.get("token")
        self.base = f"/outcome/p/{self.token}" if self.token else "/lookup/outcome"

    async def who(self, s, *, touch: bool = False):
        if self.token:
            try:
                return await agr.resolve_link(s, self.token, touch=touch)
            except Unauthorized:
                raise NotFound("This link is not valid.", code="link_invalid")
        found = await P._applicant(self.request, s)
        if found is None:
            return None
        actor, case = found
        return case, agr.actor_party(actor, case)


def _expired(request) -> web.Response:
    return P.redirect(request, "/lookup", msg=request["t"]("lookup.expired"), kind="info")


async def _render_party(request, page: PartyPage, *, errors=None, banner="", status=200) -> web.Response:
    rt = runtime(request)
    async with P._read(request) as s:
        found = await page.who(s)
        if found is None:
            return _expired(request)
        case, who = found
        ag = await agr.get_for_case(s, case.id)
        sigs = await agr.signatures(s, ag.id) if ag else []
        view = agr.view(ag, case, sigs, staff=False) if ag else None
        comments = [agr.comment_view(c) for c in await agr.comments(s, ag.id)] if ag else []
        subs = [court_svc.submission_view(x, m, case) for x, m in await court_svc.list_submissions(s, case.id)]
        party = next(p for p in case.parties if p.id == who.party_id)
        options = court_svc.court_options(rt.cfg, case)
        default = court_svc.default_court(rt.cfg, case)
        case_d = ser.case_full(case, staff=False)
    me_row = next((r for r in (view or {}).get("signers", []) if r["key"] == f"party:{who.party_id}"), None)
    confirmation = next((x for x in subs if x["kind"] == "judicial_confirmation"), None)
    filing = next((x for x in subs if x["kind"] == "litigation_filing"), None)
    deadline_passed = bool(ag and ag.confirmation_deadline and ag.confirmation_deadline < dt.datetime.now(dt.timezone.utc))
    return P.render(
        request, "outcome/party.html", status=status, here=page.base if not page.token else None, case=case_d,
        me={"party_id": who.party_id, "name": who.name, "side": who.side, "via": who.via,
            "id_required": bool(party.id_number), "signed": bool(me_row and me_row["signed"]),
            "signed_at": me_row["signed_at"] if me_row else None},
        ag=view, signers=_sig_rows(request, view["signers"]) if view else [], comments=comments, base=page.base,
        errors=errors or {}, banner=banner, confirmation=confirmation, filing=filing,
        submissions=_sub_rows(request, subs), courts=options, bases=court_svc.BASES, default_court=default,
        confirmed_by_me=bool(confirmation and str(who.party_id) in confirmation["confirmations"]),
        days_left=_days_left(ag.confirmation_deadline if ag else None), deadline_passed=deadline_passed,
        hide_lang_switch=False)


async def party_page(request: web.Request) -> web.Response:
    return await _render_party(request, PartyPage(request))


async def party_action(request: web.Request) -> web.Response:
    page = PartyPage(request)
    t = request["t"]
    op = request.match_info["op"]
    post = await read_form(request)
    form = {k: P._clean(v, 3000) for k, v in post.items() if isinstance(v, str) and k not in ("csrf_token",
                                                                                            "signature")}
    rt = runtime(request)
    try:
        async with P._db(request).session() as s:
            found = await page.who(s, touch=True)
            if found is None:
                return _expired(request)
            case, who = found
            if op == "sign":
                data = P.check(request, agr.SignIn, {"signature": P._clean(post.get("signature"), 10**6),
                                                     "text_sha256": form.get("text_sha256", ""),
                                                     "id_last6": agr.clean_id_last6(form.get("id_last6")),
                                                     "agree": form.get("agree") == "yes"})
                _ag, _sig, effective = await agr.sign_as_party(s, rt.sign_ctx(), who, data,
                                                               ip=request.remote or "",
                                                               user_agent=request.headers.get("User-Agent", ""))
                msg = t("outcome.flash.effective") if effective else t("outcome.flash.signed")
            elif op == "comment":
                data = P.check(request, agr.CommentIn, {"text": form.get("text", "")})
                await agr.add_comment(s, case.id, agr.CommentAuthor("party", str(who.party_id), who.name, "party",
                                                                   "portal"), data.text)
                msg = t("outcome.flash.commented")
            elif op == "confirmation":
                body: dict = {}
                P._put(body, "court_id", form.get("court_id"))
                P._put(body, "basis", form.get("basis"))
                data = P.check(request, court_svc.ConfirmationIn, body)
                await court_svc.start_confirmation(s, rt.cfg, rt.sign_ctx(), who, case.id, data)
                msg = t("outcome.flash.application_confirmed")
            elif op == "confirm":
                await court_svc.confirm_application(s, rt.cfg, rt.sign_ctx(), who, case.id)
                msg = t("outcome.flash.application_confirmed")
            elif op == "filing":
                body = {}
                P._put(body, "court_id", form.get("court_id"))
                data = P.check(request, court_svc.FilingIn, body)
                await court_svc.request_filing(s, rt.cfg, rt.sign_ctx(), who, case.id, data)
                msg = t("outcome.flash.filing_sent")
            else:
                raise NotFound("No such action.")
    except P.FormInvalid as exc:
        return await _render_party(request, page, errors=exc.fields, status=422)
    except (ValidationFailed, Conflict, Unauthorized) as exc:
        errs = _field_errors(request, exc)
        if exc.code == "id_mismatch":
            errs = {"id_last6": t("outcome.error.id_mismatch")}
        return await _render_party(request, page, errors=errs,
                                   banner="" if errs else _message(request, exc), status=exc.status)
    except AppError as exc:
        if exc.code != "too_many_attempts":
            raise
        return await _render_party(request, page, banner=P._error_text(request, exc), status=exc.status)
    return P.redirect(request, page.base + ("#court" if op in ("confirmation", "confirm", "filing") else ""), msg=msg)


async def party_pdf(request: web.Request) -> web.Response:
    page = PartyPage(request)
    async with P._read(request) as s:
        found = await page.who(s)
        if found is None:
            return _expired(request)
        case, _who = found
        ag = await agr.get_for_case(s, case.id)
    if ag is None:
        raise NotFound("There is no agreement.")
    return pdf_response(await agr.read_pdf(runtime(request).store, ag), case.number, ag.pdf_sha256)


# --- wiring -----------------------------------------------------------------------------------------------------

def setup(app: web.Application) -> None:
    """The outcome pages' routes (the runtime they use is the system's: server/system.py)."""
    r = app.router
    r.add_get("/staff/cases/{case_id}/agreement", staff_page)
    r.add_get("/staff/cases/{case_id}/agreement.pdf", staff_pdf)
    r.add_post("/staff/cases/{case_id}/agreement/{op}", staff_action)
    r.add_get("/staff/agreements/verify", verify_page)
    r.add_post("/staff/agreements/verify", verify_submit)
    r.add_get("/lookup/outcome", party_page)
    r.add_get("/lookup/outcome/agreement.pdf", party_pdf)
    r.add_post("/lookup/outcome/{op}", party_action)
    r.add_get("/outcome/p/{token}", party_page)
    r.add_get("/outcome/p/{token}/agreement.pdf", party_pdf)
    r.add_post("/outcome/p/{token}/{op}", party_action)


__all__ = ["setup"]
