"""A party behind a firewall that blocks UDP, in real Chromium, in the network lab.

The server and coturn run in the lab's server namespace; the mediator's Chromium runs in a
namespace with a clean link, the party's in one whose firewall drops all UDP. The party
gets in through TURN over TCP with the credentials of its join ack, and both decode each
other's video; the party's selected candidate pair is a relayed one."""
from __future__ import annotations

import os
import time

import pytest

from tests.support.coturn import TURNSERVER, Coturn

from .conftest import DESKTOP, PHONE
from .lab_helpers import SELECTED_PAIR_JS, admit, browser_in, enter, lab_deployment, page_in, require_lab
from .room_helpers import open_room, wait_decoding, wait_js

pytestmark = pytest.mark.browser

SECRET = "lab-turn-secret-" + "t" * 24


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    require_lab((not os.path.exists(TURNSERVER), "coturn is not installed"))
    root = tmp_path_factory.mktemp("lab-firewall")

    def prepare(lab, parts):
        (_m_ns, _m_link), (party_ns, party_link) = parts
        party_ns.block_udp()
        turn = Coturn(root / "coturn", SECRET, listen_ip=party_link.server_addr, netns=lab.server.name).start()
        return {"TURN_SECRET": SECRET, "TURN_URLS": f"turn:{party_link.server_addr}:{turn.port}?transport=tcp"}, [turn]

    with lab_deployment(root, prepare=prepare) as d:
        yield {"server": d["server"], "mediator": d["parts"][0], "party": d["parts"][1]}


def test_a_party_behind_a_udp_blocking_firewall_gets_in_through_turn_over_tcp(deployment):
    from playwright.sync_api import sync_playwright

    links = open_room(deployment["server"], "防火墙后的当事人")
    (m_ns, m_link), (p_ns, p_link) = deployment["mediator"], deployment["party"]
    with sync_playwright() as pw:
        m_browser, m_origin = browser_in(pw, m_ns, m_link)
        p_browser, p_origin = browser_in(pw, p_ns, p_link)
        try:
            mediator = page_in(m_browser, DESKTOP)
            party = page_in(p_browser, PHONE)
            mediator.goto(f"{m_origin}/join/{links.mediator_token}")
            assert enter(mediator) == "room"
            party.goto(f"{p_origin}/join/{links.party_tokens[0]}")
            t_join = time.monotonic()
            assert enter(party) == "lobby"
            admit(mediator, party)
            seen = wait_decoding(party, "the party decodes the mediator", timeout=40)
            took = time.monotonic() - t_join
            wait_decoding(mediator, "the mediator decodes the party", timeout=40)
            pair = wait_js(party, f"({SELECTED_PAIR_JS})('subPc')", "the party's selected candidate pair", 20)
            assert pair["type"] == "relay", pair
            assert (pair["protocol"] or "").lower() == "tcp", pair
            print(f"\nUDP blocked: party decodes video {took:.1f} s after joining, through {pair}; "
                  f"{seen['framesDecoded']} frames")
            # The media really crossed the party's emulated link (as TCP to the relay).
            assert p_link.stats()["up"]["delivered_packets"] > 0
        finally:
            p_browser.close()
            m_browser.close()
