"""The procedural rules of online mediation (SPC Online Mediation Rules 2021, People's Mediation Law).

- Consent to online mediation (art. 4): each party, before the case's first online session;
  a decline is recorded, the offline alternative is offered and no online session opens for them.
- Conflict of interest (art. 13): the assigned mediator declares none, or one, which returns
  the case to intake (`unassign`). A party may ask for a different mediator (回避申请); intake
  decides. Both are recorded.
- Identity at every session (art. 17): a party confirms name, the last six characters of the ID
  number and an access code (the case's for the applicant, a per-party code for the others), or
  a one-time SMS code where a gateway is configured. Failures are limited and logged.
- Notices on joining: confidentiality (art. 29), concessions not used later (art. 18), and for
  parties the warning about sham mediation; acknowledged once per session per participant.
- Scheduling: date, time and duration, personal join links and codes for the parties,
  notifications and a reminder, .ics calendar files.

Every step is written to the audit chain in the caller's transaction. Signaling
(signaling/procedure_events.py), the API (server/http/api/procedure.py) and the portal
(server/http/pages/procedure.py) all call these functions.

One module (~900 lines): consent, identity, notices, conflicts, recusal and scheduling share their lookups and the join-step order; split further when one of them grows on its own.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit, events
from server.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.core.i18n import translator
from server.core.models import Case, ConflictDeclaration, Contact, IdentityCheck, Invite, MediationSession, NoticeAck, OnlineConsent, Party, PartyCredential, RecusalRequest, SessionPlan, SmsCode, User, utcnow
from server.core.policy import Actor, require_case_mediator, require_intake_for, require_staff, require_view
from server.core.security import TokenInvalid, hash_secret_async, new_access_code, verify_secret_async
from server.services.procedure import deadlines
from server.services.notify import messages as notify
from server.core.schemas import AssignIn, Checked, Id, InviteIn, Moment, SessionIn
from server.services import cases
from server.services import sessions as session_svc
from server.services.cases import get_case, transition
from server.services.live import Pass, make_pass
from server.services.sessions import create_invite, get_session, open_session, verify_join_token

MAX_IDENTITY_FAILURES = 5          # per participant and session within the window
IDENTITY_WINDOW = dt.timedelta(minutes=30)
SMS_CODE_SECONDS = 10 * 60
SMS_CODE_INTERVAL = dt.timedelta(seconds=60)
SMS_CODES_PER_SESSION = 5
MIN_DURATION, MAX_DURATION = 15, 8 * 60

# Notice id -> the roles that acknowledge it. The mediator gives these notices and is bound by
# confidentiality through their appointment, so they acknowledge none.
# An interpreter or support person is bound by confidentiality like the party they accompany; the
# concessions and the sham-mediation warning concern the party's own claims (docs/procedure.md).
NOTICES: dict[str, tuple[str, ...]] = {
    "confidentiality": ("party", "expert", "observer", "interpreter", "support"),   # art. 29
    "concessions": ("party",),                             # art. 18
    "sham_mediation": ("party",),                          # warning: consequences of sham mediation
}
CONSENT_HOW = ("room", "portal", "api", "written", "phone", "in_person")


# --- inputs ------------------------------------------------------------------------------------------------

class _In(Checked):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


Text300 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=1000)]


class ConsentIn(_In):
    agree: bool


class StaffConsentIn(_In):
    agree: bool
    how: Literal["written", "phone", "in_person"]
    note: Text300 = ""


class IdentityIn(_In):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    id_number_last6: Annotated[str, StringConstraints(strip_whitespace=True, min_length=6, max_length=6)] | None = None
    access_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=4, max_length=32)] | None = None
    sms_code: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{6}$")] | None = None

    @model_validator(mode="after")
    def _one_way(self):
        if self.sms_code is None and not (self.name and self.id_number_last6 and self.access_code):
            raise ValueError("give name, id_number_last6 and access_code, or sms_code")
        return self


class NoticeAckIn(_In):
    notices: list[Annotated[str, StringConstraints(max_length=40)]] = Field(min_length=1, max_length=10)


class ConflictIn(_In):
    conflict: bool
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""

    @model_validator(mode="after")
    def _reason_for_conflict(self):
        if self.conflict and len(self.reason) < 2:
            raise ValueError("say what the conflict is")
        return self


class RecusalIn(_In):
    reason: Reason
    party_id: Id | None = None


class RecusalDecisionIn(_In):
    grant: bool
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""
    mediator_id: Id | None = None


class ScheduleIn(_In):
    starts_at: Moment
    duration_minutes: int = Field(default=60, ge=MIN_DURATION, le=MAX_DURATION)
    notify: bool = True


class ContactIn(_In):
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200,
                                            pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=30,
                                            pattern=r"^$|^\+?[0-9][0-9 \-]{5,19}$")] | None = None
    lang: Literal["zh-CN", "en"] | None = None


# --- after every step of a case ------------------------------------------------------------------------------

async def on_case_transitioned(s: AsyncSession, e: events.CaseTransitioned) -> None:
    """Every step of a case (and its filing), in the same transaction (subscribed in
    server/system.py): deadlines met, started or cancelled; notifications."""
    await deadlines.on_case_action(s, e.case.id, e.action)
    await notify.case_event(s, e.case, e.action, e.data)


# --- small lookups ---------------------------------------------------------------------------------------------

async def party_of_pass(s: AsyncSession, p: Pass) -> Party | None:
    if p.role != "party":
        return None
    invite = await s.get(Invite, p.invite_id)
    if invite is None or invite.party_id is None:
        return None
    party = await s.get(Party, invite.party_id)
    return party if party is not None and party.case_id == p.case_id else None


async def _case(s: AsyncSession, case_id: int, *, lock: bool = False) -> Case:
    return await get_case(s, case_id, lock=lock)


async def _party(s: AsyncSession, case: Case, party_id: int) -> Party:
    party = await s.get(Party, party_id)
    if party is None or party.case_id != case.id:
        raise ValidationFailed("This party is not in the case.", fields={"party_id": "not a party of this case"})
    return party


async def party_of_case(s: AsyncSession, case_id: int, party_id: int) -> Party:
    return await _party(s, await _case(s, case_id), party_id)


async def recusal_case_id(s: AsyncSession, request_id: int) -> int:
    req = await s.get(RecusalRequest, request_id)
    if req is None:
        raise NotFound("No such request.")
    return req.case_id


def _norm_name(v: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", v or "")).casefold()


async def peek_pass(s: AsyncSession, secret: str, token: str) -> Pass:
    """Check a join link like `join` does, without using it up (a step page is not the room)."""
    try:
        claims, invite, sess = await verify_join_token(s, secret, token)
    except NotFound:
        raise TokenInvalid("token_invalid", "This join link is not valid.")
    if invite.single_use and invite.used_at is not None:
        raise TokenInvalid("token_used", "This join link has already been used.")
    return make_pass(claims, invite, sess)


# --- consent to online mediation -------------------------------------------------------------------------------

async def consent_of(s: AsyncSession, party_id: int) -> OnlineConsent | None:
    return (await s.execute(select(OnlineConsent).where(OnlineConsent.party_id == party_id)
                            .order_by(OnlineConsent.id.desc()).limit(1))).scalar_one_or_none()


async def record_consent(s: AsyncSession, by: audit.ActorRef, case: Case, party: Party, agree: bool, how: str, *,
                         session_id: int | None = None, participant_id: str = "", note: str = "") -> OnlineConsent:
    if how not in CONSENT_HOW:
        raise ValidationFailed("Unknown way of giving consent.", fields={"how": "invalid"})
    row = OnlineConsent(case_id=case.id, party_id=party.id, agree=agree, how=how, session_id=session_id,
                        participant_id=participant_id, recorded_by=by.name, note=note)
    s.add(row)
    await s.flush()
    await audit.append(s, by, "consent.online", case_id=case.id, session_id=session_id,
                       data={"party_id": party.id, "party": party.name, "agree": agree, "how": how, "note": note})
    if not agree:
        ctx = {"number": case.number, "title": case.title, "party": party.name}
        recipients = (await notify.intake_recipients(s, case.institution_id)
                      + await notify.mediator_recipients(s, case.mediator_id))
        await notify.send(s, "consent_declined", recipients, ctx, key=f"consent:{row.id}", case_id=case.id)
    return row


async def consent_by_pass(s: AsyncSession, p: Pass, agree: bool) -> OnlineConsent:
    party = await party_of_pass(s, p)
    if party is None:
        raise Forbidden("Only a party gives consent to online mediation.", code="not_needed")
    case = await _case(s, p.case_id)
    return await record_consent(s, p.ref(), case, party, agree, "room", session_id=p.session_id,
                                participant_id=p.participant_id)


async def consent_by_staff(s: AsyncSession, actor: Actor, case_id: int, party_id: int, data: StaffConsentIn) -> OnlineConsent:
    """The mediator records consent given in writing, by phone or in person."""
    case = await _case(s, case_id, lock=True)
    require_case_mediator(actor, case)
    party = await _party(s, case, party_id)
    return await record_consent(s, actor.ref(), case, party, data.agree, data.how, note=data.note)


async def consent_by_applicant(s: AsyncSession, actor: Actor, case_id: int, agree: bool, how: str = "portal") -> OnlineConsent:
    case = await _case(s, case_id, lock=True)
    if actor.applicant_case_id != case.id:
        raise Forbidden("Only the applicant can answer for themselves here.")
    party = next(p for p in case.parties if p.side == "applicant")
    return await record_consent(s, actor.ref(), case, party, agree, how)


# --- identity --------------------------------------------------------------------------------------------------

async def is_verified(s: AsyncSession, session_id: int, participant_id: str) -> bool:
    return (await s.execute(select(func.count()).select_from(IdentityCheck).where(
        IdentityCheck.session_id == session_id, IdentityCheck.participant_id == participant_id,
        IdentityCheck.ok.is_(True)))).scalar_one() > 0


async def recent_failures(s: AsyncSession, session_id: int, participant_id: str, now: dt.datetime | None = None) -> int:
    since = (now or utcnow()) - IDENTITY_WINDOW
    return (await s.execute(select(func.count()).select_from(IdentityCheck).where(
        IdentityCheck.session_id == session_id, IdentityCheck.participant_id == participant_id,
        IdentityCheck.ok.is_(False), IdentityCheck.created_at >= since))).scalar_one()


@dataclass
class IdentityResult:
    ok: bool
    code: str = ""          # identity_failed | identity_locked | not_needed
    attempts_left: int = 0
    method: str = ""


def _sms_digest(secret: str, session_id: int, participant_id: str, code: str) -> str:
    return hmac.new(secret.encode(), f"sms:{session_id}:{participant_id}:{code}".encode(), hashlib.sha256).hexdigest()


async def verify_identity(s: AsyncSession, p: Pass, data: IdentityIn, *, secret: str) -> IdentityResult:
    """Check a party's identity for this session. A failure is committed (and logged) like a success,
    so the caller must not raise inside the same unit: it reports the result instead."""
    party = await party_of_pass(s, p)
    if party is None:
        return IdentityResult(False, "not_needed")
    if await is_verified(s, p.session_id, p.participant_id):
        return IdentityResult(True, method="earlier")
    failures = await recent_failures(s, p.session_id, p.participant_id)
    if failures >= MAX_IDENTITY_FAILURES:
        await audit.append(s, p.ref(), "identity.locked", case_id=p.case_id, session_id=p.session_id,
                           data={"participant_id": p.participant_id, "party_id": party.id, "failures": failures})
        return IdentityResult(False, "identity_locked", 0)
    case = await _case(s, p.case_id)
    reason, method, given6 = "", "", ""
    if data.sms_code is not None:
        method = "sms"
        row = (await s.execute(select(SmsCode).where(
            SmsCode.session_id == p.session_id, SmsCode.participant_id == p.participant_id,
            SmsCode.used_at.is_(None)).order_by(SmsCode.id.desc()).limit(1))).scalar_one_or_none()
        if row is None or row.expires_at < utcnow():
            reason = "sms_code_expired"
        elif not hmac.compare_digest(row.code_hash, _sms_digest(secret, p.session_id, p.participant_id, data.sms_code)):
            reason = "sms_code_mismatch"
        else:
            row.used_at = utcnow()
    else:
        given6 = data.id_number_last6.upper()
        code = data.access_code.strip().upper()
        if _norm_name(data.name) != _norm_name(party.name):
            reason = "name_mismatch"
        elif party.id_number and party.id_number.upper()[-6:] != given6:
            reason = "id_number_mismatch"
        else:
            cred = await s.get(PartyCredential, party.id)
            if cred is not None and await verify_secret_async(cred.code_hash, code):
                method = "party_code"
            elif party.side == "applicant" and await verify_secret_async(case.access_code_hash, code):
                method = "access_code"
            else:
                reason = "code_mismatch"
        method = method or ("party_code" if party.side != "applicant" else "access_code")
    ok = not reason
    s.add(IdentityCheck(session_id=p.session_id, case_id=p.case_id, participant_id=p.participant_id,
                        party_id=party.id, ok=ok, method=method, reason=reason, id_last6_given=given6))
    left = MAX_IDENTITY_FAILURES - failures - (0 if ok else 1)
    await audit.append(s, p.ref(), "identity.verified" if ok else "identity.failed", case_id=p.case_id,
                       session_id=p.session_id,
                       data={"participant_id": p.participant_id, "party_id": party.id, "method": method,
                             **({"reason": reason, "attempts_left": left} if not ok else {}),
                             **({"id_number_on_file": bool(party.id_number)} if ok and method != "sms" else {})})
    if ok:
        return IdentityResult(True, method=method)
    return IdentityResult(False, "identity_locked" if left <= 0 else "identity_failed", max(left, 0), method)


async def dial_in(s: AsyncSession, number: str, pin: str, caller, *, secret: str, caller_digits: str = "") -> str:
    """A caller's session number and personal PIN (services/sessions.py, dial_in) -> a join token.
    The PIN is the link's own secret, so for a party it is the identity step of this session too
    (method `phone_pin`), recorded as a check like the web's; consent and notices stay to be done."""
    invite, sess, token = await session_svc.dial_in(s, number, pin, caller, secret=secret, caller_digits=caller_digits)
    if invite.party_id is not None and not await is_verified(s, sess.id, invite.participant_id):
        s.add(IdentityCheck(session_id=sess.id, case_id=sess.case_id, participant_id=invite.participant_id,
                            party_id=invite.party_id, ok=True, method="phone_pin"))
        await audit.append(s, audit.ActorRef("participant", invite.participant_id, invite.name), "identity.verified",
                           case_id=sess.case_id, session_id=sess.id,
                           data={"participant_id": invite.participant_id, "party_id": invite.party_id,
                                 "method": "phone_pin"})
    return token


async def request_sms_code(s: AsyncSession, p: Pass, *, secret: str) -> dict:
    """Send a one-time identity code to the phone on file for this party (only with a real gateway)."""
    if not notify.config().sms_enabled:
        raise Conflict("No SMS gateway is configured here.", code="sms_unavailable")
    party = await party_of_pass(s, p)
    if party is None:
        raise Forbidden("Only a party confirms identity.", code="not_needed")
    contact = (await s.execute(select(Contact).where(Contact.kind == "party", Contact.ref_id == party.id))
               ).scalar_one_or_none()
    phone = (contact.phone if contact and contact.phone else party.phone)
    if not phone:
        raise Conflict("There is no phone number for you on file.", code="no_phone")
    rows = (await s.execute(select(SmsCode).where(SmsCode.session_id == p.session_id,
                                                  SmsCode.participant_id == p.participant_id)
                            .order_by(SmsCode.id.desc()))).scalars().all()
    now = utcnow()
    if rows and rows[0].created_at > now - SMS_CODE_INTERVAL:
        raise Conflict("A code was sent a moment ago; wait a minute before asking again.", code="sms_too_soon")
    if len(rows) >= SMS_CODES_PER_SESSION:
        raise Conflict("Too many codes were sent for this session.", code="sms_limit")
    code = f"{secrets.randbelow(10**6):06d}"
    row = SmsCode(session_id=p.session_id, participant_id=p.participant_id, party_id=party.id,
                  code_hash=_sms_digest(secret, p.session_id, p.participant_id, code),
                  expires_at=now + dt.timedelta(seconds=SMS_CODE_SECONDS))
    s.add(row)
    await s.flush()
    case = await _case(s, p.case_id)
    recipient = notify.Recipient(ref=f"party:{party.id}", name=party.name, phone=phone,
                                 lang=(contact.lang if contact and contact.lang else "zh-CN"))
    await notify.send(s, "sms_code", [recipient], {"code": code, "number": case.number, "minutes": SMS_CODE_SECONDS // 60},
                      key=f"smscode:{row.id}", case_id=p.case_id, session_id=p.session_id)
    return {"sent_to": phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "***",
            "expires_in": SMS_CODE_SECONDS}


async def issue_party_code(s: AsyncSession, actor: Actor | None, case: Case, party: Party) -> str:
    """A new access code for one party (replacing an earlier one); returned once, stored hashed."""
    code = new_access_code()
    digest = await hash_secret_async(code)
    row = await s.get(PartyCredential, party.id)
    user_id = actor.user.id if actor and actor.user else None
    if row is None:
        s.add(PartyCredential(party_id=party.id, code_hash=digest, issued_by=user_id))
    else:
        row.code_hash, row.issued_by, row.issued_at = digest, user_id, utcnow()
    await s.flush()
    await audit.append(s, actor.ref() if actor else audit.SYSTEM, "party_code.issued", case_id=case.id,
                       data={"party_id": party.id, "party": party.name})
    return code


async def issue_party_code_for(s: AsyncSession, actor: Actor, case_id: int, party_id: int, *, send: bool = True) -> str:
    case = await _case(s, case_id, lock=True)
    _require_case_staff(actor, case)
    party = await _party(s, case, party_id)
    code = await issue_party_code(s, actor, case, party)
    if send:
        await notify.send(s, "party_code", await notify.party_recipients(s, [party]),
                          {"number": case.number, "title": case.title, "code": code},
                          key=f"partycode:{party.id}:{uuid.uuid4().hex[:8]}", case_id=case.id)
    return code


def _require_case_staff(actor: Actor, case: Case) -> User:
    """The case's mediator, or intake of its institution (or an admin)."""
    u = require_staff(actor, "mediator", "intake", "admin")
    if u.role == "mediator":
        return require_case_mediator(actor, case)
    return require_intake_for(actor, case)


# --- notices ---------------------------------------------------------------------------------------------------

def required_notices(role: str) -> list[str]:
    return [n for n, roles in NOTICES.items() if role in roles]


async def pending_notices(s: AsyncSession, session_id: int, participant_id: str, role: str) -> list[str]:
    need = required_notices(role)
    if not need:
        return []
    done = set((await s.execute(select(NoticeAck.notice).where(
        NoticeAck.session_id == session_id, NoticeAck.participant_id == participant_id))).scalars())
    return [n for n in need if n not in done]


async def ack_notices(s: AsyncSession, p: Pass, notices: list[str]) -> list[str]:
    """Record acknowledgements; returns what is still owed."""
    need = required_notices(p.role)
    unknown = [n for n in notices if n not in need]
    if unknown:
        raise ValidationFailed("Unknown notice.", code="bad_request", fields={"notices": ", ".join(unknown)})
    pending = await pending_notices(s, p.session_id, p.participant_id, p.role)
    new = [n for n in dict.fromkeys(notices) if n in pending]
    for n in new:
        s.add(NoticeAck(session_id=p.session_id, participant_id=p.participant_id, role=p.role, notice=n))
    if new:
        await s.flush()
        # participant_role rather than role: these are the participant's own steps, not a room event.
        await audit.append(s, p.ref(), "notice.acknowledged", case_id=p.case_id, session_id=p.session_id,
                           data={"participant_id": p.participant_id, "name": p.name, "participant_role": p.role,
                                 **({"accompanies": p.accompanies, "accompanies_name": p.accompanies_name}
                                    if p.accompanies else {}),
                                 "notices": new})
    return [n for n in pending if n not in new]


# --- what a participant still owes before joining ----------------------------------------------------------------

async def steps_for(s: AsyncSession, p: Pass, *, identity_check: bool) -> list[str]:
    """consent_required, identity_required, notice_required: in that order, what is not done yet."""
    steps = []
    party = await party_of_pass(s, p)
    if party is not None:
        consent = await consent_of(s, party.id)
        if consent is None or not consent.agree:
            steps.append("consent_required")
        if identity_check and not await is_verified(s, p.session_id, p.participant_id):
            steps.append("identity_required")
    if await pending_notices(s, p.session_id, p.participant_id, p.role):
        steps.append("notice_required")
    return steps


async def participant_status(s: AsyncSession, p: Pass, *, identity_check: bool, party: Party | None = None) -> dict:
    """What the mediator sees about one participant: consent, identity, notices."""
    party = party or await party_of_pass(s, p)
    out = {"participant_id": p.participant_id, "name": p.name, "role": p.role, "party_id": party.id if party else None,
           "accompanies": p.accompanies, "accompanies_name": p.accompanies_name if p.accompanies else None,
           "consent": None, "verified": None, "identity_failures": 0,
           "notices_pending": await pending_notices(s, p.session_id, p.participant_id, p.role)}
    if party is not None:
        consent = await consent_of(s, party.id)
        out["consent"] = consent.agree if consent else None
        if identity_check:
            out["verified"] = await is_verified(s, p.session_id, p.participant_id)
            out["identity_failures"] = await recent_failures(s, p.session_id, p.participant_id)
            check = (await s.execute(select(IdentityCheck).where(
                IdentityCheck.session_id == p.session_id, IdentityCheck.participant_id == p.participant_id,
                IdentityCheck.ok.is_(True)).limit(1))).scalar_one_or_none()
            out["verified_by"] = check.method if check else None
            out["id_number_on_file"] = bool(party.id_number)
    return out


# --- conflict of interest and recusal -------------------------------------------------------------------------------

async def declaration_of(s: AsyncSession, case: Case) -> ConflictDeclaration | None:
    if case.mediator_id is None:
        return None
    return (await s.execute(select(ConflictDeclaration).where(
        ConflictDeclaration.case_id == case.id, ConflictDeclaration.mediator_id == case.mediator_id)
        .order_by(ConflictDeclaration.id.desc()).limit(1))).scalar_one_or_none()


async def _end_open_sessions(s: AsyncSession, actor_ref: audit.ActorRef, case: Case, why: str) -> list[str]:
    rows = (await s.execute(select(MediationSession).where(MediationSession.case_id == case.id,
                                                           MediationSession.status != "ended"))).scalars().all()
    rooms = []
    for sess in rows:
        await session_svc.end(s, sess, actor_ref, via=why)
        rooms.append(sess.room_id)
    return rooms


async def _unassign(s: AsyncSession, actor: Actor, case: Case, why: str, text: str) -> list[str]:
    rooms = await _end_open_sessions(s, actor.ref(), case, why)
    previous = case.mediator_id
    await transition(s, actor, case, "unassign", {"mediator_id": None, "previous_mediator_id": previous,
                                                   "why": why, "reason_text": text})
    case.mediator = None
    case.mediator_id = None
    return rooms


@dataclass
class Declared:
    declaration: ConflictDeclaration
    ended_rooms: list[str]


async def declare_conflict(s: AsyncSession, actor: Actor, case_id: int, data: ConflictIn) -> Declared:
    case = await _case(s, case_id, lock=True)
    user = require_case_mediator(actor, case)
    if case.status not in ("assigned", "in_mediation"):
        raise Conflict("There is no assignment to declare on.", code="not_assigned")
    if await declaration_of(s, case) is not None:
        raise Conflict("You have already declared on this case.", code="already_declared")
    row = ConflictDeclaration(case_id=case.id, mediator_id=user.id, conflict=data.conflict, reason=data.reason)
    s.add(row)
    await s.flush()
    await audit.append(s, actor.ref(), "conflict.declared", case_id=case.id,
                       data={"mediator_id": user.id, "mediator": user.name, "conflict": data.conflict,
                             "reason": data.reason})
    rooms: list[str] = []
    if data.conflict:
        rooms = await _unassign(s, actor, case, "conflict", data.reason)
    return Declared(row, rooms)


async def request_recusal(s: AsyncSession, by: audit.ActorRef, case: Case, party: Party, reason: str) -> RecusalRequest:
    if case.mediator_id is None or case.status not in ("assigned", "in_mediation"):
        raise Conflict("No mediator is assigned to this case now.", code="no_mediator")
    pending = (await s.execute(select(RecusalRequest).where(
        RecusalRequest.case_id == case.id, RecusalRequest.party_id == party.id,
        RecusalRequest.status == "pending"))).scalar_one_or_none()
    if pending is not None:
        raise Conflict("Your earlier request is still being decided.", code="already_requested")
    row = RecusalRequest(case_id=case.id, party_id=party.id, mediator_id=case.mediator_id, reason=reason)
    s.add(row)
    await s.flush()
    mediator = case.mediator.name if case.mediator else ""
    await audit.append(s, by, "recusal.requested", case_id=case.id,
                       data={"request_id": row.id, "party_id": party.id, "party": party.name,
                             "mediator_id": case.mediator_id, "mediator": mediator, "reason": reason})
    await notify.send(s, "recusal_requested", await notify.intake_recipients(s, case.institution_id),
                      {"number": case.number, "title": case.title, "party": party.name, "mediator": mediator,
                       "reason": reason}, key=f"recusal:{row.id}", case_id=case.id)
    return row


async def recusal_by_applicant(s: AsyncSession, actor: Actor, case_id: int, reason: str) -> RecusalRequest:
    case = await _case(s, case_id, lock=True)
    if actor.applicant_case_id != case.id:
        raise Forbidden("Only the applicant can ask here.")
    party = next(p for p in case.parties if p.side == "applicant")
    return await request_recusal(s, actor.ref(), case, party, reason)


async def recusal_by_pass(s: AsyncSession, p: Pass, reason: str) -> RecusalRequest:
    party = await party_of_pass(s, p)
    if party is None:
        raise Forbidden("Only a party can ask for a different mediator.")
    case = await _case(s, p.case_id, lock=True)
    return await request_recusal(s, p.ref(), case, party, reason)


@dataclass
class Decided:
    request: RecusalRequest
    ended_rooms: list[str]


async def decide_recusal(s: AsyncSession, actor: Actor, request_id: int, data: RecusalDecisionIn) -> Decided:
    req = await s.get(RecusalRequest, request_id)
    if req is None:
        raise NotFound("No such request.")
    case = await _case(s, req.case_id, lock=True)
    require_intake_for(actor, case)
    if req.status != "pending":
        raise Conflict("This request has been decided.", code="already_decided")
    if data.mediator_id is not None and not data.grant:
        raise ValidationFailed("A new mediator goes with granting the request.", fields={"mediator_id": "only when granting"})
    if data.grant and data.mediator_id is not None and data.mediator_id == req.mediator_id:
        raise ValidationFailed("Choose a different mediator.", fields={"mediator_id": "the recused mediator"})
    req.status = "granted" if data.grant else "refused"
    req.decided_by, req.decided_at, req.decision_note = actor.user.id, utcnow(), data.note
    party = await s.get(Party, req.party_id)
    await audit.append(s, actor.ref(), "recusal.granted" if data.grant else "recusal.refused", case_id=case.id,
                       data={"request_id": req.id, "party_id": req.party_id, "mediator_id": req.mediator_id,
                             "note": data.note})
    rooms: list[str] = []
    if data.grant and case.mediator_id == req.mediator_id and case.status in ("assigned", "in_mediation"):
        rooms = await _unassign(s, actor, case, "recusal", data.note)
        if data.mediator_id is not None:
            await cases.assign(s, actor, case.id, AssignIn(mediator_id=data.mediator_id))
    await notify.send(s, "recusal_granted" if data.grant else "recusal_refused",
                      await notify.party_recipients(s, [party] if party else []),
                      {"number": case.number, "title": case.title, "note": data.note},
                      key=f"recusal:{req.id}:decided", case_id=case.id)
    return Decided(req, rooms)


async def recusals(s: AsyncSession, actor: Actor, *, case_id: int | None = None, status: str | None = None) -> list[RecusalRequest]:
    u = require_staff(actor)
    q = select(RecusalRequest).join(Case, Case.id == RecusalRequest.case_id)
    if case_id is not None:
        q = q.where(RecusalRequest.case_id == case_id)
    if status:
        q = q.where(RecusalRequest.status == status)
    if u.role == "mediator":
        q = q.where(Case.mediator_id == u.id)
    elif u.role != "admin" and not (u.role == "clerk" and u.institution_id is None):
        q = q.where(Case.institution_id == u.institution_id)
    return list((await s.execute(q.order_by(RecusalRequest.id))).scalars().all())


# --- scheduling -----------------------------------------------------------------------------------------------------

@dataclass
class PartyLinkOut:
    party_id: int
    name: str
    side: str
    url: str
    token: str
    code: str | None  # a per-party access code (respondents), shown once


@dataclass
class Scheduled:
    session: MediationSession
    plan: SessionPlan
    links: list[PartyLinkOut]


def _check_start(starts_at: dt.datetime) -> None:
    if starts_at.tzinfo is None:
        raise ValidationFailed("Give the time with its zone, e.g. 2026-12-01T09:00:00+08:00.",
                               fields={"starts_at": "timezone required"})
    if starts_at < utcnow() - dt.timedelta(minutes=5):
        raise ValidationFailed("The session cannot start in the past.", fields={"starts_at": "in the past"})


async def _party_links(s: AsyncSession, actor: Actor, case: Case, sess: MediationSession, *, settings) -> list[PartyLinkOut]:
    links = []
    for party in case.parties:
        invite, token = await create_invite(s, actor, sess.id, InviteIn(role="party", party_id=party.id),
                                            secret=settings.secret_key,
                                            default_seconds=settings.join_token_default_seconds)
        code = await issue_party_code(s, actor, case, party) if party.side != "applicant" else None
        links.append(PartyLinkOut(party.id, party.name, party.side, f"{settings.public_url}/join/{token}", token, code))
    return links


async def _notify_schedule(s: AsyncSession, case: Case, sess: MediationSession, plan: SessionPlan,
                           links: list[PartyLinkOut], *, event: str) -> None:
    cfg = notify.config()
    by_party = {link.party_id: link for link in links}
    recipients = await notify.party_recipients(s, list(case.parties))
    mediator = case.mediator.name if case.mediator else ""
    base = {"number": case.number, "title": case.title, "institution": case.institution.name,
            "duration": plan.duration_minutes, "mediator": mediator}
    for r in recipients:
        link = by_party[r.extra["party_id"]]
        r.extra.update(url=link.url, checks_url=link.url + "/checks", start=_local(plan.starts_at, r.lang),
                       code_line=(translator(r.lang)("notify.code_line").format(code=link.code)
                                  if link.code else translator(r.lang)("notify.code_line_applicant")))
    key = f"sched:{sess.id}:{plan.revision}"
    ics_text = None
    for r in recipients:
        # Each party's calendar entry carries their own link, so the e-mails are sent one by one.
        link = by_party[r.extra["party_id"]]
        ics_text = ics(uid=f"session-{sess.id}@mediation", starts_at=plan.starts_at, minutes=plan.duration_minutes,
                       summary=translator(r.lang)("ics.summary").format(number=case.number),
                       description=f"{case.title}\n{link.url}", url=link.url, sequence=plan.revision - 1)
        await notify.send(s, event, [r], base, key=key, case_id=case.id, session_id=sess.id, ics=ics_text)
    staff = await notify.mediator_recipients(s, case.mediator_id)
    for r in staff:
        r.extra.update(start=_local(plan.starts_at, r.lang), url=f"{cfg.public_url}/staff/cases/{case.id}",
                       checks_url="", code_line="")
    await notify.send(s, event, staff, base, key=key + ":staff", case_id=case.id, session_id=sess.id)
    # The reminder waits in the outbox until shortly before the session (withdrawn if it moves).
    lead = dt.timedelta(minutes=cfg.reminder_minutes)
    now = utcnow()
    when = plan.starts_at - lead
    if when <= now + dt.timedelta(minutes=10):
        when = plan.starts_at - dt.timedelta(minutes=15)
    if when > now:
        await notify.send(s, "session_reminder", recipients + staff, base, key=f"remind:{sess.id}:{plan.revision}",
                          case_id=case.id, session_id=sess.id, delay=(when - now).total_seconds())


def _local(value: dt.datetime, lang: str) -> str:
    local = value.astimezone(deadlines.tz())
    return local.strftime("%Y-%m-%d %H:%M")


async def schedule(s: AsyncSession, actor: Actor, case_id: int, data: ScheduleIn, *, settings) -> Scheduled:
    """The mediator schedules a session: join links and codes for every party, notifications, a reminder."""
    case = await _case(s, case_id, lock=True)
    require_case_mediator(actor, case)
    _check_start(data.starts_at)
    decl = await declaration_of(s, case)
    if decl is None:
        raise Conflict("Declare first whether you have a conflict of interest in this case.",
                       code="declaration_required")
    sess = await open_session(s, actor, case.id, SessionIn(scheduled_at=data.starts_at))
    plan = SessionPlan(session_id=sess.id, case_id=case.id, starts_at=data.starts_at,
                       duration_minutes=data.duration_minutes, revision=1)
    s.add(plan)
    await s.flush()
    links = await _party_links(s, actor, case, sess, settings=settings)
    await audit.append(s, actor.ref(), "session.scheduled", case_id=case.id, session_id=sess.id,
                       data={"starts_at": data.starts_at, "duration_minutes": data.duration_minutes,
                             "notified": data.notify})
    if data.notify:
        await _notify_schedule(s, case, sess, plan, links, event="session_scheduled")
    return Scheduled(sess, plan, links)


async def reschedule(s: AsyncSession, actor: Actor, session_id: int, data: ScheduleIn, *, settings) -> Scheduled:
    sess = await get_session(s, session_id, lock=True)
    case = await _case(s, sess.case_id, lock=True)
    require_case_mediator(actor, case)
    if sess.status != "scheduled":
        raise Conflict("Only a session that has not started can be moved.", code="session_started")
    _check_start(data.starts_at)
    plan = await s.get(SessionPlan, sess.id)
    if plan is None:
        plan = SessionPlan(session_id=sess.id, case_id=case.id, starts_at=data.starts_at,
                           duration_minutes=data.duration_minutes, revision=1)
        s.add(plan)
    else:
        plan.revision += 1
        plan.starts_at, plan.duration_minutes, plan.updated_at = data.starts_at, data.duration_minutes, utcnow()
    before = sess.scheduled_at
    sess.scheduled_at = data.starts_at
    await notify.cancel(s, f"remind:{sess.id}:")
    # New links (the old ones expired with the old time) replace the parties' earlier ones.
    for inv in (await s.execute(select(Invite).where(Invite.session_id == sess.id, Invite.role == "party",
                                                     Invite.revoked_at.is_(None)))).scalars():
        await session_svc.withdraw_invite(s, actor.ref(), sess, inv)
    await s.flush()
    links = await _party_links(s, actor, case, sess, settings=settings)
    await audit.append(s, actor.ref(), "session.rescheduled", case_id=case.id, session_id=sess.id,
                       data={"from": before, "starts_at": data.starts_at, "duration_minutes": data.duration_minutes})
    if data.notify:
        await _notify_schedule(s, case, sess, plan, links, event="session_rescheduled")
    return Scheduled(sess, plan, links)


async def plans_for(s: AsyncSession, case_id: int) -> dict[int, SessionPlan]:
    rows = (await s.execute(select(SessionPlan).where(SessionPlan.case_id == case_id))).scalars()
    return {p.session_id: p for p in rows}


def _ics_escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\r\n", "\\n")
            .replace("\n", "\\n"))


def _fold(line: str) -> str:
    """RFC 5545: lines of at most 75 octets, continued with a leading space."""
    out, cur = [], b""
    for ch in line:
        b = ch.encode("utf-8")
        if len(cur) + len(b) > 74:
            out.append(cur.decode("utf-8"))
            cur = b" " + b
        else:
            cur += b
    out.append(cur.decode("utf-8"))
    return "\r\n".join(out)


def ics(*, uid: str, starts_at: dt.datetime, minutes: int, summary: str, description: str = "",
        url: str | None = None, location: str = "", sequence: int = 0) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    start = starts_at.astimezone(dt.timezone.utc)
    end = start + dt.timedelta(minutes=minutes)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//mediation//procedure//ZH", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH", "BEGIN:VEVENT", f"UID:{uid}", f"SEQUENCE:{sequence}",
             f"DTSTAMP:{utcnow().strftime(fmt)}", f"DTSTART:{start.strftime(fmt)}", f"DTEND:{end.strftime(fmt)}",
             f"SUMMARY:{_ics_escape(summary)}"]
    if description:
        lines.append(f"DESCRIPTION:{_ics_escape(description)}")
    if url:
        lines.append(f"URL:{url}")
    if location:
        lines.append(f"LOCATION:{_ics_escape(location)}")
    lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT30M", f"DESCRIPTION:{_ics_escape(summary)}", "END:VALARM",
              "END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join(_fold(x) for x in lines) + "\r\n"


async def session_ics(s: AsyncSession, session_id: int, lang: str, t) -> tuple[str, MediationSession]:
    sess = await get_session(s, session_id)
    case = await _case(s, sess.case_id)
    plan = await s.get(SessionPlan, sess.id)
    if sess.scheduled_at is None and plan is None:
        raise NotFound("This session has no scheduled time.")
    starts = plan.starts_at if plan else sess.scheduled_at
    minutes = plan.duration_minutes if plan else 60
    text = ics(uid=f"session-{sess.id}@mediation", starts_at=starts, minutes=minutes,
               summary=t("ics.summary").format(number=case.number), description=case.title,
               location=case.institution.name, sequence=(plan.revision - 1) if plan else 0)
    return text, sess


# --- contacts -------------------------------------------------------------------------------------------------------

async def set_contact(s: AsyncSession, by: audit.ActorRef, kind: str, ref_id: int, data: ContactIn, *,
                      case_id: int | None = None) -> Contact:
    row = (await s.execute(select(Contact).where(Contact.kind == kind, Contact.ref_id == ref_id))).scalar_one_or_none()
    if row is None:
        row = Contact(kind=kind, ref_id=ref_id, email="", phone="", lang="")
        s.add(row)
    changed = []
    for name in ("email", "phone", "lang"):
        value = getattr(data, name)
        if value is not None and value != getattr(row, name):
            setattr(row, name, value)
            changed.append(name)
    row.updated_at = utcnow()
    await s.flush()
    if changed and case_id is not None:
        await audit.append(s, by, "contact.updated", case_id=case_id, data={"kind": kind, "ref_id": ref_id,
                                                                          "fields": changed})
    return row


async def set_party_contact(s: AsyncSession, actor: Actor, case_id: int, party_id: int, data: ContactIn) -> Contact:
    case = await _case(s, case_id)
    if actor.applicant_case_id is not None:
        if actor.applicant_case_id != case.id:
            raise Forbidden("You have no access to this case.")
        party = next(p for p in case.parties if p.side == "applicant")
        if party.id != party_id:
            raise Forbidden("The applicant can set only their own contact.")
    else:
        _require_case_staff(actor, case)
        party = await _party(s, case, party_id)
    return await set_contact(s, actor.ref(), "party", party.id, data, case_id=case.id)


async def contact_of(s: AsyncSession, kind: str, ref_id: int) -> Contact | None:
    return (await s.execute(select(Contact).where(Contact.kind == kind, Contact.ref_id == ref_id))).scalar_one_or_none()


# --- one case's procedure at a glance ---------------------------------------------------------------------------------

async def case_overview(s: AsyncSession, actor: Actor, case_id: int, now: dt.datetime | None = None) -> dict:
    case = await _case(s, case_id)
    require_view(actor, case)
    decl = await declaration_of(s, case)
    consents = {}
    for p in case.parties:
        c = await consent_of(s, p.id)
        consents[p.id] = None if c is None else {"agree": c.agree, "how": c.how, "at": c.created_at.isoformat()}
    dls = (await deadlines.for_cases(s, [case.id], include_closed=True)).get(case.id, [])
    plans = await plans_for(s, case.id)
    return {
        "case_id": case.id,
        "declaration": None if decl is None else {"conflict": decl.conflict, "reason": decl.reason,
                                                  "at": decl.created_at.isoformat(), "mediator_id": decl.mediator_id},
        "declaration_needed": case.mediator_id is not None and decl is None
                              and case.status in ("assigned", "in_mediation"),
        "consents": [{"party_id": p.id, "name": p.name, "side": p.side, "consent": consents[p.id]} for p in case.parties],
        "recusals": [recusal_json(r) for r in await recusals(s, actor, case_id=case.id)] if actor.is_staff else [],
        "deadlines": [deadlines.flag(d, now) for d in dls],
        "plans": [{"session_id": p.session_id, "starts_at": p.starts_at.isoformat(),
                   "duration_minutes": p.duration_minutes, "revision": p.revision} for p in plans.values()],
    }


def recusal_json(r: RecusalRequest) -> dict:
    return {"id": r.id, "case_id": r.case_id, "party_id": r.party_id, "mediator_id": r.mediator_id, "reason": r.reason,
            "status": r.status, "created_at": r.created_at.isoformat(),
            "decided_at": r.decided_at.isoformat() if r.decided_at else None, "decision_note": r.decision_note}
