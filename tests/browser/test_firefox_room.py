"""The live room with a party in Firefox ESR (Debian's firefox-esr, headless, driven over
WebDriver BiDi by tests/support/firefox.py) next to a Chromium mediator and a Chromium second
party, against the real server: the Firefox party checks in with its fake camera and
microphone, passes the join steps, waits in the lobby and is admitted; every page decodes the
others' video (framesDecoded rising, per publisher, on the subscribe connection), sound goes
both ways (decoded audio samples rising; Firefox's tile plays unmuted), a reload brings Firefox
back with new connections, an aiortc participant (an expert let in directly) and Firefox decode
each other's video and audio, and a move into a caucus and back keeps its media flowing. A second
test runs Firefox with its own autoplay setting: sound after the entering clicks, and after a
reload the page's sound button. Timings are printed, never asserted."""
from __future__ import annotations

import os
import time

import pytest

from tests.support.firefox import FIREFOX, PULSEAUDIO, Firefox
from tests.support.threaded_peer import ThreadedPeer

from .conftest import DESKTOP, PHONE, _missing
from .room_helpers import login, open_room, wait_js
from .test_room import enter, my_id, room_browser, room_page, tile, wait_screen  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

# Per publisher on the subscribe connection (mid -> participant from the server's track table):
# decoded video frames and packets, audio packets and decoded samples. receiver.getStats()
# rather than matching stats by `mid`, which not every browser version reports.
FROM_JS = """async () => {
  const R = window.mediationRoom, out = {};
  if (!R || !R.subPc) return out;
  const rows = {};
  (R.trackTable || []).forEach(r => { rows[r.mid] = r; });
  for (const tr of R.subPc.getTransceivers()) {
    const row = rows[tr.mid];
    if (!row || !row.active || !tr.receiver) continue;
    const e = out[row.participant_id] = out[row.participant_id] ||
      {frames: 0, videoPackets: 0, audioPackets: 0, samples: 0};
    (await tr.receiver.getStats()).forEach(s => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') {
        e.frames += s.framesDecoded || 0; e.videoPackets += s.packetsReceived || 0;
      } else {
        e.audioPackets += s.packetsReceived || 0; e.samples += s.totalSamplesReceived || 0;
      }
    });
  }
  return out;
}"""

# The codec each inbound video uses (codec stats through codecId).
VIDEO_CODECS_JS = """async () => {
  const stats = await window.mediationRoom.subPc.getStats(), out = [];
  stats.forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.codecId && stats.get(s.codecId)) {
      out.push(stats.get(s.codecId).mimeType);
    }
  });
  return out;
}"""


def require_firefox() -> None:
    if not os.path.exists(FIREFOX):
        _missing(f"{FIREFOX} is not installed (Debian package firefox-esr)")
    if not os.path.exists(PULSEAUDIO):
        _missing(f"{PULSEAUDIO} is not installed (Debian package pulseaudio: Firefox's audio output)")


@pytest.fixture
def firefox(artifacts):
    require_firefox()
    log = artifacts / "firefox.log"
    log.unlink(missing_ok=True)
    with Firefox(log_path=log, viewport=PHONE) as ff:
        yield ff
        assert not ff.page_errors, f"Firefox script errors: {ff.page_errors}"
        assert not ff.server_errors, f"server errors seen by Firefox: {ff.server_errors}"


class Reader:
    """What one page receives from each publisher; the same calls for Playwright and Firefox."""

    def __init__(self, page, name: str):
        self.page, self.name = page, name

    def stats(self) -> dict:
        return self.page.evaluate(FROM_JS) or {}

    def wait_rising(self, pid: str, key: str, what: str, by: int = 5, timeout: float = 15.0) -> float:
        """Wait until stats[pid][key] has grown by `by` while pid's tracks are active (counted
        from the first reading with them active: a reused receiver keeps its old totals);
        returns the seconds it took."""
        start = time.monotonic()
        first = last = None
        while time.monotonic() - start < timeout:
            entry = self.stats().get(pid)
            if entry is not None:
                last = entry[key]
                if first is None:
                    first = last
                elif last >= first + by:
                    return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: {what}: {key} from {pid} went {first} -> {last} in {timeout} s; "
                             f"all: {self.stats()}; room errors: "
                             f"{self.page.evaluate('window.mediationRoom && window.mediationRoom.errors')}")


def firefox_pass_steps(ff: Firefox, timeout: float = 15.0) -> list[str]:
    """The join steps (consent, notices) in Firefox, answered with real clicks."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = ff.evaluate("window.mediationRoom && window.mediationRoom.screen")
        if screen not in ("precheck", "connecting", "step"):
            return seen
        visible = ff.evaluate("(() => { const b = document.querySelector('#step-yes');"
                              " return !!b && b.offsetParent !== null && !b.disabled; })()")
        if screen == "step" and visible:
            title = ff.evaluate("document.querySelector('#step-title').textContent.trim()")
            if not seen or seen[-1] != title:
                seen.append(title)
                ff.click("#step-yes")
        time.sleep(0.1)
    raise AssertionError(f"Firefox did not get past the join steps (seen: {seen}); "
                         f"errors: {ff.evaluate('window.mediationRoom.errors')}")


def assert_fits(ff: Firefox) -> None:
    """No horizontal scrolling on the phone-sized viewport."""
    width, viewport = ff.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, f"Firefox: the page is {width}px wide in a {viewport}px viewport"


def firefox_screen(ff: Firefox, name: str, timeout: float = 10.0) -> None:
    ff.wait_js(f"window.mediationRoom && window.mediationRoom.screen === '{name}'", f"screen {name}", timeout)


def test_firefox_party_in_lobby_admitted_media_both_ways_and_caucus(server, room_page, firefox, artifacts):
    started = time.monotonic()
    timings: dict[str, float] = {}
    links = open_room(server, "物业服务费纠纷（Firefox 调解室测试）")
    mediator = room_page(DESKTOP, label="mediator")
    chromium_party = room_page(PHONE, label="chromium-party")
    mediator.goto(server.url + links.path(links.mediator_token))
    enter(mediator)
    wait_screen(mediator, "room")
    mid = my_id(mediator)

    # Check-in in Firefox: the fake camera in the preview, the device lists filled.
    firefox.goto(server.url + links.path(links.party_tokens[0]))
    assert firefox.evaluate("document.body.dataset.screen") == "precheck"
    firefox.wait_js("document.querySelector('#self-video').videoWidth > 0", "Firefox's own preview")
    firefox.wait_js("+document.querySelector('.meter').getAttribute('aria-valuenow') > 0", "Firefox's mic level meter")
    assert firefox.evaluate("document.querySelectorAll('#cam-select option[value]:not([value=\"\"])').length") >= 1
    assert firefox.evaluate("document.querySelectorAll('#mic-select option[value]:not([value=\"\"])').length") >= 1
    assert_fits(firefox)
    firefox.screenshot(artifacts / "firefox-room-precheck.png")

    # Enter, pass the steps, wait in the lobby; the mediator sees the party there.
    t = time.monotonic()
    firefox.click("[data-testid=enter]")
    steps = firefox_pass_steps(firefox)
    firefox_screen(firefox, "lobby")
    timings["enter click -> lobby"] = time.monotonic() - t
    fpid = firefox.wait_js("window.mediationRoom.me && window.mediationRoom.me.id", "Firefox participant id")
    assert firefox.evaluate("window.mediationRoom.pubPc !== null")
    assert firefox.evaluate("!!document.querySelector('[data-testid=lobby-wait]').offsetParent")
    admit = mediator.locator(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{fpid}']")
    admit.wait_for()
    assert links.party_names[0] in mediator.inner_text("[data-testid=lobby-list]")
    firefox.screenshot(artifacts / "firefox-room-lobby.png")

    # Admitted: Firefox and the mediator decode each other.
    t = time.monotonic()
    admit.click()
    firefox_screen(firefox, "room")
    ff_reader, med_reader = Reader(firefox, "Firefox party"), Reader(mediator, "Chromium mediator")
    ff_reader.wait_rising(mid, "frames", "Firefox decodes the mediator's video")
    timings["admit -> Firefox decodes the mediator"] = time.monotonic() - t
    med_reader.wait_rising(fpid, "frames", "the mediator decodes Firefox's video")
    timings["admit -> mediator decodes Firefox"] = time.monotonic() - t
    mediator.locator(tile(fpid)).wait_for()
    assert links.party_names[0] in mediator.inner_text(tile(fpid))

    # Sound both ways: Firefox receives and decodes the mediator's audio and its tile plays it
    # unmuted (no "sound blocked" button); the mediator decodes Firefox's.
    ff_reader.wait_rising(mid, "audioPackets", "Firefox receives the mediator's audio", by=20)
    ff_reader.wait_rising(mid, "samples", "Firefox decodes the mediator's audio", by=9600)
    firefox.wait_js(f"""(() => {{ const v = document.querySelector("{tile(mid)} video");
        return !!v && !v.paused && !v.muted && v.srcObject && v.srcObject.getAudioTracks().length === 1
          && document.querySelector('#sound-btn').hidden; }})()""", "the mediator's tile playing with sound")
    med_reader.wait_rising(fpid, "samples", "the mediator decodes Firefox's audio", by=9600)

    # A reload brings Firefox straight back into the main room with new connections; both
    # directions decode again (the mediator gets Firefox's new stream).
    t = time.monotonic()
    firefox.reload()
    firefox_screen(firefox, "room", timeout=15)
    assert firefox.evaluate("window.mediationRoom.joinedInLobby") is False
    ff_reader.wait_rising(mid, "frames", "Firefox decodes the mediator after its reload")
    med_reader.wait_rising(fpid, "frames", "the mediator decodes Firefox's new stream")
    assert firefox.wait_js("window.mediationRoom.firstFrameAt", "Firefox's first remote frame after the reload")
    timings["reload -> both decode"] = time.monotonic() - t

    # A second party in Chromium: it and Firefox decode each other as well.
    chromium_party.goto(server.url + links.path(links.party_tokens[1]))
    enter(chromium_party)
    wait_screen(chromium_party, "lobby")
    cpid = my_id(chromium_party)
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{cpid}']")
    wait_screen(chromium_party, "room")
    cp_reader = Reader(chromium_party, "Chromium party")
    ff_reader.wait_rising(cpid, "frames", "Firefox decodes the Chromium party's video")
    cp_reader.wait_rising(fpid, "frames", "the Chromium party decodes Firefox's video")
    # An aiortc participant (an expert let in directly): Firefox and it decode each other's
    # video and audio, and the Chromium pages decode it too.
    status, body = server.api("POST", f"/sessions/{links.session_id}/invites",
                              {"role": "expert", "name": "鉴定专家（aiortc）", "specialty": "工程造价", "direct": True},
                              token=login(server, "mediator"))
    assert status == 201, body
    expert = ThreadedPeer(server.url, body["token"])
    try:
        t = time.monotonic()
        expert.join_and_publish()
        eid = expert.id
        ff_reader.wait_rising(eid, "frames", "Firefox decodes the aiortc expert's video")
        ff_reader.wait_rising(eid, "samples", "Firefox decodes the aiortc expert's audio", by=9600)
        expert.wait_frames(fpid, "video", what="the aiortc expert decodes Firefox's video")
        expert.wait_frames(fpid, "audio", by=50, what="the aiortc expert decodes Firefox's audio")
        cp_reader.wait_rising(eid, "frames", "the Chromium party decodes the aiortc expert")
        expert.wait_frames(cpid, "video", what="the aiortc expert decodes the Chromium party")
        timings["aiortc expert joins -> Firefox and it decode each other"] = time.monotonic() - t
    finally:
        expert.close()
    codecs = firefox.evaluate(VIDEO_CODECS_JS)
    firefox.wait_js(f"!!document.querySelector(\"{tile(mid)}:not(.no-video)\")", "the mediator's tile shows video")
    time.sleep(0.3)
    assert_fits(firefox)
    firefox.screenshot(artifacts / "firefox-room.png")

    # Caucus: the mediator moves the Firefox party into one; the Chromium party no longer
    # receives it; the mediator joins and both decode each other there.
    t = time.monotonic()
    mediator.fill("#caucus-name", "与物业单独谈话")
    mediator.click("[data-testid=caucus-create]")
    mediator.wait_for_selector("[data-testid=caucus-list] li:has-text('与物业单独谈话')")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{fpid}']", label="与物业单独谈话")
    firefox.wait_js("(() => { const b = document.querySelector('[data-testid=area-banner]');"
                    " return !!b && !b.hidden && b.textContent.includes('与物业单独谈话'); })()", "the caucus banner")
    mediator.wait_for_selector(tile(fpid), state="detached")
    wait_js(chromium_party, f"!document.querySelector(\"{tile(fpid)}\")", "Firefox gone from the main room")
    mediator.click("[data-testid=caucus-list] li:has-text('与物业单独谈话') button")
    mediator.locator(tile(fpid)).wait_for()
    ff_reader.wait_rising(mid, "frames", "Firefox decodes the mediator in the caucus")
    med_reader.wait_rising(fpid, "frames", "the mediator decodes Firefox in the caucus")
    assert cpid not in {p for p, e in ff_reader.stats().items() if e["frames"]}, "the caucus leaks the main room"
    timings["caucus: move -> both decode"] = time.monotonic() - t
    firefox.screenshot(artifacts / "firefox-room-caucus.png")

    # Back to the main room: Firefox still decodes everyone, and everyone decodes Firefox.
    t = time.monotonic()
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{fpid}']", value="main")
    mediator.click("[data-testid=caucus-list] li:has-text('与物业单独谈话') button")
    firefox.wait_js("document.querySelector('[data-testid=area-banner]').hidden", "the caucus banner gone")
    ff_reader.wait_rising(cpid, "frames", "Firefox decodes the Chromium party again")
    ff_reader.wait_rising(mid, "frames", "Firefox decodes the mediator again")
    ff_reader.wait_rising(mid, "audioPackets", "Firefox receives the mediator's audio again", by=20)
    med_reader.wait_rising(fpid, "frames", "the mediator decodes Firefox again")
    cp_reader.wait_rising(fpid, "frames", "the Chromium party decodes Firefox again")
    timings["back to main -> all decode"] = time.monotonic() - t
    assert not firefox.evaluate("window.mediationRoom.errors"), firefox.evaluate("window.mediationRoom.errors")

    timings["whole test"] = time.monotonic() - started
    print(f"\n[firefox room] steps {steps}; Firefox receives {codecs}; "
          + "; ".join(f"{k}: {v:.1f} s" for k, v in timings.items()))


def test_firefox_default_autoplay_policy_sound_after_a_reload(server, room_page, artifacts):
    """With Firefox's own setting (audible autoplay blocked until a gesture) instead of the
    test profile's: the check-in's level meter starts with the first tap; after the real clicks
    of entering, the mediator is heard at once; after a reload (no gesture on the new page) the
    page joins by itself, plays the picture muted and offers the sound button, which brings
    the sound."""
    require_firefox()
    links = open_room(server, "噪音扰民纠纷（Firefox 自动播放测试）")
    mediator = room_page(DESKTOP, label="mediator")
    mediator.goto(server.url + links.path(links.mediator_token))
    enter(mediator)
    wait_screen(mediator, "room")
    mid = my_id(mediator)
    meter = "+document.querySelector('.meter').getAttribute('aria-valuenow')"
    sound = f"""(() => {{ const v = document.querySelector("{tile(mid)} video");
        return !!v && {{playing: !v.paused, muted: v.muted,
                        button: !document.querySelector('#sound-btn').hidden}}; }})()"""
    with Firefox(log_path=artifacts / "firefox-autoplay.log", viewport=PHONE,
                 prefs={"media.autoplay.default": 1}) as ff:
        ff.goto(server.url + links.path(links.party_tokens[0]))
        ff.wait_js("document.querySelector('#self-video').videoWidth > 0", "Firefox's own preview")
        # The level meter's AudioContext waits for a gesture: still at first, moving after a tap.
        time.sleep(1)
        assert ff.evaluate(meter) == 0
        ff.click("#screen-precheck h1")
        ff.wait_js(f"{meter} > 0", "the mic level meter after a tap")
        ff.click("[data-testid=enter]")
        firefox_pass_steps(ff)
        firefox_screen(ff, "lobby")
        fpid = ff.wait_js("window.mediationRoom.me && window.mediationRoom.me.id", "Firefox participant id")
        mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{fpid}']")
        firefox_screen(ff, "room")
        reader = Reader(ff, "Firefox party")
        reader.wait_rising(mid, "frames", "Firefox decodes the mediator")
        assert ff.wait_js(f"({sound}).playing && ({sound})", "the mediator's tile playing") == \
            {"playing": True, "muted": False, "button": False}

        ff.reload()
        firefox_screen(ff, "room", timeout=15)
        reader.wait_rising(mid, "frames", "Firefox decodes the mediator after the reload")
        assert ff.wait_js(f"({sound}).button && ({sound})", "the sound button after the reload") == \
            {"playing": True, "muted": True, "button": True}
        ff.screenshot(artifacts / "firefox-room-sound-blocked.png")
        ff.click("#sound-btn")
        assert ff.wait_js(f"!({sound}).muted && ({sound})", "sound after the button") == \
            {"playing": True, "muted": False, "button": False}
        assert not ff.page_errors and not ff.server_errors, (ff.page_errors, ff.server_errors)
