"""Enforcement (申请强制执行): one click when a term of a confirmed agreement was not performed.

Rules (docs/procedure.md, "After the agreement"; Civil Procedure Law art. 206: a party may apply to
the court that confirmed the agreement when the other refuses to perform it):
- the agreement is in effect and the court has confirmed it (the judicial confirmation's answer
  ``confirmed`` came by the signed callback), else ``not_confirmed``;
- the applicant is a party to whom another party owes an obligation that the applicant reported
  as not performed after its last day (server/services/outcome/performance.py), else
  ``nothing_to_enforce``; `obligation_ids` narrows the application to some of them;
- once per applying party (``already_submitted``): each side of an agreement may be owed something;
  it goes to the court that confirmed the agreement.

The package is built and queued at once through the court outbox (server/services/outcome/court.py):
the application (signed PDF), the agreement, the confirmation ruling when the court sent it
(else the court's answer as JSON), the non-performance report and the parties.
"""
from __future__ import annotations

import datetime as dt
import uuid

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.errors import Conflict, ValidationFailed
from server.core.models import Agreement, Case, CourtSubmission
from server.core.schemas import Id, Strict
from server.infra import pdf
from server.services.cases import get_case
from server.services.notify import messages as notify
from server.services.outcome import agreements as agr
from server.services.outcome import court as court_svc
from server.services.outcome import performance


class EnforcementIn(Strict):
    obligation_ids: list[Id] | None = Field(default=None, min_length=1, max_length=30)


async def confirmed_submission(s: AsyncSession, case_id: int) -> CourtSubmission | None:
    sub = await court_svc.get_submission(s, case_id, "judicial_confirmation")
    return sub if sub is not None and sub.status == "confirmed" else None


async def applications(s: AsyncSession, case_id: int) -> list[CourtSubmission]:
    """The case's enforcement applications, one per applying party, oldest first."""
    return list((await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == case_id,
                                                               CourtSubmission.kind == "enforcement")
                                 .order_by(CourtSubmission.id))).scalars().all())


async def apply(s: AsyncSession, cfg: court_svc.OutcomeConfig, ctx: agr.SignContext, who: agr.PartyProof,
                case_id: int, data: EnforcementIn) -> CourtSubmission:
    case = await get_case(s, case_id, lock=True)
    if who.case_id != case.id:
        raise Conflict("You are not a party of this case.", code="not_concerned")
    ag = await agr.get_for_case(s, case.id, lock=True)
    conf = await confirmed_submission(s, case.id)
    if ag is None or ag.status != "effective" or conf is None:
        raise Conflict("Enforcement needs an agreement that the court has confirmed (司法确认).",
                       code="not_confirmed")
    if await court_svc.get_submission(s, case.id, "enforcement", applicant=who.party_id, lock=True) is not None:
        raise Conflict("You have already sent an enforcement application for this case.", code="already_submitted")
    views = await performance.case_views(s, case, me=who.party_id)
    eligible = performance.eligible_for_enforcement(views, who.party_id)
    if not eligible:
        raise Conflict("Nothing to enforce: no obligation owed to you that you reported as not performed.",
                       code="nothing_to_enforce")
    if data.obligation_ids:
        ids = {v["id"] for v in eligible}
        wrong = [i for i in data.obligation_ids if i not in ids]
        if wrong:
            raise ValidationFailed("Choose obligations owed to you that you reported as not performed.",
                                   fields={"obligation_ids": f"not one of them: {wrong}"})
        eligible = [v for v in eligible if v["id"] in set(data.obligation_ids)]
    now = dt.datetime.now(dt.timezone.utc)
    sub = CourtSubmission(case_id=case.id, kind="enforcement", status="collecting", court_id=conf.court_id,
                          court_name=conf.court_name, basis="confirming_court", key=uuid.uuid4().hex,
                          confirmations={str(who.party_id): {"name": who.name, "side": who.side, "via": who.via,
                                                             "at": now.isoformat()}},
                          requested_by=who.name, manifest={}, answer={}, applicant_party_id=who.party_id)
    s.add(sub)
    await s.flush()
    await audit.append(s, who.ref(), "enforcement.requested", case_id=case.id, data={
        "submission_id": sub.id, "court_id": conf.court_id, "court": conf.court_name, "party_id": who.party_id,
        "obligations": [v["id"] for v in eligible], "confirmation_reference": conf.court_reference})
    await court_svc.queue(s, cfg, ctx, case, sub, await build_package(s, cfg, ctx, case, ag, conf, sub, who, eligible))
    n = notify.config()
    await notify.send(s, "enforcement_requested", await notify.mediator_recipients(s, case.mediator_id),
                      {"number": case.number, "title": case.title, "court": conf.court_name, "name": who.name,
                       "case_url": f"{n.public_url}/staff/cases/{case.id}"},
                      key=f"enforcement:{sub.id}", case_id=case.id)
    return sub


async def build_package(s: AsyncSession, cfg, ctx: agr.SignContext, case: Case, ag: Agreement, conf: CourtSubmission,
                        sub: CourtSubmission, who: agr.PartyProof, obligations: list[dict]) -> tuple[bytes, dict]:
    tz = ctx.tz
    now = dt.datetime.now(dt.timezone.utc)
    parties = await court_svc.identity_summary(s, case, ag)
    applicant = next(p for p in parties if p["party_id"] == who.party_id)
    owing = {v["obligor_party_id"] for v in obligations}
    respondents = [p for p in parties if p["party_id"] in owing]
    agreement_pdf = await agr.read_pdf(ctx.store, ag)

    def line(p):
        return (f"{p['name']}" + (f"，身份证件号码：{p['id_number']}" if p["id_number"] else "")
                + (f"，住址：{p['address']}" if p["address"] else "")
                + (f"，联系电话：{p['phone']}" if p["phone"] else "") + "。")

    def report_line(v):
        mine = next((r for r in reversed(v["reports"]) if r["party_id"] == who.party_id and not r["performed"]), None)
        at = dt.datetime.fromisoformat(mine["at"]).astimezone(tz).strftime("%Y-%m-%d") if mine else ""
        return (f"协议第{agr.numeral(v['term'])}条：{v['text']}（履行期限：{v['due_on']}；"
                f"申请人于{at}报告未履行" + (f"，说明：{mine['note']}" if mine and mine["note"] else "") + "）")

    ruling = (conf.answer or {}).get("ruling") or {}
    ruling_pdf = await ctx.store.get(ruling["key"]) if ruling.get("key") else None
    attachments = ["1. 人民调解协议书（电子签章版，agreement.pdf）",
                   "2. 司法确认裁定书（ruling.pdf）" if ruling_pdf else "2. 法院司法确认答复（confirmation.json）",
                   "3. 未履行情况报告（non_performance.json）", "4. 当事人身份信息摘要（parties.json）",
                   "5. 材料清单（manifest.json）"]
    doc = pdf.Document(
        title="强制执行申请书",
        meta=[("执行法院", sub.court_name), ("调解组织", case.institution.name), ("调解协议编号", case.number),
              ("司法确认文书", conf.court_reference or "（见法院答复）")],
        sections=[
            pdf.Section("申请执行人", [line(applicant)]),
            pdf.Section("被执行人", [line(p) for p in respondents] or ["（待补充）"]),
            pdf.Section("请求事项", ["请求依法强制执行经贵院司法确认有效的《人民调解协议书》"
                                  f"（编号{case.number}）中被执行人未履行的下列义务："]
                        + [report_line(v) for v in obligations]),
            pdf.Section("事实和理由", [
                f"申请执行人与被执行人于{pdf.today_cn(ag.effective_at, tz)}经{case.institution.name}调解达成调解协议，"
                f"贵院已裁定确认该协议有效（{conf.court_reference or '见附件'}）。",
                "被执行人未在协议约定的履行期限内履行上述义务。申请执行人依据《中华人民共和国民事诉讼法》第二百零六条的规定，"
                "向作出确认裁定的贵院申请强制执行。"]),
            pdf.Section("附件", attachments)],
        seal_name=case.institution.name, seal_caption="调解组织（代为提交）", seal_date=pdf.today_cn(now, tz),
        test_material=ctx.identity.test_material, footer_note=f"申请编号 {sub.key}",
        keywords=[f"case:{case.number}", f"submission:{sub.key}"], subject=f"{case.number} 强制执行申请",
        author=case.institution.name)
    application = await court_svc.signed_pdf(cfg, ctx, doc, f"强制执行申请书 {case.number}", case.institution.name)
    report = {"case_number": case.number, "applicant": {"party_id": who.party_id, "name": who.name, "via": who.via},
              "obligations": [{k: v[k] for k in ("id", "term", "text", "obligor", "obligor_party_id", "due_on",
                                                 "status", "reports")} for v in obligations]}
    files = {"application.pdf": application, "agreement.pdf": agreement_pdf}
    kinds = ["application", "agreement"]
    if ruling_pdf is not None:
        files["ruling.pdf"] = ruling_pdf
        kinds.append("confirmation_ruling")
    else:
        files["confirmation.json"] = court_svc.json_bytes({"submission": conf.key, "court": conf.court_name,
                                                           "reference": conf.court_reference, "answer": conf.answer})
        kinds.append("confirmation_answer")
    files["non_performance.json"] = court_svc.json_bytes(report)
    files["parties.json"] = court_svc.json_bytes({"case_number": case.number, "parties": parties})
    kinds += ["non_performance_report", "parties"]
    manifest = {
        "format": "mediation-court-package/1", "kind": sub.kind, "key": sub.key, "created_at": now.isoformat(),
        "case": {"number": case.number, "category": case.category, "title": case.title,
                 "institution": case.institution.name},
        "court": {"id": sub.court_id, "name": sub.court_name, "basis": sub.basis},
        "confirmation": {"submission": conf.key, "reference": conf.court_reference,
                         "ruling_sha256": ruling.get("sha256")},
        "agreement": {"text_sha256": ag.text_sha256, "pdf_sha256": ag.pdf_sha256,
                      "effective_at": ag.effective_at.isoformat()},
        "requested_by": {"party_id": who.party_id, "name": who.name, "side": who.side, "via": who.via},
        "files": [court_svc.file_entry(n, d, k) for (n, d), k in zip(files.items(), kinds)],
    }
    return court_svc.zip_files({"manifest.json": court_svc.json_bytes(manifest), **files}), manifest
