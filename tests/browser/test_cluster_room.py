"""Two real Chromium pages, each opened on a different node of one deployment: they meet in one
room on the room's node; killing that node, both pages come back by themselves on the other node
and decode each other's video again (proved by getStats)."""
from __future__ import annotations

import time

import pytest

from tests.cluster.conftest import make_nodes, seed_session  # noqa: F401 - the fixture
from tests.conftest import run_sync

from .conftest import DESKTOP, PHONE
from .room_helpers import wait_decoding, wait_js
from .test_room import enter, room_browser, room_page  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def _links(database_url: str, tmp_path) -> dict:
    async def go():
        d = await seed_session(database_url, tmp_path)
        try:
            return {"mediator": await d.token("mediator"), "party": await d.token("party", party_id=d.party_ids[0])}
        finally:
            await d.db.dispose()
    return run_sync(go())


def test_pages_on_two_nodes_meet_and_survive_the_rooms_node_dying(make_nodes, pg_database, tmp_path, room_page):
    a, b = make_nodes(2)
    tokens = _links(pg_database, tmp_path)
    mediator = room_page(DESKTOP, label="mediator")
    party = room_page(PHONE, label="party")
    mediator.goto(f"{a.url}/room/{tokens['mediator']}")
    party.goto(f"{b.url}/room/{tokens['party']}")
    enter(mediator)
    wait_js(mediator, "window.mediationRoom.screen === 'room'", "mediator in the room", timeout=15)
    enter(party)
    wait_js(party, "window.mediationRoom.screen === 'lobby'", "party in the lobby", timeout=15)
    pid = party.evaluate("window.mediationRoom.me.id")
    mediator.locator(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']").click()
    wait_js(party, "window.mediationRoom.screen === 'room'", "party admitted")
    wait_decoding(party, "party sees the mediator", timeout=15)
    wait_decoding(mediator, "mediator sees the party", timeout=15)
    host = mediator.evaluate("window.mediationRoom.nodeId")
    assert host and party.evaluate("window.mediationRoom.nodeId") == host
    # One of the pages was served by a node that does not host the room and was sent there.
    assert (mediator.evaluate("window.mediationRoom.redirects || 0") + party.evaluate("window.mediationRoom.redirects || 0")) >= 1

    dead = a if host == a.node_id else b
    joins = {p: p.evaluate("window.mediationRoom.joins") for p in (mediator, party)}
    killed = time.monotonic()
    dead.kill()
    for page, who in ((mediator, "mediator"), (party, "party")):
        wait_js(page, f"window.mediationRoom.joins > {joins[page]} && window.mediationRoom.screen === 'room'",
                f"{who} back in the room by itself", timeout=30)
    assert mediator.evaluate("window.mediationRoom.nodeId") != dead.node_id
    # The party was admitted before: it comes back to the main room, not the lobby.
    assert party.evaluate("window.mediationRoom.inLobby") is False
    wait_decoding(party, "party sees the mediator on the new node", timeout=20)
    wait_decoding(mediator, "mediator sees the party on the new node", timeout=20)
    print(f"\n[cluster] both pages decoding again {time.monotonic() - killed:.1f} s after the room's node was killed")
