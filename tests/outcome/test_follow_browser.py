"""After the agreement in real Chromium on a 375 px phone, against the real server: the applicant reports an
obligation as not performed from the lookup page, rates the service, and once the court confirmed the
agreement (signed callback) applies for enforcement with one click; the mediator sees the state in the
list and on the case page and records the follow-up visit."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.browser.conftest import DEMO_PASSWORD, PHONE, artifacts, browser, new_page  # noqa: F401
from tests.outcome.helpers import signature_png
from tests.support.servers import ServerFailed, ServerProcess, clean_env, free_port

pytestmark = pytest.mark.browser
SECRET = "court-secret-for-the-browser-test"


class Api:
    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def token(self, username: str) -> dict:
        status, body = self.call("POST", "/auth/login", {"username": username, "password": DEMO_PASSWORD})
        assert status == 200, body
        return {"Authorization": f"Bearer {body['token']}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("follow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(MEDIATION_DATA_DIR=str(data_dir), PUBLIC_URL=url, IDENTITY_CHECK="off",
                    COURT_CALLBACK_SECRET=SECRET, COURT_RETRY_SECONDS="1")
    proc = ServerProcess(env, data_dir / "server.log", port=port, args=("--demo",), ready_path="/api/v1/institutions")
    try:
        proc.start()
    except ServerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    yield Api(url)
    proc.stop(timeout=10)


def _settled_case(api: Api) -> dict:
    """A case whose agreement is in effect, with its one payment term due yesterday."""
    admin, mediator = api.token("admin"), api.token("mediator")
    status, body = api.call("GET", "/institutions")
    inst = next(i["id"] for i in body["institutions"] if i["name"] == "县矛盾纠纷多元化解中心")
    case = {"type": "mediation", "category": "labour", "title": "工地拖欠工资纠纷", "institution_id": inst,
            "description": "包工头拖欠四个月工资共计两万三千元。", "applicant": {"name": "赵六", "phone": "13600006666"},
            "respondents": [{"name": "某劳务公司", "phone": "13500005555"}]}
    status, filed = api.call("POST", "/cases", case)
    assert status == 201, filed
    cid, number, code = filed["case"]["id"], filed["case"]["number"], filed["access_code"]
    status, users = api.call("GET", "/users", headers=admin)
    med_id = next(u["id"] for u in users["users"] if u["username"] == "mediator")
    for path, payload in (("accept", {}), ("assign", {"mediator_id": med_id})):
        status, body = api.call("POST", f"/cases/{cid}/{path}", payload, headers=admin)
        assert status == 200, body
    status, body = api.call("POST", f"/cases/{cid}/sessions", {}, headers=mediator)
    assert status == 201, body
    yesterday = (dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date() - dt.timedelta(days=1)).isoformat()
    status, body = api.call("PUT", f"/cases/{cid}/agreement", {
        "template": "labour", "facts": "被申请人拖欠申请人工资共计人民币23,000元。",
        "terms": ["某劳务公司于履行期限届满前向赵六支付拖欠的劳动报酬人民币23,000元。",
                  "赵六收到上述款项后，双方就本次劳动报酬纠纷再无其他争议。"],
        "performance_deadline": yesterday}, headers=mediator)
    assert status == 200, body
    status, body = api.call("POST", f"/cases/{cid}/agreement/finalise", {}, headers=mediator)
    assert status == 200, body
    sha = body["agreement"]["text_sha256"]
    status, full = api.call("GET", f"/cases/{cid}", headers=admin)
    respondent = next(p for p in full["case"]["parties"] if p["side"] == "respondent")
    status, link = api.call("POST", f"/cases/{cid}/agreement/links", {"party_id": respondent["id"]}, headers=mediator)
    assert status == 201, link
    applicant = {"X-Case-Number": number, "X-Access-Code": code, "X-Phone": "13600006666"}
    for headers, n in ((applicant, 1), ({"X-Party-Token": link["token"]}, 2)):
        status, body = api.call("POST", "/party/agreement/sign", {"signature": signature_png(n), "text_sha256": sha},
                                headers=headers)
        assert status == 200, body
    status, body = api.call("POST", f"/cases/{cid}/agreement/sign", {"signature": signature_png(3),
                                                                      "text_sha256": sha}, headers=mediator)
    assert status == 200 and body["effective"], body
    return {"id": cid, "number": number, "code": code, "applicant": applicant,
            "respondent": {"X-Party-Token": link["token"]}, "mediator": mediator}


def _narrow(page) -> None:
    """Nothing is wider than the phone; if something is, the message names what."""
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = [] if width <= PHONE["width"] else page.evaluate(
        """[...document.querySelectorAll('body *')].filter(e => e.scrollWidth > e.clientWidth + 1)
           .slice(-5).map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth)""")
    assert width <= PHONE["width"], f"page is {width}px wide: {wide}"


def _confirmed_by_the_court(api: Api, case: dict) -> None:
    status, body = api.call("POST", "/party/confirmation", {"court_id": "county", "basis": "institution"},
                            headers=case["applicant"])
    assert status == 200, body
    status, body = api.call("POST", "/party/confirmation/confirm", headers=case["respondent"])
    assert status == 200, body
    deadline = time.monotonic() + 20
    while True:
        status, body = api.call("GET", f"/cases/{case['id']}/submissions", headers=case["mediator"])
        sub = next(x for x in body["submissions"] if x["kind"] == "judicial_confirmation")
        if sub["status"] == "delivered":
            break
        assert time.monotonic() < deadline, sub
        time.sleep(0.2)
    raw = json.dumps({"submission": sub["key"], "status": "confirmed", "reference": "(2026)县民特99号"}).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    status, body = api.call("POST", "/court/callback", raw=raw, headers={"X-Court-Signature": sig})
    assert status == 200, body


def test_after_the_agreement_on_a_phone(server, new_page, artifacts):  # noqa: F811
    case = _settled_case(server)
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
    _narrow(page)
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
    _narrow(page)

    _confirmed_by_the_court(server, case)
    page.reload()
    page.click("[data-testid=apply-enforcement]")  # the confirm() dialog is accepted
    page.wait_for_selector("[data-testid=enforcement-status]")
    assert page.locator("[data-testid=apply-enforcement]").count() == 0
    _narrow(page)
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
    _narrow(m)
    m.goto(server.url + f"/staff/cases/{case['id']}")
    panel = m.locator("[data-testid=followup]")
    assert panel.locator(f"[data-obligation='{oid}']").get_attribute("data-state") == "not_performed"
    assert "至今未收到任何款项" in panel.inner_text() and "不满意" in panel.inner_text()
    task = panel.locator("[data-kind=followup]")
    tid = task.get_attribute("data-task")
    task.locator("input[value=new_dispute]").check()
    m.fill(f"#task-note-{tid}", "电话回访：对方仍未付款，已告知可申请强制执行")
    _narrow(m)
    m.click(f"[data-testid=task-done-{tid}]")
    m.wait_for_selector(f"[data-testid=task-outcome-{tid}]")
    assert "出现新的纠纷" in m.inner_text(f"[data-testid=task-outcome-{tid}]")
    m.screenshot(path=artifacts / "phone-mediator-followup.png", full_page=True)
