"""Read-only helpers for the portal pages: counts and "what may this viewer do here".

Nothing here decides a rule on its own: the answers come from server.policy and
server.workflow, the same code the services call before they change anything, so a button
is shown exactly when the matching service call would be allowed (the service still checks).
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import AppError
from server.core.models import Case
from server.core.policy import Actor, case_scope, require_case_mediator, require_intake_for
from server.core.workflow import TRANSITIONS

# Which policy check guards each case action (mirrors services.cases / services.sessions).
_INTAKE_ACTIONS = ("accept", "reject", "transfer", "assign", "archive")
_MEDIATOR_ACTIONS = ("open_session", "settle", "fail")


async def status_counts(s: AsyncSession, actor: Actor, *, mine: bool = False) -> dict[str, int]:
    """How many cases the viewer may list, per status (for the queue's filter chips)."""
    scope = case_scope(actor)
    q = select(Case.status, func.count()).group_by(Case.status)
    if scope is not None:
        q = q.where(scope)
    if mine and actor.user is not None and actor.user.role == "mediator":
        q = q.where(Case.mediator_id == actor.user.id)
    return {status: n for status, n in (await s.execute(q)).all()}


def may(check, actor: Actor, case: Case) -> bool:
    """Whether a policy check (server/core/policy.py) lets the viewer act on this case."""
    try:
        check(actor, case)
    except AppError:
        return False
    return True


def allowed_actions(actor: Actor, case: Case) -> set[str]:
    """Case actions the viewer may take now, given their role and the case's status."""
    out: set[str] = set()
    if actor.applicant_case_id is not None:
        if actor.applicant_case_id == case.id and case.status in TRANSITIONS["withdraw"][0]:
            out.add("withdraw")
        return out
    if may(require_intake_for, actor, case):
        out.update(a for a in _INTAKE_ACTIONS if case.status in TRANSITIONS[a][0])
    if may(require_case_mediator, actor, case):
        out.update(a for a in _MEDIATOR_ACTIONS if case.status in TRANSITIONS[a][0])
        out.add("manage_sessions")
    return out
