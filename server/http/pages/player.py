"""The synchronized player: all participants' recordings of a session on one timeline."""
from __future__ import annotations

import json

from aiohttp import web

from server.services import recordings as rec_svc
from server.core.errors import Unauthorized
from server.http.util import path_int
from server.http.pages.common import render


async def player(request: web.Request) -> web.Response:
    who = request["actor"]
    if not who.is_staff:
        raise Unauthorized("Please log in as staff.")
    async with request.app["db"].read() as s:
        data = await rec_svc.session_view(s, who, path_int(request, "session_id"))
    return render(request, "recordings/player.html", data=data,
                  data_json=json.dumps(data, ensure_ascii=False).replace("</", "<\\/"))


def setup(app: web.Application) -> None:
    app.router.add_get("/staff/sessions/{session_id}/player", player, name="player")
