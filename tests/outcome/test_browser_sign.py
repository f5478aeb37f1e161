"""A party signs on a phone in real Chromium: the personal link, the final text, a signature drawn with the
finger on the canvas (touch events), confirm — and the server records the signature."""
from __future__ import annotations

import time

import pytest

from tests.browser.conftest import DEMO_PASSWORD, PHONE, artifacts, browser, new_page  # noqa: F401

pytestmark = pytest.mark.browser


def _token(server, username):
    status, body = server.api("POST", "/auth/login", {"username": username, "password": DEMO_PASSWORD})
    assert status == 200, body
    return body["token"]


def _case_with_final_agreement(server) -> tuple[int, str, dict]:
    admin, mediator = server.admin_token(), _token(server, "mediator")
    status, body = server.api("GET", "/institutions")
    inst = next(i["id"] for i in body["institutions"] if i["name"] == "县矛盾纠纷多元化解中心")
    filed = server.file_case("楼上漏水赔偿", category="neighbour", institution_id=inst,
                             respondents=[{"name": "钱七", "phone": "13500005555"}])
    cid = filed["case"]["id"]
    status, users = server.api("GET", "/users", token=admin)
    med_id = next(u["id"] for u in users["users"] if u["username"] == "mediator")
    for path, payload in (("accept", {}), ("assign", {"mediator_id": med_id})):
        status, body = server.api("POST", f"/cases/{cid}/{path}", payload, token=admin)
        assert status == 200, body
    status, body = server.api("POST", f"/cases/{cid}/sessions", {}, token=mediator)
    assert status == 201, body
    status, body = server.api("PUT", f"/cases/{cid}/agreement", {
        "template": "neighbour", "facts": "钱七家卫生间漏水，致赵六家天花板受损。",
        "terms": ["钱七于2026年12月20日前修复卫生间防水层。", "钱七赔偿赵六天花板修复费用人民币1,800元。"],
        "performance_deadline": "2026-12-20"}, token=mediator)
    assert status == 200, body
    status, body = server.api("POST", f"/cases/{cid}/agreement/finalise", {}, token=mediator)
    assert status == 200, body
    status, parties = server.api("GET", f"/cases/{cid}", token=admin)
    respondent = next(p for p in parties["case"]["parties"] if p["side"] == "respondent")
    status, link = server.api("POST", f"/cases/{cid}/agreement/links",
                              {"party_id": respondent["id"], "id_number": "110101199202023456"}, token=mediator)
    assert status == 201, link
    return cid, link["url"], {"mediator": mediator, "respondent": respondent}


def _draw(page, selector: str) -> None:
    """A signature drawn with a finger: CDP touch events (pointerType "touch") across the canvas."""
    # Wait until the pad stops moving (focus and scrolling may still be animating), so the touches
    # land where the box really is.
    box, steady = page.locator(selector).bounding_box(), 0
    while steady < 3:
        time.sleep(0.1)
        now = page.locator(selector).bounding_box()
        steady = steady + 1 if now == box else 0
        box = now
    cdp = page.context.new_cdp_session(page)
    x0, y0 = box["x"] + 20, box["y"] + box["height"] * 0.6
    for stroke in range(2):
        pts = [(x0 + i * (box["width"] - 40) / 24, y0 - 40 * ((i + stroke * 3) % 5) / 4 + stroke * 15)
               for i in range(25)]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": pts[0][0], "y": pts[0][1]}]})
        for x, y in pts[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_party_signs_on_a_phone(server, new_page, artifacts):  # noqa: F811
    cid, url, ctx = _case_with_final_agreement(server)
    page = new_page(PHONE)
    page.goto(url)
    # The pad's script is deferred: act only once it is ready, as a person would once the page is up.
    deadline = time.monotonic() + 10
    while not page.evaluate("!!(document.querySelector('[data-signature-pad]') || {}).signaturePad"):
        assert time.monotonic() < deadline, "the signature pad never initialised"
        time.sleep(0.05)
    assert "人民调解协议书" in page.inner_text("[data-testid=agreement-text]")
    assert "钱七" in page.inner_text("[data-testid=me]")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width}px wide"
    # Submitting an empty pad is stopped in the page.
    page.fill("input[name=id_last6]", "023456")
    page.check("[data-testid=agree]")
    page.click("[data-testid=sign-submit]")
    assert page.locator("[data-pad-error]").is_visible()
    page.locator("[data-testid=signature-canvas]").scroll_into_view_if_needed()
    _draw(page, "[data-testid=signature-canvas]")
    assert page.evaluate("document.querySelector('[data-signature-pad]').signaturePad.strokes()") >= 2
    page.screenshot(path=artifacts / "phone-sign-agreement.png", full_page=True)
    page.click("[data-testid=sign-submit]")
    page.wait_for_selector("[data-testid=you-signed]")
    row = page.locator(f"[data-testid=signer-party-{ctx['respondent']['id']}]")
    assert row.get_attribute("data-signed") == "yes"
    page.screenshot(path=artifacts / "phone-signed.png", full_page=True)

    status, body = server.api("GET", f"/cases/{cid}/agreement", token=ctx["mediator"])
    signer = next(s for s in body["agreement"]["signers"] if s["party_id"] == ctx["respondent"]["id"])
    assert signer["signed"] and signer["method"] == "link+id6" and signer["image_sha256"]


def test_mediator_signs_on_the_staff_page(server, new_page, artifacts):  # noqa: F811
    from tests.browser.conftest import DESKTOP
    cid, _url, ctx = _case_with_final_agreement(server)
    page = new_page(DESKTOP)
    page.goto(server.url + f"/login?next=/staff/cases/{cid}/agreement")
    page.fill("input[name=username]", "mediator")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("[data-testid=login-form] button[type=submit]")
    page.wait_for_selector("[data-testid=mediator-sign]")
    page.locator("[data-testid=signature-canvas]").scroll_into_view_if_needed()
    box = page.locator("[data-testid=signature-canvas]").bounding_box()
    page.mouse.move(box["x"] + 30, box["y"] + 120)
    page.mouse.down()
    for i in range(1, 30):
        page.mouse.move(box["x"] + 30 + i * 12, box["y"] + 120 - (i % 6) * 12)
    page.mouse.up()
    page.check("[data-testid=mediator-sign] input[name=agree]")
    page.click("[data-testid=sign-submit]")
    page.wait_for_selector("[data-testid=signer-mediator][data-signed=yes]")
    page.screenshot(path=artifacts / "desktop-agreement-staff.png", full_page=True)
