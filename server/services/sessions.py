"""Mediation sessions of a case, and the join links (signed tokens) that let people into them."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit, events
from server.core import serialize as ser
from server.core.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from server.core.models import Expert, Invite, MediationSession, Party
from server.core.policy import ACCOMPANYING_ROLES, PARTY_LINK_ROLES, Actor, require_case_mediator
from server.core.schemas import InviteIn, SessionIn
from server.core.security import ROLE_GRANTS, TokenInvalid, decode_join_token, issue_join_token
from server.core.throttle import Caller, guard
from server.services.cases import get_case, transition

EXPERT_LINK_SECONDS = 2 * 3600
SCHEDULED_GRACE_HOURS = 4
MAX_LINK_SECONDS = 30 * 24 * 3600
DIAL_IN_DIGITS = 8   # a session's number for callers (docs/protocol.md, "Telephone (SIP)")
PIN_DIGITS = 6       # a link's personal PIN


async def open_session(s: AsyncSession, actor: Actor, case_id: int, data: SessionIn) -> MediationSession:
    case = await get_case(s, case_id, lock=True)
    user = require_case_mediator(actor, case)
    if data.scheduled_at is not None and data.scheduled_at.tzinfo is None:
        raise ValidationFailed("Give the time with its zone, e.g. 2026-12-01T09:00:00+08:00.",
                               fields={"scheduled_at": "timezone required"})
    await transition(s, actor, case, "open_session")
    sess = MediationSession(case_id=case.id, room_id=uuid.uuid4().hex[:20], status="scheduled",
                            scheduled_at=data.scheduled_at, created_by=user.id)
    s.add(sess)
    await s.flush()
    await audit.append(s, actor.ref(), "session.opened", case_id=case.id, session_id=sess.id,
                       data={"room_id": sess.room_id, "scheduled_at": data.scheduled_at})
    return sess


async def get_session(s: AsyncSession, session_id: int, *, lock: bool = False) -> MediationSession:
    q = select(MediationSession).where(MediationSession.id == session_id)
    if lock:
        q = q.with_for_update()
    sess = (await s.execute(q)).scalar_one_or_none()
    if sess is None:
        raise NotFound("No such session.")
    return sess


async def create_invite(s: AsyncSession, actor: Actor, session_id: int, data: InviteIn, *, secret: str,
                        default_seconds: int) -> tuple[Invite, str]:
    sess = await get_session(s, session_id)
    case = await get_case(s, sess.case_id)
    user = require_case_mediator(actor, case)
    return await issue_invite(s, sess, data, by=actor.ref(), created_by=user.id, mediator=user, secret=secret,
                              default_seconds=default_seconds)


async def issue_invite(s: AsyncSession, sess: MediationSession, data: InviteIn, *, by: audit.ActorRef,
                       created_by: int, secret: str, default_seconds: int, mediator=None,
                       enter_directly: bool = False) -> tuple[Invite, str]:
    """Make a join link; the caller has checked who may. `created_by` is the staff member answerable for it
    (for a court's review session, the case's mediator: services/outcome/review.py). `enter_directly`: the
    holder skips the lobby (a court's review, where no mediator admits: docs/procedure.md)."""
    case = await get_case(s, sess.case_id)
    if sess.status == "ended":
        raise Conflict("This session has ended; open a new one.", code="session_ended")
    name, party_id, expert_id, user_id = data.name, None, None, None
    specialty, organisation = "", ""
    if data.expires_in is None and data.role != "expert" and sess.scheduled_at is not None:
        # A link made days before a scheduled session must still work at that time.
        until = (sess.scheduled_at + dt.timedelta(hours=SCHEDULED_GRACE_HOURS)
                 - dt.datetime.now(dt.timezone.utc)).total_seconds()
        default_seconds = int(min(max(until, default_seconds), MAX_LINK_SECONDS))
    if data.role != "expert" and (data.specialty or data.organisation or data.direct):
        raise ValidationFailed("Specialty, organisation and direct entry are for experts.",
                               fields={"role": "only experts have these"})
    if data.court is not None and data.role != "observer":
        raise ValidationFailed("Only an observer is a judge of a court.", fields={"court": "only for an observer"})
    seconds = data.expires_in or default_seconds
    single_use = False
    accompanies = None  # an interpreter's or support person's party: (participant id, name)
    if data.party_id is not None and data.role not in PARTY_LINK_ROLES:
        raise ValidationFailed("Only a party's link, or an interpreter's or support person's, names a party.",
                               fields={"party_id": "only for roles party, interpreter and support"})
    if data.role in PARTY_LINK_ROLES:
        if data.party_id is None:
            raise ValidationFailed("Say which party this link is for." if data.role == "party" else
                                   "Say which party the interpreter or support person accompanies.",
                                   fields={"party_id": f"required for role {data.role}"})
        party = await s.get(Party, data.party_id)
        if party is None or party.case_id != case.id:
            raise ValidationFailed("This party is not in the case.", fields={"party_id": "not a party of this case"})
        party_id = party.id
    if data.role == "party":
        name = party.name
    elif data.role in ACCOMPANYING_ROLES:
        if not name:
            raise ValidationFailed(f"Give the {data.role}'s name.", fields={"name": "required"})
        accompanies = (party_participant_id(party.id), party.name)
    elif data.role == "expert":
        if data.expert_id is not None:
            expert = await s.get(Expert, data.expert_id)
            if expert is None or not expert.active:
                raise ValidationFailed("Unknown expert.", fields={"expert_id": "not in the expert pool"})
            name, expert_id = expert.name, expert.id
            specialty, organisation = expert.specialty, expert.organisation
        elif not name:
            raise ValidationFailed("Pick an expert from the pool or give a name.", fields={"name": "required"})
        elif not data.specialty:
            raise ValidationFailed("Give the expert's specialty.", fields={"specialty": "required"})
        else:
            specialty, organisation = data.specialty, data.organisation or ""
        seconds = data.expires_in or EXPERT_LINK_SECONDS
        single_use = True
    elif data.role == "mediator":
        if mediator is None:
            raise ValidationFailed("Only the mediator makes a mediator's link.", fields={"role": "not here"})
        name, user_id = mediator.name or mediator.username, mediator.id
    elif data.role == "observer" and not name:
        raise ValidationFailed("Give the observer's name.", fields={"name": "required"})
    judge = data.court is not None
    if judge:
        organisation = data.court
    # The name the room and the record show: a judge with the court's name.
    shown = f"{name}（{organisation}）" if judge else name
    expires_at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    grants = ROLE_GRANTS[data.role]
    direct = data.direct or enter_directly
    # A party's participant id is its own (party-<id>); anyone accompanying it gets a fresh one.
    own = party_id if data.role == "party" else expert_id or user_id
    participant = f"{data.role}-{own or uuid.uuid4().hex[:8]}"
    token, jti = issue_join_token(secret, session_id=sess.id, room_id=sess.room_id, role=data.role,
                                  name=shown, grants=grants, expires_at=expires_at,
                                  participant=participant, accompanies=accompanies)
    await _number_session(s, sess)
    pin = await _new_pin(s, sess, secret)
    invite = Invite(jti=jti, session_id=sess.id, role=data.role, name=name, party_id=party_id,
                    expert_id=expert_id, user_id=user_id, grants={"grants": grants}, single_use=single_use,
                    created_by=created_by, expires_at=expires_at, specialty=specialty, organisation=organisation,
                    direct=direct, judge=judge, participant_id=participant, pin_digest=pin_digest(secret, sess.id, pin))
    s.add(invite)
    await s.flush()
    invite.pin = pin
    await audit.append(s, by, "invite.created", case_id=case.id, session_id=sess.id,
                       data={"invite_id": invite.id, "role": data.role, "name": name, "party_id": party_id,
                             **({"accompanies": accompanies[1]} if accompanies else {}),
                             "expert_id": expert_id, "specialty": specialty, "organisation": organisation,
                             "direct": direct, "judge": judge, "expires_at": expires_at})
    return invite, token


def party_participant_id(party_id: int) -> str:
    """The live room's id of a party joining on its own link."""
    return f"party-{party_id}"


def pin_digest(secret: str, session_id: int, pin: str) -> str:
    """A PIN is six digits: a keyed digest (HMAC with SECRET_KEY), like the SMS codes, so the
    database alone does not give them away; the throttle, not the hash, bounds guessing."""
    return hmac.new(secret.encode(), f"pin:{session_id}:{pin}".encode(), hashlib.sha256).hexdigest()


async def _number_session(s: AsyncSession, sess: MediationSession) -> None:
    """The session's dial-in number, given with its first link (random, so not guessable in order)."""
    while sess.dial_in is None:
        number = str(10 ** (DIAL_IN_DIGITS - 1) + secrets.randbelow(9 * 10 ** (DIAL_IN_DIGITS - 1)))
        if (await s.execute(select(MediationSession.id).where(MediationSession.dial_in == number))).first() is None:
            sess.dial_in = number


async def _new_pin(s: AsyncSession, sess: MediationSession, secret: str) -> str:
    """A PIN no other link of this session has."""
    while True:
        pin = f"{secrets.randbelow(10 ** PIN_DIGITS):0{PIN_DIGITS}d}"
        taken = (await s.execute(select(Invite.id).where(Invite.session_id == sess.id,
                                                         Invite.pin_digest == pin_digest(secret, sess.id, pin)))).first()
        if taken is None:
            return pin


def dial_in_key(number: str) -> str:
    return f"dialin:{number[:16]}"


def mask_phone(digits: str) -> str:
    """What the room and the record show of a caller's number: its last four digits."""
    return f"***{digits[-4:]}" if len(digits) >= 4 else "***"


async def dial_in(s: AsyncSession, number: str, pin: str, caller: Caller, *, secret: str,
                  caller_digits: str = "") -> tuple[Invite, MediationSession, str]:
    """A caller's session number and PIN -> the link's invite, its session and a join token for the
    same participant, named as a telephone participant (name, ☎ and the caller's last four digits).
    Guessing is throttled like the access code (account `dialin:<number>`, the caller's address:
    docs/architecture.md, "Guessing"); every miss is the same vague refusal. An ended session is
    said only to whoever has its right PIN (Conflict session_ended)."""
    attempt = guard.attempt(dial_in_key(number), caller)
    ok_form = number.isdigit() and len(number) == DIAL_IN_DIGITS and pin.isdigit() and len(pin) == PIN_DIGITS
    sess = (await s.execute(select(MediationSession).where(MediationSession.dial_in == number))
            ).scalar_one_or_none() if ok_form else None
    invite = None
    if sess is not None:
        invite = (await s.execute(select(Invite).where(Invite.session_id == sess.id,
                                                       Invite.pin_digest == pin_digest(secret, sess.id, pin)))
                  ).scalar_one_or_none()
    now = dt.datetime.now(dt.timezone.utc)
    if invite is None or invite.revoked_at is not None or invite.participant_id is None or \
            _aware(invite.expires_at) <= now:
        raise Unauthorized("Session number or PIN does not match.", code="bad_pin")
    guard.succeeded(attempt)
    if sess.status == "ended":
        raise Conflict("This session has ended.", code="session_ended")
    shown = f"{invite.name}（{invite.organisation}）" if invite.judge else invite.name
    accompanies = None  # an interpreter or support person on the phone still goes with their party
    if invite.role in ACCOMPANYING_ROLES and invite.party_id is not None:
        party = await s.get(Party, invite.party_id)
        if party is not None:
            accompanies = (party_participant_id(party.id), party.name)
    token, _ = issue_join_token(secret, session_id=sess.id, room_id=sess.room_id, role=invite.role,
                                name=f"{shown} ☎{caller_digits[-4:]}" if caller_digits else f"{shown} ☎",
                                grants=list((invite.grants or {}).get("grants", ROLE_GRANTS[invite.role])),
                                expires_at=_aware(invite.expires_at), participant=invite.participant_id,
                                jti=invite.jti, accompanies=accompanies)
    await audit.append(s, audit.ActorRef("participant", invite.participant_id, invite.name), "phone.dialed_in",
                       case_id=sess.case_id, session_id=sess.id,
                       data={"invite_id": invite.id, "caller": mask_phone(caller_digits)})
    return invite, sess, token


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


async def revoke_invite(s: AsyncSession, actor: Actor, session_id: int, invite_id: int) -> Invite:
    sess = await get_session(s, session_id)
    case = await get_case(s, sess.case_id)
    require_case_mediator(actor, case)
    invite = await s.get(Invite, invite_id)
    if invite is None or invite.session_id != sess.id:
        raise NotFound("No such invitation in this session.")
    if invite.revoked_at is None:
        await withdraw_invite(s, actor.ref(), sess, invite)
        await audit.append(s, actor.ref(), "invite.revoked", case_id=case.id, session_id=sess.id,
                           data={"invite_id": invite.id, "role": invite.role, "name": invite.name})
    return invite


async def withdraw_invite(s: AsyncSession, by: audit.ActorRef, sess: MediationSession, invite: Invite) -> None:
    """The one place a link stops working: whoever holds it leaves the live room (InviteRevoked)."""
    invite.revoked_at = dt.datetime.now(dt.timezone.utc)
    await events.publish(s, events.InviteRevoked(case_id=sess.case_id, session_id=sess.id, room_id=sess.room_id,
                                                 invite_id=invite.id))


async def end(s: AsyncSession, sess: MediationSession, by: audit.ActorRef, *, via: str | None = None) -> None:
    """The one place a session ends: the record, the audit chain, and the live room (SessionEnded,
    acted on after the commit). Callers check who may end it; `via` says how ("room", "recusal", …)."""
    if sess.status == "ended":
        raise Conflict("This session has already ended.", code="session_ended")
    sess.status = "ended"
    sess.ended_at = dt.datetime.now(dt.timezone.utc)
    await audit.append(s, by, "session.ended", case_id=sess.case_id, session_id=sess.id,
                       data={"via": via} if via else {})
    await events.publish(s, events.SessionEnded(case_id=sess.case_id, session_id=sess.id, room_id=sess.room_id,
                                                via=via or "staff"))


async def end_session(s: AsyncSession, actor: Actor, session_id: int) -> MediationSession:
    sess = await get_session(s, session_id, lock=True)
    case = await get_case(s, sess.case_id)
    require_case_mediator(actor, case)
    await end(s, sess, actor.ref())
    return sess


async def list_sessions(s: AsyncSession, case_id: int) -> list[MediationSession]:
    return list((await s.execute(select(MediationSession).where(MediationSession.case_id == case_id)
                                 .order_by(MediationSession.id))).scalars().all())


async def list_invites(s: AsyncSession, session_id: int) -> list[Invite]:
    return list((await s.execute(select(Invite).where(Invite.session_id == session_id)
                                 .order_by(Invite.id))).scalars().all())


async def invite_views(s: AsyncSession, invites: list[Invite]) -> list[dict]:
    """Links as JSON (serialize.invite); an interpreter's or support person's names the party accompanied."""
    ids = {i.party_id for i in invites if i.role in ACCOMPANYING_ROLES and i.party_id is not None}
    names = ({p.id: p.name for p in (await s.execute(select(Party).where(Party.id.in_(ids)))).scalars()}
             if ids else {})
    return [ser.invite(i, names.get(i.party_id, "") if i.role in ACCOMPANYING_ROLES else None) for i in invites]


async def verify_join_token(s: AsyncSession, secret: str, token: str) -> tuple[dict, Invite, MediationSession]:
    """Signature, expiry, revocation and the session's state; raises TokenInvalid with a code."""
    claims = decode_join_token(secret, token)
    invite = (await s.execute(select(Invite).where(Invite.jti == claims["jti"]))).scalar_one_or_none()
    if invite is None:
        raise TokenInvalid("token_invalid", "This join link is not valid.")
    if invite.revoked_at is not None:
        raise TokenInvalid("token_revoked", "This join link has been withdrawn.")
    sess = await get_session(s, invite.session_id)
    if sess.status == "ended" or sess.id != claims["sid"]:
        raise TokenInvalid("session_ended", "This mediation session has ended.")
    return claims, invite, sess
