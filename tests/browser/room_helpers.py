"""Helpers for the live-room browser tests: join links through the JSON API, and polling the
pages' WebRTC statistics."""
from __future__ import annotations

import json
import time
import urllib.request
import uuid
from dataclasses import dataclass

from .conftest import DEMO_PASSWORD

MEDIATOR_NAME = "调解员 李明"   # the demo mediator (username "mediator")


@dataclass
class RoomLinks:
    case_id: int
    session_id: int
    mediator_token: str
    party_tokens: list[str]
    party_names: list[str]

    def path(self, token: str) -> str:
        return f"/room/{token}"


def login(server, username: str) -> str:
    status, body = server.api("POST", "/auth/login", {"username": username, "password": DEMO_PASSWORD})
    assert status == 200, body
    return body["token"]


def file_with_evidence(server, title: str, files: list[tuple[str, bytes]], **over) -> dict:
    """File a case as the portal does, multipart with evidence files (docs/api.md, POST /cases)."""
    status, body = server.api("GET", "/institutions")
    assert status == 200, body
    case = {"type": "mediation", "category": "neighbour", "title": title,
            "description": "楼上漏水导致我家天花板受损，协商赔偿未果。",
            "institution_id": body["institutions"][0]["id"],
            "applicant": {"name": "赵六", "phone": "13600006666"}, "respondents": [{"name": "钱七"}], **over}
    boundary = uuid.uuid4().hex
    parts = [(f'Content-Disposition: form-data; name="case"\r\nContent-Type: application/json\r\n\r\n').encode()
             + json.dumps(case).encode()]
    for name, data in files:
        parts.append(f'Content-Disposition: form-data; name="evidence"; filename="{name}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data)
    payload = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts) + \
        b"--" + boundary.encode() + b"--\r\n"
    req = urllib.request.Request(server.url + "/api/v1/cases", data=payload, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        assert resp.status == 201
        return json.loads(resp.read())


def open_room(server, title: str, *, evidence: list[tuple[str, bytes]] | None = None, **over) -> RoomLinks:
    """A fresh case (so tests do not depend on each other or on the portal tests), accepted and
    assigned by the demo intake officer, a session opened by the demo mediator, and join links.
    With `evidence`, the case is filed with those files (`over`: other fields of the filing)."""
    filed = file_with_evidence(server, title, evidence, **over) if evidence else server.file_case(title, **over)
    case_id = filed["case"]["id"]
    intake = login(server, "intake")
    status, body = server.api("POST", f"/cases/{case_id}/accept", {}, token=intake)
    assert status == 200, body
    status, body = server.api("GET", "/mediators", token=intake)
    assert status == 200, body
    mediator_id = next(m["id"] for m in body["mediators"] if m["name"] == MEDIATOR_NAME)
    status, body = server.api("POST", f"/cases/{case_id}/assign", {"mediator_id": mediator_id}, token=intake)
    assert status == 200, body

    mediator = login(server, "mediator")
    status, body = server.api("POST", f"/cases/{case_id}/sessions", {}, token=mediator)
    assert status == 201, body
    session_id = body["session"]["id"]
    status, body = server.api("GET", f"/cases/{case_id}", token=mediator)
    assert status == 200, body
    parties = body["case"]["parties"]

    def invite(payload: dict) -> str:
        st, b = server.api("POST", f"/sessions/{session_id}/invites", payload, token=mediator)
        assert st == 201, b
        assert b["url"] and b["token"], b
        return b["token"]

    return RoomLinks(case_id=case_id, session_id=session_id, mediator_token=invite({"role": "mediator"}),
                     party_tokens=[invite({"role": "party", "party_id": p["id"]}) for p in parties],
                     party_names=[p["name"] for p in parties])


# The subscribe connection's inbound video: proof that media really arrived and was decoded.
INBOUND_VIDEO_JS = """async () => {
  const pc = window.mediationRoom && window.mediationRoom.subPc;
  if (!pc) return null;
  const stats = await pc.getStats();
  let best = null;
  stats.forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      if (!best || (r.framesDecoded || 0) > (best.framesDecoded || 0)) {
        best = {framesDecoded: r.framesDecoded || 0, packetsReceived: r.packetsReceived || 0,
                codec: r.codecId || '', frameWidth: r.frameWidth || 0};
      }
    }
  });
  return best;
}"""


def wait_decoding(page, what: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = page.evaluate(INBOUND_VIDEO_JS)
        if last and last["framesDecoded"] > 0 and last["packetsReceived"] > 0:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: no decoded inbound video within {timeout} s (last stats: {last}); "
                         f"room errors: {page.evaluate('window.mediationRoom && window.mediationRoom.errors')}")


def wait_js(page, expr: str, what: str, timeout: float = 10.0):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(expr)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {expr} -> {value!r}")
