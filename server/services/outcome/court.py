"""Court hand-off: judicial confirmation (司法确认) after a settlement, litigation filing (诉讼立案) after a failure.

- Judicial confirmation (Civil Procedure Law art. 205; SPC provisions on judicial confirmation):
  the parties apply jointly within 30 days of the agreement taking effect, to a basic-level
  court of a party's residence, of the subject matter or of the institution, or to the court
  that invited the mediation. One party (or the mediator, helping) prepares the application
  with the court; every party confirms it; when the last one does, the package is built and
  queued. The 30-day rule is enforced at each step.
- Litigation filing: after the mediator concluded the mediation as failed, one party asks with
  one click; the package (draft complaint with the case facts, the mediation record summary,
  the parties) is built and queued at once.

Delivery goes through the ``court_outbox`` table, written in the same transaction as the
submission: a background worker (started with the app) delivers due messages through an
adapter — a directory outbox (default) or HTTP POST to ``COURT_ENDPOINT`` — and retries with
exponential backoff on failure, so a court outage or a restart loses nothing. A message is
claimed with a lease before it is sent, so two workers never send it at the same time, and the
court receives an ``Idempotency-Key`` with it (the submission's key) to drop a repeat that a
crash between sending and recording could cause.

The court answers (accepted, confirmed, rejected, filed) through an HMAC-authenticated callback.
A decision after the court's online review is linked to that review's session (outcome/review.py).

One module (~870 lines): both court applications share the package builder, the delivery adapters and the callback, which only make sense together.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import math
import os
import random
import shutil
import uuid
import zipfile
from zoneinfo import ZoneInfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit, events
from server.core.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from server.core.models import Agreement, AuditEntry, Case, CourtReview, CourtSubmission, OutboxMessage, utcnow
from server.core.policy import Actor, require_case_mediator
from server.core.schemas import Strict
from server.services.outcome import agreements as agr
from server.services.outcome import review as review_svc
from server.infra import certs, pdf
from server.infra.files import FileStore
from server.services import sessions as session_svc
from server.services.cases import get_case

log = logging.getLogger("mediation.court")

KINDS = ("judicial_confirmation", "litigation_filing", "enforcement")  # enforcement: outcome/enforcement.py
BASES = ("party_residence", "subject_matter", "institution", "inviting_court")
BASIS_CN = {"party_residence": "当事人住所地基层人民法院", "subject_matter": "标的物所在地基层人民法院",
            "institution": "调解组织所在地基层人民法院", "inviting_court": "邀请调解的人民法院"}
ANSWERS = {"judicial_confirmation": ("accepted", "confirmed", "rejected"),
           "litigation_filing": ("accepted", "filed", "rejected"),
           "enforcement": ("accepted", "filed", "rejected")}  # filed: 立案执行
REMINDER_DAYS = (7, 3, 1)

DEFAULT_COURTS = [
    {"id": "county", "name": "县人民法院", "level": "basic", "areas": ["县", "城关镇", "全县"]},
    {"id": "county-chengguan", "name": "县人民法院城关人民法庭", "level": "basic", "areas": ["城关镇"]},
    {"id": "county-harbour", "name": "县人民法院港区人民法庭", "level": "basic", "areas": ["港区", "渔港"]},
    {"id": "city-intermediate", "name": "市中级人民法院", "level": "intermediate", "areas": []},
]


# --- configuration ----------------------------------------------------------------------------------------

@dataclass
class OutcomeConfig:
    """Everything the outcome module reads from the environment (documented in README)."""

    data_dir: Path
    agreements_dir: Path
    outbox_dir: Path
    court_endpoint: str | None = None
    court_token: str | None = None
    callback_secret: str | None = None
    tsa_url: str | None = None
    courts: list[dict] = field(default_factory=lambda: [dict(c) for c in DEFAULT_COURTS])
    retry_base: float = 30.0
    retry_max: float = 3600.0
    max_attempts: int = 60
    poll_interval: float = 5.0
    lease_seconds: float = 120.0
    http_timeout: float = 30.0
    worker: bool = True

    @classmethod
    def from_env(cls, settings, env=None) -> "OutcomeConfig":
        env = os.environ if env is None else env
        data_dir = Path(settings.data_dir)
        courts = [dict(c) for c in DEFAULT_COURTS]
        raw = (env.get("COURTS") or "").strip()
        if raw:
            try:
                text = Path(raw).read_text(encoding="utf-8") if not raw.startswith("[") else raw
                courts = parse_courts(json.loads(text))
            except (OSError, ValueError) as exc:
                raise SystemExit(f"COURTS is neither a JSON list of courts nor a readable JSON file: {exc}")
        return cls(
            data_dir=data_dir,
            agreements_dir=Path(env.get("AGREEMENTS_DIR") or data_dir / "agreements"),
            outbox_dir=Path(env.get("COURT_OUTBOX_DIR") or data_dir / "court-outbox"),
            court_endpoint=env.get("COURT_ENDPOINT") or None,
            court_token=env.get("COURT_TOKEN") or None,
            callback_secret=env.get("COURT_CALLBACK_SECRET") or None,
            tsa_url=env.get("TSA_URL") or None,
            courts=courts,
            retry_base=float(env.get("COURT_RETRY_SECONDS", "30")),
            worker=(env.get("COURT_WORKER", "on").lower() not in ("off", "0", "false", "no")),
        )

    @property
    def adapter(self) -> str:
        return "http" if self.court_endpoint else "directory"

    def court(self, court_id: str) -> dict | None:
        return next((c for c in self.courts if c["id"] == court_id), None)


def parse_courts(data) -> list[dict]:
    if not isinstance(data, list) or not data:
        raise ValueError("a non-empty JSON list is needed")
    out = []
    for c in data:
        if not isinstance(c, dict) or not c.get("id") or not c.get("name"):
            raise ValueError("each court needs an id and a name")
        out.append({"id": str(c["id"])[:40], "name": str(c["name"])[:200],
                    "level": c.get("level", "basic") if c.get("level") in ("basic", "intermediate", "high") else "basic",
                    "areas": [str(a) for a in c.get("areas", [])]})
    return out


def court_options(cfg: OutcomeConfig, case: Case) -> list[dict]:
    """Courts and the bases each may be chosen on; `suggested` marks an area match with the case."""
    party_addr = " ".join(p.address for p in case.parties if p.address)
    inst_area = f"{case.institution.area} {case.institution.name}"
    out = []
    for c in cfg.courts:
        bases = [b for b in BASES if b == "inviting_court" or c["level"] == "basic"]
        matches = []
        if any(a and a in party_addr for a in c["areas"]):
            matches.append("party_residence")
        if any(a and a in inst_area for a in c["areas"]):
            matches.append("institution")
        out.append({**c, "bases": bases, "suggested": matches})
    return out


def default_court(cfg: OutcomeConfig, case: Case) -> dict:
    opts = [c for c in court_options(cfg, case) if c["level"] == "basic"]
    return next((c for c in opts if c["suggested"]), opts[0] if opts else cfg.courts[0])


# --- inputs ---------------------------------------------------------------------------------------------

class ConfirmationIn(Strict):
    court_id: str = Field(min_length=1, max_length=40)
    basis: Literal["party_residence", "subject_matter", "institution", "inviting_court"]


class FilingIn(Strict):
    court_id: str | None = Field(default=None, min_length=1, max_length=40)


class CallbackIn(Strict):
    submission: str = Field(min_length=8, max_length=64)
    status: Literal["accepted", "confirmed", "rejected", "filed"]
    reference: str = Field(default="", max_length=100)
    message: str = Field(default="", max_length=2000)


# --- reading ------------------------------------------------------------------------------------------

async def get_submission(s: AsyncSession, case_id: int, kind: str, *, applicant: int = 0,
                         lock: bool = False) -> CourtSubmission | None:
    """The case's submission of this kind; an enforcement is the applying party's (`applicant`)."""
    q = select(CourtSubmission).where(CourtSubmission.case_id == case_id, CourtSubmission.kind == kind,
                                      CourtSubmission.applicant_party_id == applicant)
    if lock:
        q = q.with_for_update()
    return (await s.execute(q)).scalar_one_or_none()


async def list_submissions(s: AsyncSession, case_id: int) -> list[tuple[CourtSubmission, OutboxMessage | None]]:
    subs = list((await s.execute(select(CourtSubmission).where(CourtSubmission.case_id == case_id)
                                 .order_by(CourtSubmission.id))).scalars().all())
    out = []
    for x in subs:
        msg = (await s.execute(select(OutboxMessage).where(OutboxMessage.submission_id == x.id))).scalar_one_or_none()
        out.append((x, msg))
    return out


def submission_view(x: CourtSubmission, msg: OutboxMessage | None = None, case: Case | None = None) -> dict:
    d = {"id": x.id, "kind": x.kind, "status": x.status, "court_id": x.court_id, "court_name": x.court_name,
         "basis": x.basis, "key": x.key, "deadline": x.deadline.isoformat() if x.deadline else None,
         "confirmations": x.confirmations or {}, "requested_by": x.requested_by,
         "package_sha256": x.package_sha256, "created_at": x.created_at.isoformat(),
         "queued_at": x.queued_at.isoformat() if x.queued_at else None,
         "delivered_at": x.delivered_at.isoformat() if x.delivered_at else None,
         "answered_at": x.answered_at.isoformat() if x.answered_at else None,
         "court_reference": x.court_reference, "answer": x.answer or {}}
    if case is not None:
        d["waiting_for"] = [{"party_id": p.id, "name": p.name, "side": p.side} for p in case.parties
                            if str(p.id) not in (x.confirmations or {})] if x.status == "collecting" else []
    if msg is not None:
        d["delivery"] = {"adapter": msg.adapter, "status": msg.status, "attempts": msg.attempts,
                         "next_attempt_at": msg.next_attempt_at.isoformat() if msg.status == "pending" else None,
                         "last_error": msg.last_error, "delivered_at": msg.delivered_at.isoformat()
                         if msg.delivered_at else None}
    return d


def days_left(deadline: dt.datetime | None, now: dt.datetime | None = None) -> int | None:
    """Whole days left until the deadline, counting a started day as one (0 once it has passed)."""
    if deadline is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0, math.ceil((deadline - now).total_seconds() / 86400))


# --- judicial confirmation -------------------------------------------------------------------------------

Who = agr.PartyProof | Actor


def _ref(who: Who) -> audit.ActorRef:
    return who.ref()


async def _effective_agreement(s: AsyncSession, case: Case) -> Agreement:
    ag = await agr.get_for_case(s, case.id, lock=True)
    if ag is None or ag.status != "effective":
        raise Conflict("Judicial confirmation needs an agreement in effect.", code="agreement_not_effective")
    return ag


def _check_deadline(ag: Agreement) -> None:
    if dt.datetime.now(dt.timezone.utc) > ag.confirmation_deadline:
        raise Conflict("The 30 days for applying for judicial confirmation have passed "
                       "(Civil Procedure Law art. 205).", code="deadline_passed",
                       fields={"deadline": ag.confirmation_deadline.isoformat()})


def _check_court(cfg: OutcomeConfig, court_id: str, basis: str) -> dict:
    court = cfg.court(court_id)
    if court is None:
        raise ValidationFailed("Choose a court from the list.", fields={"court_id": "unknown court"})
    if basis != "inviting_court" and court["level"] != "basic":
        raise ValidationFailed("Judicial confirmation goes to a basic-level court, unless that court invited the "
                               "mediation.", fields={"court_id": "not a basic-level court"})
    return court


async def start_confirmation(s: AsyncSession, cfg: OutcomeConfig, ctx: agr.SignContext, who: Who, case_id: int,
                             data: ConfirmationIn) -> CourtSubmission:
    """Prepare (or change the court of) the joint application. A party preparing it also confirms it."""
    case = await get_case(s, case_id, lock=True)
    if isinstance(who, Actor):
        require_case_mediator(who, case)
    elif who.case_id != case.id:
        raise Unauthorized("You are not a party of this case.")
    ag = await _effective_agreement(s, case)
    _check_deadline(ag)
    court = _check_court(cfg, data.court_id, data.basis)
    sub = await get_submission(s, case.id, "judicial_confirmation", lock=True)
    if sub is not None and sub.status != "collecting":
        raise Conflict("The application has already gone to the court.", code="already_submitted")
    if sub is None:
        sub = CourtSubmission(case_id=case.id, kind="judicial_confirmation", status="collecting",
                              court_id=court["id"], court_name=court["name"], basis=data.basis,
                              key=uuid.uuid4().hex, deadline=ag.confirmation_deadline, confirmations={},
                              requested_by=_ref(who).name, manifest={}, answer={})
        s.add(sub)
        action = "confirmation.requested"
    else:
        changed = (sub.court_id, sub.basis) != (court["id"], data.basis)
        sub.court_id, sub.court_name, sub.basis = court["id"], court["name"], data.basis
        if changed:
            sub.confirmations = {}  # everyone confirms the application as it now stands
        action = "confirmation.changed"
    await s.flush()
    await audit.append(s, _ref(who), action, case_id=case.id, data={
        "submission_id": sub.id, "court_id": court["id"], "court": court["name"], "basis": data.basis,
        "deadline": ag.confirmation_deadline})
    if isinstance(who, agr.PartyProof):
        await _confirm(s, cfg, ctx, case, ag, sub, who)
    return sub


async def confirm_application(s: AsyncSession, cfg: OutcomeConfig, ctx: agr.SignContext, who: agr.PartyProof,
                              case_id: int) -> CourtSubmission:
    case = await get_case(s, case_id, lock=True)
    if who.case_id != case.id:
        raise Unauthorized("You are not a party of this case.")
    ag = await _effective_agreement(s, case)
    sub = await get_submission(s, case.id, "judicial_confirmation", lock=True)
    if sub is None:
        raise NotFound("No application has been prepared yet; choose the court first.")
    if sub.status != "collecting":
        raise Conflict("The application has already gone to the court.", code="already_submitted")
    await _confirm(s, cfg, ctx, case, ag, sub, who)
    return sub


async def _confirm(s: AsyncSession, cfg: OutcomeConfig, ctx: agr.SignContext, case: Case, ag: Agreement,
                   sub: CourtSubmission, who: agr.PartyProof) -> None:
    _check_deadline(ag)
    key = str(who.party_id)
    conf = dict(sub.confirmations or {})
    if key in conf:
        return
    now = dt.datetime.now(dt.timezone.utc)
    conf[key] = {"name": who.name, "side": who.side, "at": now.isoformat(), "via": who.via}
    sub.confirmations = conf
    await audit.append(s, who.ref(), "confirmation.confirmed", case_id=case.id,
                       data={"submission_id": sub.id, "party_id": who.party_id, "name": who.name, "via": who.via})
    if all(str(p.id) in conf for p in case.parties):
        await queue(s, cfg, ctx, case, sub, await build_confirmation_package(s, cfg, ctx, case, ag, sub))


# --- litigation filing ------------------------------------------------------------------------------------

async def request_filing(s: AsyncSession, cfg: OutcomeConfig, ctx: agr.SignContext, who: agr.PartyProof,
                         case_id: int, data: FilingIn) -> CourtSubmission:
    case = await get_case(s, case_id, lock=True)
    if who.case_id != case.id:
        raise Unauthorized("You are not a party of this case.")
    if case.status != "failed":
        raise Conflict("A court filing is requested after the mediator concluded the mediation as failed.",
                       code="illegal_transition", fields={"status": case.status, "action": "litigation_filing"})
    existing = await get_submission(s, case.id, "litigation_filing", lock=True)
    if existing is not None:
        raise Conflict("A filing request for this case has already been sent.", code="already_submitted")
    court = cfg.court(data.court_id) if data.court_id else default_court(cfg, case)
    if court is None:
        raise ValidationFailed("Choose a court from the list.", fields={"court_id": "unknown court"})
    sub = CourtSubmission(case_id=case.id, kind="litigation_filing", status="collecting", court_id=court["id"],
                          court_name=court["name"], basis="", key=uuid.uuid4().hex,
                          confirmations={str(who.party_id): {"name": who.name, "side": who.side, "via": who.via,
                                                             "at": dt.datetime.now(dt.timezone.utc).isoformat()}},
                          requested_by=who.name, manifest={}, answer={})
    s.add(sub)
    await s.flush()
    await audit.append(s, who.ref(), "filing.requested", case_id=case.id, data={
        "submission_id": sub.id, "court_id": court["id"], "court": court["name"], "party_id": who.party_id})
    await queue(s, cfg, ctx, case, sub, await build_filing_package(s, cfg, ctx, case, sub, who))
    return sub


# --- packages ---------------------------------------------------------------------------------------------

def zip_files(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


def json_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def file_entry(name: str, data: bytes, kind: str) -> dict:
    return {"name": name, "kind": kind, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


async def identity_summary(s: AsyncSession, case: Case, ag: Agreement | None) -> list[dict]:
    sigs = {x.party_id: x for x in await agr.signatures(s, ag.id)} if ag is not None else {}
    out = []
    for p in case.parties:
        sig = sigs.get(p.id)
        out.append({"party_id": p.id, "side": p.side, "name": p.name, "id_number": p.id_number or None,
                    "phone": p.phone or None, "address": p.address or None,
                    "identified_at_signing": {"method": sig.method, "signed_at": sig.signed_at.isoformat(),
                                              "signature_sha256": sig.image_sha256} if sig else None})
    return out


async def signed_pdf(cfg: OutcomeConfig, ctx: agr.SignContext, doc, reason: str, location: str) -> bytes:
    return await pdf.sign(await pdf.render_async(doc), ctx.identity, reason=reason, location=location,
                          tsa_url=ctx.tsa_url)


async def build_confirmation_package(s: AsyncSession, cfg: OutcomeConfig, ctx: agr.SignContext, case: Case,
                                     ag: Agreement, sub: CourtSubmission) -> tuple[bytes, dict]:
    tz = ctx.tz
    now = dt.datetime.now(dt.timezone.utc)
    parties = await identity_summary(s, case, ag)
    agreement_pdf = await agr.read_pdf(ctx.store, ag)
    party_lines = [f"{agr.SIDE_CN.get(p['side'], p['side'])}：{p['name']}"
                   + (f"，身份证件号码：{p['id_number']}" if p["id_number"] else "")
                   + (f"，住址：{p['address']}" if p["address"] else "")
                   + (f"，联系电话：{p['phone']}" if p["phone"] else "") + "。" for p in parties]
    confirmed = [f"{c['name']}：{dt.datetime.fromisoformat(c['at']).astimezone(tz):%Y-%m-%d %H:%M} 确认申请"
                 for c in (sub.confirmations or {}).values()]
    doc = pdf.Document(
        title="司法确认申请书",
        meta=[("调解组织", case.institution.name), ("调解协议编号", case.number),
              ("受理法院", sub.court_name), ("管辖依据", BASIS_CN.get(sub.basis, sub.basis))],
        sections=[
            pdf.Section("申请人", party_lines),
            pdf.Section("请求事项", [f"请求确认申请人于{pdf.today_cn(ag.effective_at, tz)}经{case.institution.name}调解达成的"
                                  f"《人民调解协议书》（编号{case.number}）有效。"]),
            pdf.Section("事实和理由", [
                f"申请人之间因{agr.CATEGORY_CN.get(case.category, '民间纠纷')}，经{case.institution.name}主持调解，"
                f"于{pdf.today_cn(ag.effective_at, tz)}自愿达成调解协议，协议已由各方当事人签名、调解员签名并加盖调解组织印章后生效。",
                "申请人依据《中华人民共和国民事诉讼法》第二百零五条、《中华人民共和国人民调解法》第三十三条的规定，"
                "自调解协议生效之日起三十日内共同向贵院申请司法确认。",
                "申请人承诺：出于解决纠纷的目的自愿达成协议，没有恶意串通、规避法律的行为；如因虚假调解给他人造成损失，愿意承担相应的法律责任。"]),
            pdf.Section("各方确认", confirmed),
            pdf.Section("附件", ["1. 人民调解协议书（电子签章版，agreement.pdf）",
                               "2. 当事人身份信息摘要（parties.json）", "3. 材料清单（manifest.json）"])],
        seal_name=case.institution.name, seal_caption="调解组织（代为提交）", seal_date=pdf.today_cn(now, tz),
        test_material=ctx.identity.test_material, footer_note=f"申请编号 {sub.key}",
        keywords=[f"case:{case.number}", f"submission:{sub.key}"], subject=f"{case.number} 司法确认申请",
        author=case.institution.name)
    application = await signed_pdf(cfg, ctx, doc, f"司法确认申请书 {case.number}", case.institution.name)
    files = {"application.pdf": application, "agreement.pdf": agreement_pdf,
             "parties.json": json_bytes({"case_number": case.number, "parties": parties})}
    manifest = {
        "format": "mediation-court-package/1", "kind": sub.kind, "key": sub.key, "created_at": now.isoformat(),
        "case": {"number": case.number, "category": case.category, "title": case.title,
                 "institution": case.institution.name},
        "court": {"id": sub.court_id, "name": sub.court_name, "basis": sub.basis},
        "deadline": ag.confirmation_deadline.isoformat(),
        "agreement": {"text_sha256": ag.text_sha256, "pdf_sha256": ag.pdf_sha256,
                      "effective_at": ag.effective_at.isoformat()},
        "confirmations": sub.confirmations,
        "files": [file_entry("application.pdf", application, "application"),
                  file_entry("agreement.pdf", agreement_pdf, "agreement"),
                  file_entry("parties.json", files["parties.json"], "identity_summary")],
    }
    return zip_files({"manifest.json": json_bytes(manifest), **files}), manifest


async def build_filing_package(s: AsyncSession, cfg: OutcomeConfig, ctx: agr.SignContext, case: Case,
                               sub: CourtSubmission, who: agr.PartyProof) -> tuple[bytes, dict]:
    tz = ctx.tz
    now = dt.datetime.now(dt.timezone.utc)
    parties = await identity_summary(s, case, None)
    plaintiff = next(p for p in parties if p["party_id"] == who.party_id)
    defendants = [p for p in parties if p["side"] != plaintiff["side"]] or [p for p in parties if p is not plaintiff]
    entries = list((await s.execute(select(AuditEntry).where(AuditEntry.case_id == case.id)
                                    .order_by(AuditEntry.seq))).scalars().all())
    fail = next((e for e in reversed(entries) if e.action == "case.fail"), None)
    note = (fail.data or {}).get("note", "") if fail else ""
    sessions = await session_svc.list_sessions(s, case.id)
    record = {
        "case_number": case.number, "institution": case.institution.name, "category": case.category,
        "filed_at": case.created_at.isoformat(),
        "concluded": {"result": "failed", "at": fail.created_at.isoformat() if fail else None,
                      "by": fail.actor_name if fail else None, "reasons": note},
        "sessions": [{"id": x.id, "scheduled_at": x.scheduled_at, "started_at": x.started_at,
                      "ended_at": x.ended_at, "status": x.status} for x in sessions],
        "steps": [{"at": e.created_at.isoformat(), "action": e.action, "by": e.actor_name} for e in entries
                  if e.action.startswith(("case.", "session.")) and e.action not in ("case.viewed", "case.verified",
                                                                                      "case.exported")],
    }

    def line(p):
        return (f"{p['name']}" + (f"，身份证件号码：{p['id_number']}" if p["id_number"] else "")
                + (f"，住址：{p['address']}" if p["address"] else "")
                + (f"，联系电话：{p['phone']}" if p["phone"] else "") + "。")

    session_lines = [f"第{i + 1}次调解：{(x.started_at or x.scheduled_at or x.created_at).astimezone(tz):%Y-%m-%d %H:%M}"
                     for i, x in enumerate(sessions)] or ["（无在线调解记录）"]
    doc = pdf.Document(
        title="民事起诉状（草稿）",
        meta=[("受诉法院", sub.court_name), ("调解组织", case.institution.name), ("调解案件编号", case.number)],
        sections=[
            pdf.Section("原告", [line(plaintiff)]),
            pdf.Section("被告", [line(p) for p in defendants] or ["（待补充）"]),
            pdf.Section("诉讼请求", ["（请原告根据实际情况填写具体诉讼请求）"]),
            pdf.Section("事实和理由", [x for x in case.description.split("\n") if x.strip()]),
            pdf.Section("调解情况", [f"本纠纷经{case.institution.name}调解，未能达成调解协议。"]
                        + ([f"调解员记录的调解不成原因：{note}"] if note else []) + session_lines),
            pdf.Section("说明", ["本起诉状草稿由调解平台依据调解记录生成，供原告核对、修改后向人民法院提交；"
                               "随附调解记录摘要（mediation_record.json）及当事人信息（parties.json）。"])],
        test_material=ctx.identity.test_material, footer_note=f"申请编号 {sub.key}",
        keywords=[f"case:{case.number}", f"submission:{sub.key}"], subject=f"{case.number} 诉讼立案申请",
        author=case.institution.name)
    complaint = await signed_pdf(cfg, ctx, doc, f"诉讼立案材料 {case.number}", case.institution.name)
    files = {"complaint.pdf": complaint, "mediation_record.json": json_bytes(record),
             "parties.json": json_bytes({"case_number": case.number, "parties": parties})}
    manifest = {
        "format": "mediation-court-package/1", "kind": sub.kind, "key": sub.key, "created_at": now.isoformat(),
        "case": {"number": case.number, "category": case.category, "title": case.title,
                 "institution": case.institution.name},
        "court": {"id": sub.court_id, "name": sub.court_name},
        "requested_by": {"party_id": who.party_id, "name": who.name, "side": who.side, "via": who.via},
        "files": [file_entry(n, d, k) for (n, d), k in zip(files.items(),
                                                           ("draft_complaint", "mediation_record", "parties"))],
    }
    return zip_files({"manifest.json": json_bytes(manifest), **files}), manifest


async def queue(s: AsyncSession, cfg: OutcomeConfig, ctx, case: Case, sub: CourtSubmission,
                built: tuple[bytes, dict]) -> None:
    """Put a built package (zip bytes, manifest) into the court outbox, in the caller's transaction."""
    package, manifest = built
    now = dt.datetime.now(dt.timezone.utc)
    sub.package = package
    sub.package_sha256 = hashlib.sha256(package).hexdigest()
    sub.manifest = manifest
    sub.status = "queued"
    sub.queued_at = now
    msg = OutboxMessage(submission_id=sub.id, adapter=cfg.adapter, status="pending", attempts=0,
                        next_attempt_at=now, last_error="", response={})
    s.add(msg)
    await s.flush()
    await audit.append(s, audit.SYSTEM, "court.queued", case_id=case.id, data={
        "submission_id": sub.id, "kind": sub.kind, "key": sub.key, "court": sub.court_name,
        "package_sha256": sub.package_sha256, "files": manifest.get("files"), "adapter": msg.adapter})
    await events.publish(s, events.JobEnqueued("court"))


# --- court answers ------------------------------------------------------------------------------------------

def check_callback_signature(cfg: OutcomeConfig, body: bytes, header: str | None) -> None:
    if not cfg.callback_secret:
        raise Forbidden("Court callbacks are not enabled (COURT_CALLBACK_SECRET).", code="callback_disabled")
    expected = "sha256=" + hmac.new(cfg.callback_secret.encode(), body, hashlib.sha256).hexdigest()
    if not header or not hmac.compare_digest(header.strip(), expected):
        raise Unauthorized("The callback signature does not match.", code="bad_signature")


MAX_RULING_BYTES = 10 * 1024 * 1024


def check_ruling_signature(cfg: OutcomeConfig, key: str, body: bytes, header: str | None) -> None:
    """The ruling's signature covers the submission key and the file (`key` LF body), so a signed ruling
    cannot be replayed onto another submission."""
    check_callback_signature(cfg, key.encode() + b"\n" + body, header)


async def attach_ruling(s: AsyncSession, store: FileStore, key: str, data: bytes, judge: str = "") -> CourtSubmission:
    """The court's ruling on a judicial confirmation (裁定书, PDF), sent after its decision: stored with the
    agreements, its SHA-256 in the submission's answer and the audit chain. The same file again is a no-op."""
    sub = (await s.execute(select(CourtSubmission).where(CourtSubmission.key == key)
                           .with_for_update())).scalar_one_or_none()
    if sub is None:
        raise NotFound("No such submission.")
    if sub.kind != "judicial_confirmation":
        raise ValidationFailed("A ruling answers a judicial confirmation.", fields={"submission": "not a confirmation"})
    if sub.status not in ("confirmed", "rejected"):
        raise Conflict("Send the decision (confirmed or rejected) first, then its ruling.", code="not_decided")
    if not data.startswith(b"%PDF-"):
        raise ValidationFailed("The ruling must be a PDF file.", fields={"file": "not a PDF"})
    digest = hashlib.sha256(data).hexdigest()
    known = (sub.answer or {}).get("ruling")
    if known:
        if known.get("sha256") == digest:
            return sub  # the court sent it again (a retry): nothing changes
        raise Conflict("A different ruling is already attached to this submission.", code="already_attached",
                       fields={"sha256": known.get("sha256")})
    review_id = (sub.answer or {}).get("review_id")
    review = await s.get(CourtReview, review_id) if review_id else None
    stored, digest = await store.put(data, ".pdf")
    now = dt.datetime.now(dt.timezone.utc)
    link = {"review_id": review.id, "session_id": review.session_id} if review else {}
    sub.answer = {**(sub.answer or {}), "ruling": {"key": stored, "sha256": digest, "size": len(data),
                                                   "judge": judge or (review.judge if review else ""),
                                                   "at": now.isoformat(), **link}}
    try:
        await audit.append(s, audit.ActorRef("court", sub.court_id, sub.court_name), "court.ruling",
                           case_id=sub.case_id, session_id=review.session_id if review else None,
                           data={"submission_id": sub.id, "decision": sub.status, "sha256": digest,
                                 "size": len(data), "judge": judge or (review.judge if review else ""),
                                 "reference": sub.court_reference, **link})
    except BaseException:
        await store.delete(stored)
        raise
    return sub


async def record_answer(s: AsyncSession, data: CallbackIn) -> CourtSubmission:
    sub = (await s.execute(select(CourtSubmission).where(CourtSubmission.key == data.submission)
                           .with_for_update())).scalar_one_or_none()
    if sub is None:
        raise NotFound("No such submission.")
    if data.status not in ANSWERS[sub.kind]:
        raise ValidationFailed(f"'{data.status}' is not an answer to a {sub.kind}.", fields={"status": "not allowed"})
    if sub.status in ("collecting", "queued"):
        raise Conflict("The court cannot answer a submission it has not received.", code="not_delivered")
    if sub.status in ("confirmed", "rejected", "filed") and sub.status != data.status:
        raise Conflict("The court has already given its final answer.", code="already_answered")
    now = dt.datetime.now(dt.timezone.utc)
    before = sub.status
    sub.status = data.status
    sub.answered_at = now
    if data.reference:
        sub.court_reference = data.reference
    sub.answer = {"status": data.status, "reference": data.reference, "message": data.message, "at": now.isoformat()}
    # A decision after an online review belongs to that review's session in the record (outcome/review.py).
    review = (await review_svc.decided(s, sub, data.status) if sub.kind == "judicial_confirmation"
              and data.status in ("confirmed", "rejected") and before != data.status else None)
    if review is not None:
        sub.answer = {**sub.answer, "review_id": review.id}  # a new dict: JSON columns do not track edits
    await audit.append(s, audit.ActorRef("court", sub.court_id, sub.court_name), "court.answer", case_id=sub.case_id,
                       session_id=review.session_id if review else None,
                       data={"submission_id": sub.id, "kind": sub.kind, "from_status": before, "status": data.status,
                             "reference": data.reference, "message": data.message,
                             **({"review_id": review.id} if review else {})})
    if review is not None:
        await review_svc.close(s, sub, review)
    return sub


# --- delivery -----------------------------------------------------------------------------------------------

class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass
class Delivery:
    key: str
    kind: str
    court_id: str
    package: bytes
    package_sha256: str


async def deliver_directory(cfg: OutcomeConfig, d: Delivery) -> dict:
    """<outbox>/<court id>/<key>/ holding the package's files; written aside and renamed into place."""
    def write() -> dict:
        court_dir = cfg.outbox_dir / d.court_id
        target = court_dir / d.key
        if target.exists():
            return {"path": str(target), "repeat": True}
        court_dir.mkdir(parents=True, exist_ok=True)
        tmp = court_dir / f".{d.key}.part"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with zipfile.ZipFile(io.BytesIO(d.package)) as z:
            for name in z.namelist():
                if "/" in name or name.startswith("."):
                    raise DeliveryError(f"bad member name {name!r}", permanent=True)
                (tmp / name).write_bytes(z.read(name))
        (tmp / "package.sha256").write_text(f"{d.package_sha256}  package.zip\n")
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        os.rename(tmp, target)
        return {"path": str(target)}
    try:
        return await asyncio.to_thread(write)
    except OSError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}")


async def deliver_http(cfg: OutcomeConfig, d: Delivery) -> dict:
    import aiohttp
    headers = {"Content-Type": "application/zip", "Idempotency-Key": d.key, "X-Package-SHA256": d.package_sha256,
               "X-Submission-Kind": d.kind, "X-Court-Id": d.court_id}
    if cfg.court_token:
        headers["Authorization"] = f"Bearer {cfg.court_token}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.http_timeout)) as http:
            async with http.post(cfg.court_endpoint, data=d.package, headers=headers) as resp:
                text = (await resp.text())[:2000]
                if resp.status in (200, 201, 202) or resp.status == 409:
                    try:
                        body = json.loads(text) if text else {}
                    except ValueError:
                        body = {"text": text}
                    return {"http_status": resp.status, "body": body if isinstance(body, dict) else {"body": body}}
                permanent = 400 <= resp.status < 500 and resp.status not in (408, 425, 429)
                raise DeliveryError(f"HTTP {resp.status}: {text[:300]}", permanent=permanent)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}")


ADAPTERS = {"directory": deliver_directory, "http": deliver_http}


def backoff(cfg: OutcomeConfig, attempts: int) -> float:
    delay = min(cfg.retry_max, cfg.retry_base * (2 ** max(0, attempts - 1)))
    return delay * random.uniform(0.85, 1.15)


class CourtOutbox:
    """The background worker that empties the court outbox (one per process; several nodes may run one each)."""

    def __init__(self, db, cfg: OutcomeConfig):
        self.db = db
        self.cfg = cfg
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_reminders = 0.0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 15)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
                loop = asyncio.get_running_loop()
                if loop.time() - self._last_reminders > 600:
                    self._last_reminders = loop.time()
                    await send_reminders(self.db)
            except Exception:  # noqa: BLE001 - keep delivering through database hiccups
                log.exception("court outbox round failed")
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), await self._sleep_for())
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _sleep_for(self) -> float:
        """Until the next message is due (at most the poll interval)."""
        try:
            async with self.db.read() as s:
                nxt = (await s.execute(select(OutboxMessage.next_attempt_at).where(OutboxMessage.status == "pending")
                                       .order_by(OutboxMessage.next_attempt_at).limit(1))).scalar_one_or_none()
        except Exception:  # noqa: BLE001
            return self.cfg.poll_interval
        if nxt is None:
            return self.cfg.poll_interval
        return max(0.05, min(self.cfg.poll_interval, (nxt - utcnow()).total_seconds()))

    async def run_once(self) -> int:
        """Try every due message once; returns how many were delivered."""
        now = utcnow()
        async with self.db.read() as s:
            ids = list((await s.execute(
                select(OutboxMessage.id).where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                                               or_(OutboxMessage.locked_until.is_(None),
                                                   OutboxMessage.locked_until < now))
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(10))).scalars().all())
        delivered = 0
        for mid in ids:
            if self._stopping:
                break
            if await self._deliver_one(mid):
                delivered += 1
        return delivered

    async def _claim(self, mid: int) -> Delivery | None:
        now = utcnow()
        async with self.db.session() as s:
            res = await s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == mid, OutboxMessage.status == "pending",
                       or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now))
                .values(locked_until=now + dt.timedelta(seconds=self.cfg.lease_seconds),
                        attempts=OutboxMessage.attempts + 1)
                .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                return None  # another worker has it
            msg = await s.get(OutboxMessage, mid)
            sub = await s.get(CourtSubmission, msg.submission_id)
            return Delivery(sub.key, sub.kind, sub.court_id, sub.package or b"", sub.package_sha256 or "")

    async def _deliver_one(self, mid: int) -> bool:
        d = await self._claim(mid)
        if d is None:
            return False
        async with self.db.read() as s:
            adapter_name = (await s.get(OutboxMessage, mid)).adapter
        adapter = ADAPTERS.get(adapter_name)
        error: DeliveryError | None = None
        result: dict = {}
        try:
            if adapter is None:
                raise DeliveryError(f"unknown adapter {adapter_name!r}", permanent=True)
            if adapter_name == "http" and not self.cfg.court_endpoint:
                raise DeliveryError("COURT_ENDPOINT is not configured")
            result = await adapter(self.cfg, d)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - any other failure: try again later
            error = DeliveryError(f"{type(exc).__name__}: {exc}")
        await self._record(mid, result, error)
        return error is None

    async def _record(self, mid: int, result: dict, error: DeliveryError | None) -> None:
        now = utcnow()
        async with self.db.session() as s:
            msg = await s.get(OutboxMessage, mid, with_for_update=True)
            sub = await s.get(CourtSubmission, msg.submission_id, with_for_update=True)
            msg.locked_until = None
            if error is None:
                msg.status = "delivered"
                msg.delivered_at = now
                msg.last_error = ""
                msg.response = json.loads(json.dumps(result, default=str))
                if sub.status == "queued":
                    sub.status = "delivered"
                sub.delivered_at = now
                body = (result.get("body") or {}) if isinstance(result, dict) else {}
                ref = body.get("reference") if isinstance(body, dict) else None
                if isinstance(ref, str) and ref:
                    sub.court_reference = ref[:100]
                await audit.append(s, audit.SYSTEM, "court.delivered", case_id=sub.case_id, data={
                    "submission_id": sub.id, "kind": sub.kind, "key": sub.key, "adapter": msg.adapter,
                    "attempts": msg.attempts, "court": sub.court_name, "package_sha256": sub.package_sha256,
                    "reference": sub.court_reference})
                log.info("court package %s delivered via %s after %s attempt(s)", sub.key, msg.adapter, msg.attempts)
                return
            msg.last_error = str(error)[:2000]
            dead = error.permanent or msg.attempts >= self.cfg.max_attempts
            if dead:
                msg.status = "dead"
                sub.status = "failed"
            else:
                msg.next_attempt_at = now + dt.timedelta(seconds=backoff(self.cfg, msg.attempts))
            await audit.append(s, audit.SYSTEM, "court.delivery_failed", case_id=sub.case_id, data={
                "submission_id": sub.id, "key": sub.key, "adapter": msg.adapter, "attempt": msg.attempts,
                "error": msg.last_error[:300], "gave_up": dead,
                "next_attempt_at": None if dead else msg.next_attempt_at})
            log.warning("court package %s attempt %s failed (%s)%s", sub.key, msg.attempts, msg.last_error[:200],
                        "; giving up" if dead else "")


async def retry_now(s: AsyncSession, actor: Actor, case_id: int, submission_id: int) -> CourtSubmission:
    """The mediator asks for an immediate new attempt (after a court outage, or a dead message)."""
    case = await get_case(s, case_id)
    require_case_mediator(actor, case)
    sub = await s.get(CourtSubmission, submission_id)
    if sub is None or sub.case_id != case.id:
        raise NotFound("No such submission.")
    msg = (await s.execute(select(OutboxMessage).where(OutboxMessage.submission_id == sub.id)
                           .with_for_update())).scalar_one_or_none()
    if msg is None or msg.status == "delivered":
        raise Conflict("Nothing is waiting to be delivered.", code="nothing_to_retry")
    msg.status = "pending"
    msg.next_attempt_at = utcnow()
    if sub.status == "failed":
        sub.status = "queued"
    await audit.append(s, actor.ref(), "court.retry", case_id=case.id, data={"submission_id": sub.id})
    await events.publish(s, events.JobEnqueued("court"))
    return sub


async def send_reminders(db) -> int:
    """Audit-log a reminder when an effective agreement's confirmation deadline is 7, 3 or 1 day(s) away
    and the parties have not yet applied (shown on every outcome page as well)."""
    now = utcnow()
    sent = 0
    near = (Agreement.status == "effective", Agreement.confirmation_deadline > now,
            Agreement.confirmation_deadline <= now + dt.timedelta(days=max(REMINDER_DAYS)))
    async with db.read() as s:  # most rounds find nothing: no write transaction for them
        if not (await s.execute(select(Agreement.id).where(*near).limit(1))).first():
            return 0
    async with db.session() as s:
        rows = (await s.execute(select(Agreement).where(*near).with_for_update())).scalars().all()
        for ag in rows:
            sub = await get_submission(s, ag.case_id, "judicial_confirmation")
            if sub is not None and sub.status != "collecting":
                continue
            left = days_left(ag.confirmation_deadline, now)
            due = [d for d in REMINDER_DAYS if left <= d and str(d) not in (ag.reminders or {})]
            if not due:
                continue
            ag.reminders = {**(ag.reminders or {}), **{str(d): now.isoformat() for d in due}}
            await audit.append(s, audit.SYSTEM, "confirmation.reminder", case_id=ag.case_id,
                               data={"days_left": left, "deadline": ag.confirmation_deadline})
            sent += 1
    return sent


# --- runtime -------------------------------------------------------------------------------------------------

class OutcomeRuntime:
    """What the outcome routes share in one app: configuration, the agreements' file store, the seal, the worker."""

    def __init__(self, settings, db, cfg: OutcomeConfig | None = None):
        self.settings = settings
        self.db = db
        self.cfg = cfg or OutcomeConfig.from_env(settings)
        self.store = FileStore(self.cfg.agreements_dir)
        self.worker = CourtOutbox(db, self.cfg)

    def identity(self):
        return certs.load_identity(self.cfg.data_dir)

    def sign_ctx(self) -> agr.SignContext:
        return agr.SignContext(store=self.store, identity=self.identity(),
                               tz=ZoneInfo(getattr(self.settings, "display_tz", None) or "Asia/Shanghai"),
                               tsa_url=self.cfg.tsa_url)

    async def start(self) -> None:
        self.identity()  # a first start in development creates the TEST ONLY certificates
        if self.cfg.worker:
            self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
