"""The link check's endpoints against the real server: the probes and the result (recorded as
`link.checked` with the verdict). Bad input (an oversized upload, a bad token, malformed
figures) gets a clear error and records nothing; too many probes from one link get 429."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.browser.conftest import server  # noqa: F401
from tests.browser.room_helpers import login, open_room


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
