"""The room's tools in real Chromium pages (a mediator on a desktop, two parties on phones) against
the real server: the e-transcript written in the room, seen live by the parties of that area only,
corrected, confirmed by both parties on their phones, the mediator seeing who confirmed, the
final PDF; the lobby (a message on the waiting page, the wait, send back), raised hands in
order, mute all with hold, the caucus timer, broadcast and knock, the active speaker.
Screenshots of each panel on a phone and a desktop go to test-artifacts/."""
from __future__ import annotations

import json
import time

from tests.browser.conftest import DESKTOP, PHONE, artifacts, browser  # noqa: F401
from tests.browser.room_helpers import open_room, wait_js
from tests.browser.test_room import (admit_party, enter, my_id, no_horizontal_scroll, room_browser,  # noqa: F401
                                     room_page, tile, wait_screen)


def open_tab(page, tab: str) -> None:
    """The side panel on that tab (the chat button opens the panel on a phone)."""
    if not page.is_visible(f".tabs [data-tab={tab}]"):
        page.click("[data-testid=chat-toggle]")
    page.click(f".tabs [data-tab={tab}]")
    page.wait_for_selector(f"[data-panel={tab}]", state="visible")


def entries(page) -> list[str]:
    return page.eval_on_selector_all("[data-testid=transcript-list] [data-testid=transcript-entry] .tr-text",
                                     "els => els.map(e => e.textContent)")


def add_entry(mediator, speaker: str, text: str) -> None:
    mediator.select_option("[data-testid=transcript-speaker]", speaker)
    mediator.fill("[data-testid=transcript-text]", text)
    mediator.click("[data-testid=transcript-add]")
    wait_js(mediator, f"[...document.querySelectorAll('[data-testid=transcript-entry] .tr-text')]"
                      f".some(e => e.textContent === {json.dumps(text)})", f"entry {text}")


def admit(mediator, page) -> str:
    enter(page)
    wait_screen(page, "lobby")
    pid = my_id(page)
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']")
    wait_screen(page, "room")
    return pid


def test_transcript_written_in_the_room_is_confirmed_on_the_phones(server, room_page, artifacts):  # noqa: F811
    links = open_room(server, "拖欠工资纠纷（笔录测试）")
    mediator = room_page(DESKTOP, label="mediator")
    a = room_page(PHONE, label="party-a")
    b = room_page(PHONE, label="party-b")
    mediator.goto(server.url + links.path(links.mediator_token))
    a.goto(server.url + links.path(links.party_tokens[0]))
    b.goto(server.url + links.path(links.party_tokens[1]))
    pa = admit_party(mediator, a)
    pb = admit(mediator, b)
    open_tab(mediator, "transcript")
    for page in (a, b):
        open_tab(page, "transcript")

    # Written in the main room, attributed to party A, to both parties: both phones show it live.
    first = "申请人陈述：包工头拖欠四个月工资共计两万三千元。"
    add_entry(mediator, pa, first)
    add_entry(mediator, "parties", "双方同意通过调解解决。")
    for page in (a, b):
        wait_js(page, "document.querySelectorAll('[data-testid=transcript-entry]').length === 2", "both entries")
        assert entries(page)[0] == first
        assert page.is_visible("[data-testid=transcript-form]") is False  # parties only read
    assert "双方当事人" in a.inner_text("[data-testid=transcript-list]")

    # In a caucus with B, the mediator's note stays there: B sees it, A (main room) does not.
    mediator.click(".tabs [data-tab=manage]")
    mediator.fill("#caucus-name", "与被申请人背对背")
    mediator.click("[data-testid=caucus-create]")
    mediator.wait_for_selector("[data-testid=caucus-list] li:has-text('与被申请人背对背')")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pb}']", label="与被申请人背对背")
    b.wait_for_selector("[data-testid=area-banner]:has-text('与被申请人背对背')")
    mediator.click("[data-testid=caucus-list] li:has-text('与被申请人背对背') button:has-text('进入')")
    wait_js(mediator, f"window.mediationRoom.state.participants.find(p => p.id === '{my_id(mediator)}').where !== 'main'",
            "mediator in the caucus")
    open_tab(mediator, "transcript")
    wait_js(mediator, "document.querySelectorAll('[data-testid=transcript-entry]').length === 0", "the caucus's own list")
    add_entry(mediator, pb, "被申请人私下表示可以分期支付。")
    wait_js(b, "[...document.querySelectorAll('[data-testid=transcript-entry]')].some(e => e.textContent.includes('分期'))",
            "B sees the caucus note")
    time.sleep(0.5)
    assert not any("分期" in e for e in entries(a)), entries(a)
    mediator.screenshot(path=artifacts / "desktop-room-transcript-caucus.png")

    # Back in the main room: a correction of the first entry, seen by both.
    mediator.click(".tabs [data-tab=manage]")
    mediator.click("[data-testid=caucus-list] li:has-text('与被申请人背对背') button")  # back to main
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pb}']", value="main")
    b.wait_for_selector("[data-testid=area-banner]", state="hidden")
    open_tab(mediator, "transcript")
    wait_js(mediator, "document.querySelectorAll('[data-testid=transcript-entry]').length === 2", "main list again")
    mediator.click("[data-testid=transcript-entry] >> nth=0 >> [data-testid=transcript-edit]")
    corrected = "申请人陈述：包工头拖欠四个月工资，经核对共计两万元。"
    mediator.fill("[data-testid=transcript-text]", corrected)
    mediator.click("[data-testid=transcript-add]")
    for page in (a, b):
        wait_js(page, f"[...document.querySelectorAll('[data-testid=transcript-entry] .tr-text')]"
                      f".some(e => e.textContent === {json.dumps(corrected)})", "the correction", timeout=10)
        assert len(entries(page)) == 2
    a.screenshot(path=artifacts / "phone-room-transcript-party.png")
    no_horizontal_scroll(a)

    # Closed: each party reviews on the phone; A confirms, the mediator sees it, B confirms: final.
    mediator.click("[data-testid=transcript-close]")
    for page in (a, b):
        page.wait_for_selector("[data-testid=transcript-review]", state="visible")
        assert page.locator("[data-testid=transcript-review-entry]").count() == 2
    a.screenshot(path=artifacts / "phone-room-transcript-review.png")
    no_horizontal_scroll(a)
    a.click("[data-testid=transcript-confirm]")
    a.wait_for_selector("[data-testid=transcript-review]", state="hidden")
    mediator.wait_for_selector(f"[data-testid=transcript-signoff][data-pid='{pa}'][data-state=agreed]")
    assert mediator.get_attribute(f"[data-testid=transcript-signoff][data-pid='{pb}']", "data-state") == "waiting"
    mediator.screenshot(path=artifacts / "desktop-room-transcript-signoffs.png")
    b.click("[data-testid=transcript-confirm]")
    for page in (mediator, a, b):
        page.wait_for_selector("[data-testid=transcript-pdf]", state="visible")
    assert "已确认" in mediator.inner_text("[data-testid=transcript-status]")
    href = a.get_attribute("[data-testid=transcript-pdf]", "href")
    pdf = a.request.get(server.url + href)
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF")
    status, body = server.api("GET", f"/sessions/{links.session_id}/transcript",
                              token=server.api("POST", "/auth/login", {"username": "mediator",
                                                                       "password": "demo-pass-2026"})[1]["token"])
    assert status == 200 and body["status"] == "final" and body["pdf_sha256"] == pdf.headers["x-content-sha256"]
    assert [so["participant_id"] for so in body["signoffs"] if so["agree"]] == [pa, pb]


def where(page, pid: str) -> str:
    return page.evaluate(f"window.mediationRoom.state.participants.find(p => p.id === '{pid}').where")


def test_lobby_hands_mute_all_and_caucus_tools(server, room_page, artifacts):  # noqa: F811
    links = open_room(server, "邻里噪音纠纷（调解工具测试）")
    mediator = room_page(DESKTOP, label="mediator")
    a = room_page(PHONE, label="party-a")
    b = room_page(PHONE, label="party-b")
    mediator.goto(server.url + links.path(links.mediator_token))
    a.goto(server.url + links.path(links.party_tokens[0]))
    b.goto(server.url + links.path(links.party_tokens[1]))
    pa = admit_party(mediator, a)

    # B waits: the mediator sees for how long, and messages the lobby; B's waiting page shows it.
    enter(b)
    wait_screen(b, "lobby")
    pb = my_id(b)
    mediator.wait_for_selector(f"#lobby-list li[data-pid='{pb}'] [data-testid=lobby-waited]")
    assert "刚到" in mediator.inner_text(f"#lobby-list li[data-pid='{pb}'] [data-testid=lobby-waited]")
    mediator.fill("[data-testid=lobby-message-text]", "请稍候，调解员正在与申请人核对材料。")
    mediator.click("[data-testid=lobby-message-send]")
    b.wait_for_selector("[data-testid=lobby-message]:has-text('请稍候，调解员正在与申请人核对材料。')")
    assert a.locator("[data-testid=lobby-message]").count() == 0
    b.screenshot(path=artifacts / "phone-room-lobby-message.png")
    no_horizontal_scroll(b)
    mediator.screenshot(path=artifacts / "desktop-room-lobby-tools.png")
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pb}']")
    wait_screen(b, "room")

    # Send back to the lobby, then in again.
    mediator.click(f"[data-testid=people-list] [data-testid=send-lobby][data-pid='{pa}']")
    wait_screen(a, "lobby")
    mediator.locator(tile(pa)).wait_for(state="detached")
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pa}']")
    wait_screen(a, "room")
    mediator.locator(tile(pa)).wait_for()

    # Hands: B first, then A; the mediator's queue keeps that order, the tiles show the hands.
    b.click("[data-testid=hand]")
    wait_js(mediator, "(window.mediationRoom.state.hands || []).length === 1", "B's hand")
    a.click("[data-testid=hand]")
    mediator.wait_for_selector("[data-testid=hand-queue] [data-testid=hand-row] >> nth=1")
    order = mediator.eval_on_selector_all("[data-testid=hand-queue] [data-testid=hand-row]", "els => els.map(e => e.dataset.pid)")
    assert order == [pb, pa]
    mediator.wait_for_selector(f"{tile(pb)} [data-testid=tile-hand]:has-text('1')")
    mediator.wait_for_selector(f"{tile(pa)} [data-testid=tile-hand]:has-text('2')")
    a.wait_for_selector(f"{tile(pb)} [data-testid=tile-hand]")
    mediator.screenshot(path=artifacts / "desktop-room-hands.png")
    a.screenshot(path=artifacts / "phone-room-hands.png")
    mediator.click(f"[data-testid=hand-queue] [data-testid=hand-lower][data-pid='{pb}']")
    mediator.wait_for_selector(f"{tile(pb)} [data-testid=tile-hand]", state="detached")
    assert mediator.eval_on_selector_all("[data-testid=hand-row]", "els => els.map(e => e.dataset.pid)") == [pa]
    a.click("[data-testid=hand]")  # A lowers their own
    wait_js(mediator, "(window.mediationRoom.state.hands || []).length === 0", "no hands")

    # Mute all and hold: A's microphone goes off and cannot be turned on until released.
    mediator.click("[data-testid=mute-all-hold]")
    wait_js(a, "document.querySelector('[data-testid=mic-toggle]').getAttribute('aria-pressed') === 'false'", "A muted")
    wait_js(mediator, f"window.mediationRoom.state.participants.find(p => p.id === '{pa}').held", "A held")
    a.click("[data-testid=mic-toggle]")
    time.sleep(1.0)
    assert a.get_attribute("[data-testid=mic-toggle]", "aria-pressed") == "false"
    assert mediator.evaluate(f"window.mediationRoom.state.participants.find(p => p.id === '{pa}').muted.audio")
    assert not mediator.evaluate(f"window.mediationRoom.state.participants.find(p => p.id === '{my_id(mediator)}').muted.audio")
    mediator.wait_for_selector(f"#people-list li[data-pid='{pa}'] [data-testid=held-chip]")
    mediator.click("[data-testid=release-all]")
    wait_js(mediator, f"!window.mediationRoom.state.participants.find(p => p.id === '{pa}').held", "released")
    a.click("[data-testid=mic-toggle]")
    wait_js(mediator, f"!window.mediationRoom.state.participants.find(p => p.id === '{pa}').muted.audio", "A unmuted")

    # A caucus with a 10-minute timer: its member sees the countdown, the broadcast and knocks.
    mediator.fill("#caucus-name", "与申请人背对背")
    mediator.fill("[data-testid=caucus-minutes]", "10")
    mediator.click("[data-testid=caucus-create]")
    mediator.wait_for_selector("[data-testid=caucus-list] li:has-text('与申请人背对背') [data-testid=caucus-list-timer]:has-text('剩余')")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pa}']", label="与申请人背对背")
    a.wait_for_selector("[data-testid=caucus-timer]:has-text('剩余 9:')")
    mediator.fill("[data-testid=broadcast-text]", "还有十分钟，请抓紧讨论。")
    mediator.click("[data-testid=broadcast-send]")
    a.wait_for_selector("[data-testid=caucus-word]:has-text('还有十分钟，请抓紧讨论。')")
    time.sleep(0.3)
    assert b.locator("[data-testid=caucus-word]").is_hidden()
    a.evaluate("document.querySelector('#toasts').textContent = ''")  # the bar itself, not the toasts
    a.screenshot(path=artifacts / "phone-room-caucus-bar.png")
    no_horizontal_scroll(a)
    a.click("[data-testid=knock]")
    knock = mediator.wait_for_selector(".toast:has-text('请您进入“与申请人背对背”')")
    mediator.screenshot(path=artifacts / "desktop-room-knock.png")
    knock.query_selector("button").click()  # one click takes the mediator in
    wait_js(mediator, f"window.mediationRoom.state.participants.find(p => p.id === '{my_id(mediator)}').where === "
                      f"window.mediationRoom.state.participants.find(p => p.id === '{pa}').where", "mediator in the caucus")
    mediator.locator(tile(pa)).wait_for()
    assert where(mediator, pb) == "main"

    # The active speaker is highlighted (Chromium's fake microphone beeps; the levels come from
    # the audio-level header extension).
    wait_js(mediator, "document.querySelector('#grid .tile.speaking, #self-tile.speaking')", "an active speaker", timeout=15)
