"""Real Chromium on a phone-sized page: the steps before the room (consent, an identity check that fails
and then passes, the notices), against the real server with identity checks on; then the room lets
the party in (to the lobby) without asking again."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.browser.conftest import PHONE, artifacts, browser, new_page, running_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser
MEDIATOR_NAME = "调解员 李明"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`serve --demo` with identity checks ON (the shared browser server has them off)."""
    with running_server(tmp_path_factory.mktemp("procedure-server"), identity_check="on",
                        drop_env=("SMS_GATEWAY_URL", "SMTP_HOST")) as srv:
        yield srv


def _poll(page, expr: str, want, timeout: float):
    """page.wait_for_function evaluates a string, which the pages' CSP forbids: poll instead."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(f"() => {expr}")
        if value == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{expr} is {value!r}, not {want!r}")


def _login(server, username: str) -> str:
    status, body = server.api("POST", "/auth/login", {"username": username, "password": "demo-pass-2026"})
    assert status == 200, body
    return body["token"]


def _scheduled_case(server) -> dict:
    filed = server.file_case("押金退还纠纷（程序测试）",
                             applicant={"name": "赵六", "phone": "13600006666", "id_number": "11010119900307123X"})
    cid = filed["case"]["id"]
    intake = _login(server, "intake")
    assert server.api("POST", f"/cases/{cid}/accept", {}, token=intake)[0] == 200
    mediators = server.api("GET", "/mediators", token=intake)[1]["mediators"]
    mid = next(m["id"] for m in mediators if m["name"] == MEDIATOR_NAME)
    assert server.api("POST", f"/cases/{cid}/assign", {"mediator_id": mid}, token=intake)[0] == 200
    mediator = _login(server, "mediator")
    assert server.api("POST", f"/cases/{cid}/conflict", {"conflict": False}, token=mediator)[0] == 200
    starts = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).replace(microsecond=0)
    status, body = server.api("POST", f"/cases/{cid}/schedule", {"starts_at": starts.isoformat(), "duration_minutes": 60},
                              token=mediator)
    assert status == 201, body
    link = next(x for x in body["links"] if x["side"] == "applicant")
    return {"case_id": cid, "session_id": body["session"]["id"], "link": link, "access_code": filed["access_code"],
            "mediator": mediator}


def test_identity_check_and_notices_on_a_phone(server, new_page, artifacts):
    sc = _scheduled_case(server)
    page = new_page(PHONE, locale="zh-CN")
    page.goto(sc["link"]["checks_url"])

    # 1. Consent to online mediation.
    page.wait_for_selector("[data-testid=step-consent]", state="visible")
    assert page.locator("#proc-progress li.current").inner_text().strip() == "同意在线调解"
    page.click("[data-testid=consent-yes]")

    # 2. Identity: a wrong access code is refused (and counted), the right one passes.
    page.wait_for_selector("[data-testid=step-identity]", state="visible")
    page.fill("#id-name", "赵六")
    page.fill("#id-last6", "07123x")
    page.fill("#id-code", "WRONG999")
    page.click("[data-testid=identity-submit]")
    error = page.wait_for_selector("[data-testid=identity-error]", state="visible")
    assert "核验未通过" in error.inner_text() and "4" in error.inner_text()
    page.screenshot(path=str(artifacts / "procedure-identity-failed-phone.png"), full_page=True)
    page.fill("#id-code", sc["access_code"].lower())
    page.click("[data-testid=identity-submit]")

    # 3. Notices: every one must be ticked.
    page.wait_for_selector("[data-testid=step-notices]", state="visible")
    titles = page.locator("#notice-list h3").all_inner_texts()
    assert titles == ["保密告知", "让步不作为不利证据", "虚假调解的法律后果"]
    page.click("[data-testid=notices-submit]")
    assert page.locator("#notice-error").is_visible()
    page.screenshot(path=str(artifacts / "procedure-notices-phone.png"), full_page=True)
    for nid in ("confidentiality", "concessions", "sham_mediation"):
        page.check(f"[data-testid=notice-{nid}]")
    page.click("[data-testid=notices-submit]")

    page.wait_for_selector("[data-testid=step-done]", state="visible")
    href = page.get_attribute("[data-testid=enter-room]", "href")
    assert href == f"/room/{sc['link']['token']}"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width}px wide on a {PHONE['width']}px screen"
    page.screenshot(path=str(artifacts / "procedure-done-phone.png"), full_page=True)

    # The mediator sees the party verified; the record holds every step.
    status, body = server.api("GET", f"/sessions/{sc['session_id']}/procedure", token=sc["mediator"])
    assert status == 200, body
    row = next(r for r in body["parties"] if r["party_id"] == sc["link"]["party_id"])
    assert row["consent"] is True and row["verified"] is True and row["identity_failures"] == 1
    assert row["notices_pending"] == []
    status, rec = server.api("GET", f"/cases/{sc['case_id']}/record", token=_login(server, "admin"))
    actions = [e["action"] for e in rec["timeline"]]
    for action in ("conflict.declared", "session.scheduled", "consent.online", "identity.failed", "identity.verified",
                   "notice.acknowledged"):
        assert action in actions, action
    assert actions.index("identity.failed") < actions.index("identity.verified") < actions.index("notice.acknowledged")

    # The room does not ask again: the party goes straight to the lobby.
    page.click("[data-testid=enter-room]")
    page.wait_for_url(f"**/room/{sc['link']['token']}")
    page.click("[data-testid=enter]")
    _poll(page, "window.mediationRoom && window.mediationRoom.screen", "lobby", 15)


def test_declining_shows_the_offline_alternative(server, new_page):
    sc = _scheduled_case(server)
    page = new_page(PHONE, locale="en-US")
    page.goto(sc["link"]["checks_url"] + "?lang=en")
    page.wait_for_selector("[data-testid=step-consent]", state="visible")
    page.click("[data-testid=consent-no]")
    text = page.wait_for_selector("[data-testid=offline-text]", state="visible").inner_text()
    assert "in person" in text and "县矛盾纠纷多元化解中心" in text
    page.reload()
    page.wait_for_selector("[data-testid=step-offline]", state="visible")  # the answer is kept


def test_the_room_page_meets_the_same_steps(server, new_page):
    """The live room's own client (web/static/room/) answers the refusals on the same connection."""
    sc = _scheduled_case(server)
    page = new_page(PHONE, locale="zh-CN")
    page.goto(server.url + f"/room/{sc['link']['token']}")
    page.click("[data-testid=enter]")
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        screen = page.evaluate("() => window.mediationRoom && window.mediationRoom.screen")
        if screen == "lobby":
            break
        if screen == "step" and page.locator("#step-yes").is_visible():
            title = page.locator("#step-title").inner_text()
            if not seen or seen[-1] != title:
                seen.append(title)
                if page.locator("#identity-form").is_visible():
                    page.fill("#identity-form [name=name]", "赵六")
                    page.fill("#identity-form [name=id_number_last6]", "07123X")
                    page.fill("#identity-form [name=access_code]", sc["access_code"])
                page.click("#step-yes")
        time.sleep(0.1)
    assert page.evaluate("() => window.mediationRoom.screen") == "lobby", seen
    assert len(seen) == 3, seen  # consent, identity, notices
