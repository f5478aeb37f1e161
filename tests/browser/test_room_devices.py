"""One device per link, in Chromium against the real server (docs/protocol.md, "One device per
link"): a party's link opened in a second browser (another device: its own profile, so its own
storage) waits on its own screen while the party stays in; the mediator sees it marked "another
device" in the lobby list and lets it in or turns it away. Let in, it takes over the place (the
first device is told it was replaced), and a reload on it stays in."""
from __future__ import annotations

import pytest

from .conftest import DESKTOP, PHONE
from .lab_helpers import decode_mark, decoded_past, until
from .room_helpers import open_room, wait_decoding, wait_js
from .test_room import (admit_party, enter, my_id, no_horizontal_scroll, room_browser, room_page,  # noqa: F401
                        screen, wait_screen)

pytestmark = pytest.mark.browser


def _device_row(mediator, pid: str):
    return mediator.locator(f"[data-testid=lobby-list] [data-testid=device-row][data-pid='{pid}']")


def test_a_second_device_waits_and_the_mediator_decides(server, room_page, artifacts):
    links = open_room(server, "物业纠纷（同一链接两台设备）")
    party_link = server.url + links.path(links.party_tokens[0])
    mediator = room_page(DESKTOP, label="mediator")
    phone = room_page(PHONE, label="phone")
    mediator.goto(server.url + links.path(links.mediator_token))
    phone.goto(party_link)
    pid = admit_party(mediator, phone)
    wait_decoding(mediator, "the mediator decodes the phone")

    # Someone else with the link (a forwarded message): waits, and the phone stays in.
    stranger = room_page(PHONE, label="stranger")
    stranger.goto(party_link)
    enter(stranger)
    wait_screen(stranger, "device")
    assert "此链接正在另一台设备上使用" in stranger.inner_text("[data-testid=device-wait]")
    no_horizontal_scroll(stranger)
    stranger.screenshot(path=artifacts / "phone-room-second-device.png")
    row = _device_row(mediator, pid)
    row.wait_for()
    assert "另一台设备" in row.inner_text() and links.party_names[0] in row.inner_text()
    mediator.screenshot(path=artifacts / "desktop-room-second-device.png")
    assert screen(phone) == "room"
    mediator.click(f"[data-testid=device-deny][data-pid='{pid}']")
    wait_screen(stranger, "message")
    assert stranger.get_attribute("#screen-message", "data-kind") == "denied"
    assert "未获准进入" in stranger.inner_text("#screen-message")
    row.wait_for(state="detached")
    assert screen(phone) == "room"

    # The party on a laptop: the mediator lets it in, it takes over, the phone is told.
    laptop = room_page(PHONE, label="laptop")
    laptop.goto(party_link)
    enter(laptop)
    wait_screen(laptop, "device")
    row.wait_for()
    mark = decode_mark(mediator, pid)
    mediator.click(f"[data-testid=device-admit][data-pid='{pid}']")
    wait_screen(laptop, "room", timeout=15)
    assert my_id(laptop) == pid
    wait_screen(phone, "message")
    assert phone.get_attribute("#screen-message", "data-kind") == "replaced"
    wait_decoding(laptop, "the laptop decodes the mediator", timeout=15)
    wait_js(mediator, f"(window.mediationRoom.state.participants.find(p => p.id === '{pid}') || {{}}).connection "
            f"=== 'connected'", "the party connected again")
    assert until(lambda: decoded_past(mediator, pid, mark, by=20), 15), "the mediator never decoded the laptop"
    # The laptop holds the place now: a reload carries on there without asking anyone.
    laptop.reload()
    wait_screen(laptop, "room", timeout=15)
    assert my_id(laptop) == pid
    assert not _device_row(mediator, pid).count()
