"""Building blocks for the outcome tests: a case in mediation, signatures, the flow to an agreement in effect."""
from __future__ import annotations

import asyncio
import base64
import io
import time
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from tests.api.helpers import file_case, seed
from tests.api.helpers import login as _login


async def login(client, username: str) -> dict:
    """A bearer token only: the client's cookie jar is cleared, so later party calls carry no staff cookie."""
    headers = await _login(client, username)
    client.session.cookie_jar.clear()
    return headers

APPLICANT_ID = "33010219800101123X"
RESPONDENT_ID = "110101199001011234"


def signature_png(seed_: int = 0) -> str:
    """A handwritten-looking stroke on a transparent pad, as the canvas sends it (data URL)."""
    img = Image.new("RGBA", (600, 220), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    pts = [(30 + i * 45, 120 + ((i * 37 + seed_ * 11) % 70) - 35) for i in range(13)]
    d.line(pts, fill=(17, 17, 17, 255), width=6, joint="curve")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def blank_png() -> str:
    img = Image.new("RGBA", (600, 220), (0, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass
class Ctx:
    client: object
    case_id: int
    number: str
    code: str
    phone: str
    applicant_id: int
    respondent_id: int
    mediator: dict
    admin: dict
    world: object
    respondent_token: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def applicant(self) -> dict:
        return {"X-Case-Number": self.number, "X-Access-Code": self.code, "X-Phone": self.phone}

    @property
    def respondent(self) -> dict:
        return {"X-Party-Token": self.respondent_token}


_HASHES: dict[str, str] = {}


async def quick_seed(db):
    """tests.api.helpers.seed, hashing the shared test password once per process instead of once per account."""
    from server.core.security import hash_secret
    from server.services import directory

    async def cached(value: str) -> str:
        if value not in _HASHES:
            _HASHES[value] = await asyncio.to_thread(hash_secret, value)
        return _HASHES[value]

    original = directory.hash_secret_async
    directory.hash_secret_async = cached
    try:
        return await seed(db)
    finally:
        directory.hash_secret_async = original


async def case_in_mediation(client, db) -> Ctx:
    w = await quick_seed(db)
    admin = await login(client, "admin")
    mediator = await login(client, "mediator")
    filed = await file_case(client, w.inst_a, respondents=[{"name": "某劳务公司", "phone": "13900002222",
                                                             "address": "城关镇东路88号"}])
    cid = filed["case"]["id"]
    for path, body in (("accept", None), ("assign", {"mediator_id": w.users["mediator"]})):
        r = await client.post(f"/api/v1/cases/{cid}/{path}", json=body or {}, headers=admin)
        assert r.status == 200, await r.text()
    r = await client.post(f"/api/v1/cases/{cid}/sessions", json={}, headers=mediator)
    assert r.status == 201, await r.text()
    r = await client.get(f"/api/v1/cases/{cid}", headers=admin)
    parties = (await r.json())["case"]["parties"]
    return Ctx(client, cid, filed["case"]["number"], filed["access_code"], "13800001111",
               next(p["id"] for p in parties if p["side"] == "applicant"),
               next(p["id"] for p in parties if p["side"] == "respondent"), mediator, admin, w)


DRAFT = {
    "template": "labour",
    "facts": "申请人于2026年8月至10月在被申请人承建的工地务工，被申请人拖欠工资共计人民币23,000元，双方协商未果。",
    "terms": ["某劳务公司于2026年12月31日前向张伟一次性支付拖欠的劳动报酬人民币23,000元（大写：贰万叁仟元整）。",
              "张伟收到上述款项后，双方就本次劳动报酬纠纷再无其他争议。"],
    "performance_deadline": "2026-12-31",
}


async def draft_and_finalise(c: Ctx) -> dict:
    r = await c.client.put(f"/api/v1/cases/{c.case_id}/agreement", json={"template": "labour"}, headers=c.mediator)
    assert r.status == 200, await r.text()
    r = await c.client.put(f"/api/v1/cases/{c.case_id}/agreement", json={**DRAFT, "version": 1}, headers=c.mediator)
    assert r.status == 200, await r.text()
    r = await c.client.post(f"/api/v1/cases/{c.case_id}/agreement/finalise", json={"version": 2}, headers=c.mediator)
    assert r.status == 200, await r.text()
    return (await r.json())["agreement"]


async def issue_respondent_link(c: Ctx, id_number: str | None = RESPONDENT_ID) -> str:
    body = {"party_id": c.respondent_id}
    if id_number:
        body["id_number"] = id_number
    r = await c.client.post(f"/api/v1/cases/{c.case_id}/agreement/links", json=body, headers=c.mediator)
    assert r.status == 201, await r.text()
    c.respondent_token = (await r.json())["token"]
    return c.respondent_token


async def sign_all(c: Ctx, text_sha256: str) -> dict:
    r = await c.client.post("/api/v1/party/agreement/sign", headers=c.applicant, json={
        "signature": signature_png(1), "text_sha256": text_sha256, "id_last6": APPLICANT_ID[-6:]})
    assert r.status == 200, await r.text()
    r = await c.client.post("/api/v1/party/agreement/sign", headers=c.respondent, json={
        "signature": signature_png(2), "text_sha256": text_sha256, "id_last6": RESPONDENT_ID[-6:]})
    assert r.status == 200, await r.text()
    r = await c.client.post(f"/api/v1/cases/{c.case_id}/agreement/sign", headers=c.mediator, json={
        "signature": signature_png(3), "text_sha256": text_sha256})
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["effective"] is True
    return body["agreement"]


async def effective_case(client, db) -> Ctx:
    c = await case_in_mediation(client, db)
    ag = await draft_and_finalise(c)
    await issue_respondent_link(c)
    await sign_all(c, ag["text_sha256"])
    return c


async def eventually(check, timeout: float = 15.0, what: str = "condition", interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
