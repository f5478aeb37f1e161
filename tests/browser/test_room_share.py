"""Screen sharing in real Chromium pages (docs/protocol.md, "Screen sharing"): the mediator shares
(Chromium's fake screen capture, 1280×720); a party on a phone, which cannot share itself (no
getDisplayMedia, so no button), sees it large with frames decoded; a party in a caucus gets
nothing of it. Then that party, back in the main room, shares from a desktop and the mediator
stops it from the stage: the party's capture stops, the viewers' stage goes, the record says who
stopped whose share."""
from __future__ import annotations

import json

from tests.browser.conftest import DESKTOP, PHONE, artifacts, browser  # noqa: F401
from tests.browser.room_helpers import login, open_room, wait_js
from tests.browser.test_room import enter, my_id, no_horizontal_scroll, room_browser, room_page, wait_screen  # noqa: F401

# The inbound video of the m-line the track table marks as `pid`'s screen share, from getStats.
SHARE_STATS_JS = """async (pid) => {
  const R = window.mediationRoom;
  const row = (R.trackTable || []).find(r => r.active && r.role === 'screen' && r.participant_id === pid);
  if (!row || !R.subPc) return null;
  const tr = R.subPc.getTransceivers().find(t => t.mid === row.mid);
  if (!tr) return null;
  let out = null;
  (await tr.receiver.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video')
      out = {framesDecoded: r.framesDecoded || 0, frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0};
  });
  return out;
}"""


def admit(mediator, page) -> str:
    enter(page)
    wait_screen(page, "lobby")
    pid = my_id(page)
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']")
    wait_screen(page, "room")
    return pid


def share_decoded(page, pid: str, min_width: int, timeout: float = 20.0) -> dict:
    """The page shows `pid`'s share on its stage, decoded at `min_width` pixels or more."""
    wait_js(page, f"window.mediationRoom.share.shown === {json.dumps(pid)}"
                  " && document.querySelector('#share-video').videoWidth > 0", "the share on the stage", timeout)
    stats = None
    for _ in range(int(timeout * 5)):
        stats = page.evaluate(SHARE_STATS_JS, pid)
        if stats and stats["framesDecoded"] > 10 and stats["frameWidth"] >= min_width:
            return stats
        page.wait_for_timeout(200)
    raise AssertionError(f"the share of {pid} was not decoded: {stats}")


def test_the_mediators_share_reaches_the_main_room_and_the_mediator_stops_a_partys(server, room_page, artifacts):  # noqa: F811
    links = open_room(server, "合伙纠纷（屏幕共享测试）", respondents=[{"name": "周九"}])
    mediator = room_page(DESKTOP, label="mediator")
    phone = room_page(PHONE, label="party-phone")
    # A phone's browser has no screen capture: the page must not offer it.
    phone.add_init_script("delete MediaDevices.prototype.getDisplayMedia;")
    desk = room_page(DESKTOP, label="party-desk")
    mediator.goto(server.url + links.path(links.mediator_token))
    phone.goto(server.url + links.path(links.party_tokens[0]))
    desk.goto(server.url + links.path(links.party_tokens[1]))
    enter(mediator)
    wait_screen(mediator, "room")
    me = my_id(mediator)
    p_phone, p_desk = admit(mediator, phone), admit(mediator, desk)
    assert phone.is_hidden("[data-testid=share-toggle]")
    assert mediator.is_visible("[data-testid=share-toggle]") and desk.is_visible("[data-testid=share-toggle]")

    # The desktop party goes into a caucus.
    mediator.fill("#caucus-name", "与周九单独谈")
    mediator.click("[data-testid=caucus-create]")
    mediator.wait_for_selector("[data-testid=caucus-list] li:has-text('与周九单独谈')")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{p_desk}']", label="与周九单独谈")
    desk.wait_for_selector("[data-testid=area-banner]:has-text('与周九单独谈')")

    # The mediator shares: the phone shows it large, decoded at the capture's width.
    mediator.click("[data-testid=share-toggle]")
    wait_js(mediator, "window.mediationRoom.share.sharing", "the mediator sharing")
    stats = share_decoded(phone, me, 960)
    print(f"share at the phone: {stats}")
    box = phone.locator("[data-testid=share-video]").bounding_box()
    assert box["width"] >= PHONE["width"] * 0.9, box  # the whole width of the phone
    assert "共享屏幕" in phone.inner_text("[data-testid=share-by]")
    assert phone.is_hidden("[data-testid=share-stop]")  # a party stops nobody's share
    # The party's camera is still a tile of its own, not replaced by the share.
    assert phone.evaluate(f"!!document.querySelector(\"[data-testid=tile][data-pid='{me}'] video\").srcObject")
    no_horizontal_scroll(phone)
    phone.wait_for_timeout(800)
    phone.screenshot(path=artifacts / "phone-room-share.png")
    mediator.screenshot(path=artifacts / "desktop-room-share-mine.png")
    # The caucus gets nothing of it.
    assert desk.evaluate("window.mediationRoom.share.shown") is None
    assert not desk.evaluate("(window.mediationRoom.trackTable || []).some(r => r.role === 'screen')")
    assert desk.is_hidden("[data-testid=share-view]")

    # The mediator stops sharing with the toggle: the phone's stage goes.
    mediator.click("[data-testid=share-toggle]")
    wait_js(phone, "window.mediationRoom.share.shown === null && document.querySelector('#share-view').hidden",
            "the stage gone at the phone")

    # The party comes back and shares from the desktop; the mediator stops it from the stage.
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{p_desk}']", value="main")
    wait_js(desk, "window.mediationRoom.share && !document.querySelector('#area-banner:not([hidden])')", "back in main")
    desk.click("[data-testid=share-toggle]")
    share_decoded(mediator, p_desk, 960)
    share_decoded(phone, p_desk, 960)
    mediator.wait_for_timeout(500)
    mediator.screenshot(path=artifacts / "desktop-room-share.png")
    assert mediator.is_visible("[data-testid=share-stop]")
    mediator.click("[data-testid=share-stop]")
    wait_js(desk, "!window.mediationRoom.share.sharing", "the party's capture stopped")
    for page in (mediator, phone):
        wait_js(page, "window.mediationRoom.share.shown === null", "the stopped share's stage gone")
    assert desk.evaluate("document.querySelector('[data-testid=share-toggle]').getAttribute('aria-pressed')") == "false"

    status, body = server.api("GET", f"/cases/{links.case_id}/record", token=login(server, "mediator"))
    assert status == 200, body
    shares = [e for e in body["timeline"] if e["action"] in ("screen.started", "screen.stopped")]
    assert [(e["action"], e["data"]["participant_id"]) for e in shares] == [
        ("screen.started", me), ("screen.stopped", me), ("screen.started", p_desk), ("screen.stopped", p_desk)]
    assert shares[1]["data"]["reason"] == "stopped" and shares[0]["data"]["area"] == "main"
    assert shares[3]["data"]["reason"] == "stopped_by" and shares[3]["data"]["stopped_by"]["id"] == me
    assert shares[3]["data"]["seconds"] > 0
