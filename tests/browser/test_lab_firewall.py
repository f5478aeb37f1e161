"""A party behind a firewall that blocks UDP, in real Chromium, in the network lab.

The server and coturn run in the lab's server namespace; the mediator's Chromium runs in a
namespace with a clean link, the party's in one whose firewall drops all UDP. The party
gets in through TURN over TCP with the credentials of its join ack, and both decode each
other's video; the party's selected candidate pair is a relayed one."""
from __future__ import annotations

import os
import time

import pytest

from tests.conftest import IN_CI
from tests.support import netlab
from tests.support.coturn import TURNSERVER, Coturn
from tests.support.servers import ServerProcess, clean_env

from .conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE, Server
from .room_helpers import open_room, wait_decoding, wait_js

pytestmark = pytest.mark.browser

SECRET = "lab-turn-secret-" + "t" * 24
PORT = 8080

SELECTED_PAIR_JS = """async () => {
  const pc = window.mediationRoom && window.mediationRoom.subPc;
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach(r => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
  if (!pair) stats.forEach(r => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  return {type: local && local.candidateType, protocol: local && (local.relayProtocol || local.protocol)};
}"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    reason = netlab.available()
    for missing, what in ((reason, reason), (not os.path.exists(TURNSERVER), "coturn is not installed"),
                          (not os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed")):
        if missing:
            if IN_CI:
                pytest.fail(what)
            pytest.skip(what)
    root = tmp_path_factory.mktemp("lab-firewall")
    lab = netlab.Lab(root / "lab")
    try:
        mediator_ns, mediator_link = lab.participant()
        party_ns, party_link = lab.participant()
        party_ns.block_udp()
        turn = Coturn(root / "coturn", SECRET, listen_ip=party_link.server_addr, netns=lab.server.name).start()
        data = root / "server"
        data.mkdir()
        env = clean_env(MEDIATION_DATA_DIR=str(data), IDENTITY_CHECK="off",
                        PUBLIC_URL=f"http://{mediator_link.server_addr}:{PORT}",
                        TURN_URLS=f"turn:{party_link.server_addr}:{turn.port}?transport=tcp", TURN_SECRET=SECRET)
        # Started inside the server namespace; the test reaches it through a loopback forwarder.
        proc = ServerProcess(env, data / "server.log", port=PORT, args=("--demo", "--host", "0.0.0.0"),
                             ready_path="/api/v1/institutions", prefix=("ip", "netns", "exec", lab.server.name))
        proc.spawn()
        proc.probe_url = f"http://127.0.0.1:{lab.forward_in_thread(lab.server, '127.0.0.1', PORT)}"
        proc.wait_ready()
        srv = Server(url=proc.url, data_dir=data, log_path=proc.log_path)
        yield {"lab": lab, "server": srv, "turn": turn, "mediator": (mediator_ns, mediator_link),
               "party": (party_ns, party_link)}
        proc.stop()
        turn.stop()
    finally:
        lab.close()


def _browser(pw, ns, link):
    origin = f"http://{link.server_addr}:{PORT}"
    args = CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required",
                            f"--unsafely-treat-insecure-origin-as-secure={origin}",
                            "--disable-features=WebRtcHideLocalIpsWithMdns"]
    return pw.chromium.launch(executable_path=str(ns.wrapper(CHROMIUM)), headless=True, args=args), origin


def _page(browser, viewport):
    mobile = viewport["width"] < 600
    ctx = browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile)
    ctx.grant_permissions(["camera", "microphone"])
    ctx.set_default_timeout(20_000)
    return ctx.new_page()


def _enter(page):
    wait_js(page, "document.querySelector('#self-video').videoWidth > 0", "own preview", 20)
    page.click("[data-testid=enter]")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        screen = page.evaluate("() => window.mediationRoom && window.mediationRoom.screen")
        if screen not in ("precheck", "connecting", "step"):
            return screen
        if screen == "step" and page.locator("#step-yes").is_visible():
            page.click("#step-yes")
        time.sleep(0.1)
    raise AssertionError("the page did not get past the join steps")


def test_a_party_behind_a_udp_blocking_firewall_gets_in_through_turn_over_tcp(deployment):
    from playwright.sync_api import sync_playwright

    links = open_room(deployment["server"], "防火墙后的当事人")
    (m_ns, m_link), (p_ns, p_link) = deployment["mediator"], deployment["party"]
    with sync_playwright() as pw:
        m_browser, m_origin = _browser(pw, m_ns, m_link)
        p_browser, p_origin = _browser(pw, p_ns, p_link)
        try:
            mediator = _page(m_browser, DESKTOP)
            party = _page(p_browser, PHONE)
            mediator.goto(f"{m_origin}/join/{links.mediator_token}")
            assert _enter(mediator) == "room"
            party.goto(f"{p_origin}/join/{links.party_tokens[0]}")
            t_join = time.monotonic()
            assert _enter(party) == "lobby"
            pid = wait_js(party, "window.mediationRoom.me && window.mediationRoom.me.id", "party id")
            mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']")
            wait_js(party, "window.mediationRoom.screen === 'room'", "party admitted", 20)
            seen = wait_decoding(party, "the party decodes the mediator", timeout=40)
            took = time.monotonic() - t_join
            wait_decoding(mediator, "the mediator decodes the party", timeout=40)
            pair = wait_js(party, f"({SELECTED_PAIR_JS})()", "the party's selected candidate pair", 20)
            assert pair["type"] == "relay", pair
            assert (pair["protocol"] or "").lower() == "tcp", pair
            print(f"\nUDP blocked: party decodes video {took:.1f} s after joining, through {pair}; "
                  f"{seen['framesDecoded']} frames")
            # The media really crossed the party's emulated link (as TCP to the relay).
            stats = p_link.stats()
            assert stats["up"]["delivered_packets"] > 0
        finally:
            p_browser.close()
            m_browser.close()
