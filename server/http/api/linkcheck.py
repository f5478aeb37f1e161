"""The check-in page's link check: probes for the round trip and the throughput each way, and the
result, which the session's record keeps (`link.checked`). The caller is the join link's holder
(`X-Join-Token`); the limits and the verdict are in server/services/live.py.
Imported by server/http/api/routes.py, which lists every route module.
"""
from __future__ import annotations

from aiohttp import web

from server.core.schemas import LinkCheckIn, parse
from server.http.api.base import api, db, settings
from server.http.api.openapi import BINARY
from server.http.client import client_address
from server.http.util import json_body, respond
from server.services import live

WHO = "the holder of a join link (X-Join-Token)"
NO_STORE = {"Cache-Control": "no-store"}


def _token(request: web.Request) -> str | None:
    return request.headers.get("X-Join-Token") or None


def _probe(request: web.Request) -> None:
    live.probe_pass(settings(request).secret_key, _token(request), client_address(request))


@api.route("GET", "/link-check/ping", summary="Round-trip probe: a tiny answer, never cached", who=WHO,
           tag="link-check", public=True)
async def ping(request: web.Request) -> web.Response:
    _probe(request)
    resp = respond({"ok": True})
    resp.headers.update(NO_STORE)
    return resp


@api.route("GET", "/link-check/download", summary="Download probe: `bytes` random bytes (default 256 KB, at "
           "most 512 KB), never cached", who=WHO, query={"bytes": "how many bytes"}, tag="link-check", public=True,
           produces={"application/octet-stream": BINARY})
async def download(request: web.Request) -> web.Response:
    _probe(request)
    body = live.probe_download(request.query.get("bytes"))
    return web.Response(body=body, content_type="application/octet-stream", headers=NO_STORE)


@api.route("POST", "/link-check/upload", summary="Upload probe: any bytes up to 512 KB (more: 413 too_large); "
           "answers how many arrived", who=WHO, tag="link-check", public=True,
           consumes={"application/octet-stream": BINARY})
async def upload(request: web.Request) -> web.Response:
    _probe(request)
    received = 0
    # An oversized body is still read (up to a bound) before the refusal, so the client gets the
    # answer instead of a connection reset while it is still sending.
    async for chunk in request.content.iter_any():
        received += len(chunk)
        if received > live.PROBE_DRAIN_BYTES:
            break
    if received > live.PROBE_MAX_BYTES:
        raise live.probe_upload_refused(received)
    resp = respond({"received": received})
    resp.headers.update(NO_STORE)
    return resp


@api.route("POST", "/link-check/result", summary="The check's figures (rtt_ms, down_kbps, up_kbps): answers the "
           "verdict (good, fair, poor) and writes link.checked to the session's record", who=WHO,
           body=LinkCheckIn, tag="link-check", public=True)
async def result(request: web.Request) -> web.Response:
    figures = parse(LinkCheckIn, await json_body(request))
    async with db(request).session() as s:
        body = await live.record_link_check(s, settings(request).secret_key, _token(request), figures,
                                            client_address(request))
    resp = respond(body)
    resp.headers.update(NO_STORE)
    return resp
