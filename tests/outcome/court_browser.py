"""The real server with a court, for the browser tests after the agreement: its JSON API from outside, the
court's signed answers, and a case whose agreement is in effect."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser.conftest import DEMO_PASSWORD, PHONE
from tests.outcome.helpers import signature_png
from tests.support.servers import ServerFailed, ServerProcess, clean_env, free_port


class Api:
    def __init__(self, url: str, data_dir: Path, secret: str):
        self.url, self.data_dir, self.secret = url, data_dir, secret

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


    def signed(self, path: str, payload: dict):
        """A POST signed as the court signs its callbacks."""
        raw = json.dumps(payload).encode()
        sig = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        return self.call("POST", path, raw=raw, headers={"X-Court-Signature": sig})


def court_server(tmp_path_factory, label: str, secret: str):
    """A generator for a module fixture: the demo server whose court callbacks are signed with `secret`."""
    data_dir = tmp_path_factory.mktemp(label)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(MEDIATION_DATA_DIR=str(data_dir), PUBLIC_URL=url, IDENTITY_CHECK="off",
                    COURT_CALLBACK_SECRET=secret, COURT_RETRY_SECONDS="1")
    proc = ServerProcess(env, data_dir / "server.log", port=port, args=("--demo",), ready_path="/api/v1/institutions")
    try:
        proc.start()
    except ServerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    yield Api(url, data_dir, secret)
    proc.stop(timeout=10)


def settled_case(api: Api) -> dict:
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


def narrow(page) -> None:
    """Nothing is wider than the phone; if something is, the message names what."""
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = [] if width <= PHONE["width"] else page.evaluate(
        """[...document.querySelectorAll('body *')].filter(e => e.scrollWidth > e.clientWidth + 1)
           .slice(-5).map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth)""")
    assert width <= PHONE["width"], f"page is {width}px wide: {wide}"


def delivered(api: Api, case: dict) -> dict:
    """Both parties apply for judicial confirmation; the application as delivered to the court."""
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
            return sub
        assert time.monotonic() < deadline, sub
        time.sleep(0.2)
