"""What the room page does about a poor link, in the network lab with real Chromium (a mediator
and a party, each in its own namespace on an emulated link; the mechanism, not timed):

- the party's downlink narrows: the server pauses (or reduces) the mediator's video towards it,
  and the party's page shows the placeholder with the name, the voice ring and why; its own
  quality turns poor and, after 5 s of that, the page advises audio only, whose button switches
  it on;
- the party's uplink narrows below what video needs: the page sees its video limited by
  bandwidth under 60 kbit/s for 10 s, takes the camera off the sender and tells the server
  (reason "bandwidth"); the mediator sees "对方网络较差，仅音频"; once the link is back the
  party turns the camera on itself and the mediator decodes its video again."""
from __future__ import annotations

import time

import pytest

from .conftest import ARTIFACTS, DESKTOP, PHONE
from .lab_helpers import admit, browser_in, decoded_from, enter, lab_deployment, page_in, require_lab, room_state, until
from .room_helpers import open_room, wait_decoding, wait_js

pytestmark = pytest.mark.browser

# The camera's own encoding first, then its small encoding (its m-line comes after the camera's).
OUTBOUND_JS = """(async () => { const o = [];
  (await window.mediationRoom.pubPc.getStats()).forEach(r => { if (r.type === 'outbound-rtp' && r.kind === 'video')
    o.push({mid: r.mid, packets: r.packetsSent, frames: r.framesEncoded, keyframes: r.keyFramesEncoded, pli: r.pliCount,
            nack: r.nackCount, limited: r.qualityLimitationReason, target: r.targetBitrate}); });
  return o.sort((x, y) => Number(x.mid) - Number(y.mid)); })()"""
INBOUND_JS = """(async () => { const R = window.mediationRoom, o = [], by = {};
  (R.trackTable || []).forEach(t => { by[t.mid] = t.participant_id; });
  (await R.subPc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video')
    o.push({from: by[r.mid], packets: r.packetsReceived, lost: r.packetsLost, decoded: r.framesDecoded,
            keyframes: r.keyFramesDecoded, pli: r.pliCount}); });
  return o; })()"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    require_lab()
    with lab_deployment(tmp_path_factory.mktemp("lab-quality"), participants=2) as d:
        yield d


def _room(pw, deployment, title):
    links = open_room(deployment["server"], title)
    (m_ns, m_link), (p_ns, p_link) = deployment["parts"]
    browsers, pages = [], []
    for ns, link, token, viewport in ((m_ns, m_link, links.mediator_token, DESKTOP),
                                      (p_ns, p_link, links.party_tokens[0], PHONE)):
        browser, origin = browser_in(pw, ns, link)
        browsers.append(browser)
        page = page_in(browser, viewport)
        page.goto(f"{origin}/join/{token}?lang=zh-CN")   # the lab browsers speak English otherwise
        pages.append(page)
    mediator, party = pages
    assert enter(mediator) == "room"
    m_id = wait_js(mediator, "window.mediationRoom.me && window.mediationRoom.me.id", "mediator id")
    assert enter(party) == "lobby"
    p_id = admit(mediator, party)
    wait_decoding(mediator, "the mediator decodes the party", timeout=30)
    wait_decoding(party, "the party decodes the mediator", timeout=30)
    return browsers, mediator, party, m_id, p_id, p_link


def test_a_narrow_downlink_shows_the_paused_placeholder_and_advises_audio_only(deployment):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browsers = []
        try:
            browsers, mediator, party, m_id, p_id, p_link = _room(pw, deployment, "下行窄带（调解室界面）")
            tile = f"[data-testid=tile][data-pid='{m_id}']"
            assert until(lambda: room_state(party, f"s.video && s.video['{m_id}'] === 'full'"), 15)
            p_link.set(down={"rate": 80_000, "queue": 12_000})
            # The mediator's video is paused towards the party (or first reduced: a badge).
            seen_reduced = False
            paused = None
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                level = room_state(party, f"s.video['{m_id}']")
                seen_reduced = seen_reduced or (level == "reduced" and party.is_visible(f"{tile} [data-testid=tile-reduced]"))
                if level == "paused":
                    paused = party.locator(f"{tile}.no-video [data-testid=tile-video-note][data-reason=paused]")
                    break
                time.sleep(0.25)
            assert paused is not None, f"never paused: {room_state(party, 's.video')}"
            paused.wait_for()
            assert paused.inner_text() == "视频已暂停（网络较差）"
            assert "调解员 李明" in party.inner_text(f"{tile} .tile-ph")
            # The voice ring follows the mediator's (fake) microphone; its audio still arrives.
            wait_js(party, f"(document.querySelector(\"{tile}\")._voice || 0) > 0.05", "the voice ring moves", 15)
            bars = party.locator(f"{tile} [data-testid=tile-quality]")
            assert bars.get_attribute("data-quality") in ("good", "fair", "poor")
            print(f"\n80 kbit/s down: levels {room_state(party, 's.video')}, reduced badge seen: {seen_reduced}, "
                  f"party quality {room_state(party, f's.participants.find(p => p.id === {chr(39)}{p_id}{chr(39)}).quality')}")
            party.screenshot(path=ARTIFACTS / "phone-room-video-paused.png")

            # My own link is poor: after 5 s of it, the advice with its button (once).
            assert until(lambda: room_state(party, f"s.participants.find(p => p.id === '{p_id}').quality") == "poor", 30), \
                room_state(party, f"s.participants.find(p => p.id === '{p_id}')")
            prompt = party.locator(".toast:has-text('您的网络较差，建议切换为仅音频')")
            prompt.wait_for(timeout=20_000)
            assert party.evaluate("window.mediationRoom.qualityPrompts") == 1
            party.screenshot(path=ARTIFACTS / "phone-room-poor-prompt.png")
            prompt.locator("button").click()
            wait_js(party, "window.mediationRoom.state.audio_only === true", "audio only from the advice", 15)
            party.wait_for_selector("[data-testid=audio-only][aria-pressed=true]")

            p_link.set(down={"rate": 0})
            party.click("[data-testid=audio-only]")
            assert until(lambda: room_state(party, f"!s.audio_only && s.video['{m_id}'] === 'full'"), 90), \
                room_state(party, "s.video")
            base = decoded_from(party, m_id)
            assert until(lambda: decoded_from(party, m_id) > base + 20, 15)
            party.wait_for_selector(f"{tile}:not(.no-video)")
        finally:
            for browser in browsers:
                browser.close()


def test_a_narrow_uplink_turns_the_camera_off_and_the_party_turns_it_back_on(deployment):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browsers = []
        try:
            browsers, mediator, party, m_id, p_id, p_link = _room(pw, deployment, "上行窄带（调解室界面）")
            note = mediator.locator(f"[data-testid=tile][data-pid='{p_id}'] [data-testid=tile-video-note][data-reason=bandwidth]")
            started = time.monotonic()
            p_link.set(up={"rate": 50_000, "queue": 8_000})
            # 15 s of grace for a camera just started, then 10 s under 60 kbit/s, read every 2 s.
            stopped = until(lambda: party.evaluate("window.mediationRoom.uplink && window.mediationRoom.uplink.stopped"), 90)
            took = time.monotonic() - started
            uplink = party.evaluate("window.mediationRoom.uplink")
            assert stopped, f"the camera stayed on: {uplink}, sending {party.evaluate(OUTBOUND_JS)}"
            party.wait_for_selector(".toast:has-text('网络较差，已切换为仅音频')")
            assert uplink["stopped"] == 1, uplink
            assert party.get_attribute("[data-testid=cam-toggle]", "aria-pressed") == "false"
            # Nothing goes out on the video sender.
            assert party.evaluate("""window.mediationRoom.pubPc.getTransceivers()
                .some(t => t.receiver.track.kind === 'video' && t.sender.track === null)""")
            note.wait_for(timeout=20_000)
            assert note.inner_text() == "对方网络较差，仅音频"
            print(f"\n50 kbit/s up: camera off after {took:.1f} s; last reading {uplink}")
            party.screenshot(path=ARTIFACTS / "phone-room-uplink-off.png")
            mediator.screenshot(path=ARTIFACTS / "desktop-room-uplink-off.png")

            # The link is back; the party turns the camera on itself and the mediator sees it again.
            p_link.set(up={"rate": 0})
            time.sleep(2)
            party.click("[data-testid=cam-toggle]")
            note.wait_for(state="hidden", timeout=15_000)
            # The page's part: the camera is back on the sender and video goes out again.
            # (replaceTrack is asynchronous: the note may hide a moment before the track is back.)
            assert until(lambda: party.evaluate("""window.mediationRoom.pubPc.getTransceivers()
                .some(t => t.receiver.track.kind === 'video' && t.sender.track && t.sender.track.readyState === 'live')"""), 10), \
                party.evaluate("[window.mediationRoom.joins, window.mediationRoom.errors]")
            sent = party.evaluate(OUTBOUND_JS)[0]["frames"]
            assert until(lambda: party.evaluate(OUTBOUND_JS)[0]["frames"] > sent + 20, 15), party.evaluate(OUTBOUND_JS)
            # The small encoding, stopped first for the narrow uplink, goes out again too.
            small = party.evaluate(OUTBOUND_JS)[-1]["frames"]
            assert until(lambda: party.evaluate(OUTBOUND_JS)[-1]["frames"] > small + 20, 15), party.evaluate(OUTBOUND_JS)
            assert party.evaluate("window.mediationRoom.uplink.stopped") == 1
            base = decoded_from(mediator, p_id)
            # (A hole inside a frame once blocked the server's receive buffer here for tens of
            # seconds after the starved uplink: rooms/aiortc_hooks.py gives such frames up.)
            assert until(lambda: decoded_from(mediator, p_id) > base + 20, 30), \
                (f"no video from the party at the mediator again: party sends {party.evaluate(OUTBOUND_JS)}, "
                 f"the mediator received {mediator.evaluate(INBOUND_JS)}")
        finally:
            for browser in browsers:
                browser.close()
