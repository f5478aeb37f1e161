"""The judge in the loop: the court's online review of a judicial-confirmation application (司法确认在线审查).

Rules (docs/procedure.md, "The judge in the loop"):
- The court asks by a signed callback (server/http/api/followup.py, POST /court/callback/review) naming
  the application's submission key, the time and the judge. The application must exist and be pending
  at the court (``delivered`` or ``accepted``), else ``not_pending``; the time has its zone, is not in the
  past (five minutes' grace, as for scheduling) and leaves the links valid (at most 30 days ahead); one
  review at a time per application (``review_open`` while its session has not ended).
- The review is a session of the case at the court's time. It does not move the case (settled stays
  settled). Everyone enters it directly: no mediator admits people to the court's hearing.
- The judge gets an observer link (sees and hears the main room; asked for consent like any observer
  before being recorded) that names them as the judge with the court's name; it is returned in the
  callback's answer. The parties get their own links through the notification outbox; the mediator is
  told too.
- The court's decision (confirmed / rejected, by the answer callback in court.py) closes the review: its
  session ends (a judge's or party's link stops working) and the decision, and later the ruling PDF with
  its SHA-256, are linked to the review's session in the audit chain.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.errors import Conflict, NotFound, ValidationFailed
from server.core.models import Case, CourtReview, CourtSubmission, Invite, MediationSession, utcnow
from server.core.schemas import InviteIn, Name, Strict
from server.services import sessions as session_svc
from server.services.cases import get_case
from server.services.notify import messages as notify
from server.services.procedure import deadlines

PENDING = ("delivered", "accepted")
PAST_GRACE = dt.timedelta(minutes=5)
MAX_AHEAD = dt.timedelta(seconds=session_svc.MAX_LINK_SECONDS) - dt.timedelta(hours=session_svc.SCHEDULED_GRACE_HOURS)


class ReviewIn(Strict):
    submission: str = Field(min_length=8, max_length=64)
    starts_at: dt.datetime
    judge: Name
    duration_minutes: int = Field(default=60, ge=15, le=480)


@dataclass
class Opened:
    review: CourtReview
    session: MediationSession
    judge_invite: Invite
    judge_token: str
    judge_url: str


def court_ref(sub: CourtSubmission) -> audit.ActorRef:
    return audit.ActorRef("court", sub.court_id, sub.court_name)


async def open_review(s: AsyncSession, data: ReviewIn, *, settings) -> Opened:
    """The court asks for an online review session of a pending judicial-confirmation application."""
    sub = (await s.execute(select(CourtSubmission).where(CourtSubmission.key == data.submission)
                           .with_for_update())).scalar_one_or_none()
    if sub is None:
        raise NotFound("No such application.", code="no_application")
    if sub.kind != "judicial_confirmation":
        raise ValidationFailed("An online review is held for a judicial confirmation.",
                               fields={"submission": "not a judicial confirmation"})
    if sub.status not in PENDING:
        raise Conflict("The application is not pending at the court (received and not yet decided).",
                       code="not_pending", fields={"status": sub.status})
    if data.starts_at.tzinfo is None:
        raise ValidationFailed("Give the time with its zone, e.g. 2026-12-01T09:00:00+08:00.",
                               fields={"starts_at": "timezone required"})
    now = utcnow()
    if data.starts_at < now - PAST_GRACE:
        raise ValidationFailed("The review cannot start in the past.", fields={"starts_at": "in the past"})
    if data.starts_at > now + MAX_AHEAD:
        raise ValidationFailed("The review must start within 30 days.", fields={"starts_at": "too far ahead"})
    for r in await reviews_of(s, sub.id):
        if await is_open(s, r):
            raise Conflict("A review session for this application is already open.", code="review_open",
                           fields={"review_id": r.id, "starts_at": r.starts_at.isoformat()})
    case = await get_case(s, sub.case_id, lock=True)
    if case.mediator_id is None:
        raise Conflict("The case has no mediator to answer for the session.", code="no_mediator")
    by = court_ref(sub)
    sess = MediationSession(case_id=case.id, room_id=uuid.uuid4().hex[:20], status="scheduled",
                            scheduled_at=data.starts_at, created_by=case.mediator_id)
    s.add(sess)
    await s.flush()
    await audit.append(s, by, "session.opened", case_id=case.id, session_id=sess.id,
                       data={"room_id": sess.room_id, "scheduled_at": data.starts_at, "court_review": True})
    link = dict(secret=settings.secret_key, default_seconds=settings.join_token_default_seconds,
                created_by=case.mediator_id, by=by, enter_directly=True)
    invite, token = await session_svc.issue_invite(
        s, sess, InviteIn(role="observer", name=data.judge, court=sub.court_name), **link)
    review = CourtReview(case_id=case.id, submission_id=sub.id, session_id=sess.id, judge_invite_id=invite.id,
                         court_id=sub.court_id, court_name=sub.court_name, judge=data.judge,
                         starts_at=data.starts_at, duration_minutes=data.duration_minutes, decision="")
    s.add(review)
    await s.flush()
    await audit.append(s, by, "court.review_requested", case_id=case.id, session_id=sess.id, data={
        "review_id": review.id, "submission_id": sub.id, "court": sub.court_name, "judge": data.judge,
        "starts_at": data.starts_at, "duration_minutes": data.duration_minutes, "judge_invite_id": invite.id})
    party_urls = {}
    for party in case.parties:
        _inv, ptoken = await session_svc.issue_invite(s, sess, InviteIn(role="party", party_id=party.id), **link)
        party_urls[party.id] = f"{settings.public_url}/join/{ptoken}"
    await _notify(s, case, sess, review, party_urls)
    return Opened(review, sess, invite, token, f"{settings.public_url}/join/{token}")


async def _notify(s: AsyncSession, case: Case, sess: MediationSession, review: CourtReview,
                  party_urls: dict[int, str]) -> None:
    base = {"number": case.number, "title": case.title, "court": review.court_name, "judge": review.judge,
            "duration": review.duration_minutes}
    key = f"review:{review.id}"
    for r in await notify.party_recipients(s, list(case.parties)):
        r.extra.update(url=party_urls[r.extra["party_id"]], start=_local(review.starts_at))
        await notify.send(s, "court_review", [r], base, key=key, case_id=case.id, session_id=sess.id)
    staff = await notify.mediator_recipients(s, case.mediator_id)
    for r in staff:
        r.extra.update(url=f"{notify.config().public_url}/staff/cases/{case.id}", start=_local(review.starts_at))
    await notify.send(s, "court_review_staff", staff, base, key=key + ":staff", case_id=case.id, session_id=sess.id)


def _local(value: dt.datetime) -> str:
    return value.astimezone(deadlines.tz()).strftime("%Y-%m-%d %H:%M")


# --- reading ------------------------------------------------------------------------------------------------

async def reviews_of(s: AsyncSession, submission_id: int) -> list[CourtReview]:
    return list((await s.execute(select(CourtReview).where(CourtReview.submission_id == submission_id)
                                 .order_by(CourtReview.id))).scalars().all())


async def is_open(s: AsyncSession, r: CourtReview) -> bool:
    """Open: not decided and its session has not ended."""
    return not r.decision and (await s.get(MediationSession, r.session_id)).status != "ended"


async def case_views(s: AsyncSession, case: Case) -> list[dict]:
    rows = list((await s.execute(select(CourtReview).where(CourtReview.case_id == case.id)
                                 .order_by(CourtReview.id))).scalars().all())
    out = []
    for r in rows:
        sess = await s.get(MediationSession, r.session_id)
        sub = await s.get(CourtSubmission, r.submission_id)
        ruling = (sub.answer or {}).get("ruling") or {}
        state = ("decided" if r.decision else "ended" if sess.status == "ended" else
                 "live" if sess.status == "live" else "scheduled")
        out.append({"id": r.id, "submission_id": r.submission_id, "session_id": r.session_id,
                    "court_id": r.court_id, "court_name": r.court_name, "judge": r.judge,
                    "starts_at": r.starts_at.astimezone(dt.timezone.utc).isoformat(), "starts_local": _local(r.starts_at),
                    "duration_minutes": r.duration_minutes, "requested_at": r.created_at.isoformat(),
                    "requested_local": _local(r.created_at), "state": state, "session_status": sess.status,
                    "decision": r.decision or None,
                    "decided_at": r.decided_at.isoformat() if r.decided_at else None,
                    "ruling_sha256": ruling.get("sha256") if ruling.get("review_id") == r.id else None})
    return out


async def review_of_session(s: AsyncSession, session_id: int) -> CourtReview | None:
    return (await s.execute(select(CourtReview).where(CourtReview.session_id == session_id))).scalar_one_or_none()


# --- the decision -------------------------------------------------------------------------------------------

async def decided(s: AsyncSession, sub: CourtSubmission, decision: str) -> CourtReview | None:
    """The court decided (court.record_answer): the application's last review records it. Returns the
    review the decision belongs to, if there was one; `close` then ends its session."""
    rows = await reviews_of(s, sub.id)
    if not rows:
        return None
    r = rows[-1]
    if not r.decision:
        r.decision = decision
        r.decided_at = utcnow()
    return r


async def close(s: AsyncSession, sub: CourtSubmission, r: CourtReview) -> None:
    """After the decision the review is over: its session ends, and every link to it stops working."""
    sess = await session_svc.get_session(s, r.session_id, lock=True)
    if sess.status != "ended":
        await session_svc.end(s, sess, court_ref(sub), via="court_decision")


async def last_review(s: AsyncSession, submission_id: int) -> CourtReview | None:
    rows = await reviews_of(s, submission_id)
    return rows[-1] if rows else None
