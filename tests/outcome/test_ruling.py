"""The judge's ruling on a judicial confirmation comes back by signed callback and is attached to the case with
its hash (SQLite and PostgreSQL): stored, in the audit chain, checked by the integrity check, in the export and
in a later enforcement package; bad signatures, a ruling before the decision, other files and a different
second ruling change nothing."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import zipfile

from sqlalchemy import select

from server.core.models import CourtSubmission, Obligation
from tests.api.helpers import row_counts

from .follow_helpers import CALLBACK_SECRET, actions, callback
from .helpers import effective_case, eventually, login

RULING = b"%PDF-1.7\n% (2026)\xe5\x8e\xbf\xe6\xb0\x91\xe7\x89\xb988\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


def _sig(key: str, body: bytes, secret: str = CALLBACK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), key.encode() + b"\n" + body, hashlib.sha256).hexdigest()


async def _post(client, key, body=RULING, *, sig=None, judge="李法官", ctype="application/pdf"):
    return await client.post(f"/api/v1/court/callback/ruling?submission={key}&judge={judge}", data=body,
                             headers={"Content-Type": ctype, "X-Court-Signature": sig or _sig(key, body)})


async def _submission(db, case_id):
    async with db.read() as s:
        return (await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == case_id,
                                                              CourtSubmission.kind == "judicial_confirmation"))
                ).scalar_one_or_none()


async def test_the_ruling_is_attached_with_its_hash(client, db, settings):
    c = await effective_case(client, db)
    r = await client.post("/api/v1/party/confirmation", headers=c.applicant,
                          json={"court_id": "county", "basis": "institution"})
    assert r.status == 200, await r.text()
    assert (await client.post("/api/v1/party/confirmation/confirm", headers=c.respondent)).status == 200

    async def delivered():
        x = await _submission(db, c.case_id)
        return x if x.status == "delivered" else None
    sub = await eventually(delivered, what="confirmation delivered")
    client.app["outcome"].cfg.callback_secret = CALLBACK_SECRET
    before = await row_counts(db)
    # Before the decision, unsigned, signed for another key, not a PDF: refused, nothing stored.
    r = await _post(client, sub.key)
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_decided"
    r = await _post(client, sub.key, sig="sha256=" + "0" * 64)
    assert r.status == 401 and (await r.json())["error"]["code"] == "bad_signature"
    r = await _post(client, sub.key, sig=_sig("f" * 32, RULING))
    assert r.status == 401
    r = await client.post(f"/api/v1/court/callback/ruling?submission={sub.key}", data=RULING,
                          headers={"Content-Type": "application/pdf"})
    assert r.status == 401
    r = await _post(client, "short")
    assert r.status == 422
    r = await _post(client, "9" * 32)
    assert r.status == 404
    assert await row_counts(db) == before

    r = await callback(client, {"submission": sub.key, "status": "confirmed", "reference": "(2026)县民特88号"})
    assert r.status == 200, await r.text()
    before = await row_counts(db)
    for body, ctype, status in ((b"GIF89a not a pdf", "application/pdf", 422), (RULING, "application/json", 415)):
        r = await _post(client, sub.key, body, ctype=ctype)
        assert r.status == status, await r.text()
    assert await row_counts(db) == before
    r = await _post(client, sub.key)
    assert r.status == 200, await r.text()
    ruling = (await r.json())["submission"]["answer"]["ruling"]
    digest = hashlib.sha256(RULING).hexdigest()
    assert ruling["sha256"] == digest and ruling["judge"] == "李法官" and ruling["size"] == len(RULING)
    stored = settings.data_dir / "agreements" / ruling["key"]
    assert stored.read_bytes() == RULING
    acts = await actions(db, c.case_id)
    assert acts.count("court.ruling") == 1
    # The court sends it again: nothing changes; a different file is refused.
    before = await row_counts(db)
    assert (await _post(client, sub.key)).status == 200
    r = await _post(client, sub.key, RULING + b"% altered\n")
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_attached"
    assert await row_counts(db) == before

    # The clerk's integrity check and export carry it.
    clerk = await login(client, "clerk")
    r = await client.get(f"/api/v1/cases/{c.case_id}/integrity", headers=clerk)
    report = await r.json()
    check = next(x for x in report["checks"] if x["name"] == "court_rulings")
    assert check["checked"] == 1 and not check["problems"]
    r = await client.get(f"/api/v1/cases/{c.case_id}/export", headers=clerk)
    with zipfile.ZipFile(io.BytesIO(await r.read())) as z:
        names = [n for n in z.namelist() if n.endswith("-ruling.pdf")]
        assert len(names) == 1 and z.read(names[0]) == RULING
    # An altered file is found.
    stored.write_bytes(RULING + b"%tampered\n")
    r = await client.get(f"/api/v1/cases/{c.case_id}/integrity", headers=clerk)
    check = next(x for x in (await r.json())["checks"] if x["name"] == "court_rulings")
    assert [p["problem"] for p in check["problems"]] == ["hash_mismatch"]
    stored.write_bytes(RULING)

    # A later enforcement application carries the ruling itself.
    r = await client.get(f"/api/v1/cases/{c.case_id}/obligations", headers=c.mediator)
    ob = (await r.json())["obligations"][0]
    async with db.session() as s:
        (await s.get(Obligation, ob["id"])).due_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    r = await client.post(f"/api/v1/party/obligations/{ob['id']}/report", headers=c.applicant,
                          json={"performed": False})
    assert r.status == 201, await r.text()
    r = await client.post("/api/v1/party/enforcement", headers=c.applicant, json={})
    assert r.status == 201, await r.text()
    async with db.read() as s:
        enf = (await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == c.case_id,
                                                             CourtSubmission.kind == "enforcement"))).scalar_one()
    with zipfile.ZipFile(io.BytesIO(enf.package)) as z:
        assert z.read("ruling.pdf") == RULING and "confirmation.json" not in z.namelist()
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["confirmation"]["ruling_sha256"] == digest
