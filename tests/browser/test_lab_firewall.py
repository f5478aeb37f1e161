"""A party behind a firewall, in real Chromium, in the network lab: one that drops all UDP, and
one that lets only TCP to port 443 out (as many workplaces and schools do), with the relay on 443
speaking plain TCP or TLS (turns:).

The server and coturn run in the lab's server namespace; the mediator's Chromium runs in a
namespace with a clean link, the party's in one behind the firewall. The party gets in
through TURN over TCP with the credentials of its join ack (for the 443-only network, coturn
listens on 443 of an address of its own), and both decode each other's video; the party's
selected candidate pair is relay/tcp."""
from __future__ import annotations

import os
import time

import pytest

from tests.support.coturn import TURNSERVER, Coturn

from .conftest import DESKTOP, PHONE
from .lab_helpers import SELECTED_PAIR_JS, admit, browser_in, enter, lab_deployment, page_in, require_lab
from .room_helpers import open_room, wait_decoding, wait_js
from .test_tls_proxy import make_certificate

pytestmark = pytest.mark.browser

SECRET = "lab-turn-secret-" + "t" * 24


@pytest.fixture(scope="module", params=["udp_blocked", "only_tcp_443", "only_turns_443"])
def deployment(request, tmp_path_factory):
    require_lab((not os.path.exists(TURNSERVER), "coturn is not installed"))
    root = tmp_path_factory.mktemp(f"lab-{request.param}")

    def prepare(lab, parts):
        (_m_ns, _m_link), (party_ns, party_link) = parts
        if request.param == "udp_blocked":
            party_ns.block_udp()
            turn = Coturn(root / "coturn", SECRET, listen_ip=party_link.server_addr, netns=lab.server.name).start()
            return {"TURN_SECRET": SECRET, "TURN_URLS": f"turn:{turn.listen_ip}:{turn.port}?transport=tcp"}, [turn]
        # Only TCP 443 leaves the party's network: the site and the relay both on 443, each on an
        # address of its own (as an operator would run them on two hosts). only_turns_443: the
        # relay speaks TLS there (turns:), with a certificate the party's Chromium is told to
        # accept by its public key, as the TLS proxy test does.
        party_ns.only_tcp_443()
        relay_ip = party_link.add_server_address()
        tls, scheme = None, "turn"
        if request.param == "only_turns_443":
            certs = root / "turn-tls"
            certs.mkdir()
            party_args.append(f"--ignore-certificate-errors-spki-list={make_certificate(certs, (relay_ip,))}")
            tls, scheme = (certs / "cert.pem", certs / "key.pem"), "turns"
        turn = Coturn(root / "coturn", SECRET, listen_ip=relay_ip, netns=lab.server.name, port=443, tls=tls).start()
        return ({"TURN_SECRET": SECRET, "TURN_URLS": f"{scheme}:{turn.listen_ip}:{turn.port}?transport=tcp"}, [turn],
                party_link.server_addr)

    party_args: list[str] = []
    with lab_deployment(root, prepare=prepare) as d:
        yield {"server": d["server"], "mediator": d["parts"][0], "party": d["parts"][1], "profile": request.param,
               "host": d["host"], "party_args": tuple(party_args)}


def test_a_party_behind_a_firewall_gets_in_through_turn_over_tcp(deployment):
    from playwright.sync_api import sync_playwright

    links = open_room(deployment["server"], "防火墙后的当事人")
    (m_ns, m_link), (p_ns, p_link) = deployment["mediator"], deployment["party"]
    with sync_playwright() as pw:
        m_browser, m_origin = browser_in(pw, m_ns, m_link, deployment["host"])
        p_browser, p_origin = browser_in(pw, p_ns, p_link, deployment["host"], deployment["party_args"])
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
            # TURN over TCP, or over TLS for turns: (Chromium reports the relay's protocol).
            assert (pair["protocol"] or "").lower() == ("tls" if deployment["profile"] == "only_turns_443" else "tcp"), pair
            print(f"\n{deployment['profile']}: party decodes video {took:.1f} s after joining, through {pair}; "
                  f"{seen['framesDecoded']} frames")
            # The media really crossed the party's emulated link (as TCP to the relay).
            assert p_link.stats()["up"]["delivered_packets"] > 0
        finally:
            p_browser.close()
            m_browser.close()
