"""The settlement agreement end to end on SQLite and PostgreSQL: draft → finalise → every signature → in effect →
signed PDF checked by pyHanko, by poppler's pdfsig and by `mediation agreements verify`; one altered byte fails."""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from server.core.models import AuditEntry

from .helpers import (APPLICANT_ID, DRAFT, RESPONDENT_ID, blank_png, case_in_mediation, issue_respondent_link,
                      login, signature_png)

IN_CI = bool(os.environ.get("CI"))


async def test_whole_flow_signed_pdf_verified(client, db, settings, tmp_path, monkeypatch):
    c = await case_in_mediation(client, db)
    url = f"/api/v1/cases/{c.case_id}/agreement"

    # Only the case's mediator drafts.
    other = await login(client, "mediator2")
    r = await client.put(url, json={"template": "labour"}, headers=other)
    assert r.status == 403
    r = await client.put(url, json={"template": "labour"}, headers=c.mediator)
    assert r.status == 200, await r.text()
    ag = (await r.json())["agreement"]
    assert ag["status"] == "draft" and ag["version"] == 1 and "张伟" in ag["text"] and "____" in ag["text"]
    # Template blanks and a missing deadline block finalising.
    r = await client.post(url + "/finalise", json={}, headers=c.mediator)
    assert r.status == 422 and {"terms", "performance_deadline"} <= set((await r.json())["error"]["fields"])

    r = await client.put(url, json={**DRAFT, "version": 1}, headers=c.mediator)
    assert r.status == 200 and (await r.json())["agreement"]["version"] == 2
    r = await client.put(url, json={"facts": "stale edit", "version": 1}, headers=c.mediator)
    assert r.status == 409 and (await r.json())["error"]["code"] == "version_conflict"

    # A party cannot sign a draft.
    r = await client.post("/api/v1/party/agreement/sign", headers=c.applicant, json={
        "signature": signature_png(), "text_sha256": "0" * 64, "id_last6": APPLICANT_ID[-6:]})
    assert r.status == 409 and (await r.json())["error"]["code"] == "agreement_not_final"

    r = await client.post(url + "/finalise", json={"version": 2}, headers=c.mediator)
    assert r.status == 200, await r.text()
    ag = (await r.json())["agreement"]
    assert ag["status"] == "final" and ag["text_sha256"] == hashlib.sha256(ag["text"].encode()).hexdigest()
    text_hash = ag["text_sha256"]

    # Edits after finalising are refused, through the API and (below) the live room alike.
    r = await client.put(url, json={"facts": "改一个字"}, headers=c.mediator)
    assert r.status == 409 and (await r.json())["error"]["code"] == "agreement_final"
    r = await client.post(url + "/finalise", json={}, headers=c.mediator)
    assert r.status == 409

    await issue_respondent_link(c)

    # The applicant: access code + phone + the last six of the ID number on file.
    r = await client.post("/api/v1/party/agreement/sign", headers=c.applicant, json={
        "signature": signature_png(1), "text_sha256": text_hash, "id_last6": "000000"})
    assert r.status == 401 and (await r.json())["error"]["code"] == "id_mismatch"
    r = await client.post("/api/v1/party/agreement/sign", headers=c.applicant, json={
        "signature": blank_png(), "text_sha256": text_hash, "id_last6": APPLICANT_ID[-6:]})
    assert r.status == 422 and (await r.json())["error"]["fields"]["signature"] == "empty"
    r = await client.post("/api/v1/party/agreement/sign", headers=c.applicant, json={
        "signature": signature_png(1), "text_sha256": "f" * 64, "id_last6": APPLICANT_ID[-6:]})
    assert r.status == 409 and (await r.json())["error"]["code"] == "text_changed"
    r = await client.post("/api/v1/party/agreement/sign", headers=c.applicant, json={
        "signature": signature_png(1), "text_sha256": text_hash, "id_last6": APPLICANT_ID[-6:].lower()})
    assert r.status == 200, await r.text()
    r = await client.post("/api/v1/party/agreement/sign", headers=c.applicant, json={
        "signature": signature_png(1), "text_sha256": text_hash, "id_last6": APPLICANT_ID[-6:]})
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_signed"

    # A party cannot sign for another: the proof names the signer, the body cannot.
    r = await client.post("/api/v1/party/agreement/sign", headers=c.respondent, json={
        "signature": signature_png(2), "text_sha256": text_hash, "id_last6": RESPONDENT_ID[-6:],
        "party_id": c.applicant_id})
    assert r.status == 422
    r = await client.post("/api/v1/party/agreement/sign", headers=c.applicant, json={
        "signature": signature_png(2), "text_sha256": text_hash, "id_last6": RESPONDENT_ID[-6:]})
    assert r.status in (401, 409)  # the applicant's proof only ever signs as the applicant
    r = await client.post("/api/v1/party/agreement/sign", headers={"X-Party-Token": "x" * 32}, json={
        "signature": signature_png(2), "text_sha256": text_hash})
    assert r.status == 401
    r = await client.get("/api/v1/party/agreement", headers=c.respondent)
    me = (await r.json())
    assert me["me"]["party_id"] == c.respondent_id and me["me"]["id_required"] is True
    signed = {s["key"]: s["signed"] for s in me["agreement"]["signers"]}
    assert signed == {f"party:{c.applicant_id}": True, f"party:{c.respondent_id}": False, "mediator": False}

    r = await client.post("/api/v1/party/agreement/sign", headers=c.respondent, json={
        "signature": signature_png(2), "text_sha256": text_hash, "id_last6": RESPONDENT_ID[-6:]})
    assert r.status == 200 and (await r.json())["effective"] is False
    r = await client.get(f"/api/v1/cases/{c.case_id}", headers=c.admin)
    assert (await r.json())["case"]["status"] == "in_mediation"  # not in effect until the mediator signs

    r = await client.post(url + "/sign", headers=other, json={"signature": signature_png(3), "text_sha256": text_hash})
    assert r.status == 403
    r = await client.post(url + "/sign", headers=c.mediator, json={"signature": signature_png(3),
                                                                   "text_sha256": text_hash})
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["effective"] is True and body["agreement"]["status"] == "effective"
    ag = body["agreement"]
    assert ag["text_sha256"] == text_hash == hashlib.sha256(ag["text"].encode()).hexdigest()
    r = await client.get(f"/api/v1/cases/{c.case_id}", headers=c.admin)
    assert (await r.json())["case"]["status"] == "settled"

    # The signed PDF, as recorded.
    r = await client.get(url + "/pdf", headers=c.admin)
    assert r.status == 200 and r.content_type == "application/pdf"
    pdf = await r.read()
    assert hashlib.sha256(pdf).hexdigest() == ag["pdf_sha256"] == r.headers["X-Content-SHA256"]
    r = await client.get("/api/v1/party/agreement/pdf", headers=c.respondent)
    assert await r.read() == pdf

    # pyHanko's validator: intact, valid, trusted (the dev CA), covering the whole file.
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    from server.infra.certs import load_identity
    ident = load_identity(settings.data_dir)
    assert ident.test_material and "TEST ONLY" in ident.subject
    sig = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    status = await async_validate_pdf_signature(sig, ValidationContext(trust_roots=ident.trust_roots))
    assert status.intact and status.valid and status.trusted and status.bottom_line
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert "/ETSI.CAdES.detached" in str(sig.sig_object["/SubFilter"])

    path = tmp_path / "agreement.pdf"
    path.write_bytes(pdf)
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / f"agreement-signed-{db.engine.dialect.name}.pdf").write_bytes(pdf)
    # The Chinese text is real text (Noto CJK embedded), with every signer in the sign-off table.
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
        assert "人民调解协议书" in text and "张伟" in text and "某劳务公司" in text and "调解员" in text
        # The PDF shows the text as finalised: the respondent's ID, recorded afterwards, is not in it.
        from server.services.outcome.agreements import mask_id
        assert mask_id(RESPONDENT_ID) not in text.replace("\n", "") and mask_id(APPLICANT_ID) in text
        fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
        assert "NotoSerifCJKSC" in fonts or "NotoSansCJKSC" in fonts
    # A second validator: poppler's pdfsig.
    if shutil.which("pdfsig"):
        out = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True).stdout
        assert "Signature is Valid" in out and "Total document signed" in out, out
    elif IN_CI:
        pytest.fail("pdfsig (poppler-utils) is missing")

    # `mediation agreements verify FILE`: valid and on record; one altered byte fails.
    from server import cli
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MEDIATION_DATA_DIR", str(settings.data_dir))
    assert await asyncio.to_thread(cli.main, ["agreements", "verify", str(path)]) == 0
    bad = bytearray(pdf)
    at = pdf.index(b"/Contents") // 2  # inside the signed range, in the page content
    bad[at] ^= 0x01
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(bad))
    assert await asyncio.to_thread(cli.main, ["agreements", "verify", str(tampered)]) == 1
    if shutil.which("pdfsig"):
        out = subprocess.run(["pdfsig", str(tampered)], capture_output=True, text=True).stdout
        assert "Signature is Valid" not in out
    # The clerk's check through the API says the same.
    clerk = await login(client, "clerk")
    r = await client.post("/api/v1/agreements/verify", data=pdf, headers={**clerk, "Content-Type": "application/pdf"})
    good = await r.json()
    assert good["ok"] and good["matches_record"] and good["record"]["case_number"] == c.number
    r = await client.post("/api/v1/agreements/verify", data=bytes(bad),
                          headers={**clerk, "Content-Type": "application/pdf"})
    worse = await r.json()
    assert not worse["ok"] and not worse["matches_record"] and not worse["signature"]["ok"]

    # Everything is on the audit chain, and the archive's integrity check covers the agreement.
    async with db.read() as s:
        entries = (await s.execute(select(AuditEntry).where(AuditEntry.case_id == c.case_id)
                                   .order_by(AuditEntry.seq))).scalars().all()
    actions = [e.action for e in entries]
    assert actions.count("agreement.signed") == 3
    for a in ("agreement.drafted", "agreement.updated", "agreement.finalised", "party_link.issued",
              "agreement.effective", "case.settle", "agreement.sealed"):
        assert a in actions, a
    sealed = next(e for e in entries if e.action == "agreement.sealed")
    assert sealed.data["pdf_sha256"] == ag["pdf_sha256"]
    signed_hashes = {e.data["image_sha256"] for e in entries if e.action == "agreement.signed"}
    assert signed_hashes == {s["image_sha256"] for s in ag["signers"]}
    from server.services.archive import records as archive
    from server.infra.files import FileStore
    async with db.read() as s:
        case = await archive.get_case(s, c.case_id)
        report = await archive.run_checks(s, FileStore(settings.evidence_dir), case=case, settings=settings)
    assert report.ok, report.to_json()
    assert any(r.name == "agreements" and r.checked == 1 for r in report.results)
    # The stored file altered on disk: the checker says so.
    from server.services.outcome.court import OutcomeConfig
    async with db.read() as s:
        from server.services.outcome.agreements import get_for_case
        key = (await get_for_case(s, c.case_id)).pdf_key
    stored = OutcomeConfig.from_env(settings).agreements_dir / key
    stored.write_bytes(bytes(bad))
    async with db.read() as s:
        case = await archive.get_case(s, c.case_id)
        report = await archive.run_checks(s, FileStore(settings.evidence_dir), case=case, settings=settings)
    assert not report.ok and any(p.check == "agreements" and p.problem == "hash_mismatch" for p in report.problems)


async def test_links_and_roles(client, db):
    c = await case_in_mediation(client, db)
    url = f"/api/v1/cases/{c.case_id}/agreement"
    # Intake staff read but cannot draft; a party cannot read the staff view.
    intake = await login(client, "intake")
    assert (await client.put(url, json={}, headers=intake)).status == 403
    assert (await client.get(url, headers=intake)).status == 200
    assert (await client.get(url, headers=c.applicant)).status == 401
    # A link for someone not in the case is refused; a different ID number than the one on file too.
    r = await client.post(url + "/links", json={"party_id": 999999}, headers=c.mediator)
    assert r.status == 422
    r = await client.post(url + "/links", json={"party_id": c.applicant_id, "id_number": RESPONDENT_ID},
                          headers=c.mediator)
    assert r.status == 422
    # A new link withdraws the old one.
    first = await issue_respondent_link(c, None)
    second = await issue_respondent_link(c, None)
    assert (await client.get("/api/v1/party/agreement", headers={"X-Party-Token": first})).status == 401
    r = await client.get("/api/v1/party/agreement", headers={"X-Party-Token": second})
    assert r.status == 200 and (await r.json())["agreement"] is None
    # Comments from a party reach the record.
    await client.put(url, json={"template": "labour"}, headers=c.mediator)
    r = await client.post("/api/v1/party/agreement/comments", json={"text": "希望分两期支付"},
                          headers={"X-Party-Token": second})
    assert r.status == 201
    r = await client.get(url, headers=c.mediator)
    assert [x["text"] for x in (await r.json())["comments"]] == ["希望分两期支付"]
