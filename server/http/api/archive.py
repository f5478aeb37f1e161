"""Archive and analytics routes, registered on the same `api` registry (and so in the OpenAPI document).

Imported by server/http/api/routes.py, which lists every route module.
"""
from __future__ import annotations

import datetime as dt
import shutil
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from server.http.api.base import actor, api, db, settings
from server.http.api.openapi import BINARY
from server.core.errors import ValidationFailed
from server.http.util import path_int, respond, tr
from server.services.archive import analytics as analytics_svc
from server.services.archive import records as archive_svc


def tz_of(request) -> ZoneInfo:
    return ZoneInfo(settings(request).display_tz)


@api.route("GET", "/archive/cases", summary="Search the archive (keyset pagination: follow next_cursor / prev_cursor)",
           who="clerk, admin", query=archive_svc.SEARCH_PARAMS, tag="archive")
async def search(request: web.Request) -> web.Response:
    archive_svc.require_reader(actor(request))
    q = archive_svc.parse_search(request.query)
    async with db(request).read() as s:
        page = await archive_svc.search(s, actor(request), q, tz_of(request))
        items = [archive_svc.search_item(c) for c in page.cases]
    return respond({"cases": items, "total": page.total, "limit": q.limit,
                    "next_cursor": page.next_cursor, "prev_cursor": page.prev_cursor})


@api.route("GET", "/cases/{case_id}/integrity",
           summary="Recheck the case: its audit entries and their links, evidence files against their SHA-256, "
                   "the case row against the chain, and every registered checker (recordings, signatures)",
           who="clerk, admin", tag="archive")
async def integrity(request: web.Request) -> web.Response:
    case_id = path_int(request, "case_id")
    report = await archive_svc.verify_case(db(request), actor(request), case_id, request.app["evidence_store"],
                                           settings(request))
    return respond(report.to_json())


@api.route("GET", "/cases/{case_id}/export",
           summary="One zip for a court or retention: manifest.json (case, timeline, files with SHA-256, integrity "
                   "at export), evidence files, the case's audit entries with their hashes, chat transcripts",
           who="clerk, admin", tag="archive", produces={"application/zip": BINARY})
async def export(request: web.Request) -> web.StreamResponse:
    who = actor(request)
    archive_svc.require_reader(who)
    case_id = path_int(request, "case_id")
    path, digest, bundle = await archive_svc.export_case(db(request), who, case_id, request.app["evidence_store"],
                                                         settings=settings(request))
    try:
        resp = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.name)}",
            "X-Content-SHA256": digest, "Cache-Control": "no-store"})
        resp.content_length = path.stat().st_size
        await resp.prepare(request)
        with open(path, "rb") as f:
            while chunk := f.read(256 * 1024):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def _filters(request: web.Request, *, extra=()) -> analytics_svc.Filters:
    tz = tz_of(request)
    return analytics_svc.parse_filters(request.query, dt.datetime.now(tz).date(), extra_allowed=extra)


@api.route("GET", "/analytics/summary", summary="统一研判分析: the dashboard's figures", who="admin, clerk",
           query=analytics_svc.PARAMS, tag="analytics")
async def summary(request: web.Request) -> web.Response:
    analytics_svc.require_reader(actor(request))
    f = _filters(request)
    data = await analytics_svc.summary(db(request), actor(request), f, tz_of(request), settings(request).display_tz)
    return respond(data)


@api.route("GET", "/analytics/csv", summary="One table of the dashboard as CSV (UTF-8 with BOM)", who="admin, clerk",
           query={**analytics_svc.PARAMS, "table": "one of " + ", ".join(analytics_svc.TABLES)}, tag="analytics",
           produces={"text/csv": {"type": "string"}})
async def csv_table(request: web.Request) -> web.Response:
    analytics_svc.require_reader(actor(request))
    name = request.query.get("table", "")
    if name not in analytics_svc.TABLES:
        raise ValidationFailed("Unknown table.", fields={"table": "one of " + ", ".join(analytics_svc.TABLES)})
    f = _filters(request, extra=("table", "lang"))
    data = await analytics_svc.summary(db(request), actor(request), f, tz_of(request), settings(request).display_tz)
    header, rows = analytics_svc.table(data, name, request["t"], lambda p, v: tr(request, p, v))
    filename = f"{name}_{f.date_from.isoformat()}_{f.date_to.isoformat()}.csv"
    return web.Response(body=analytics_svc.to_csv(header, rows), headers={
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f"attachment; filename=\"{filename}\"",
        "Cache-Control": "no-store"})
