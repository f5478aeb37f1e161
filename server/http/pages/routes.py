"""Every portal page module, set up in one place (so no page module needs to import another's setup)."""
from __future__ import annotations

from aiohttp import web

from server.http.pages import archive, outcome, player, portal, procedure, room


def setup(app: web.Application) -> None:
    portal.setup(app)      # residents, staff, admin
    archive.setup(app)     # the clerks' archive and the analytics dashboard
    procedure.setup(app)   # consent, identity, notices, deadlines, scheduling
    outcome.setup(app)     # the agreement, signatures, court hand-off
    room.setup(app)        # the live room page
    player.setup(app)      # the recordings player
