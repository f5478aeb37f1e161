"""Tasks after the case's end: the mediator's follow-up visit (回访) and the institution's review of a poor rating.

Rules (docs/procedure.md, "After the agreement"):
- a settled case gets a follow-up task for its mediator, due FOLLOWUP_DAYS (30) days later; a
  failed mediation one due FOLLOWUP_FAILED_DAYS (15) days later. Its time limit is the deadline
  of the rule ``followup`` / ``followup_failed`` that the case step starts
  (server/services/procedure/deadlines.py), so it is reminded, flagged overdue and listed like
  every other deadline;
- the mediator records the outcome (``reached``: the parties were reached and the matter rests,
  ``performed``: the agreement was carried out, ``new_dispute``: a new dispute arose,
  ``unreachable``) with a note; that meets the deadline and goes into the case record;
- a poor rating (不满意, 非常不满意) opens a review task for the case's institution (rule
  ``review``, 5 working days); intake of that institution (or an admin) records how it was
  handled (``resolved``, ``explained``, ``unfounded``);
- a task is done once: a second completion is refused (``already_done``).
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit, events
from server.core.errors import Conflict, NotFound, ValidationFailed
from server.core.models import Case, Deadline, FollowTask, Rating, User, utcnow
from server.core.policy import Actor, case_scope, require_case_mediator, require_intake_for, require_staff, require_view
from server.core.schemas import Strict
from server.services.cases import get_case
from server.services.notify import messages as notify
from server.services.procedure import deadlines

OUTCOMES = {"followup": ("reached", "performed", "new_dispute", "unreachable"),
            "review": ("resolved", "explained", "unfounded")}
RULE_OF_STEP = {"settle": "followup", "fail": "followup_failed"}


class TaskDoneIn(Strict):
    outcome: Literal["reached", "performed", "new_dispute", "unreachable", "resolved", "explained", "unfounded"]
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""

    @model_validator(mode="after")
    def _note_for_news(self):
        if self.outcome in ("new_dispute", "resolved") and not self.note:
            raise ValueError("say what happened in the note")
        return self


async def _open_deadline(s: AsyncSession, case_id: int, rule: str) -> Deadline | None:
    return (await s.execute(select(Deadline).where(Deadline.case_id == case_id, Deadline.rule == rule,
                                                   Deadline.status == "open")
                            .order_by(Deadline.id.desc()).limit(1))).scalar_one_or_none()


async def on_case_transitioned(s: AsyncSession, e: events.CaseTransitioned) -> None:
    """A settlement or a failed mediation schedules the follow-up (subscribed in server/system.py after the
    procedural rules, which start the rule's deadline in the same transaction)."""
    rule = RULE_OF_STEP.get(e.action)
    if rule is None:
        return
    d = await _open_deadline(s, e.case.id, rule)
    due_on = d.due_on if d is not None else deadlines.due_date(deadlines.RULES[rule], utcnow()).isoformat()
    task = FollowTask(case_id=e.case.id, kind="followup", rule=rule, status="open", due_on=due_on, outcome="",
                      note="")
    s.add(task)
    await s.flush()
    await audit.append(s, audit.SYSTEM, "followup.scheduled", case_id=e.case.id, data={
        "task_id": task.id, "rule": rule, "due_on": due_on, "after": e.action})


async def open_review(s: AsyncSession, case: Case, rating: Rating) -> FollowTask:
    """A poor rating: the institution reviews it (called by server/services/outcome/satisfaction.py)."""
    d = await _open_deadline(s, case.id, "review")
    if d is None:
        d = await deadlines.start(s, case.id, "review")
    task = FollowTask(case_id=case.id, kind="review", rule="review", rating_id=rating.id, status="open",
                      due_on=d.due_on, outcome="", note="")
    s.add(task)
    await s.flush()
    await audit.append(s, audit.SYSTEM, "review.opened", case_id=case.id, data={
        "task_id": task.id, "rating_id": rating.id, "level": rating.level, "due_on": task.due_on})
    cfg = notify.config()
    await notify.send(s, "rating_poor", await notify.intake_recipients(s, case.institution_id),
                      {"number": case.number, "title": case.title, "due_on": task.due_on,
                       "case_url": f"{cfg.public_url}/staff/cases/{case.id}"},
                      key=f"review:{task.id}", case_id=case.id)
    return task


def may_complete(actor: Actor, case: Case, task: FollowTask) -> bool:
    check = require_case_mediator if task.kind == "followup" else require_intake_for
    try:
        check(actor, case)
    except Exception:  # noqa: BLE001 - an AppError: not this viewer's task
        return False
    return task.status == "open"


async def complete(s: AsyncSession, actor: Actor, task_id: int, data: TaskDoneIn) -> FollowTask:
    require_staff(actor)
    task = (await s.execute(select(FollowTask).where(FollowTask.id == task_id).with_for_update())).scalar_one_or_none()
    if task is None:
        raise NotFound("No such task.")
    case = await get_case(s, task.case_id, lock=True)
    require_view(actor, case)
    user = require_case_mediator(actor, case) if task.kind == "followup" else require_intake_for(actor, case)
    if task.status != "open":
        raise Conflict("This task has already been done.", code="already_done")
    if data.outcome not in OUTCOMES[task.kind]:
        raise ValidationFailed(f"Choose one of: {', '.join(OUTCOMES[task.kind])}.",
                               fields={"outcome": "not an outcome of this task"})
    now = utcnow()
    task.status, task.outcome, task.note, task.done_by, task.done_at = "done", data.outcome, data.note, user.id, now
    others_open = (await s.execute(select(FollowTask.id).where(
        FollowTask.case_id == case.id, FollowTask.rule == task.rule, FollowTask.status == "open",
        FollowTask.id != task.id).limit(1))).first()
    if not others_open:
        await deadlines.meet(s, case.id, task.rule, now)
    await audit.append(s, actor.ref(), f"{task.kind}.done", case_id=case.id, data={
        "task_id": task.id, "rule": task.rule, "outcome": data.outcome, "note": data.note,
        "due_on": task.due_on, "late": deadlines.due_state(task.rule, task.due_on, now) == "overdue"})
    return task


# --- reading ---------------------------------------------------------------------------------------------

def task_state(task: FollowTask, now: dt.datetime | None = None) -> str:
    """done, or the state of its time limit: running, due_soon, overdue."""
    if task.status != "open":
        return task.status
    return deadlines.due_state(task.rule, task.due_on, now)


def view(task: FollowTask, case: Case, names: dict[int, str], now: dt.datetime | None = None,
         actor: Actor | None = None) -> dict:
    d = {"id": task.id, "case_id": task.case_id, "case_number": case.number, "case_title": case.title,
         "kind": task.kind, "rule": task.rule, "rating_id": task.rating_id, "status": task.status,
         "state": task_state(task, now), "due_on": task.due_on, "outcome": task.outcome, "note": task.note,
         "done_by": names.get(task.done_by, "") if task.done_by else "",
         "done_at": task.done_at.isoformat() if task.done_at else None, "created_at": task.created_at.isoformat(),
         "outcomes": list(OUTCOMES[task.kind])}
    if actor is not None:
        d["may_complete"] = may_complete(actor, case, task)
    return d


async def _names(s: AsyncSession, ids) -> dict[int, str]:
    ids = [i for i in set(ids) if i]
    if not ids:
        return {}
    return {u.id: (u.name or u.username) for u in (await s.execute(select(User).where(User.id.in_(ids))))
            .unique().scalars()}


async def for_case(s: AsyncSession, case_id: int) -> list[FollowTask]:
    return list((await s.execute(select(FollowTask).where(FollowTask.case_id == case_id)
                                 .order_by(FollowTask.id))).scalars().all())


async def case_views(s: AsyncSession, case: Case, now=None, actor: Actor | None = None) -> list[dict]:
    tasks = await for_case(s, case.id)
    names = await _names(s, [t.done_by for t in tasks])
    return [view(t, case, names, now, actor) for t in tasks]


async def list_for(s: AsyncSession, actor: Actor, *, status: str | None = "open", now=None) -> list[dict]:
    """Tasks of the cases the staff member may list, soonest due first."""
    require_staff(actor)
    q = select(FollowTask, Case).join(Case, Case.id == FollowTask.case_id)
    scope = case_scope(actor)
    if scope is not None:
        q = q.where(scope)
    if status:
        q = q.where(FollowTask.status == status)
    rows = (await s.execute(q.order_by(FollowTask.due_on, FollowTask.id))).unique().all()
    names = await _names(s, [t.done_by for t, _c in rows])
    return [view(t, c, names, now, actor) for t, c in rows]
