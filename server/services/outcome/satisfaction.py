"""Satisfaction (好差评, "one matter, one rating"): each party rates the service once per case.

Rules (docs/procedure.md, "After the agreement"):
- a party rates after a session of the case has ended or once the case has concluded
  (settled, failed, withdrawn, rejected, archived), from their personal link or the applicant's
  access code: very satisfied (5) … very dissatisfied (1), with an optional comment;
- once per case and party: a second rating is refused (``already_rated``) and changes nothing;
- the rating names the institution and the mediator it rates (as they were at the time), for
  the analytics (server/services/archive/analytics.py);
- a poor rating (2 不满意, 1 非常不满意) opens a review task for the institution
  (server/services/outcome/followup.py).
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.errors import Conflict
from server.core.models import Case, MediationSession, Rating, utcnow
from server.core.schemas import Strict
from server.services.cases import get_case
from server.services.outcome import agreements as agr
from server.services.outcome import followup

LEVELS = {5: "very_satisfied", 4: "satisfied", 3: "neutral", 2: "dissatisfied", 1: "very_dissatisfied"}
POOR = 2  # this level and below is a 差评
END_STATUSES = ("settled", "failed", "withdrawn", "rejected", "archived")


class RatingIn(Strict):
    level: int = Field(ge=1, le=5)
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""


async def stage_of(s: AsyncSession, case: Case) -> str | None:
    """'end' once the case concluded, 'session' after a session ended, else None (nothing to rate yet)."""
    if case.status in END_STATUSES:
        return "end"
    ended = (await s.execute(select(MediationSession.id).where(MediationSession.case_id == case.id,
                                                               MediationSession.status == "ended").limit(1))).first()
    return "session" if ended else None


async def rating_of(s: AsyncSession, case_id: int, party_id: int) -> Rating | None:
    return (await s.execute(select(Rating).where(Rating.case_id == case_id, Rating.party_id == party_id))
            ).scalar_one_or_none()


async def rate(s: AsyncSession, proof: agr.PartyProof, data: RatingIn) -> Rating:
    case = await get_case(s, proof.case_id, lock=True)
    if await rating_of(s, case.id, proof.party_id) is not None:
        raise Conflict("You have already rated this matter (one matter, one rating).", code="already_rated")
    stage = await stage_of(s, case)
    if stage is None:
        raise Conflict("The service can be rated after a session or once the case has concluded.",
                       code="not_yet")
    r = Rating(case_id=case.id, party_id=proof.party_id, level=data.level, comment=data.comment,
               institution_id=case.institution_id, mediator_id=case.mediator_id, stage=stage, via=proof.via,
               created_at=utcnow())
    s.add(r)
    await s.flush()
    await audit.append(s, proof.ref(), "rating.given", case_id=case.id, data={
        "rating_id": r.id, "party_id": proof.party_id, "level": data.level, "label": LEVELS[data.level],
        "comment": data.comment, "stage": stage, "mediator_id": case.mediator_id})
    if data.level <= POOR:
        await followup.open_review(s, case, r)
    return r


def view(r: Rating, names: dict[int, str] | None = None) -> dict:
    return {"id": r.id, "case_id": r.case_id, "party_id": r.party_id, "name": (names or {}).get(r.party_id, ""),
            "level": r.level, "label": LEVELS[r.level], "poor": r.level <= POOR, "comment": r.comment,
            "stage": r.stage, "at": r.created_at.isoformat()}


async def case_views(s: AsyncSession, case: Case) -> list[dict]:
    names = {p.id: p.name for p in case.parties}
    rows = (await s.execute(select(Rating).where(Rating.case_id == case.id).order_by(Rating.id))).scalars()
    return [view(r, names) for r in rows]


async def party_view(s: AsyncSession, case: Case, party_id: int) -> dict:
    mine = await rating_of(s, case.id, party_id)
    stage = await stage_of(s, case)
    return {"rating": view(mine) if mine else None, "may_rate": mine is None and stage is not None,
            "stage": stage, "levels": [{"level": k, "label": v} for k, v in LEVELS.items()]}
