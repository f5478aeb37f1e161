"""Time limits of a case: the rule table, working days with public holidays, due dates,
reminders and overdue flags.

A rule starts on a case action (e.g. filing) and is met by others (e.g. accepting). Due dates
are days in the centre's time zone (DISPLAY_TZ): a limit counted in working days skips
weekends and the public holidays configured with HOLIDAYS (comma-separated dates) and/or
HOLIDAYS_FILE (one date per line, `#` comments); WORKDAYS lists weekend days that are worked
(调休). A limit counted in calendar days that ends on a day off runs to the next working day
(Civil Procedure Law art. 85). A deadline is "due soon" from the start of its reminder day and
"overdue" from the first moment after its last day.

Deadlines are rows (`deadlines`) written in the same transaction as the case action that
starts or meets them; `scan()` (run by the app every few minutes, and by tests with a chosen
`now`) sends the reminders and flags what became overdue, writing that to the audit chain.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.models import Case, Deadline, utcnow
from server.core.policy import Actor, case_scope
from server.services.notify import messages as notify


@dataclass(frozen=True)
class Rule:
    name: str
    days: int
    working: bool                 # counted in working days (else calendar days)
    starts_on: tuple[str, ...]    # case actions that start it ("filed" is the filing)
    met_by: tuple[str, ...]       # case actions that meet it
    cancelled_by: tuple[str, ...]
    remind_before: int            # reminder this many working days before the last day
    responsible: str              # intake | mediator | parties: who is reminded
    basis: str                    # where the limit comes from


RULES: dict[str, Rule] = {
    # The institution decides on a filed (or transferred-in) case: accept, reject or transfer.
    "decide": Rule("decide", 3, True, ("filed", "transfer"), ("accept", "reject", "transfer"),
                   ("withdraw",), 1, "intake", "centre rule: decide within 3 working days"),
    # Pre-filing mediation ends within 30 days of acceptance (SPC Online Mediation Rules art. 24).
    "mediation": Rule("mediation", 30, False, ("accept",), ("settle", "fail"), ("withdraw", "transfer"), 3,
                      "mediator", "SPC Online Mediation Rules art. 24"),
    # Judicial confirmation is applied for within 30 days of the agreement (Civil Procedure Law art. 205).
    "confirmation": Rule("confirmation", 30, False, ("settle",), (), ("withdraw",), 5, "parties",
                         "Civil Procedure Law art. 205"),
    # The follow-up visit (回访) after a settlement or a failed mediation, met when the mediator records
    # its outcome (server/services/outcome/followup.py); the days are FOLLOWUP_DAYS / FOLLOWUP_FAILED_DAYS.
    "followup": Rule("followup", 30, False, ("settle",), (), (), 3, "mediator",
                     "People's Mediation Law art. 31: the institution follows up on the agreement"),
    "followup_failed": Rule("followup_failed", 15, False, ("fail",), (), (), 3, "mediator",
                            "centre rule: follow up on a failed mediation"),
    # A poor satisfaction rating (差评) is reviewed by the institution (好差评: rectify within 5 working days).
    "review": Rule("review", 5, True, (), (), (), 1, "intake",
                   "State Council 好差评 rules: a poor rating is checked and answered"),
}


def _parse_dates(text: str) -> set[dt.date]:
    out = set()
    for raw in text.replace("\n", ",").split(","):
        raw = raw.split("#", 1)[0].strip()
        if raw:
            out.add(dt.date.fromisoformat(raw))
    return out


class WorkCalendar:
    """Which days are worked: Monday to Friday, minus public holidays, plus make-up working days."""

    def __init__(self, holidays=(), workdays=()):
        self.holidays = set(holidays)
        self.workdays = set(workdays)

    @classmethod
    def from_env(cls, env=None) -> "WorkCalendar":
        env = os.environ if env is None else env
        holidays = _parse_dates(env.get("HOLIDAYS", ""))
        path = env.get("HOLIDAYS_FILE", "")
        if path:
            holidays |= _parse_dates(Path(path).read_text(encoding="utf-8"))
        return cls(holidays, _parse_dates(env.get("WORKDAYS", "")))

    def is_working(self, d: dt.date) -> bool:
        if d in self.workdays:
            return True
        return d.weekday() < 5 and d not in self.holidays

    def add_working_days(self, start: dt.date, n: int) -> dt.date:
        """The n-th working day after `start` (the start day itself does not count)."""
        d, counted = start, 0
        while counted < n:
            d += dt.timedelta(days=1)
            if self.is_working(d):
                counted += 1
        return d

    def next_working(self, d: dt.date) -> dt.date:
        while not self.is_working(d):
            d += dt.timedelta(days=1)
        return d

    def working_days_before(self, d: dt.date, n: int) -> dt.date:
        counted = 0
        while counted < n:
            d -= dt.timedelta(days=1)
            if self.is_working(d):
                counted += 1
        return d


_calendar: WorkCalendar | None = None
_tz: ZoneInfo | None = None


def configure(*, calendar: WorkCalendar | None = None, tz: str | None = None,
              days: dict[str, int] | None = None) -> None:
    """Set the calendar and time zone (the app does this at start; tests pass their own), and the
    configurable lengths of rules (`days`: rule name -> days, e.g. the follow-up's FOLLOWUP_DAYS)."""
    global _calendar, _tz
    if calendar is not None:
        _calendar = calendar
    if tz is not None:
        _tz = ZoneInfo(tz)
    for name, n in (days or {}).items():
        RULES[name] = replace(RULES[name], days=int(n))


def calendar() -> WorkCalendar:
    global _calendar
    if _calendar is None:
        _calendar = WorkCalendar.from_env()
    return _calendar


def tz() -> ZoneInfo:
    global _tz
    if _tz is None:
        _tz = ZoneInfo(os.environ.get("DISPLAY_TZ", "Asia/Shanghai"))
    return _tz


def due_date(rule: Rule, start: dt.datetime, cal: WorkCalendar | None = None) -> dt.date:
    cal = cal or calendar()
    d0 = start.astimezone(tz()).date()
    if rule.working:
        return cal.add_working_days(d0, rule.days)
    return cal.next_working(d0 + dt.timedelta(days=rule.days))


def _day_start(d: dt.date) -> dt.datetime:
    return dt.datetime.combine(d, dt.time(0, 0), tzinfo=tz()).astimezone(dt.timezone.utc)


def state(d: Deadline, now: dt.datetime | None = None) -> str:
    """running | due_soon | overdue | met | cancelled"""
    if d.status != "open":
        return d.status
    return due_state(d.rule, d.due_on, now, due_at=d.due_at)


def due_state(rule_name: str, due_on: str, now: dt.datetime | None = None, *, due_at: dt.datetime | None = None) -> str:
    """running | due_soon | overdue of an open limit of `rule_name` whose last day is `due_on` (also
    for what carries a rule's limit without being its row, e.g. a follow-up task)."""
    now = now or utcnow()
    last = dt.date.fromisoformat(due_on)
    if now >= (due_at or _day_start(last + dt.timedelta(days=1))):
        return "overdue"
    rule = RULES.get(rule_name)
    remind_day = calendar().working_days_before(last, rule.remind_before) if rule and rule.remind_before else last
    return "due_soon" if now >= _day_start(remind_day) else "running"


def flag(d: Deadline, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    today = now.astimezone(tz()).date()
    last = dt.date.fromisoformat(d.due_on)
    return {"id": d.id, "case_id": d.case_id, "rule": d.rule, "due_on": d.due_on, "due_at": d.due_at.isoformat(),
            "state": state(d, now), "days_left": (last - today).days, "status": d.status,
            "starts_at": d.starts_at.isoformat(),
            "closed_at": d.closed_at.isoformat() if d.closed_at else None}


async def start(s: AsyncSession, case_id: int, rule_name: str, starts_at: dt.datetime | None = None) -> Deadline:
    """Start (or restart) a rule's deadline for a case; an open one of the same rule is replaced."""
    rule = RULES[rule_name]
    starts_at = starts_at or utcnow()
    await close(s, case_id, rule_name, "cancelled", starts_at)
    due = due_date(rule, starts_at)
    d = Deadline(case_id=case_id, rule=rule_name, starts_at=starts_at, due_on=due.isoformat(),
                 due_at=_day_start(due + dt.timedelta(days=1)), status="open")
    s.add(d)
    await s.flush()
    return d


async def close(s: AsyncSession, case_id: int, rule_name: str, status: str = "met",
                at: dt.datetime | None = None) -> int:
    rows = (await s.execute(select(Deadline).where(Deadline.case_id == case_id, Deadline.rule == rule_name,
                                                   Deadline.status == "open"))).scalars().all()
    for d in rows:
        d.status = status
        d.closed_at = at or utcnow()
    return len(rows)


async def meet(s: AsyncSession, case_id: int, rule_name: str, at: dt.datetime | None = None) -> int:
    """Another module met a deadline (e.g. the court module when the confirmation was applied for)."""
    return await close(s, case_id, rule_name, "met", at)


async def on_case_action(s: AsyncSession, case_id: int, action: str, at: dt.datetime | None = None) -> None:
    """Called with every step of a case (services.cases): meet, cancel and start deadlines."""
    at = at or utcnow()
    for name, rule in RULES.items():
        if action in rule.met_by:
            await close(s, case_id, name, "met", at)
        elif action in rule.cancelled_by:
            await close(s, case_id, name, "cancelled", at)
    for name, rule in RULES.items():
        if action in rule.starts_on:
            await start(s, case_id, name, at)


async def set_due(s: AsyncSession, case_id: int, rule_name: str, due_at: dt.datetime) -> None:
    """Make an open deadline run out at a moment fixed elsewhere (the agreement's confirmation
    deadline, server/services/outcome/agreements.py), so the two never disagree."""
    d = (await s.execute(select(Deadline).where(Deadline.case_id == case_id, Deadline.rule == rule_name,
                                                Deadline.status == "open"))).scalar_one_or_none()
    if d is not None:
        d.due_at = due_at
        d.due_on = due_at.astimezone(tz()).date().isoformat()
        await s.flush()


async def for_cases(s: AsyncSession, case_ids: list[int] | None, *, include_closed: bool = False) -> dict[int, list[Deadline]]:
    q = select(Deadline)
    if case_ids is not None:
        if not case_ids:
            return {}
        q = q.where(Deadline.case_id.in_(case_ids))
    if not include_closed:
        q = q.where(Deadline.status == "open")
    out: dict[int, list[Deadline]] = {}
    for d in (await s.execute(q.order_by(Deadline.due_at, Deadline.id))).scalars():
        out.setdefault(d.case_id, []).append(d)
    return out


async def list_for(s: AsyncSession, actor: Actor, *, states: set[str] | None = None,
                   now: dt.datetime | None = None) -> list[tuple[Case, Deadline]]:
    """Open deadlines of the cases the staff member may list, soonest first."""
    now = now or utcnow()
    q = select(Case, Deadline).join(Deadline, Deadline.case_id == Case.id).where(Deadline.status == "open")
    scope = case_scope(actor)
    if scope is not None:
        q = q.where(scope)
    rows = (await s.execute(q.order_by(Deadline.due_at, Deadline.id))).unique().all()
    return [(c, d) for c, d in rows if states is None or state(d, now) in states]


async def scan(db, now: dt.datetime | None = None) -> dict[str, int]:
    """Send reminders for deadlines that became due soon and flag the ones that became overdue."""
    now = now or utcnow()
    counts = {"reminded": 0, "overdue": 0}
    async with db.session() as s:
        q = select(Deadline).where(Deadline.status == "open",
                                   (Deadline.reminded_at.is_(None)) | (Deadline.overdue_at.is_(None)))
        if db.is_postgres:
            q = q.with_for_update(skip_locked=True)  # several nodes may scan at once
        rows = (await s.execute(q)).scalars().all()
        for d in rows:
            st = state(d, now)
            if st == "overdue" and d.overdue_at is None:
                d.overdue_at = now
                d.reminded_at = d.reminded_at or now
                await audit.append(s, audit.SYSTEM, "deadline.overdue", case_id=d.case_id,
                                   data={"rule": d.rule, "due_on": d.due_on, "deadline_id": d.id})
                await notify_deadline(s, d, "deadline_overdue")
                counts["overdue"] += 1
            elif st == "due_soon" and d.reminded_at is None:
                d.reminded_at = now
                await notify_deadline(s, d, "deadline_near")
                counts["reminded"] += 1
    return counts


def rules_table() -> list[dict]:
    return [{"rule": r.name, "days": r.days, "unit": "working_days" if r.working else "days",
             "starts_on": list(r.starts_on), "met_by": list(r.met_by), "cancelled_by": list(r.cancelled_by),
             "remind_before_working_days": r.remind_before, "responsible": r.responsible, "basis": r.basis}
            for r in RULES.values()]


async def notify_deadline(s: AsyncSession, d: Deadline, event: str) -> None:
    """Tell who is responsible for a deadline that it is near (`event` deadline_reminder) or missed."""
    case = await s.get(Case, d.case_id)
    if case is None:
        return
    rule = RULES.get(d.rule)
    cfg = notify.config()
    if rule is None or rule.responsible == "intake":
        recipients = await notify.intake_recipients(s, case.institution_id)
    elif rule.responsible == "mediator":
        recipients = await notify.mediator_recipients(s, case.mediator_id)
    else:
        recipients = await notify.party_recipients(s, list(case.parties)) + await notify.mediator_recipients(s, case.mediator_id)
    ctx = {"number": case.number, "title": case.title, "due_on": d.due_on, "case_url": f"{cfg.public_url}/staff/cases/{case.id}"}
    # The rule's name is translated per recipient: put the key in, resolve it while rendering.
    for r in recipients:
        r.extra["rule"] = notify.translator(r.lang)(f"deadline.rule.{d.rule}")
        if r.ref.startswith("party:"):
            r.extra["case_url"] = f"{cfg.public_url}/lookup"  # parties follow their case there
    await notify.send(s, event, recipients, ctx, key=f"deadline:{d.id}:{event}", case_id=case.id)
