"""After the agreement in real Chromium on a 375 px phone, against the real server: the applicant reports an
obligation as not performed from the lookup page, rates the service, and once the court confirmed the
agreement (signed callback) applies for enforcement with one click; the mediator sees the state in the
list and on the case page and records the follow-up visit."""
from __future__ import annotations

import pytest

from tests.browser.conftest import DEMO_PASSWORD, PHONE, artifacts, browser, new_page  # noqa: F401
from tests.outcome.court_browser import Api, court_server, delivered, narrow, settled_case

pytestmark = pytest.mark.browser
SECRET = "court-secret-for-the-browser-test"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from court_server(tmp_path_factory, "follow-server", SECRET)


def _confirmed_by_the_court(api: Api, case: dict) -> None:
    sub = delivered(api, case)
    status, body = api.signed("/court/callback", {"submission": sub["key"], "status": "confirmed",
                                                  "reference": "(2026)县民特99号"})
    assert status == 200, body


def test_after_the_agreement_on_a_phone(server, new_page, artifacts):  # noqa: F811
    case = settled_case(server)
    page = new_page(PHONE)
    page.goto(server.url + "/lookup")
    page.fill("input[name=number]", case["number"])
    page.fill("input[name=phone]", "13600006666")
    page.fill("input[name=code]", case["code"])
    page.click("[data-testid=lookup-form] button[type=submit]")
    page.click("[data-testid=go-outcome]")
    card = page.locator("[data-testid=obligations] article")
    # The click commits the navigation; the page's body may still be arriving.
    page.wait_for_url("**/lookup/outcome")
    card.first.wait_for()
    assert card.count() == 1 and card.get_attribute("data-state") == "overdue"
    assert "某劳务公司于履行期限届满前向赵六支付" in card.inner_text()
    narrow(page)
    oid = card.get_attribute("data-obligation")
    page.fill(f"#note-{oid}", "至今未收到任何款项")
    page.click(f"[data-testid=report-no-{oid}]")
    page.wait_for_selector(f"[data-testid=my-report-{oid}]")
    assert "未履行" in page.inner_text(f"[data-testid=my-report-{oid}]")
    assert page.locator(f"[data-testid=obligation-{oid}]").get_attribute("data-state") == "not_performed"
    # Enforcement waits for the court's confirmation.
    assert page.locator("[data-testid=enforcement-needs-confirmation]").is_visible()
    # One rating per matter, big touch targets on the phone.
    page.locator("[data-testid=rating]").scroll_into_view_if_needed()
    page.click("label.fu-level-2")
    page.fill("#rating-comment", "履行太慢")
    page.screenshot(path=artifacts / "phone-after-agreement.png", full_page=True)
    page.click("[data-testid=rating-submit]")
    page.wait_for_selector("[data-testid=rated]")
    assert "不满意" in page.inner_text("[data-testid=rated]")
    narrow(page)

    _confirmed_by_the_court(server, case)
    page.reload()
    page.click("[data-testid=apply-enforcement]")  # the confirm() dialog is accepted
    page.wait_for_selector("[data-testid=enforcement-status]")
    assert page.locator("[data-testid=apply-enforcement]").count() == 0
    narrow(page)
    page.screenshot(path=artifacts / "phone-enforcement.png", full_page=True)
    status, body = server.call("GET", f"/cases/{case['id']}/submissions", headers=case["mediator"])
    enf = next(x for x in body["submissions"] if x["kind"] == "enforcement")
    assert enf["court_id"] == "county" and enf["status"] in ("queued", "delivered")

    # The mediator, also on a phone: the list flags it, the case page shows every report, the follow-up is recorded.
    m = new_page(PHONE)
    m.goto(server.url + "/login?next=/staff/my")
    m.fill("input[name=username]", "mediator")
    m.fill("input[name=password]", DEMO_PASSWORD)
    m.click("[data-testid=login-form] button[type=submit]")
    flags = m.locator(f"[data-testid=ob-flags-{case['number']}]")
    assert "未履行 1 项" in flags.inner_text()
    narrow(m)
    m.goto(server.url + f"/staff/cases/{case['id']}")
    panel = m.locator("[data-testid=followup]")
    assert panel.locator(f"[data-obligation='{oid}']").get_attribute("data-state") == "not_performed"
    assert "至今未收到任何款项" in panel.inner_text() and "不满意" in panel.inner_text()
    task = panel.locator("[data-kind=followup]")
    tid = task.get_attribute("data-task")
    task.locator("input[value=new_dispute]").check()
    m.fill(f"#task-note-{tid}", "电话回访：对方仍未付款，已告知可申请强制执行")
    narrow(m)
    m.click(f"[data-testid=task-done-{tid}]")
    m.wait_for_selector(f"[data-testid=task-outcome-{tid}]")
    assert "出现新的纠纷" in m.inner_text(f"[data-testid=task-outcome-{tid}]")
    m.screenshot(path=artifacts / "phone-mediator-followup.png", full_page=True)
