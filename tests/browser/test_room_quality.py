"""Link quality and audio only in the room, real Chromium against the real server (loopback): every
tile carries the three-bar quality indicator from room.state's `quality`; the mediator's tiles,
and only the mediator's, show the link's figures; the audio-only switch sends media.audio_only,
the page shows what the server then does (room.state `audio_only`: the tiles' placeholder with
the name and why), no video arrives meanwhile while the sound goes on, and switching back
brings the video again; a participant whose camera went off for bandwidth is shown as such to
the others. Screenshots on a phone."""
from __future__ import annotations

import time

import pytest

from tests.browser.conftest import DESKTOP, PHONE, artifacts, browser  # noqa: F401
from tests.browser.room_helpers import open_room, wait_decoding, wait_js
from tests.browser.test_room import (admit_party, my_id, no_horizontal_scroll, room_browser,  # noqa: F401
                                     room_page, tile)

pytestmark = pytest.mark.browser

# Decoded video frames and received audio samples on the subscribe connection.
RECEIVED_JS = """async () => {
  let frames = 0, samples = 0;
  (await window.mediationRoom.subPc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0;
    if (r.type === 'inbound-rtp' && r.kind === 'audio') samples += r.totalSamplesReceived || 0; });
  return {frames, samples};
}"""


def received(page) -> dict:
    return page.evaluate(RECEIVED_JS)


def call(page, event: str, data: dict) -> dict:
    """An event sent through the page's own socket (the very module instance the page uses)."""
    return page.evaluate("([e, d]) => import('/static/room/signal.js').then(m => m.call(e, d))", [event, data])


def test_quality_bars_link_figures_and_audio_only(server, room_page, artifacts):
    links = open_room(server, "邻里噪音纠纷（网络质量测试）")
    mediator = room_page(DESKTOP, label="mediator")
    party = room_page(PHONE, label="party")
    mediator.goto(server.url + links.path(links.mediator_token))
    party.goto(server.url + links.path(links.party_tokens[0]))
    pid = admit_party(mediator, party)
    mid = my_id(mediator)
    wait_decoding(party, "party sees the mediator")
    wait_decoding(mediator, "mediator sees the party")

    # Every tile has the indicator, showing the level the state gives once the link is measured
    # (loopback is usually "good", but a busy machine may make it fair for a while).
    labels = {"good": "网络良好", "fair": "网络一般", "poor": "网络较差"}
    for page, other in ((party, mid), (mediator, pid)):
        bars = page.locator(f"{tile(other)} [data-testid=tile-quality]")
        bars.wait_for()
        assert bars.get_attribute("data-quality") in ("good", "fair", "poor", "unknown")
        wait_js(page, f"window.mediationRoom.state.participants.find(p => p.id === '{other}').quality",
                "a measured link", timeout=15)
        level = wait_js(page, f"""(() => {{
            const q = window.mediationRoom.state.participants.find(p => p.id === '{other}').quality;
            const a = document.querySelector("{tile(other)} [data-testid=tile-quality]").getAttribute('data-quality');
            return q === a && a; }})()""", "the bars showing the state's level")
        assert bars.get_attribute("aria-label") == labels[level], (level, bars.get_attribute("aria-label"))
    # The figures are the mediator's only.
    assert party.evaluate("window.mediationRoom.state.participants.every(p => !('link' in p))")
    assert not party.is_visible(f"{tile(mid)} [data-testid=tile-link]")
    figures = mediator.locator(f"{tile(pid)} [data-testid=tile-link]")
    wait_js(mediator, f"(() => {{ const p = window.mediationRoom.state.participants.find(p => p.id === '{pid}');"
                      " return p && p.link && p.link.kbps_up > 0; })()", "the party's link figures", timeout=15)
    figures.wait_for()
    text = figures.inner_text()
    assert "上行" in text and "下行" in text and "丢包" in text and "kbit/s" in text, text
    rtt = mediator.evaluate(f"window.mediationRoom.state.participants.find(p => p.id === '{pid}').link.rtt_ms")
    assert ("往返" in text) == (rtt is not None), (text, rtt)   # a round trip only once measured
    # On loopback the mediator's video is (soon) forwarded to the party in full.
    wait_js(party, f"window.mediationRoom.state.video['{mid}'] === 'full'", "the mediator's video in full", timeout=30)
    party.wait_for_selector(f"{tile(mid)}:not(.no-video)")
    assert party.evaluate("window.mediationRoom.state.audio_only") is False
    time.sleep(0.5)
    no_horizontal_scroll(party)
    party.screenshot(path=artifacts / "phone-room-quality.png")
    mediator.screenshot(path=artifacts / "desktop-room-quality-mediator.png")

    # Audio only: the switch sends media.audio_only, the state answers, no more video arrives.
    toggle = party.locator("[data-testid=audio-only]")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    wait_js(party, "window.mediationRoom.state.audio_only === true", "audio_only in the state")
    party.wait_for_selector("[data-testid=audio-only][aria-pressed=true]")
    party.wait_for_selector(f"{tile(mid)}.no-video [data-testid=tile-video-note][data-reason=audio_only]")
    assert party.inner_text(f"{tile(mid)} [data-testid=tile-video-note]") == "仅音频模式，不接收视频"
    assert "调解员 李明" in party.inner_text(f"{tile(mid)} .tile-ph")
    time.sleep(1.5)   # what was in flight
    before = received(party)
    time.sleep(2.5)
    after = received(party)
    assert after["frames"] - before["frames"] <= 2, (before, after)
    assert after["samples"] > before["samples"] + 48000, (before, after)   # the sound goes on
    # The voice ring follows the mediator's (fake) microphone on the placeholder.
    wait_js(party, f"(document.querySelector(\"{tile(mid)}\")._voice || 0) > 0.05", "the voice ring moves")
    # The mediator still gets the party's video: audio only is about what I receive.
    m_before = received(mediator)["frames"]
    wait_js(mediator, f"({RECEIVED_JS})().then(r => r.frames > {m_before} + 10)", "the mediator still decodes")
    no_horizontal_scroll(party)
    party.screenshot(path=artifacts / "phone-room-audio-only.png")

    # A reload keeps it: the page asks again after joining.
    party.reload()
    wait_js(party, "window.mediationRoom.screen === 'room' && window.mediationRoom.state.audio_only === true",
            "audio only after the reload", timeout=20)
    party.wait_for_selector("[data-testid=audio-only][aria-pressed=true]")

    # Back to video.
    party.click("[data-testid=audio-only]")
    wait_js(party, "window.mediationRoom.state.audio_only === false", "audio_only off in the state")
    party.wait_for_selector(f"{tile(mid)}:not(.no-video)", timeout=15_000)
    frames = received(party)["frames"]
    wait_js(party, f"({RECEIVED_JS})().then(r => r.frames > {frames} + 10)", "video again after audio only")

    # The party's page turns its camera off for bandwidth: the mediator sees why.
    ack = call(party, "media.mute", {"kind": "video", "muted": True, "reason": "bandwidth"})
    assert ack["ok"], ack
    note = mediator.locator(f"{tile(pid)} [data-testid=tile-video-note][data-reason=bandwidth]")
    note.wait_for()
    assert note.inner_text() == "对方网络较差，仅音频"
    assert mediator.evaluate(f"window.mediationRoom.state.participants.find(p => p.id === '{pid}').video_off_reason") \
        == "bandwidth"
    mediator.screenshot(path=artifacts / "desktop-room-peer-audio-only.png")
    # Turning the camera on again clears it.
    assert call(party, "media.mute", {"kind": "video", "muted": False})["ok"]
    note.wait_for(state="hidden")
    assert mediator.evaluate(f"window.mediationRoom.state.participants.find(p => p.id === '{pid}').video_off_reason") \
        is None
    # A reason the server does not know is refused.
    ack = call(party, "media.mute", {"kind": "video", "muted": True, "reason": "tired"})
    assert not ack["ok"], ack


def test_audio_only_in_english(server, room_page):
    links = open_room(server, "Audio only in English")
    mediator = room_page(DESKTOP, label="mediator")
    party = room_page(PHONE, locale="en", label="party")
    mediator.goto(server.url + links.path(links.mediator_token))
    party.goto(server.url + links.path(links.party_tokens[0]) + "?lang=en")
    admit_party(mediator, party)
    mid = my_id(mediator)
    party.locator(f"{tile(mid)} [data-testid=tile-quality]").wait_for()
    toggle = party.locator("[data-testid=audio-only]")
    assert toggle.inner_text().strip() == "Audio only"
    assert toggle.get_attribute("aria-label") == "Switch to audio only (receive no video)"
    toggle.click()
    party.wait_for_selector(f"{tile(mid)} [data-testid=tile-video-note][data-reason=audio_only]")
    assert party.inner_text(f"{tile(mid)} [data-testid=tile-video-note]") == "Audio only: no video received"
    no_horizontal_scroll(party)
