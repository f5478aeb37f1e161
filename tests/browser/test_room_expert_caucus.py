"""The mediation controls in four real browser pages: during a running session with a mediator
and two parties, the mediator invites an expert through the page; the expert opens the link,
is admitted and decodes the others' video; then the mediator moves one party into a caucus, and
that party's page stops receiving the other party's media while the mediator's caucus page
receives it."""
from __future__ import annotations

import time

from tests.browser.conftest import DESKTOP, PHONE, artifacts, browser  # noqa: F401
from tests.browser.room_helpers import open_room, wait_decoding, wait_js
from tests.browser.test_room import enter, my_id, room_browser, room_page, tile, wait_screen  # noqa: F401

# Packets received on the subscribe connection, per publisher (mid -> publisher from the offer's table).
PER_PUBLISHER_JS = """async () => {
  const R = window.mediationRoom, out = {};
  if (!R || !R.subPc) return out;
  const rows = {};
  (R.trackTable || []).forEach(r => { rows[r.mid] = r; });
  (await R.subPc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && rows[s.mid]) {
      const pid = rows[s.mid].participant_id;
      out[pid] = (out[pid] || 0) + (s.packetsReceived || 0);
    }
  });
  return out;
}"""


def packets(page) -> dict:
    return page.evaluate(PER_PUBLISHER_JS)


def admit(mediator, page) -> str:
    enter(page)
    wait_screen(page, "lobby")
    pid = my_id(page)
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']")
    wait_screen(page, "room")
    return pid


def test_expert_joins_mid_session_and_a_caucus_isolates_media(server, room_page, artifacts):  # noqa: F811
    links = open_room(server, "渔船碰撞赔偿纠纷（四方测试）")
    mediator = room_page(DESKTOP, label="mediator")
    a = room_page(PHONE, label="party-a")
    b = room_page(PHONE, label="party-b")
    mediator.goto(server.url + links.path(links.mediator_token))
    a.goto(server.url + links.path(links.party_tokens[0]))
    b.goto(server.url + links.path(links.party_tokens[1]))
    enter(mediator)
    wait_screen(mediator, "room")
    mid = my_id(mediator)
    pa, pb = admit(mediator, a), admit(mediator, b)
    for page in (mediator, a, b):
        wait_decoding(page, "everyone sees the others", timeout=15)

    # The mediator invites an expert from the pool through the page: a link and its QR code.
    if not mediator.is_visible("#expert-box summary"):
        mediator.click("[data-testid=manage-toggle]")
    mediator.click("#expert-box summary")
    mediator.wait_for_selector("#expert-list li.prow")
    mediator.locator("#expert-list li.prow button").first.click()
    wait_js(mediator, "document.querySelector('#expert-url').value.includes('/join/')", "expert link")
    assert mediator.is_visible("[data-testid=expert-qr]")
    url = mediator.input_value("#expert-url")

    # A fourth page: the expert opens the link, is admitted, and decodes the others' video.
    expert = room_page(DESKTOP, label="expert")
    expert.goto(url)
    pe = admit(mediator, expert)
    wait_js(expert, "(async () => { const p = await (" + PER_PUBLISHER_JS + ")(); "
                    f"return (p['{mid}'] || 0) > 20 && (p['{pa}'] || 0) > 20 && (p['{pb}'] || 0) > 20; }})()",
            "the expert receives the mediator's and both parties' video", timeout=15)
    assert wait_decoding(expert, "the expert decodes video")["framesDecoded"] > 0
    mediator.locator(tile(pe)).wait_for()

    # Caucus: party A and the mediator move into it through the mediator's page.
    mediator.fill("#caucus-name", "与申请人背对背")
    mediator.click("[data-testid=caucus-create]")
    mediator.wait_for_selector("[data-testid=caucus-list] li:has-text('与申请人背对背')")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pa}']", label="与申请人背对背")
    a.wait_for_selector("[data-testid=area-banner]:has-text('与申请人背对背')")
    mediator.click("[data-testid=caucus-list] li:has-text('与申请人背对背') button")  # the mediator joins it
    mediator.locator(tile(pa)).wait_for()
    time.sleep(1.0)  # let both sides renegotiate
    a_before, b_before, m_before = packets(a), packets(b), packets(mediator)
    time.sleep(2.5)
    a_after, b_after, m_after = packets(a), packets(b), packets(mediator)
    # Party A, in the caucus, receives nothing more from party B, nor B from A...
    assert a_after.get(pb, 0) == a_before.get(pb, 0), (a_before, a_after)
    assert b_after.get(pa, 0) == b_before.get(pa, 0), (b_before, b_after)
    # ...while the mediator's caucus page keeps receiving party A.
    assert m_after.get(pa, 0) > m_before.get(pa, 0) + 20, (m_before, m_after)
    mediator.screenshot(path=artifacts / "desktop-room-four-caucus.png")
