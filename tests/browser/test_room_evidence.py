"""Evidence in the room in real Chromium pages (docs/protocol.md, "Evidence"): the mediator presents a
filed PDF in the main room; both parties there see it, each their own watermarked copy, follow
the pointer and the page; a party in a caucus sees nothing. A party on a phone takes a photo during
the session: it lands in the case's evidence with its SHA-256, the mediator accepts and presents
it. Refusals over a plain socket.io client (another case's evidence, a page out of range, a
page of another area fetched, a rejected file) change nothing."""
from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import urllib.error
import urllib.request

from PIL import Image, ImageDraw

from tests.browser.conftest import DESKTOP, artifacts, browser  # noqa: F401
from tests.browser.room_helpers import login, open_room, wait_js
from tests.browser.test_portal import login as staff_login
from tests.browser.test_room import enter, my_id, no_horizontal_scroll, room_browser, room_page, wait_screen  # noqa: F401
from tests.signaling.peer import Peer

PHONE = {"width": 390, "height": 844}
SHOWN_JS = ("(() => { const E = window.mediationRoom.evidence; const i = document.querySelector('#evidence-img');"
            " return !!E && !!E.showing && E.loaded > 0 && i.complete && i.naturalWidth > 0"
            " && !document.querySelector('#evidence-view').hidden && E.showing.page; })()")
# The bytes of the image the page shows, hashed in the page: each viewer's copy is its own.
IMAGE_HASH_JS = """async () => {
  const r = await fetch(document.querySelector('#evidence-img').src);
  const d = await crypto.subtle.digest('SHA-256', await r.arrayBuffer());
  return r.status + ':' + Array.from(new Uint8Array(d)).map(b => b.toString(16).padStart(2, '0')).join('');
}"""


def lease_pdf(pages: int = 3) -> bytes:
    out, imgs = io.BytesIO(), []
    for i in range(pages):
        im = Image.new("RGB", (595, 842), "white")
        d = ImageDraw.Draw(im)
        d.rectangle((40, 40, 555, 120), outline="black", width=3)
        d.text((60, 70), f"LEASE - page {i + 1}", fill="black")
        for y in range(160, 800, 24):
            d.line((60, y, 535, y), fill=(120, 120, 120))
        imgs.append(im)
    imgs[0].save(out, "PDF", save_all=True, append_images=imgs[1:])
    return out.getvalue()


def photo_jpeg() -> bytes:
    im = Image.new("RGB", (1200, 900), (90, 140, 200))
    d = ImageDraw.Draw(im)
    d.ellipse((300, 200, 900, 700), fill=(200, 80, 60))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def admit(mediator, page) -> str:
    enter(page)
    wait_screen(page, "lobby")
    pid = my_id(page)
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']")
    wait_screen(page, "room")
    return pid


def open_evidence(page) -> None:
    if not page.is_visible("[data-testid=evidence-panel]"):
        page.click("[data-testid=evidence-toggle]")
    page.wait_for_selector("[data-testid=evidence-panel]")


def record(server, case_id: int) -> list[dict]:
    status, body = server.api("GET", f"/cases/{case_id}/record", token=login(server, "mediator"))
    assert status == 200, body
    return body["timeline"]


def test_presented_in_main_reaches_both_parties_not_the_caucus(server, room_page, artifacts):  # noqa: F811
    pdf = lease_pdf(3)
    links = open_room(server, "房屋租赁合同纠纷（证据展示测试）", evidence=[("租赁合同.pdf", pdf)],
                      respondents=[{"name": "钱七"}, {"name": "孙八"}])
    status, case = server.api("GET", f"/cases/{links.case_id}", token=login(server, "mediator"))
    doc = case["case"]["evidence"][0]["id"]
    mediator = room_page(DESKTOP, label="mediator")
    a, b, c = (room_page(PHONE, label=f"party-{x}") for x in "abc")
    mediator.goto(server.url + links.path(links.mediator_token))
    for page, token in zip((a, b, c), links.party_tokens):
        page.goto(server.url + links.path(token))
    enter(mediator)
    wait_screen(mediator, "room")
    pa, pb, pc = (admit(mediator, p) for p in (a, b, c))

    # Party C goes into a caucus (the mediator stays in the main room).
    mediator.fill("#caucus-name", "与孙八单独谈")
    mediator.click("[data-testid=caucus-create]")
    mediator.wait_for_selector("[data-testid=caucus-list] li:has-text('与孙八单独谈')")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pc}']", label="与孙八单独谈")
    c.wait_for_selector("[data-testid=area-banner]:has-text('与孙八单独谈')")

    # The mediator presents the lease from the evidence tab.
    open_evidence(mediator)
    mediator.click(f"[data-testid=evidence-present][data-eid='{doc}']")
    for page in (mediator, a, b):
        assert wait_js(page, SHOWN_JS, "the presented page is shown", timeout=15) == 1
    assert "1 / 3" in a.inner_text("[data-testid=evidence-page]")
    ha, hb = a.evaluate(IMAGE_HASH_JS), b.evaluate(IMAGE_HASH_JS)
    assert ha.startswith("200:") and hb.startswith("200:") and ha != hb, "each viewer has a watermarked copy"
    # The party in the caucus sees nothing of it.
    assert c.is_hidden("[data-testid=evidence-view]")
    assert c.evaluate("window.mediationRoom.evidence.showing") is None

    # The pointer: the mediator points at the page, the parties' dots follow.
    box = mediator.locator("[data-testid=evidence-img]").bounding_box()
    mediator.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    mediator.mouse.move(box["x"] + box["width"] * 0.31, box["y"] + box["height"] * 0.61, steps=3)
    for page in (a, b):
        wait_js(page, "(() => { const p = window.mediationRoom.evidence.pointer; "
                      "return p && Math.abs(p.x - 0.31) < 0.03 && Math.abs(p.y - 0.61) < 0.03; })()", "the pointer")
        assert page.is_visible("[data-testid=evidence-pointer]")
        # The whole page fits the phone's screen at zoom 1.
        img = page.locator("[data-testid=evidence-img]").bounding_box()
        assert img["width"] <= PHONE["width"] and img["y"] + img["height"] <= PHONE["height"], img
    assert c.evaluate("window.mediationRoom.evidence.pointer") is None

    # The mediator turns the page and zooms: both parties follow.
    mediator.click("[data-testid=evidence-next]")
    mediator.click("[data-testid=evidence-zoom-in]")
    for page in (a, b):
        wait_js(page, "window.mediationRoom.evidence.showing.page === 2 && window.mediationRoom.evidence.showing.zoom "
                      "=== 1.5 && window.mediationRoom.evidence.loaded > 0", "page 2, zoomed", timeout=15)
        assert "2 / 3" in page.inner_text("[data-testid=evidence-page]")
    assert a.evaluate(IMAGE_HASH_JS) != ha
    assert a.is_hidden("[data-testid=evidence-next]"), "only the presenter pages through"
    no_horizontal_scroll(a)
    a.screenshot(path=artifacts / "phone-room-evidence.png")
    mediator.screenshot(path=artifacts / "desktop-room-evidence.png")

    # Party C comes back to the main room: it sees the page now.
    mediator.click("[data-testid=manage-toggle]")
    mediator.select_option(f"[data-testid=people-list] [data-testid=move][data-pid='{pc}']", value="main")
    assert wait_js(c, SHOWN_JS, "the party back in main sees it") == 2
    mediator.click("[data-testid=evidence-stop]")
    for page in (a, b, c):
        page.wait_for_selector("[data-testid=evidence-view]", state="hidden")

    timeline = record(server, links.case_id)
    presented = [e for e in timeline if e["action"] == "evidence.presented"]
    stopped = [e for e in timeline if e["action"] == "evidence.stopped"]
    assert len(presented) == 1 and presented[0]["data"]["evidence_id"] == doc
    assert len(stopped) == 1 and stopped[0]["data"]["pages"] == [1, 2]
    assert {v["participant_id"] for v in stopped[0]["data"]["viewers"]} == {my_id(mediator), pa, pb, pc}
    # The clerk's record page says who showed what, which pages, for how long and to whom.
    clerk = room_page(DESKTOP, label="clerk")
    staff_login(clerk, server.url, "clerk")
    clerk.goto(server.url + f"/archive/cases/{links.case_id}")
    text = clerk.locator("li[data-action='evidence.stopped']").first.inner_text()
    assert "停止展示证据" in text and "租赁合同.pdf" in text and "页码：1, 2" in text, text
    assert "观看者：" in text and "孙八" in text and "钱七" in text and "展示" in text, text


def test_phone_photo_added_live_accepted_and_presented(server, room_page, artifacts):  # noqa: F811
    links = open_room(server, "渔船碰撞损失纠纷（现场补充证据测试）")
    mediator = room_page(DESKTOP, label="mediator")
    a = room_page(PHONE, label="party")
    mediator.goto(server.url + links.path(links.mediator_token))
    a.goto(server.url + links.path(links.party_tokens[0]))
    enter(mediator)
    wait_screen(mediator, "room")
    admit(mediator, a)
    open_evidence(mediator)

    photo = photo_jpeg()
    open_evidence(a)
    no_horizontal_scroll(a)
    assert a.get_attribute("[data-testid=evidence-photo]", "capture") == "environment"
    a.set_input_files("[data-testid=evidence-photo]", files=[{"name": "船体损伤.jpg", "mimeType": "image/jpeg",
                                                                 "buffer": photo}])
    wait_js(a, "window.mediationRoom.evidence.uploads.length === 1", "the photo is sent", timeout=15)
    item = a.evaluate("window.mediationRoom.evidence.uploads[0]")
    assert item["sha256"] == hashlib.sha256(photo).hexdigest() and item["review"] == "pending"
    a.screenshot(path=artifacts / "phone-room-evidence-added.png")
    # In the case's evidence, with its hash, for staff too.
    status, case = server.api("GET", f"/cases/{links.case_id}", token=login(server, "mediator"))
    assert [(e["filename"], e["sha256"]) for e in case["case"]["evidence"]] == [("船体损伤.jpg", item["sha256"])]

    # The mediator sees it arrive, accepts it, and presents it.
    row = f"[data-testid=evidence-item][data-eid='{item['id']}']"
    mediator.wait_for_selector(f"{row} [data-testid=evidence-accept]")
    mediator.screenshot(path=artifacts / "desktop-room-evidence-review.png")
    mediator.click(f"{row} [data-testid=evidence-accept]")
    mediator.wait_for_selector(f"{row} [data-testid=evidence-present]")
    mediator.click(f"{row} [data-testid=evidence-present]")
    a.keyboard.press("Escape")
    a.click("[data-testid=evidence-toggle]")  # closes the sheet: the page is in view
    assert wait_js(a, SHOWN_JS, "the party sees its photo presented", timeout=15) == 1
    # On the phone the page fits the screen's width.
    width = a.evaluate("document.querySelector('#evidence-img').getBoundingClientRect().width")
    assert 0 < width <= PHONE["width"]
    no_horizontal_scroll(a)
    a.screenshot(path=artifacts / "phone-room-evidence-photo.png")
    actions = [e["action"] for e in record(server, links.case_id)]
    assert {"evidence.submitted", "evidence.reviewed", "evidence.presented"} <= set(actions)


def run_async(fn):
    """Run an async client in a thread of its own (sync Playwright holds this thread's loop)."""
    out: dict = {}

    def target():
        try:
            out["value"] = asyncio.run(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    th = threading.Thread(target=target)
    th.start()
    th.join(90)
    if "error" in out:
        raise out["error"]
    return out["value"]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_refusals_over_socketio_change_nothing(server):
    links = open_room(server, "相邻通行纠纷（证据拒绝测试）", evidence=[("现场照片.jpg", photo_jpeg())])
    other = open_room(server, "另一宗案件", evidence=[("别人的证据.jpg", photo_jpeg())])
    token = login(server, "mediator")
    doc = server.api("GET", f"/cases/{links.case_id}", token=token)[1]["case"]["evidence"][0]["id"]
    foreign = server.api("GET", f"/cases/{other.case_id}", token=token)[1]["case"]["evidence"][0]["id"]
    names = ("evidence.shown", "evidence.stopped", "evidence.pointer")

    async def scenario():
        def peer(tok):
            p = Peer(server.url, tok)
            for name in names:
                p.sio.on(name, p._recorder(name))
            return p
        m, a, b = peer(links.mediator_token), peer(links.party_tokens[0]), peer(links.party_tokens[1])
        try:
            assert (await m.join())["ok"]
            for p in (a, b):
                assert (await p.join())["ok"]
            # Still in the lobby: no presenting, no list.
            assert (await a.call("evidence.list"))["error"]["code"] == "in_lobby"
            for p in (a, b):
                assert (await m.call("lobby.admit", {"participant_id": p.me["id"]}))["ok"]
            before = len(record(server, links.case_id))
            refusals = {
                "another case": await m.call("evidence.present", {"evidence_id": foreign}),
                "page out of range": await m.call("evidence.present", {"evidence_id": doc, "page": 2}),
                "a party not allowed": await a.call("evidence.present", {"evidence_id": doc}),
                "nothing presented": await m.call("evidence.page", {"page": 1}),
                "a pointer with nothing shown": await a.call("evidence.pointer", {"x": 0.5, "y": 0.5}),
                "bad zoom": await m.call("evidence.page", {"page": 1, "zoom": 9}),
            }
            codes = {k: v["error"]["code"] for k, v in refusals.items()}
            assert codes == {"another case": "not_found", "page out of range": "validation_failed",
                             "a party not allowed": "forbidden", "nothing presented": "not_found",
                             "a pointer with nothing shown": "not_found", "bad zoom": "bad_request"}, codes
            await asyncio.sleep(0.3)
            assert not any(p.events[n] for p in (m, a, b) for n in names)
            assert len(record(server, links.case_id)) == before, "a refusal wrote to the record"
            # Areas: the mediator presents in a caucus with party A; party B in main gets nothing and
            # cannot fetch A's page, not even with A's own link (it names A and is signed for A).
            caucus = (await m.call("caucus.create", {"name": "背对背"}))["caucus_id"]
            for pid in (m.me["id"], a.me["id"]):
                assert (await m.call("participant.move", {"participant_id": pid, "to": caucus}))["ok"]
            assert (await m.call("evidence.present", {"evidence_id": doc}))["ok"]
            for _ in range(100):
                if a.events["evidence.shown"]:
                    break
                await asyncio.sleep(0.05)
            url = server.url + a.events["evidence.shown"][-1]["url"]
            assert (await a.call("evidence.pointer", {"x": 0.5, "y": 0.5}))["error"]["code"] == "forbidden"
            assert (await a.call("evidence.stop"))["error"]["code"] == "forbidden"
            assert (await b.call("evidence.stop"))["error"]["code"] == "not_found"  # nothing in B's area
            assert await asyncio.to_thread(get, url) == 200
            assert await asyncio.to_thread(get, url.replace(f"pid={a.me['id']}", f"pid={b.me['id']}")) == 403
            assert await asyncio.to_thread(get, url.replace("sig=", "sig=0")) == 403
            await asyncio.sleep(0.3)
            assert not b.events["evidence.shown"]
            # A moves back to main: A's link stops working at once.
            assert (await m.call("participant.move", {"participant_id": a.me["id"], "to": "main"}))["ok"]
            for _ in range(100):
                if a.events["evidence.stopped"]:
                    break
                await asyncio.sleep(0.05)
            assert a.events["evidence.stopped"]
            assert await asyncio.to_thread(get, url) == 404
        finally:
            for p in (m, a, b):
                await p.close()

    run_async(scenario)
