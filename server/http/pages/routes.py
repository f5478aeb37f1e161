"""Every portal page module, set up in one place (so no page module needs to import another's setup)."""
from __future__ import annotations

from aiohttp import web

from server.http.pages import admin, archive, common, followup, outcome, player, portal, procedure, room, staff


def setup(app: web.Application) -> None:
    portal.setup(app)      # residents: home, filing, lookup and withdrawal
    staff.setup(app)       # staff login, case lists, the case page, sessions and join links
    admin.setup(app)       # institutions, users, experts
    common.setup(app)      # the friendly 404/405 pages and the templates' pairs()
    archive.setup(app)     # the clerks' archive and the analytics dashboard
    procedure.setup(app)   # consent, identity, notices, deadlines, scheduling
    outcome.setup(app)     # the agreement, signatures, court hand-off
    followup.setup(app)    # after the agreement: obligations, follow-ups, ratings, enforcement
    room.setup(app)        # the live room page
    player.setup(app)      # the recordings player
