"""Every API route module, imported in the order their routes are registered (and documented)."""
from __future__ import annotations

from aiohttp import web

from server.http.api import directory  # noqa: F401 - auth and directory first
from server.http.api import cases  # noqa: F401
from server.http.api import archive  # noqa: F401
from server.http.api import outcome  # noqa: F401
from server.http.api import followup  # noqa: F401 - after the agreement
from server.http.api import procedure  # noqa: F401
from server.http.api import recordings  # noqa: F401
from server.http.api import linkcheck  # noqa: F401
from server.http.api import room_evidence  # noqa: F401
from server.http.api.base import api
from server.http.util import respond


@api.route("GET", "/openapi.json", summary="This document", who="anyone", tag="meta")
async def openapi(request: web.Request) -> web.Response:
    return respond(api.document("Mediation server API", "1"))
