"""The settlement agreement (人民调解协议书): drafting, comments, finalising, signatures, effect and seal.

Rules (People's Mediation Law art. 28-29; SPC Online Mediation Rules art. 19):
- the case's mediator drafts the agreement from a template of the case's category while the
  case is in mediation, and finalises it; from then on its text and SHA-256 are fixed and any
  edit is refused (409 ``agreement_final``);
- every party signs the final text with a handwritten signature after proving who they are
  (the applicant: case number + phone + access code; anyone: their personal link from the
  mediator; plus the last six characters of the ID number when one is on file); the mediator
  signs; a party can only ever sign as themselves (the proof names the party, not the form);
- when all parties and the mediator have signed the agreement takes effect: the case becomes
  ``settled`` through the workflow, the PDF is rendered with every signature and the
  institution's seal, signed with PAdES as the institution, stored, and its SHA-256 written to
  the audit chain together with every signature event.

One module (~680 lines): the agreement's life from draft to seal is one state machine; splitting it would scatter its checks.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit, events
from server.core.errors import AppError, Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from server.core.models import Agreement, AgreementComment, AgreementSignature, Case, Party, PartyLink
from server.core.policy import Actor, require_case_mediator, require_view
from server.core.schemas import CATEGORIES, Day, Id, Strict
from server.core.security import token_digest
from server.core.throttle import guard
from server.infra import pdf
from server.services.cases import get_case, transition
from server.services.procedure import deadlines

CONFIRMATION_DAYS = deadlines.RULES["confirmation"].days  # Civil Procedure Law art. 205
LINK_DAYS = 30
MAX_LINK_DAYS = 60
MAX_SIGNATURE_BYTES = 400 * 1024
DRAFT_STATUSES = ("in_mediation",)
SIGN_STATUSES = ("in_mediation", "settled")

CATEGORY_CN = {
    "labour": "劳动争议", "family": "婚姻家庭纠纷", "neighbour": "邻里纠纷", "property": "土地房产纠纷",
    "medical": "医疗纠纷", "fishery": "渔业纠纷", "shipping": "港航纠纷", "construction": "建设工程纠纷",
    "consumer": "消费纠纷", "other": "民间纠纷",
}
SIDE_CN = {"applicant": "申请人", "respondent": "被申请人"}
NUMERALS = "一二三四五六七八九十"

# Starting terms per category; "{A}" is the applicant, "{R}" the respondent(s).
TEMPLATES: dict[str, list[str]] = {
    "labour": ["{R}于履行期限届满前向{A}支付拖欠的劳动报酬共计人民币____元（大写：____元整）。",
               "{A}收到上述款项后，双方就本次劳动报酬纠纷再无其他争议。"],
    "family": ["双方就____事项达成一致：____。",
               "双方今后互谅互让、和睦相处，不再因本纠纷发生争执。"],
    "neighbour": ["{R}于履行期限届满前完成____（如排水设施、围墙等）的整改，恢复原状。",
                  "整改完成后，双方今后互谅互让、和睦相处，不再因本纠纷发生争执。"],
    "property": ["双方确认争议房屋（土地）的使用范围为：____。",
                 "{R}于履行期限届满前向{A}支付补偿款人民币____元。",
                 "本协议履行完毕后，双方就本纠纷再无其他争议。"],
    "medical": ["{R}一次性补偿{A}医疗费、误工费等各项损失共计人民币____元。",
                "{A}收到上述款项后，不再就本次医疗纠纷向{R}主张任何权利。"],
    "fishery": ["{R}于履行期限届满前赔偿{A}渔具、渔获等损失共计人民币____元。",
                "本协议履行完毕后，双方就本纠纷再无其他争议。"],
    "shipping": ["{R}于履行期限届满前赔偿{A}船舶、货物等损失共计人民币____元。",
                 "本协议履行完毕后，双方就本纠纷再无其他争议。"],
    "construction": ["{R}于履行期限届满前向{A}支付工程款人民币____元。",
                     "{A}在收到款项后____日内完成____（如质量整改、资料移交）。",
                     "本协议履行完毕后，双方就本纠纷再无其他争议。"],
    "consumer": ["{R}于履行期限届满前为{A}办理退货（换货、维修），并退还价款人民币____元。",
                 "本协议履行完毕后，双方就本纠纷再无其他争议。"],
    "other": ["{R}于履行期限届满前向{A}____。",
              "本协议履行完毕后，双方就本纠纷再无其他争议。"],
}

Template = Literal["labour", "family", "neighbour", "property", "medical", "fishery", "shipping", "construction",
                   "consumer", "other"]
Term = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class DraftIn(Strict):
    """A change to the draft; fields left out keep their value. `version` guards against lost updates."""

    template: Template | None = None
    facts: Annotated[str, StringConstraints(strip_whitespace=True, max_length=10000)] | None = None
    terms: list[Term] | None = Field(default=None, max_length=30)
    performance_deadline: Day | None = None
    version: int | None = Field(default=None, ge=1)


class FinaliseIn(Strict):
    version: int | None = Field(default=None, ge=1)


class CommentIn(Strict):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class SignIn(Strict):
    signature: Annotated[str, StringConstraints(min_length=20, max_length=MAX_SIGNATURE_BYTES * 2)]
    text_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    id_last6: Annotated[str, StringConstraints(strip_whitespace=True, max_length=6)] | None = None
    agree: bool = True


class LinkIn(Strict):
    party_id: Id
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{17}[0-9Xx]$|^[A-Za-z0-9]{6,20}$")] | None = None
    days: int = Field(default=LINK_DAYS, ge=1, le=MAX_LINK_DAYS)


# --- who signs -------------------------------------------------------------------------------------

@dataclass
class PartyProof:
    """A party, proven by the applicant's access code (via "access_code") or their personal link (via "link")."""

    case_id: int
    party_id: int
    name: str
    side: str
    via: str

    def ref(self) -> audit.ActorRef:
        return audit.ActorRef("applicant" if self.via == "access_code" else "party", str(self.party_id), self.name)


def actor_party(actor: Actor, case: Case) -> PartyProof:
    """The applicant behind an access-code login."""
    if actor.applicant_case_id != case.id:
        raise Unauthorized("Prove who you are with the case's access code or your personal link.")
    p = next(p for p in case.parties if p.side == "applicant")
    return PartyProof(case.id, p.id, p.name, p.side, "access_code")


async def resolve_link(s: AsyncSession, token: str, *, touch: bool = False) -> tuple[Case, PartyProof]:
    """A party's personal link; one vague error for unknown, expired or withdrawn links."""
    if not token or not 20 <= len(token) <= 100:
        raise Unauthorized("This link is not valid.", code="link_invalid")
    link = (await s.execute(select(PartyLink).where(PartyLink.token_hash == token_digest(token)))).scalar_one_or_none()
    now = dt.datetime.now(dt.timezone.utc)
    if link is None or link.revoked_at is not None or link.expires_at < now:
        raise Unauthorized("This link is not valid, has expired or was withdrawn.", code="link_invalid")
    case = await get_case(s, link.case_id)
    party = next((p for p in case.parties if p.id == link.party_id), None)
    if party is None:
        raise Unauthorized("This link is not valid.", code="link_invalid")
    if touch:
        link.last_used_at = now
    return case, PartyProof(case.id, party.id, party.name, party.side, "link")


def mask_id(value: str) -> str:
    if not value:
        return ""
    if len(value) <= 8:
        return value[:2] + "*" * (len(value) - 4) + value[-2:]
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


# --- text -----------------------------------------------------------------------------------------------

def _names(case: Case, side: str) -> str:
    return "、".join(p.name for p in case.parties if p.side == side) or SIDE_CN[side]


def template_terms(case: Case, template: str) -> list[str]:
    a, r = _names(case, "applicant"), _names(case, "respondent")
    return [t.replace("{A}", a).replace("{R}", r) for t in TEMPLATES.get(template, TEMPLATES["other"])]


def _party_line(p: Party) -> str:
    bits = [f"{SIDE_CN.get(p.side, p.side)}：{p.name}"]
    if p.id_number:
        bits.append(f"身份证件号码：{mask_id(p.id_number)}")
    if p.address:
        bits.append(f"住址：{p.address}")
    return "，".join(bits) + "。"


def cn_date(d: dt.date | str | None) -> str:
    if not d:
        return "____年__月__日"
    if isinstance(d, str):
        d = dt.date.fromisoformat(d)
    return f"{d.year}年{d.month}月{d.day}日"


def numeral(i: int) -> str:
    if i <= 10:
        return NUMERALS[i - 1]
    tens, ones = divmod(i, 10)
    return (NUMERALS[tens - 1] if tens > 1 else "") + "十" + (NUMERALS[ones - 1] if ones else "")


TITLE = "人民调解协议书"


def structure(case: Case, content: dict) -> tuple[list[tuple[str, str]], list[tuple[str, list[str]]]]:
    """(meta lines, sections) of the agreement: the single source of the text and of the PDF."""
    meta = [("编号", case.number), ("调解组织", case.institution.name),
            ("纠纷类型", CATEGORY_CN.get(content.get("template") or case.category, "民间纠纷"))]
    terms = content.get("terms") or []
    sections = [
        ("当事人", [_party_line(p) for p in case.parties]),
        ("纠纷主要事实、争议事项", [x for x in (content.get("facts") or "").split("\n") if x.strip()] or ["（待填写）"]),
        ("经调解，各方当事人自愿达成如下协议",
         [f"{numeral(i + 1)}、{t.lstrip('一二三四五六七八九十、.0123456789 ')}" for i, t in enumerate(terms)]
         or ["（待填写）"]),
        ("履行方式、时限", [f"各方当事人应于{cn_date(content.get('performance_deadline'))}前履行完毕本协议约定的义务。"]),
        ("协议效力", ["本协议自各方当事人签名、调解员签名并加盖调解组织印章之日起生效，具有法律约束力，当事人应当按照约定履行。",
                  f"本协议生效后，各方当事人可以自协议生效之日起{CONFIRMATION_DAYS}日内共同向有管辖权的人民法院申请司法确认。"]),
    ]
    return meta, sections


def fixed_structure(case: Case, content: dict):
    """The structure as finalised (kept in the content), so the PDF shows exactly the hashed text even if the
    case's records change later (e.g. an ID number recorded afterwards)."""
    doc = content.get("document")
    if doc:
        return [tuple(x) for x in doc["meta"]], [(h, list(p)) for h, p in doc["sections"]]
    return structure(case, content)


def render_text(case: Case, content: dict) -> str:
    meta, sections = fixed_structure(case, content)
    lines = [TITLE] + [f"{k}：{v}" for k, v in meta]
    for heading, paras in sections:
        lines.append("")
        lines.append(heading)
        lines += paras
    return "\n".join(lines) + "\n"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- reading ------------------------------------------------------------------------------------------

async def get_for_case(s: AsyncSession, case_id: int, *, lock: bool = False) -> Agreement | None:
    q = select(Agreement).where(Agreement.case_id == case_id)
    if lock:
        q = q.with_for_update()
    return (await s.execute(q)).scalar_one_or_none()


async def signatures(s: AsyncSession, agreement_id: int) -> list[AgreementSignature]:
    return list((await s.execute(select(AgreementSignature).where(AgreementSignature.agreement_id == agreement_id)
                                 .order_by(AgreementSignature.signed_at, AgreementSignature.id))).scalars().all())


async def comments(s: AsyncSession, agreement_id: int, limit: int = 200) -> list[AgreementComment]:
    rows = (await s.execute(select(AgreementComment).where(AgreementComment.agreement_id == agreement_id)
                            .order_by(AgreementComment.id.desc()).limit(limit))).scalars().all()
    return list(reversed(rows))


def signer_rows(case: Case, sigs: list[AgreementSignature]) -> list[dict]:
    """Who must sign, in order (parties, then the mediator), and whether they have."""
    by_key = {x.signer_key: x for x in sigs}
    rows = []
    for p in case.parties:
        sig = by_key.get(f"party:{p.id}")
        rows.append({"key": f"party:{p.id}", "role": "party", "side": p.side, "party_id": p.id, "name": p.name,
                     "signed": sig is not None, "signed_at": sig.signed_at.isoformat() if sig else None,
                     "method": sig.method if sig else None, "image_sha256": sig.image_sha256 if sig else None,
                     "signature_id": sig.id if sig else None, "id_on_file": bool(p.id_number)})
    m = by_key.get("mediator")
    rows.append({"key": "mediator", "role": "mediator", "side": "", "party_id": None,
                 "name": m.name if m else (case.mediator.name if case.mediator else ""),
                 "signed": m is not None, "signed_at": m.signed_at.isoformat() if m else None,
                 "method": m.method if m else None, "image_sha256": m.image_sha256 if m else None,
                 "signature_id": m.id if m else None, "id_on_file": False})
    return rows


def view(ag: Agreement, case: Case, sigs: list[AgreementSignature] | None = None, *, staff: bool = True) -> dict:
    d = {"id": ag.id, "case_id": ag.case_id, "case_number": case.number, "status": ag.status,
         "version": ag.version, "template": ag.template, "content": ag.content, "text": ag.text,
         "text_sha256": ag.text_sha256, "created_at": ag.created_at.isoformat(),
         "updated_at": ag.updated_at.isoformat(),
         "finalised_at": ag.finalised_at.isoformat() if ag.finalised_at else None,
         "effective_at": ag.effective_at.isoformat() if ag.effective_at else None,
         "confirmation_deadline": ag.confirmation_deadline.isoformat() if ag.confirmation_deadline else None,
         "pdf_sha256": ag.pdf_sha256, "pdf_size": ag.pdf_size, "seal": ag.seal or {}}
    if sigs is not None:
        d["signers"] = signer_rows(case, sigs)
    if not staff:
        d["content"] = {k: v for k, v in (ag.content or {}).items() if k in ("template", "facts", "terms",
                                                                            "performance_deadline")}
    return d


# --- drafting ------------------------------------------------------------------------------------------

def _check_draftable(case: Case, ag: Agreement | None) -> None:
    if ag is not None and ag.status != "draft":
        raise Conflict("The agreement has been finalised; its text can no longer change.", code="agreement_final")
    if case.status not in DRAFT_STATUSES:
        raise Conflict("An agreement is drafted while the case is in mediation.", code="illegal_transition",
                       fields={"status": case.status, "action": "draft_agreement"})


async def save_draft(s: AsyncSession, actor: Actor, case_id: int, data: DraftIn) -> Agreement:
    case = await get_case(s, case_id, lock=True)
    user = require_case_mediator(actor, case)
    ag = await get_for_case(s, case.id, lock=True)
    _check_draftable(case, ag)
    now = dt.datetime.now(dt.timezone.utc)
    if ag is None:
        template = data.template or (case.category if case.category in CATEGORIES else "other")
        content = {"template": template, "facts": case.description, "terms": template_terms(case, template),
                   "performance_deadline": None}
        ag = Agreement(case_id=case.id, template=template, status="draft", version=1, content=content,
                       text="", created_by=user.id, created_at=now, updated_at=now, seal={}, reminders={})
        s.add(ag)
        created = True
    else:
        if data.version is not None and data.version != ag.version:
            raise Conflict(f"The draft changed meanwhile (now version {ag.version}); reload it and edit again.",
                           code="version_conflict", fields={"version": ag.version})
        created = False
    content = dict(ag.content or {})
    if data.template is not None and data.template != ag.template:
        ag.template = data.template
        content["template"] = data.template
        if data.terms is None:
            content["terms"] = template_terms(case, data.template)
    if data.facts is not None:
        content["facts"] = data.facts
    if data.terms is not None:
        content["terms"] = [t for t in data.terms if t.strip()]
    if data.performance_deadline is not None:
        content["performance_deadline"] = data.performance_deadline.isoformat()
    if not created:
        ag.version += 1
    ag.content = content
    ag.text = render_text(case, content)
    ag.updated_at = now
    await s.flush()
    await audit.append(s, actor.ref(), "agreement.drafted" if created else "agreement.updated", case_id=case.id,
                       data={"agreement_id": ag.id, "version": ag.version, "template": ag.template,
                             "text_sha256": sha256_text(ag.text)})
    await events.publish(s, events.AgreementChanged(case_id=case.id, what="draft"))
    return ag


async def finalise(s: AsyncSession, actor: Actor, case_id: int, data: FinaliseIn) -> Agreement:
    case = await get_case(s, case_id, lock=True)
    require_case_mediator(actor, case)
    ag = await get_for_case(s, case.id, lock=True)
    if ag is None:
        raise NotFound("There is no draft agreement yet.")
    _check_draftable(case, ag)
    if data.version is not None and data.version != ag.version:
        raise Conflict(f"The draft changed meanwhile (now version {ag.version}); review it again.",
                       code="version_conflict", fields={"version": ag.version})
    c = ag.content or {}
    missing = {}
    if not (c.get("facts") or "").strip():
        missing["facts"] = "required"
    if not c.get("terms"):
        missing["terms"] = "required"
    elif any("____" in t for t in c["terms"]):
        missing["terms"] = "blanks left"
    if not c.get("performance_deadline"):
        missing["performance_deadline"] = "required"
    if missing:
        raise ValidationFailed("Complete the agreement before finalising it.", fields=missing)
    meta, sections = structure(case, c)
    ag.content = {**c, "document": {"meta": [list(x) for x in meta], "sections": [[h, p] for h, p in sections]}}
    ag.text = render_text(case, ag.content)
    ag.text_sha256 = sha256_text(ag.text)
    ag.status = "final"
    ag.finalised_at = dt.datetime.now(dt.timezone.utc)
    await audit.append(s, actor.ref(), "agreement.finalised", case_id=case.id,
                       data={"agreement_id": ag.id, "version": ag.version, "text_sha256": ag.text_sha256})
    await events.publish(s, events.AgreementChanged(case_id=case.id, what="final"))
    return ag


@dataclass
class CommentAuthor:
    type: str  # participant | party | staff
    id: str
    name: str
    role: str
    area: str = "main"


async def add_comment(s: AsyncSession, case_id: int, author: CommentAuthor, text: str,
                      session_id: int | None = None) -> tuple[Agreement, AgreementComment]:
    ag = await get_for_case(s, case_id)
    if ag is None:
        raise NotFound("There is no agreement to comment on yet.")
    if ag.status == "effective":
        raise Conflict("The agreement is already in effect.", code="agreement_effective")
    c = AgreementComment(agreement_id=ag.id, version=ag.version, author_type=author.type, author_id=author.id,
                         author_name=author.name, role=author.role, area=author.area, text=text)
    s.add(c)
    await s.flush()
    await audit.append(s, audit.ActorRef(author.type, author.id, author.name), "agreement.commented",
                       case_id=case_id, session_id=session_id,
                       data={"agreement_id": ag.id, "version": ag.version, "comment_id": c.id, "role": author.role,
                             "text": text})
    await events.publish(s, events.AgreementChanged(case_id=case_id, what="comment", comment=comment_view(c),
                                                    author_type=author.type, author_id=author.id, area=author.area))
    return ag, c


def comment_view(c: AgreementComment) -> dict:
    return {"id": c.id, "version": c.version, "author": c.author_name, "role": c.role, "area": c.area,
            "text": c.text, "at": c.created_at.isoformat()}


# --- party links -----------------------------------------------------------------------------------------

async def issue_link(s: AsyncSession, actor: Actor, case_id: int, data: LinkIn) -> tuple[PartyLink, str, Party]:
    case = await get_case(s, case_id, lock=True)
    user = require_case_mediator(actor, case)
    if case.status not in ("in_mediation", "settled", "failed"):
        raise Conflict("Personal links are for cases in mediation or concluded by it.", code="illegal_transition",
                       fields={"status": case.status, "action": "party_link"})
    party = next((p for p in case.parties if p.id == data.party_id), None)
    if party is None:
        raise ValidationFailed("This party is not in the case.", fields={"party_id": "not a party of this case"})
    if data.id_number:
        number = data.id_number.upper()
        if party.id_number and party.id_number.upper() != number:
            raise ValidationFailed("A different ID number is on file for this party.",
                                   fields={"id_number": "differs from the one on file"})
        if not party.id_number:
            party.id_number = number
            await audit.append(s, actor.ref(), "party.id_recorded", case_id=case.id,
                               data={"party_id": party.id, "name": party.name, "id_number": mask_id(number)})
    now = dt.datetime.now(dt.timezone.utc)
    # One live link per party: a new one withdraws the old.
    for old in (await s.execute(select(PartyLink).where(PartyLink.case_id == case.id, PartyLink.party_id == party.id,
                                                        PartyLink.revoked_at.is_(None)))).scalars():
        old.revoked_at = now
    token = secrets.token_urlsafe(24)
    link = PartyLink(case_id=case.id, party_id=party.id, token_hash=token_digest(token), created_by=user.id,
                     created_at=now, expires_at=now + dt.timedelta(days=data.days))
    s.add(link)
    await s.flush()
    await audit.append(s, actor.ref(), "party_link.issued", case_id=case.id,
                       data={"link_id": link.id, "party_id": party.id, "name": party.name,
                             "expires_at": link.expires_at})
    return link, token, party


# --- signatures ----------------------------------------------------------------------------------------

def check_signature_image(raw: str) -> bytes:
    """A PNG drawn on the signature pad: decoded, checked, re-encoded (no metadata). Blank pads are refused."""
    from PIL import Image, UnidentifiedImageError

    text = raw.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if head not in ("data:image/png;base64",):
            raise ValidationFailed("The signature must be a PNG image.", fields={"signature": "not_png"})
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed("The signature image is not valid base64.", fields={"signature": "invalid"})
    if len(data) > MAX_SIGNATURE_BYTES or not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValidationFailed("The signature must be a PNG image under 400 KB.", fields={"signature": "not_png"})
    try:
        img = Image.open(io.BytesIO(data))
        img.verify()
        img = Image.open(io.BytesIO(data))
        if not (40 <= img.width <= 4000 and 20 <= img.height <= 2000):
            raise ValidationFailed("The signature image has an odd size.", fields={"signature": "bad_size"})
        img = img.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, AppError):
            raise
        raise ValidationFailed("The signature image cannot be read.", fields={"signature": "invalid"})
    # Ink: pixels that are visible and dark (a pad may export a transparent or a white background).
    from PIL import ImageChops
    dark = img.convert("L").point(lambda v: 255 if v < 200 else 0)
    visible = img.getchannel("A").point(lambda v: 255 if v > 60 else 0)
    ink = ImageChops.multiply(dark, visible)
    if ink.histogram()[255] < 40:
        raise ValidationFailed("Please sign in the box first.", fields={"signature": "empty"})
    # Crop to the ink with a margin, so the sign-off table shows the signature, not the empty pad.
    bbox = ink.getbbox()
    if bbox:
        pad = 12
        img = img.crop((max(0, bbox[0] - pad), max(0, bbox[1] - pad), min(img.width, bbox[2] + pad),
                        min(img.height, bbox[3] + pad)))
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return out.getvalue()


def _check_can_sign(case: Case, ag: Agreement | None, text_sha256: str) -> Agreement:
    if ag is None or ag.status == "draft":
        raise Conflict("The agreement has not been finalised yet.", code="agreement_not_final")
    if ag.status == "effective":
        raise Conflict("The agreement is already in effect.", code="agreement_effective")
    if case.status not in SIGN_STATUSES:
        raise Conflict("This case can no longer be settled by agreement.", code="illegal_transition",
                       fields={"status": case.status, "action": "sign_agreement"})
    if text_sha256 != ag.text_sha256:
        raise Conflict("The text you reviewed is not the final text; reload the page.", code="text_changed")
    return ag


@dataclass
class SignContext:
    """What signing needs from outside the database: the agreements' file store, the seal, display settings."""

    store: object
    identity: object   # server.certs.SigningIdentity
    tz: object
    tsa_url: str | None = None


async def sign_as_party(s: AsyncSession, ctx: SignContext, proof: PartyProof, data: SignIn, *, ip: str = "",
                        user_agent: str = "") -> tuple[Agreement, AgreementSignature, bool]:
    case = await get_case(s, proof.case_id, lock=True)
    ag = _check_can_sign(case, await get_for_case(s, case.id, lock=True), data.text_sha256)
    party = next((p for p in case.parties if p.id == proof.party_id), None)
    if party is None:
        raise Forbidden("You are not a party of this case.")
    if not data.agree:
        raise ValidationFailed("Confirm that you have read and agree to the text.", fields={"agree": "required"})
    method = "access_code" if proof.via == "access_code" else "link"
    if party.id_number:
        key = f"sign:{party.id}"
        guard.check(key)
        given = (data.id_last6 or "").strip().upper()
        if len(given) != 6 or given != party.id_number.upper()[-6:]:
            guard.fail(key)
            raise Unauthorized("The last six characters of your ID number do not match.", code="id_mismatch")
        guard.succeed(key)
        method += "+id6"
    image = check_signature_image(data.signature)
    return await _add_signature(s, ctx, case, ag, signer_key=f"party:{party.id}", role="party",
                                party_id=party.id, user_id=None, name=party.name, side=party.side, method=method,
                                image=image, actor=proof.ref(), ip=ip, user_agent=user_agent)


async def sign_as_mediator(s: AsyncSession, ctx: SignContext, actor: Actor, case_id: int, data: SignIn, *,
                           ip: str = "", user_agent: str = "") -> tuple[Agreement, AgreementSignature, bool]:
    case = await get_case(s, case_id, lock=True)
    user = require_case_mediator(actor, case)
    ag = _check_can_sign(case, await get_for_case(s, case.id, lock=True), data.text_sha256)
    image = check_signature_image(data.signature)
    return await _add_signature(s, ctx, case, ag, signer_key="mediator", role="mediator", party_id=None,
                                user_id=user.id, name=user.name or user.username, side="", method="staff_login",
                                image=image, actor=actor.ref(), ip=ip, user_agent=user_agent)


async def _add_signature(s: AsyncSession, ctx: SignContext, case: Case, ag: Agreement, *, signer_key: str, role: str,
                         party_id, user_id, name: str, side: str, method: str, image: bytes,
                         actor: audit.ActorRef, ip: str, user_agent: str) -> tuple[Agreement, AgreementSignature, bool]:
    existing = (await s.execute(select(AgreementSignature).where(AgreementSignature.agreement_id == ag.id,
                                                                 AgreementSignature.signer_key == signer_key))).scalar_one_or_none()
    if existing is not None:
        raise Conflict("You have already signed this agreement.", code="already_signed")
    sig = AgreementSignature(agreement_id=ag.id, signer_key=signer_key, role=role, party_id=party_id, user_id=user_id,
                             name=name, side=side, method=method, text_sha256=ag.text_sha256, image=image,
                             image_sha256=hashlib.sha256(image).hexdigest(), ip=ip[:64],
                             user_agent=user_agent[:300], signed_at=dt.datetime.now(dt.timezone.utc))
    s.add(sig)
    await s.flush()
    sigs = await signatures(s, ag.id)
    complete = all(r["signed"] for r in signer_rows(case, sigs))
    sealed = None
    if complete:
        # Render and seal before touching the audit chain, so its head is locked only briefly.
        sealed = await _seal(ctx, case, ag, sigs)
    try:
        await audit.append(s, actor, "agreement.signed", case_id=case.id, data={
            "agreement_id": ag.id, "signature_id": sig.id, "signer": signer_key, "role": role, "name": name,
            "side": side, "method": method, "text_sha256": ag.text_sha256, "image_sha256": sig.image_sha256})
        if complete:
            await _take_effect(s, case, ag, sigs, sealed)
    except BaseException:
        if sealed is not None:
            await ctx.store.delete(sealed["key"])
        raise
    await events.publish(s, events.AgreementChanged(case_id=case.id, what="effective" if complete else "signed"))
    return ag, sig, complete


METHOD_CN = {
    "access_code": "案件查询码+手机号", "access_code+id6": "案件查询码+手机号+身份证件后六位",
    "link": "专属签署链接", "link+id6": "专属签署链接+身份证件后六位", "staff_login": "工作人员账号登录",
}


def pdf_document(case: Case, ag: Agreement, sigs: list[AgreementSignature], tz, *, test_material: bool,
                 effective_at: dt.datetime):
    meta, sections = fixed_structure(case, ag.content or {})
    rows = []
    by_key = {x.signer_key: x for x in sigs}
    for r in signer_rows(case, sigs):
        sig = by_key.get(r["key"])
        if sig is None:
            continue
        role = SIDE_CN.get(sig.side, "") if sig.role == "party" else "调解员"
        rows.append(pdf.SignatureRow(sig.name, role, sig.signed_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
                                     METHOD_CN.get(sig.method, sig.method), sig.image))
    return pdf.Document(
        title=TITLE, meta=meta, sections=[pdf.Section(h, p) for h, p in sections], signatures=rows,
        seal_name=case.institution.name, seal_caption="调解组织（盖章）", seal_date=pdf.today_cn(effective_at, tz),
        test_material=test_material,
        footer_note=f"协议文本 SHA-256：{ag.text_sha256}",
        keywords=[f"case:{case.number}", f"agreement:{ag.id}", f"text-sha256:{ag.text_sha256}"],
        subject=f"{case.number} {case.title}", author=case.institution.name)


async def _seal(ctx: SignContext, case: Case, ag: Agreement, sigs: list[AgreementSignature]) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    ident = ctx.identity
    doc = pdf_document(case, ag, sigs, ctx.tz, test_material=ident.test_material, effective_at=now)
    unsigned = await pdf.render_async(doc)
    signed = await pdf.sign(unsigned, ident, reason=f"{TITLE} {case.number} · 调解组织签章",
                            location=case.institution.area or case.institution.name, tsa_url=ctx.tsa_url)
    key, digest = await ctx.store.put(signed, ".pdf")
    return {"key": key, "sha256": digest, "size": len(signed), "at": now,
            "seal": {**ident.describe(), "signed_at": now.isoformat(), "tsa": bool(ctx.tsa_url),
                     "field": pdf.SEAL_FIELD}}


async def _take_effect(s: AsyncSession, case: Case, ag: Agreement, sigs: list[AgreementSignature], sealed: dict) -> None:
    now = sealed["at"]
    ag.status = "effective"
    ag.effective_at = now
    ag.confirmation_deadline = now + dt.timedelta(days=CONFIRMATION_DAYS)
    ag.pdf_key, ag.pdf_sha256, ag.pdf_size = sealed["key"], sealed["sha256"], sealed["size"]
    ag.seal = sealed["seal"]
    await audit.append(s, audit.SYSTEM, "agreement.effective", case_id=case.id, data={
        "agreement_id": ag.id, "text_sha256": ag.text_sha256,
        "signatures": [{"signer": x.signer_key, "name": x.name, "image_sha256": x.image_sha256} for x in sigs],
        "confirmation_deadline": ag.confirmation_deadline})
    if case.status == "in_mediation":
        # The same step as a mediator's "settled": the procedural rules follow (server/system.py).
        await transition(s, None, case, "settle", {
            "via": "agreement", "agreement_id": ag.id,
            "confirmation_deadline": ag.confirmation_deadline.astimezone(deadlines.tz()).date().isoformat()})
        # One clock: the confirmation deadline the settle step started runs out when the agreement's does.
        await deadlines.set_due(s, case.id, "confirmation", ag.confirmation_deadline)
    await audit.append(s, audit.SYSTEM, "agreement.sealed", case_id=case.id, data={
        "agreement_id": ag.id, "pdf_sha256": ag.pdf_sha256, "size": ag.pdf_size, "certificate": ag.seal})


async def read_pdf(store, ag: Agreement) -> bytes:
    if not ag.pdf_key:
        raise NotFound("The signed agreement is not available yet.")
    return await store.get(ag.pdf_key)


async def staff_view(s: AsyncSession, actor: Actor, case_id: int) -> tuple[Case, Agreement | None]:
    case = await get_case(s, case_id)
    require_view(actor, case)
    return case, await get_for_case(s, case.id)


async def find_by_pdf_hash(s: AsyncSession, digest: str) -> tuple[Agreement, Case] | None:
    ag = (await s.execute(select(Agreement).where(Agreement.pdf_sha256 == digest))).scalar_one_or_none()
    if ag is None:
        return None
    return ag, await get_case(s, ag.case_id)


def clean_id_last6(value: str | None) -> str:
    return re.sub(r"\s", "", value or "").upper()[:6]

