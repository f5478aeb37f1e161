"""The court's online review in real Chromium against the real server: the court's signed callback opens the
review of a delivered judicial-confirmation application; the judge opens the link from the answer, sees that it
is the court's review, enters directly as an observer (no camera, no lobby) and receives the applicant's video,
who entered with the link from the notification outbox on a phone; the applicant's lookup page and the mediator's
case page (both on a phone) show the review; after the court's decision the judge's link is refused."""
from __future__ import annotations

import json
import re
import time
import datetime as dt

import pytest

from tests.browser.conftest import DEMO_PASSWORD, DESKTOP, PHONE, artifacts, browser  # noqa: F401
from tests.browser.room_helpers import wait_js
from tests.browser.test_room import (enter, frames_shown, my_id, pass_steps, room_browser, room_page,  # noqa: F401
                                     tile, wait_screen)
from tests.outcome.court_browser import Api, court_server, delivered, narrow, settled_case

pytestmark = pytest.mark.browser
SECRET = "court-secret-for-the-review-test"


@pytest.fixture(scope="module")
def review_server(tmp_path_factory):
    yield from court_server(tmp_path_factory, "review-server", SECRET)


def _party_link(api: Api, review_id: int, party_ref: str) -> str:
    """The join link the notification outbox sent to a party (the development SMS folder)."""
    deadline = time.monotonic() + 20
    while True:
        for f in (api.data_dir / "outbox" / "sms").glob(f"review_{review_id}_{party_ref}_sms.json"):
            text = json.loads(f.read_text("utf-8"))["text"]
            return re.search(r"(https?://\S+/join/\S+)", text).group(1)
        assert time.monotonic() < deadline, "no SMS with the review link"
        time.sleep(0.2)


def test_the_judge_joins_the_review_and_the_party_sees_it(review_server, room_page, artifacts):  # noqa: F811
    api = review_server
    case = settled_case(api)
    sub = delivered(api, case)
    starts = (dt.datetime.now(dt.timezone(dt.timedelta(hours=8))) + dt.timedelta(minutes=2)).replace(microsecond=0)
    status, out = api.signed("/court/callback/review", {"submission": sub["key"], "starts_at": starts.isoformat(),
                                                          "judge": "王法官"})
    assert status == 201, out
    review = out["review"]
    status, full = api.call("GET", f"/cases/{case['id']}", headers=case["mediator"])
    applicant = next(p for p in full["case"]["parties"] if p["side"] == "applicant")
    party_url = _party_link(api, review["id"], f"party_{applicant['id']}")

    # The judge: the court's review on the check-in page, the judge's role, no camera asked for.
    judge = room_page(DESKTOP, label="judge")
    judge.goto(out["judge_url"])
    assert "县人民法院 司法确认在线审查" in judge.inner_text("[data-testid=court-review-banner]")
    assert judge.inner_text("[data-testid=join-role]") == "法官"
    assert judge.inner_text("[data-testid=join-name]") == "王法官（县人民法院）"
    judge.click("[data-testid=enter]")
    pass_steps(judge)
    wait_screen(judge, "room")  # directly: nobody admits people to the court's review

    # The applicant on a phone, with the link from the SMS: directly into the room as well.
    party = room_page(PHONE, label="party")
    party.goto(party_url)
    assert party.locator("[data-testid=court-review-banner]").is_visible()
    narrow(party)
    party.screenshot(path=artifacts / "phone-review-checkin.png", full_page=True)
    enter(party)
    wait_screen(party, "room")
    pid = my_id(party)
    # The judge sees and hears the main room; the judge publishes nothing.
    judge.locator(tile(pid)).wait_for()
    wait_js(judge, frames_shown(pid), "the applicant's video on the judge's page", timeout=20)
    jid = my_id(judge)
    assert wait_js(judge, "window.mediationRoom.me && window.mediationRoom.me.grants", "grants") == ["subscribe"]
    assert party.locator(tile(jid)).count() == 0  # an observer has no tile
    judge.screenshot(path=artifacts / "desktop-judge-review.png")

    # The applicant's lookup page shows the review: when, which court, which judge.
    page = room_page(PHONE, label="lookup")
    page.goto(api.url + "/lookup")
    page.fill("input[name=number]", case["number"])
    page.fill("input[name=phone]", "13600006666")
    page.fill("input[name=code]", case["code"])
    page.click("[data-testid=lookup-form] button[type=submit]")
    page.click("[data-testid=go-outcome]")
    card = page.locator(f"[data-testid=review-{review['id']}]")
    assert card.get_attribute("data-state") == "live"
    assert "王法官" in card.inner_text() and "县人民法院于" in card.inner_text()
    assert starts.strftime("%Y-%m-%d %H:%M") in page.inner_text("[data-testid=review-when]")
    narrow(page)
    page.screenshot(path=artifacts / "phone-lookup-review.png", full_page=True)

    # The decision closes the review: both are sent out of the room, the judge's link is refused.
    status, body = api.signed("/court/callback", {"submission": sub["key"], "status": "confirmed",
                                                    "reference": "(2026)县民特7号"})
    assert status == 200, body
    wait_js(judge, "window.mediationRoom.screen !== 'room'", "the judge's room closed", timeout=15)
    refused = room_page(DESKTOP, label="judge again")
    resp = refused.goto(out["judge_url"])
    assert resp.status == 410
    page.reload()
    assert page.locator(f"[data-testid=review-{review['id']}]").get_attribute("data-state") == "decided"
    assert "确认调解协议有效" in page.inner_text(f"[data-testid=review-{review['id']}]")

    # The mediator, on a phone: the case page says the court asked for a review, when, and what it decided.
    m = room_page(PHONE, label="mediator")
    m.goto(api.url + "/login?next=/staff/cases/" + str(case["id"]))
    m.fill("input[name=username]", "mediator")
    m.fill("input[name=password]", DEMO_PASSWORD)
    m.click("[data-testid=login-form] button[type=submit]")
    card = m.locator(f"[data-testid=review-{review['id']}]")
    assert card.get_attribute("data-state") == "decided"
    assert "县人民法院于" in card.inner_text() and starts.strftime("%Y-%m-%d %H:%M") in card.inner_text()
    narrow(m)
    card.scroll_into_view_if_needed()
    m.screenshot(path=artifacts / "phone-mediator-review.png")
