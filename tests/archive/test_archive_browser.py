"""In headless Chromium on a phone: the demo clerk finds a case in the archive, opens its record, runs the
integrity check (all intact) and downloads the export; the admin's dashboard draws its charts."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from tests.browser.conftest import DESKTOP, PHONE, artifacts, browser, new_page  # noqa: F401
from tests.browser.test_portal import login, no_horizontal_scroll

pytestmark = pytest.mark.browser


def test_clerk_finds_a_case_checks_and_exports_it(server, new_page, artifacts):  # noqa: F811
    page = new_page(PHONE)
    login(page, server.url, "clerk")
    page.click("nav.mainnav a[href='/archive']")
    page.wait_for_selector("[data-testid=archive-search]")
    page.fill("input[name=party]", "王秀英")
    page.click("[data-testid=archive-search-go]")
    page.wait_for_selector("[data-testid=archive-results]")
    items = page.locator("[data-testid=archive-results] li.case-item")
    assert items.count() == 1 and "邻里排水纠纷" in items.inner_text()
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-archive-search.png", full_page=True)

    items.locator("a").click()
    page.wait_for_selector("[data-testid=record-timeline]")
    assert page.locator("[data-testid=readonly]").count() == 1
    assert page.locator("main form[method=post]").count() == 0  # a clerk reads only
    assert "提交申请" in page.inner_text("[data-testid=record-timeline]")
    no_horizontal_scroll(page)

    page.click("[data-testid=do-verify]")
    result = page.wait_for_selector("[data-testid=integrity-result]")
    assert result.get_attribute("data-ok") == "true"
    assert "全部完好" in result.inner_text()
    # The check and the opening are both in the record's access log now.
    log = page.inner_text("[data-testid=record-access]")
    assert "查阅档案" in log
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-archive-record-verified.png", full_page=True)

    with page.expect_download() as dl:
        page.click("[data-testid=do-export]")
    data = open(dl.value.path(), "rb").read()
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    assert manifest["case"]["title"] == "邻里排水纠纷" and manifest["integrity_at_export"]["ok"] is True


def test_dashboard_draws_charts_on_a_phone(server, new_page, artifacts):  # noqa: F811
    page = new_page(PHONE)
    login(page, server.url, "admin", next_path="/analytics")
    page.wait_for_selector("body[data-charts=drawn]")
    assert page.locator("canvas[data-ready=true]").count() == 5
    assert page.inner_text("[data-testid=kpi-total]").strip() == str(server.case_count())
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-analytics.png", full_page=True)
    desk = new_page(DESKTOP)
    login(desk, server.url, "admin", next_path="/analytics?lang=en")
    desk.wait_for_selector("body[data-charts=drawn]")
    assert "Settlement rate" in desk.inner_text("[data-testid=kpis]")
    desk.screenshot(path=artifacts / "desktop-analytics-en.png", full_page=True)
