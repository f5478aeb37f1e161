"""Portal pages of the archive (clerks, admins) and of the analytics dashboard (统一研判分析).

GET only: a clerk reads, checks and exports; nothing here changes a case. Every opening of a
case record is written to the audit chain (services.archive.log_access) before the page is sent.
"""
from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlencode

from aiohttp import web

from server.core import serialize as ser
from server.core.errors import ValidationFailed
from server.core.i18n import catalog
from server.http.pages.common import _path_id, _read, _timeline_item, _tr, _tz, render
from server.core.policy import case_scope
from server.core.schemas import CASE_TYPES, CATEGORIES
from server.services.archive import analytics as analytics_svc
from server.services.archive import records as archive_svc
from server.services import directory
from server.core.workflow import STATUSES

NAV = [("/archive", "archive.nav"), ("/analytics", "analytics.nav")]


def _has(request, key: str) -> bool:
    return key in catalog(request["lang"]) or key in catalog("zh-CN")


def action_label(request, action: str) -> str:
    for key in (f"archive.action.{action}", f"action.{action}"):
        if _has(request, key):
            return request["t"](key)
    return action


def _event(request, e: dict, inst_names: dict) -> dict:
    """One audit entry for the record page: the portal's wording plus the live-room details."""
    item = _timeline_item(request, e, inst_names)
    t, d = request["t"], e.get("data") or {}
    item["action"] = action_label(request, e.get("action", ""))
    item["code"] = e.get("action")
    if e.get("action", "").startswith(("participant.", "recording.", "consent.", "caucus.", "lobby.")):
        if d.get("name"):
            role = _tr(request, "jrole", d.get("role"))
            if d.get("accompanies_name"):  # an interpreter or support person: whom they accompanied
                role = t("jrole.accompanies", role=role, party=d["accompanies_name"])
            item["details"].append(t("archive.detail.who", name=d["name"], role=role))
        for key in ("where", "to", "from", "reason", "kind", "caucus", "target"):
            if d.get(key) and not (key in ("to", "from") and d.get(key) in STATUSES):
                item["details"].append(f"{t('archive.detail.' + key)}: {d[key]}")
    if e.get("action", "").startswith("evidence."):
        _evidence_details(request, item["details"], d)
    if e.get("action") == "link.checked":
        if d.get("name"):
            item["details"].append(t("archive.detail.who", name=d["name"], role=_tr(request, "jrole", d.get("role"))))
        item["details"].append(t("archive.detail.link", rtt=d.get("rtt_ms", "?"), down=d.get("down_kbps", "?"),
                                 up=d.get("up_kbps", "?"), verdict=_tr(request, "archive.link", d.get("verdict"))))
    if e.get("action") in ("case.viewed", "case.verified", "case.exported"):
        if d.get("via"):
            item["details"].append(t("archive.detail.via", via=d["via"]))
        if "ok" in d:
            item["details"].append(t("archive.integrity.ok") if d["ok"] else
                                   t("archive.integrity.bad", n=d.get("problems", "?")))
        if d.get("sha256"):
            item["details"].append(f"SHA-256 {d['sha256']}")
    item["session_id"] = e.get("session_id")
    item["at_iso"] = e.get("at")
    return item


def _evidence_details(request, out: list, d: dict) -> None:
    """Evidence in the room (docs/protocol.md, "Evidence in the room"): who showed or added which
    file, where, which pages, for how long, and to whom."""
    t = request["t"]
    if d.get("name"):
        out.append(t("archive.detail.who", name=d["name"], role=_tr(request, "jrole", d.get("role"))))
    if d.get("file"):
        out.append(t("archive.detail.file", file=d["file"]))
    if d.get("area"):
        out.append(f"{t('archive.detail.where')}: {d.get('area_name') or d['area']}")
    if isinstance(d.get("pages"), list):
        out.append(t("archive.detail.pages", pages=", ".join(str(x) for x in d["pages"])))
    elif d.get("page"):
        out.append(t("archive.detail.pages", pages=str(d["page"])))
    if d.get("seconds") is not None:
        out.append(t("archive.detail.seconds", n=d["seconds"]))
    if d.get("viewers"):
        out.append(t("archive.detail.viewers", names=", ".join(str(v.get("name", "")) for v in d["viewers"]
                                                                 if isinstance(v, dict))))
    if d.get("decision"):
        out.append(_tr(request, "archive.decision", d["decision"]))
    if "allowed" in d:
        out.append(t("archive.detail.allowed_yes" if d["allowed"] else "archive.detail.allowed_no"))
    if d.get("reason"):
        out.append(f"{t('archive.detail.reason')}: {d['reason']}")
    if d.get("sha256"):
        out.append(f"SHA-256 {d['sha256']}")


def _problem_text(request, p: dict) -> str:
    key = f"archive.problem.{p['problem']}"
    return request["t"](key) if _has(request, key) else p.get("detail") or p["problem"]


# --- search ------------------------------------------------------------------------------------------

async def search_page(request: web.Request) -> web.Response:
    actor = request["actor"]
    archive_svc.require_reader(actor)
    errors: dict[str, str] = {}
    query = {k: v for k, v in request.query.items() if v != ""}
    try:
        q = archive_svc.parse_search(query)
    except ValidationFailed as exc:
        errors = {k: request["t"]("archive.search.invalid") for k in exc.fields}
        q = archive_svc.SearchQuery()
    async with _read(request) as s:
        page = await archive_svc.search(s, actor, q, _tz(request))
        cases = [archive_svc.search_item(c) for c in page.cases]
        insts = [ser.institution(i) for i in await directory.list_institutions(s, include_inactive=True)]
        scope = case_scope(actor)
        if scope is not None:  # an institution's clerk: only their institution to choose from
            insts = [i for i in insts if i["id"] == actor.user.institution_id]
        mediators = await archive_svc.mediator_choices(s, actor)
    base = q.params()
    form = {**{k: request.query.get(k, "") for k in archive_svc.SEARCH_PARAMS}, **base}

    def link(**cursor) -> str:
        return "/archive?" + urlencode({**base, **cursor})

    return render(request, "archive/search.html", here=request.path_qs, cases=cases, total=page.total,
                  form=form, errors=errors, institutions=insts, mediators=mediators, types=CASE_TYPES,
                  categories=CATEGORIES, statuses=STATUSES,
                  next_url=link(after=page.next_cursor) if page.next_cursor else None,
                  prev_url=link(before=page.prev_cursor) if page.prev_cursor else None,
                  first_url=link() if (q.after or q.before) else None, searched=bool(base))


# --- one case's record -----------------------------------------------------------------------------------

async def _render_record(request, case_id: int, report: dict | None = None) -> web.Response:
    actor = request["actor"]
    archive_svc.require_reader(actor)
    async with _read(request) as s:
        rec = await archive_svc.case_record(s, actor, case_id)
        inst_names = {i.id: i.name for i in await directory.list_institutions(s, include_inactive=True)}
    if report is None:  # checking logs itself (case.verified); a plain opening logs a view
        await archive_svc.log_access(request.app["db"], actor, case_id, via="page")
    timeline = [_event(request, e, inst_names) for e in rec["timeline"]]
    sessions = []
    for x in rec["sessions"]:
        mins = round(x["duration_seconds"] / 60) if x["duration_seconds"] is not None else None
        sessions.append({**x, "minutes": mins, "events": [_event(request, e, inst_names) for e in x["events"]]})
    access = [_event(request, e, inst_names) for e in rec["access_log"]]
    if report is not None:
        for c in report["checks"]:
            c["label"] = request["t"](f"archive.check.{c['name']}") if _has(request, f"archive.check.{c['name']}") \
                else c["name"]
            for p in c["problems"]:
                p["text"] = _problem_text(request, p)
    extra = {k: v for k, v in rec.items()
             if k not in ("case", "timeline", "access_log", "sessions", "recordings", "outcome", "submissions")}
    return render(request, "archive/record.html", here=f"/archive/cases/{case_id}", case=rec["case"],
                  timeline=timeline, sessions=sessions, access=access, recordings=rec.get("recordings") or [],
                  outcome=rec.get("outcome"), submissions=rec.get("submissions") or [], extra=extra,
                  report=report, readonly=True)


async def record_page(request: web.Request) -> web.Response:
    return await _render_record(request, _path_id(request, "case_id"))


async def verify_page(request: web.Request) -> web.Response:
    case_id = _path_id(request, "case_id")
    report = await archive_svc.verify_case(request.app["db"], request["actor"], case_id,
                                           request.app["evidence_store"], request.app["settings"])
    return await _render_record(request, case_id, report.to_json())


# --- analytics ----------------------------------------------------------------------------------------------

async def analytics_page(request: web.Request) -> web.Response:
    actor = request["actor"]
    analytics_svc.require_reader(actor)
    tz = _tz(request)
    errors: dict[str, str] = {}
    query = {k: v for k, v in request.query.items() if v != ""}
    try:
        f = analytics_svc.parse_filters(query, dt.datetime.now(tz).date())
    except ValidationFailed as exc:
        errors = {k: request["t"]("analytics.invalid") for k in exc.fields}
        f = analytics_svc.parse_filters({}, dt.datetime.now(tz).date())
    data = await analytics_svc.summary(request.app["db"], actor, f, tz, request.app["settings"].display_tz)
    async with _read(request) as s:
        insts = [ser.institution(i) for i in await directory.list_institutions(s, include_inactive=True)]
    if case_scope(actor) is not None:
        insts = [i for i in insts if i["id"] == actor.user.institution_id]
    t = request["t"]
    tr = lambda prefix, v: _tr(request, prefix, v)  # noqa: E731
    chart = {
        "labels": {"cases": t("analytics.cases")},
        "by_month": {"labels": [r["month"] for r in data["by_month"]], "values": [r["count"] for r in data["by_month"]]},
        "by_category": {"labels": [tr("category", r["key"]) for r in data["by_category"]],
                        "values": [r["count"] for r in data["by_category"]]},
        "by_status": {"labels": [tr("status", r["key"]) for r in data["by_status"]],
                      "values": [r["count"] for r in data["by_status"]]},
        "by_type": {"labels": [tr("case_type", r["key"]) for r in data["by_type"]],
                    "values": [r["count"] for r in data["by_type"]]},
        "by_institution": {"labels": [r["name"] for r in data["by_institution"]],
                           "values": [r["count"] for r in data["by_institution"]]},
    }
    params = f.params()

    def csv_url(name: str) -> str:
        return "/api/v1/analytics/csv?" + urlencode({**params, "table": name, "lang": request["lang"]})

    tables = {name: analytics_svc.table(data, name, t, tr) for name in analytics_svc.TABLES}
    return render(request, "archive/analytics.html", here=request.path_qs, data=data, tables=tables,
                  chart_json=json.dumps(chart, ensure_ascii=False).replace("</", "<\\/"), csv_url=csv_url,
                  form={"from": params["from"], "to": params["to"], "institution_id": params.get("institution_id", "")},
                  errors=errors, institutions=insts, fmt_pct=lambda x: "—" if x is None else f"{x * 100:.1f}%",
                  fmt_num=lambda x, unit="": "—" if x is None else f"{x}{unit}")


def _archive_version() -> str:
    import hashlib

    import web as webpkg
    h = hashlib.sha256()
    for name in ("archive.css", "analytics.js"):
        p = webpkg.STATIC / name
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:10]


def setup(app: web.Application) -> None:
    app["jinja"].globals["archive_v"] = _archive_version()
    r = app.router
    r.add_get("/archive", search_page)
    r.add_get("/archive/cases/{case_id}", record_page)
    r.add_get("/archive/cases/{case_id}/verify", verify_page)
    r.add_get("/analytics", analytics_page)
