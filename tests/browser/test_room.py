"""The live room in real Chromium (fake camera and microphone) against the real server: check-in,
the lobby, admission, media both ways through the SFU (proved by getStats), chat, mute, help,
caucus, expert invitation, leaving, rejoining and the end of the session; screenshots on a
phone and a desktop. Join-to-first-frame times are printed, never asserted."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE
from .room_helpers import open_room, wait_decoding, wait_js

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ROOM_ARGS = CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def room_browser(browser):
    """Our own Chromium from the same Playwright (the shared fixture decides skip/fail when
    Chromium is missing): remote audio must autoplay after a reload without a gesture."""
    b = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=ROOM_ARGS)
    yield b
    b.close()


@pytest.fixture
def room_page(room_browser):
    """Factory: a page in its own context. Fails the test on a script error or a 5xx response."""
    contexts, problems = [], []

    def make(viewport=DESKTOP, locale="zh-CN", label="page"):
        mobile = viewport["width"] < 600
        ctx = room_browser.new_context(viewport=viewport, locale=locale, is_mobile=mobile, has_touch=mobile,
                                       device_scale_factor=2 if mobile else 1)
        ctx.grant_permissions(["camera", "microphone"])
        ctx.set_default_timeout(10_000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda e: problems.append(f"{label}: script error: {e}"))
        page.on("response", lambda r: problems.append(f"{label}: {r.status} {r.url}") if r.status >= 500 else None)
        page.on("dialog", lambda d: d.accept())   # confirm() before leaving, removing, ending
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    assert not problems, problems


def screen(page) -> str:
    return page.evaluate("window.mediationRoom && window.mediationRoom.screen")


def wait_screen(page, name: str, timeout: float = 10.0) -> None:
    wait_js(page, f"window.mediationRoom && window.mediationRoom.screen === {json.dumps(name)}", f"screen {name}",
            timeout)


def enter(page) -> None:
    wait_js(page, "document.querySelector('#self-video').videoWidth > 0", "own preview")
    page.click("[data-testid=enter]")
    pass_steps(page)


def pass_steps(page, timeout: float = 15.0) -> list[str]:
    """Answer the procedure steps a participant owes before joining (online-mediation consent,
    the notices) the way a person does: read, then agree. Returns the steps' titles."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = page.evaluate("() => window.mediationRoom && window.mediationRoom.screen")
        if screen not in ("precheck", "connecting", "step"):
            return seen
        if screen == "step" and page.locator("#step-yes").is_visible():
            title = page.locator("#step-title").inner_text()
            if not seen or seen[-1] != title:
                seen.append(title)
                page.click("#step-yes")
        time.sleep(0.1)
    return seen


def my_id(page) -> str:
    return wait_js(page, "window.mediationRoom.me && window.mediationRoom.me.id", "own participant id")


def tile(pid: str) -> str:
    return f"[data-testid=tile][data-pid='{pid}']"


def frames_shown(pid: str) -> str:
    """JS: the tile of `pid` has rendered video frames."""
    return (f"""(() => {{ const v = document.querySelector("{tile(pid)} video");
        return !!v && v.getVideoPlaybackQuality().totalVideoFrames > 0; }})()""")


TOTAL_DECODED_JS = """async () => {
  let n = 0;
  (await window.mediationRoom.subPc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; });
  return n;
}"""


def epoch_ms_of(page, expr: str) -> float:
    """A page's performance.now() value as wall-clock milliseconds (comparable across pages)."""
    return page.evaluate(f"performance.timeOrigin + ({expr})")


def no_horizontal_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"page is {width}px wide on a {page.viewport_size['width']}px screen"


def admit_party(mediator, party) -> str:
    enter(mediator)
    wait_screen(mediator, "room")
    enter(party)
    wait_screen(party, "lobby")
    pid = my_id(party)
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']")
    wait_screen(party, "room")
    return pid


def test_lobby_admission_media_both_ways_and_rejoin(server, room_page, artifacts):
    links = open_room(server, "房屋租赁押金纠纷（调解室测试）")
    mediator = room_page(DESKTOP, label="mediator")
    party = room_page(PHONE, label="party")
    mediator.goto(server.url + links.path(links.mediator_token))
    party.goto(server.url + links.path(links.party_tokens[0]))

    # Check-in: own preview, device lists, on/off buttons, and it fits a phone.
    assert party.get_attribute("body", "data-screen") == "precheck"
    wait_js(party, "document.querySelector('#self-video').videoWidth > 0", "own preview")
    assert party.locator("#cam-select option").count() >= 1
    assert party.locator("#mic-select option").count() >= 1
    assert party.get_attribute("[data-testid=precheck] [data-toggle=audio]", "aria-pressed") == "true"
    # The level meter moves with the (fake) microphone's beeps.
    wait_js(party, "+document.querySelector('.meter').getAttribute('aria-valuenow') > 0", "mic level meter")
    no_horizontal_scroll(party)
    party.screenshot(path=artifacts / "phone-room-precheck.png")

    enter(mediator)
    wait_screen(mediator, "room")
    assert mediator.evaluate("window.mediationRoom.me.role") == "mediator"

    # The party waits in the lobby, still seeing itself; the mediator sees it in the lobby list.
    enter(party)
    wait_screen(party, "lobby")
    pid = my_id(party)
    assert party.is_visible("[data-testid=lobby-wait]")
    assert party.is_visible("[data-testid=lobby-wait] #self-video")
    assert "调解员已在线" in party.inner_text("#lobby-mediator")
    admit = mediator.locator(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']")
    admit.wait_for()
    assert "赵六" in mediator.inner_text("[data-testid=lobby-list]")
    # Nothing is forwarded to or from the lobby, although the party already publishes.
    assert party.evaluate("window.mediationRoom.pubPc !== null")
    assert party.locator("[data-testid=tile]").count() == 0
    party.screenshot(path=artifacts / "phone-room-lobby.png")
    mediator.screenshot(path=artifacts / "desktop-room-lobby.png")

    clicked_ms = time.time() * 1000
    admit.click()
    wait_screen(party, "room")
    # Both decode the other's video (inbound-rtp on the subscribe connection).
    party_stats = wait_decoding(party, "party sees the mediator")
    mediator_stats = wait_decoding(mediator, "mediator sees the party")
    first_frame = wait_js(party, "window.mediationRoom.firstFrameAt", "party's first remote frame")
    admit_to_frame = epoch_ms_of(party, str(first_frame)) - clicked_ms
    in_page = party.evaluate("window.mediationRoom.firstFrameAt - window.mediationRoom.admittedAt")
    print(f"\n[room] admit click -> first decoded remote frame on the party page: {admit_to_frame:.0f} ms "
          f"(state received -> frame: {in_page:.0f} ms); party {party_stats}, mediator {mediator_stats}")

    # Tiles: the other person with name and translated role; the lobby is empty now.
    mediator.locator(tile(pid)).wait_for()
    assert "赵六" in mediator.inner_text(tile(pid)) and "当事人" in mediator.inner_text(tile(pid))
    mid = my_id(mediator)
    party.locator(tile(mid)).wait_for()
    assert "调解员" in party.inner_text(tile(mid))
    wait_js(mediator, "document.querySelectorAll('[data-testid=lobby-list] li').length === 0", "empty lobby")
    party.wait_for_selector(f"{tile(mid)}:not(.no-video)")
    time.sleep(0.5)   # a few more frames for the screenshots
    no_horizontal_scroll(party)
    party.screenshot(path=artifacts / "phone-room.png")
    mediator.screenshot(path=artifacts / "desktop-room-mediator.png")

    # A reload comes straight back into the main room (no lobby, no second check-in).
    party.reload()
    wait_screen(party, "room", timeout=15)
    assert party.evaluate("window.mediationRoom.joinedInLobby") is False
    wait_decoding(party, "party after the reload")
    first_frame = wait_js(party, "window.mediationRoom.firstFrameAt", "first frame after the reload")
    rejoin = party.evaluate("window.mediationRoom.firstFrameAt - window.mediationRoom.joinSentAt")
    print(f"[room] rejoin into the main room: join sent -> first decoded remote frame: {rejoin:.0f} ms "
          f"(page load -> first frame: {first_frame:.0f} ms)")
    # ...and the mediator gets the party's new stream.
    wait_js(mediator, frames_shown(pid), "the mediator shows the party's new stream")

    # A dropped connection: a "reconnecting" banner at once, then back in by itself, media again.
    joins = party.evaluate("window.mediationRoom.joins")
    banner_shown = party.evaluate("""(() => { window.mediationRoom.dropConnection();
        return !document.querySelector('[data-testid=banner]').hidden; })()""")
    assert banner_shown
    wait_js(party, f"window.mediationRoom.joins > {joins} && window.mediationRoom.screen === 'room'",
            "rejoin after the drop", timeout=15)
    party.wait_for_selector("[data-testid=banner]", state="hidden")
    wait_decoding(party, "party after the reconnect")
    before = mediator.evaluate(TOTAL_DECODED_JS)
    wait_js(mediator, f"({TOTAL_DECODED_JS})().then(n => n > {before} + 5)",
            "the mediator decodes the party again after its reconnect")


def test_chat_mute_help_caucus_leave_and_end(server, room_page, artifacts):
    links = open_room(server, "宅基地边界纠纷（调解室测试）")
    mediator = room_page(DESKTOP, label="mediator")
    party = room_page(PHONE, label="party")
    mediator.goto(server.url + links.path(links.mediator_token))
    party.goto(server.url + links.path(links.party_tokens[0]))
    pid = admit_party(mediator, party)
    mediator.locator(tile(pid)).wait_for()

    # Chat from the party's phone reaches the mediator (unread badge while the chat is closed).
    party.click("[data-testid=chat-toggle]")
    party.fill("[data-testid=chat-input]", "您好，我是申请人赵六")
    party.click("[data-testid=chat-send]")
    party.wait_for_selector("[data-testid=chat-message]:has-text('您好，我是申请人赵六')")
    wait_js(mediator, "document.querySelector('#chat-list').textContent.includes('您好，我是申请人赵六')", "chat")
    assert mediator.inner_text("[data-testid=chat-toggle] .badge") == "1"
    no_horizontal_scroll(party)
    party.screenshot(path=artifacts / "phone-room-chat.png")
    party.click("[data-testid=chat-toggle]")   # closes the sheet

    # The mediator mutes the party's microphone: the party's button and sender follow.
    mediator.click(f"[data-testid=people-list] [data-testid=mute-audio][data-pid='{pid}']")
    party.wait_for_selector("[data-testid=mic-toggle][aria-pressed=false]")
    assert party.evaluate("""window.mediationRoom.pubPc.getSenders()
        .find(s => s.track && s.track.kind === 'audio').track.enabled""") is False
    mediator.wait_for_selector(f"{tile(pid)} [data-testid=tile-muted-audio]")
    # The party turns the camera off itself: the mediator's tile shows it.
    party.click("[data-testid=cam-toggle]")
    mediator.wait_for_selector(f"{tile(pid)} [data-testid=tile-muted-video]")
    mediator.wait_for_selector(f"{tile(pid)}.no-video")
    party.click("[data-testid=cam-toggle]")
    mediator.wait_for_selector(f"{tile(pid)}:not(.no-video)")

    # Help: the mediator gets a visible notice.
    party.click("[data-testid=help]")
    mediator.wait_for_selector("[data-testid=help-request]:has-text('赵六')")

    # Caucus: create one, move the party there; the mediator (still in main) no longer sees it,
    # then joins it and sees the party again.
    mediator.fill("#caucus-name", "与申请人单独谈话")
    mediator.click("[data-testid=caucus-create]")
    mediator.wait_for_selector("[data-testid=caucus-list] li:has-text('与申请人单独谈话')")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pid}']", label="与申请人单独谈话")
    party.wait_for_selector("[data-testid=area-banner]:has-text('与申请人单独谈话')")
    mediator.wait_for_selector(tile(pid), state="detached")
    mediator.click("[data-testid=caucus-list] li:has-text('与申请人单独谈话') button")
    mediator.locator(tile(pid)).wait_for()
    wait_js(mediator, frames_shown(pid), "the mediator shows the party in the caucus")
    mediator.screenshot(path=artifacts / "desktop-room-caucus.png")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pid}']", value="main")
    mediator.click("[data-testid=caucus-list] li:has-text('与申请人单独谈话') button")
    party.wait_for_selector("[data-testid=area-banner]", state="hidden")

    # Expert invitation from the pool: a link to copy.
    mediator.click("#expert-box summary")
    mediator.wait_for_selector("#expert-list li.prow")
    mediator.locator("#expert-list li.prow button").first.click()
    wait_js(mediator, "document.querySelector('#expert-url').value.includes('/join/')", "expert link")
    assert mediator.is_visible("#expert-copy")

    # The party leaves: the mediator's grid drops the tile; the party can come back.
    party.click("[data-testid=leave]")
    party.wait_for_selector("[data-testid=room-message][data-kind=left]")
    assert party.is_visible("[data-testid=rejoin]")
    mediator.wait_for_selector(tile(pid), state="detached")
    party.click("[data-testid=rejoin]")
    wait_screen(party, "room", timeout=15)
    mediator.locator(tile(pid)).wait_for()

    # The mediator ends the session: both pages say so, and the link is dead afterwards.
    mediator.click("[data-testid=end-session]")
    party.wait_for_selector("[data-testid=room-message][data-kind=ended]")
    mediator.wait_for_selector("[data-testid=room-message][data-kind=ended]")
    assert "结束" in party.inner_text("#msg-title")
    assert party.evaluate("window.mediationRoom.pubPc === null && window.mediationRoom.subPc === null")
    party.screenshot(path=artifacts / "phone-room-ended.png")
    party.reload()
    assert party.get_attribute("[data-testid=room-invalid]", "data-code") == "session_ended"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_room_page_refuses_bad_links_and_speaks_english(server):
    status, html = _get(server.url + "/room/" + "x" * 40)
    assert status == 404 and 'data-code="token_invalid"' in html and "无效" in html
    assert "room.js" not in html   # no room for a dead link
    links = open_room(server, "消费纠纷（调解室英文页面测试）")
    status, html = _get(server.url + links.path(links.party_tokens[0]) + "?lang=en")
    assert status == 200
    assert '<html lang="en">' in html and "Check your camera and microphone" in html
    blob = json.loads(re.search(r'<script id="room-config" type="application/json">(.*?)</script>', html, re.S)
                      .group(1))
    assert blob["token"] == links.party_tokens[0] and blob["role"] == "party"
    assert blob["strings"]["room.enter"] == "Enter"
    assert not re.search(r"[\u4e00-\u9fff]", "".join(blob["strings"][k] for k in blob["strings"]
                                                      if k.startswith("room.")))


def test_every_room_text_is_translated():
    """Every room.* key the template and the script use exists in both room catalogs, which
    have the same keys; the template holds no literal text."""
    # room.{lang}.json, plus the room tools' roomtools.{lang}.json
    catalogs = {lang: {k: v for p in sorted((ROOT / "web" / "i18n").glob(f"room*.{lang}.json"))
                       for k, v in json.loads(p.read_text("utf-8")).items()} for lang in ("zh-CN", "en")}
    assert set(catalogs["zh-CN"]) == set(catalogs["en"])
    assert all(k.startswith("room.") for k in catalogs["en"])
    template = (ROOT / "web" / "templates" / "room.html").read_text("utf-8")
    script = "\n".join(p.read_text("utf-8") for p in sorted((ROOT / "web" / "static" / "room").glob("*.js")))
    used = {k for k in re.findall(r"""\bt\(\s*["'](room\.[\w.]+)["']""", template) if not k.endswith(".")}
    used |= {k for k in re.findall(r'"(room\.[\w.]+)"', script) if not k.endswith(".")} - {"room.state", "room.moved"}  # event names
    # Keys the script builds from a prefix.
    used |= {f"room.{a}_{b}" for a in ("mic", "cam") for b in ("on", "off", "turn_on", "turn_off")}
    used |= {f"room.conn.{s}" for s in ("idle", "connecting", "online", "offline")}
    used |= {f"room.rec.consent.{s}" for s in ("asked", "yes", "no")}
    used |= {f"room.role.{r}" for r in ("party", "mediator", "expert", "observer")}
    used |= {f"room.step.{c}.{p}" for c in ("consent_required", "notice_required", "identity_required")
             for p in ("title", "text", "yes")}
    used |= {f"room.invalid.{c}" for c in ("token_invalid", "token_expired", "token_revoked", "token_used",
                                           "session_ended")}
    used |= {f"room.error.{c}" for c in ("token_invalid", "token_expired", "token_revoked", "token_used",
                                         "session_ended", "bad_request", "forbidden", "timeout")}
    for lang, cat in catalogs.items():
        missing = sorted(k for k in used if k not in cat)
        assert not missing, f"room*.{lang}.json lack {missing}"
    visible = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|<[^>]+>", " ", template, flags=re.S)
    assert not re.search(r"[\u4e00-\u9fff]", visible)
    assert not re.findall(r"[A-Za-z]{3,}(?:\s+[A-Za-z]{3,})+", visible)
    assert "http://" not in script and "https://" not in script and "//cdn" not in template
