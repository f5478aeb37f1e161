"""The link check on the room's check-in screen, against the real server in real Chromium: the
page measures its round trip and throughput to the server, shows a plain verdict, and the
session's record gets `link.checked` with the figures and the verdict. On a link slowed by
Chromium's own network emulation the verdict is "poor" and entering with audio only keeps the
camera off. Bad input (an oversized upload, a bad token, malformed figures) gets a clear error
and records nothing; too many probes from one link get 429."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.browser.conftest import DESKTOP, PHONE, artifacts, browser  # noqa: F401
from tests.browser.room_helpers import login, open_room, wait_js
from tests.browser.test_portal import login as staff_login
from tests.browser.test_room import no_horizontal_scroll, room_browser, room_page  # noqa: F401

VERDICTS = {"good": "网络良好，可以视频", "fair": "网络一般，视频可能卡顿", "poor": "网络较差，建议仅音频"}


def link_checks(server, links) -> list[dict]:
    """The session's link.checked entries, as the record API gives them."""
    status, body = server.api("GET", f"/cases/{links.case_id}/record", token=login(server, "mediator"))
    assert status == 200, body
    session = next(x for x in body["sessions"] if x["id"] == links.session_id)
    return [e for e in session["events"] if e["action"] == "link.checked"]


def raw(server, method: str, path: str, *, token: str | None = None, body: bytes | None = None,
        content_type: str | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(server.url + "/api/v1" + path, data=body, method=method)
    if token is not None:
        req.add_header("X-Join-Token", token)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def error_code(payload: bytes) -> str:
    return json.loads(payload)["error"]["code"]


def test_precheck_shows_a_verdict_and_the_record_keeps_it(server, room_page, artifacts):
    links = open_room(server, "物业费纠纷（网络检测测试）")
    page = room_page(PHONE, label="party")
    page.goto(server.url + links.path(links.party_tokens[0]))
    box = page.locator("[data-testid=link-check]")
    wait_js(page, "window.mediationRoom.linkCheck && window.mediationRoom.linkCheck.state !== 'running'",
            "the link check's end", timeout=8)
    result = page.evaluate("window.mediationRoom.linkCheck")
    assert result["state"] == "done", result
    # Loopback: a short round trip and plenty of throughput both ways, so video will work.
    assert result["verdict"] == "good", result
    assert result["ms"] < 4000, result
    figures = result["figures"]
    assert 0 < figures["rtt_ms"] < 300 and figures["down_kbps"] > 1000 and figures["up_kbps"] > 700, figures
    assert box.get_attribute("data-verdict") == "good"
    assert page.inner_text("[data-testid=link-verdict]") == VERDICTS["good"]
    assert "往返" in page.inner_text("[data-testid=link-figures]")
    assert not page.is_visible("[data-testid=enter-audio-only]")   # video will work: nothing to offer
    box.scroll_into_view_if_needed()
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-room-link-check.png")

    entries = link_checks(server, links)
    assert len(entries) == 1, entries
    data = entries[0]["data"]
    assert data["verdict"] == "good" and data["role"] == "party"
    assert data["rtt_ms"] == round(figures["rtt_ms"], 1)
    assert data["down_kbps"] == round(figures["down_kbps"]) and data["up_kbps"] == round(figures["up_kbps"])

    # Checking again records a second result.
    page.click("[data-testid=link-again]")
    wait_js(page, "window.mediationRoom.linkCheck.state === 'done'", "the second check", timeout=8)
    assert len(link_checks(server, links)) == 2
    print(f"\n[link check] on loopback: first {result['ms']} ms {figures}; "
          f"again {page.evaluate('JSON.stringify(window.mediationRoom.linkCheck)')}")

    # The clerk's record page names the step, who took it, its figures and the verdict.
    clerk = room_page(DESKTOP, label="clerk")
    staff_login(clerk, server.url, "clerk")
    clerk.goto(server.url + f"/archive/cases/{links.case_id}")
    item = clerk.locator("li[data-action='link.checked']").first
    text = item.inner_text()
    assert "进入前检测网络" in text and "赵六" in text and "网络良好，可以视频" in text, text
    assert f"下行 {data['down_kbps']} kbit/s" in text, text


def test_a_slow_link_says_poor_and_offers_audio_only(server, room_page, artifacts):
    links = open_room(server, "装修合同纠纷（网络较差测试）")
    page = room_page(PHONE, label="party")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    # Chromium's own network emulation for the page's requests: 400 ms, 300 / 150 kbit/s.
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 400,
                                                  "downloadThroughput": 300_000 / 8, "uploadThroughput": 150_000 / 8})
    page.goto(server.url + links.path(links.party_tokens[0]), timeout=30_000)
    wait_js(page, "window.mediationRoom.linkCheck && window.mediationRoom.linkCheck.state !== 'running'",
            "the link check's end", timeout=10)
    result = page.evaluate("window.mediationRoom.linkCheck")
    assert result["state"] == "done" and result["verdict"] == "poor", result
    assert result["figures"]["down_kbps"] < 400, result
    assert page.get_attribute("[data-testid=link-check]", "data-verdict") == "poor"
    assert page.inner_text("[data-testid=link-verdict]") == VERDICTS["poor"]
    offer = page.locator("[data-testid=enter-audio-only]")
    assert offer.is_visible()
    no_horizontal_scroll(page)
    page.screenshot(path=artifacts / "phone-room-link-check-poor.png")
    entries = link_checks(server, links)
    assert [e["data"]["verdict"] for e in entries] == ["poor"], entries

    # Entering with audio only: the camera is off before joining, and stays off.
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": -1, "uploadThroughput": -1})
    offer.click()
    wait_js(page, "['lobby', 'step', 'room'].includes(window.mediationRoom.screen)", "past the check-in", timeout=15)
    assert page.get_attribute("[data-testid=cam-toggle]", "aria-pressed") == "false"
    assert page.evaluate("sessionStorage.getItem('mediation-room-audio-only:' + "
                         f"{json.dumps(links.party_tokens[0][-24:])})") == "1"


def test_bad_input_gets_a_clear_error_and_records_nothing(server):
    links = open_room(server, "借款纠纷（网络检测错误输入测试）")
    token = links.party_tokens[0]

    # The probes themselves, for a good token: no-store, the bytes asked for.
    status, headers, body = raw(server, "GET", "/link-check/ping", token=token)
    assert status == 200 and headers["Cache-Control"] == "no-store", (status, headers)
    status, headers, body = raw(server, "GET", "/link-check/download?bytes=300000", token=token)
    assert status == 200 and len(body) == 300000 and headers["Cache-Control"] == "no-store"
    status, _, body = raw(server, "GET", "/link-check/download?bytes=9999999", token=token)
    assert status == 422 and error_code(body) == "validation_failed", body
    status, _, body = raw(server, "POST", "/link-check/upload", token=token, body=b"\0" * 200_000,
                          content_type="application/octet-stream")
    assert status == 200 and json.loads(body) == {"received": 200_000}, body

    # An oversized upload: 413 with a JSON error saying the limit.
    status, _, body = raw(server, "POST", "/link-check/upload", token=token, body=b"\0" * 600_000,
                          content_type="application/octet-stream")
    assert status == 413, body
    err = json.loads(body)["error"]
    assert err["code"] == "too_large" and err["fields"]["max_bytes"] == 512 * 1024 and "512" not in err["code"]

    # No token, a bad token: 401 with the reason, on a probe and on the result.
    good = json.dumps({"rtt_ms": 20, "down_kbps": 5000, "up_kbps": 3000}).encode()
    status, _, body = raw(server, "GET", "/link-check/ping")
    assert status == 401 and error_code(body) == "token_missing", body
    status, _, body = raw(server, "POST", "/link-check/result", token=token[:-4] + "AAAA", body=good,
                          content_type="application/json")
    assert status == 401 and error_code(body) == "token_invalid", body
    status, _, body = raw(server, "GET", "/link-check/download", token="not-a-token")
    assert status == 401 and error_code(body) == "token_invalid", body

    # Malformed figures: 422 naming the field.
    for bad, field in (({"rtt_ms": -1, "down_kbps": 1, "up_kbps": 1}, "rtt_ms"),
                       ({"rtt_ms": "12", "down_kbps": 1, "up_kbps": 1}, "rtt_ms"),
                       ({"rtt_ms": 12, "down_kbps": 1}, "up_kbps"),
                       ({"rtt_ms": 12, "down_kbps": 1e12, "up_kbps": 1}, "down_kbps"),
                       ({"rtt_ms": 12, "down_kbps": 1, "up_kbps": 1, "verdict": "good"}, "verdict")):
        status, _, body = raw(server, "POST", "/link-check/result", token=token, body=json.dumps(bad).encode(),
                              content_type="application/json")
        assert status == 422, (bad, body)
        err = json.loads(body)["error"]
        assert err["code"] == "validation_failed" and field in err["fields"], (bad, err)
    status, _, body = raw(server, "POST", "/link-check/result", token=token, body=b"{not json",
                          content_type="application/json")
    assert status == 422 and error_code(body) == "invalid_json", body
    assert link_checks(server, links) == []

    # A good result is recorded, with the verdict the rule gives.
    status, _, body = raw(server, "POST", "/link-check/result", token=token, body=good,
                          content_type="application/json")
    assert status == 200 and json.loads(body)["verdict"] == "good", body
    status, _, body = raw(server, "POST", "/link-check/result", token=token, content_type="application/json",
                          body=json.dumps({"rtt_ms": 120, "down_kbps": 600, "up_kbps": 300}).encode())
    assert status == 200 and json.loads(body)["verdict"] == "fair", body
    assert [e["data"]["verdict"] for e in link_checks(server, links)] == ["good", "fair"]

    # One link's probes are limited (60 a minute): then 429, and nothing more is recorded.
    other = links.party_tokens[1]
    codes = [raw(server, "GET", "/link-check/ping", token=other)[0] for _ in range(60)]
    assert codes == [200] * 60, codes
    status, _, body = raw(server, "POST", "/link-check/result", token=other, body=good,
                          content_type="application/json")
    assert status == 429 and error_code(body) == "too_many_attempts", body
    assert "link-check" in json.loads(body)["error"]["message"]
    assert len(link_checks(server, links)) == 2
