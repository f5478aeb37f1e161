"""统一研判分析: the managers' figures, computed in the database on SQLite and PostgreSQL alike.

What is counted (the "cohort"): cases filed in [from, to] (dates in the centre's time zone),
optionally of one institution; an institution's clerk sees only their institution.

* counts by type, category, status, institution and month of filing;
* settlement rate = settled / (settled + failed), from the chain's ``case.settle`` and
  ``case.fail`` entries (an archived case keeps its outcome);
* median days from filing (``cases.created_at``) to the first ``case.accept``, the first
  ``session.opened`` and the ``case.settle``/``case.fail`` entry. PostgreSQL computes the
  median with ``percentile_cont(0.5)``; SQLite has no such aggregate, so the per-case
  durations are numbered with ROW_NUMBER() and the middle one (or the mean of the middle two,
  as percentile_cont does for an even count) is taken, still in SQL;
* sessions held (``started_at`` set) and the average length of the ended ones (a court's online
  review is the judge's session, not counted);
* each mediator's workload: cases in the cohort, still open, settled, failed, sessions held;
* early warning: per category, the month that contains ``to`` (pro-rated to a whole month
  when ``to`` is not its last day) against the average of the three months before it.
  A category is flagged when its projected count is at least 3 and at least 1.5 times
  that average;
* satisfaction (好差评) of the cohort's cases: the ratings by level, counted in SQL per
  institution, mediator and category (the institution and mediator the rating named), with
  the good rate (非常满意, 满意, 基本满意 over all ratings), the poor ones and the average.

One module (~490 lines): the figures share one cohort filter and run as SQL on both databases.
"""
from __future__ import annotations

import asyncio
import calendar
import copy
import csv
import datetime as dt
import io
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import Float, and_, cast, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import ValidationFailed
from server.core.models import AuditEntry, AuditHead, Case, CourtReview, Institution, MediationSession, Rating, User
from server.core.policy import Actor, case_scope, require_staff
from server.core.workflow import OPEN_STATUSES
from server.core.schemas import DATE_MESSAGE, parse_date
from server.services.archive.records import day_bounds, positive_int, unknown_params

READER_ROLES = ("admin", "clerk")
PARAMS = {"from": "first day, YYYY-MM-DD (default: the first day of the month 11 months before 'to')",
          "to": "last day, YYYY-MM-DD (default: today)", "institution_id": "one institution"}
MAX_DAYS = 3700
WARN_RATIO = 1.5
WARN_MIN = 3
MILESTONES = {"to_acceptance": ("case.accept",), "to_first_session": ("session.opened",),
              "to_resolution": ("case.settle", "case.fail")}


def require_reader(actor: Actor):
    return require_staff(actor, *READER_ROLES)


@dataclass
class Filters:
    date_from: dt.date
    date_to: dt.date
    institution_id: int | None = None

    def params(self) -> dict[str, str]:
        out = {"from": self.date_from.isoformat(), "to": self.date_to.isoformat()}
        if self.institution_id:
            out["institution_id"] = str(self.institution_id)
        return out


def add_months(d: dt.date, n: int) -> dt.date:
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    return dt.date(y, m + 1, 1)


def parse_filters(query: Mapping[str, str], today: dt.date, *, extra_allowed=()) -> Filters:
    """Validate the dashboard's query parameters (no pydantic: plain checks, one message per field)."""
    errors = unknown_params(query, (*PARAMS, *extra_allowed))
    values: dict = {}
    for name in ("from", "to"):
        v = (query.get(name) or "").strip()
        if v:
            try:
                values[name] = parse_date(v)
            except ValueError:
                errors[name] = f"YYYY-MM-DD, {DATE_MESSAGE}"
    inst = (query.get("institution_id") or "").strip()
    if inst:
        try:
            values["institution_id"] = positive_int(inst)
        except ValueError as exc:
            errors["institution_id"] = str(exc)
    if errors:
        raise ValidationFailed("Some filters are invalid.", fields=errors)
    date_to = values.get("to") or today
    date_from = values.get("from") or add_months(date_to, -11)
    if date_from > date_to:
        raise ValidationFailed("'from' is after 'to'.", fields={"to": "on or after 'from'"})
    if (date_to - date_from).days > MAX_DAYS:
        raise ValidationFailed("The range is too long.", fields={"from": f"at most {MAX_DAYS} days before 'to'"})
    return Filters(date_from, date_to, values.get("institution_id"))


# --- portable SQL pieces -----------------------------------------------------------------------------

def _is_pg(s: AsyncSession) -> bool:
    return s.bind.dialect.name == "postgresql"


def _month(is_pg: bool, col, tz: ZoneInfo, tzname: str):
    """The month of a UTC timestamp in the centre's time zone (PostgreSQL: its first instant; SQLite: YYYY-MM)."""
    if is_pg:
        return func.date_trunc("month", func.timezone(tzname, col))
    # SQLite stores UTC text; shift by the zone's offset (China has no daylight saving time).
    offset = int(dt.datetime.now(tz).utcoffset().total_seconds() // 60)
    return func.strftime("%Y-%m", col, f"{offset:+d} minutes")


def _seconds(s: AsyncSession, later, earlier):
    if _is_pg(s):
        return func.date_part("epoch", later - earlier)  # float8 (EXTRACT gives numeric, slower to sort)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _cohort(actor: Actor, f: Filters, tz: ZoneInfo, *, lo_override=None) -> list:
    lo, hi = day_bounds(f.date_from, f.date_to, tz)
    out = [Case.created_at >= (lo_override or lo), Case.created_at < hi]
    scope = case_scope(actor)
    if scope is not None:
        out.append(scope)
    if f.institution_id:
        out.append(Case.institution_id == f.institution_id)
    return out


def _month_key(v) -> str:
    return v.strftime("%Y-%m") if isinstance(v, (dt.date, dt.datetime)) else str(v)


def _months(a: dt.date, b: dt.date) -> list[str]:
    out, m = [], dt.date(a.year, a.month, 1)
    while m <= b:
        out.append(m.strftime("%Y-%m"))
        m = add_months(m, 1)
    return out


def _r(x, n=2):
    return None if x is None else round(float(x), n)


# --- the figures -------------------------------------------------------------------------------------

async def _breakdowns(s: AsyncSession, cohort, month, with_rising: bool) -> dict[str, dict]:
    """Counts by type, category, status, institution, month and mediator (with the mediator's open cases),
    and by (category, month) for the early warning when its window lies inside the cohort: one scan."""
    dims = {"type": (Case.type,), "category": (Case.category,), "status": (Case.status,),
            "institution": (Case.institution_id,), "month": (month,), "mediator": (Case.mediator_id,)}
    if with_rising:
        dims["rising"] = (Case.category, month)
    open_ = func.count().filter(Case.status.in_(sorted(OPEN_STATUSES)))
    by: dict[str, dict] = {k: {} for k in dims}
    if _is_pg(s):
        # GROUPING SETS: one pass, a few dozen rows back instead of every combination.
        cols = [Case.type, Case.category, Case.status, Case.institution_id, month, Case.mediator_id]
        q = (select(*cols, func.grouping(*cols), func.count(), open_).where(*cohort)
             .group_by(func.grouping_sets(*[tuple_(*d) for d in dims.values()])))
        n_cols = len(cols)
        for row in await s.execute(q):
            values, mask, n, open_n = row[:n_cols], row[n_cols], row[n_cols + 1], row[n_cols + 2]
            present = [i for i in range(n_cols) if not mask & (1 << (n_cols - 1 - i))]
            key = {(0,): "type", (1,): "category", (2,): "status", (3,): "institution", (4,): "month",
                   (5,): "mediator", (1, 4): "rising"}[tuple(present)]
            value = values[present[0]] if len(present) == 1 else tuple(values[i] for i in present)
            by[key][value] = (n, open_n) if key == "mediator" else n
    else:
        for key, cols in dims.items():
            for row in await s.execute(select(*cols, func.count(), open_).where(*cohort).group_by(*cols)):
                value = row[0] if len(cols) == 1 else tuple(row[:len(cols)])
                n, open_n = row[len(cols)], row[len(cols) + 1]
                by[key][value] = (n, open_n) if key == "mediator" else n
    return by


async def _first(s: AsyncSession, cohort, lo, name: str) -> dict:
    """Median days from filing to the first entry of a milestone, over the cohort's cases that have one.
    The per-case minimum streams off ix_audit_action_case (ordered by action, case); for the outcome
    (one entry per case at most) the settled/failed split per mediator comes with it."""
    acts = MILESTONES[name]
    first = (select(AuditEntry.case_id, AuditEntry.action, func.min(AuditEntry.created_at).label("at"))
             .where(AuditEntry.action.in_(acts), AuditEntry.created_at >= lo)
             .group_by(AuditEntry.action, AuditEntry.case_id)).subquery()
    days = _seconds(s, first.c.at, Case.created_at) / 86400.0
    base = select().select_from(first).join(Case, Case.id == first.c.case_id).where(*cohort)
    out: dict = {"outcomes": {}}
    if name == "to_resolution":
        for mid, action, n in await s.execute(base.add_columns(Case.mediator_id, first.c.action, func.count())
                                              .group_by(Case.mediator_id, first.c.action)):
            out["outcomes"].setdefault(mid, {"settled": 0, "failed": 0})[
                "settled" if action == "case.settle" else "failed"] += n
    if len(acts) > 1:  # several actions: the first of them per case
        per_case = (select(first.c.case_id, func.min(first.c.at).label("at")).group_by(first.c.case_id)).subquery()
        days = _seconds(s, per_case.c.at, Case.created_at) / 86400.0
        base = select().select_from(per_case).join(Case, Case.id == per_case.c.case_id).where(*cohort)
    if _is_pg(s):
        median, n = (await s.execute(base.add_columns(func.percentile_cont(0.5).within_group(days),
                                                      func.count()))).one()
    else:
        # No percentile aggregate in SQLite: number the durations in order and average the middle one or two.
        d = base.add_columns(cast(days, Float).label("v")).subquery()
        ranked = select(d.c.v, func.row_number().over(order_by=d.c.v).label("rn"),
                        func.count().over().label("n")).subquery()
        median, n = (await s.execute(select(func.avg(ranked.c.v), func.max(ranked.c.n)).where(
            ranked.c.rn.in_([(ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2])))).one()
    out.update(median_days=_r(median), cases=n or 0)
    return out


async def _sessions(s: AsyncSession, cohort) -> dict:
    """Sessions held (started) and the length of the ended ones, per mediator of the case."""
    length = _seconds(s, MediationSession.ended_at, MediationSession.started_at)
    ended = and_(MediationSession.started_at.is_not(None), MediationSession.ended_at.is_not(None))
    rows = await s.execute(
        select(Case.mediator_id, func.count(MediationSession.started_at), func.count(MediationSession.id).filter(ended),
               func.sum(length).filter(ended))
        .select_from(MediationSession).join(Case, Case.id == MediationSession.case_id)
        # A court's online review is a session of the case, but the judge's, not the mediator's.
        .where(*cohort, MediationSession.id.not_in(select(CourtReview.session_id)))
        .group_by(Case.mediator_id))
    return {mid: (held, n_ended, float(secs or 0)) for mid, held, n_ended, secs in rows}


async def _rising(s: AsyncSession, cohort_window, month) -> dict[str, dict[str, int]]:
    per_cat: dict[str, dict[str, int]] = {}
    for cat, mon, n in await s.execute(select(Case.category, month, func.count()).where(*cohort_window)
                                       .group_by(Case.category, month)):
        per_cat.setdefault(cat, {})[mon] = n
    return per_cat


async def _satisfaction(s: AsyncSession, cohort) -> list[tuple]:
    """Ratings of the cohort's cases, counted per (institution, mediator, category, level)."""
    return list((await s.execute(
        select(Rating.institution_id, Rating.mediator_id, Case.category, Rating.level, func.count())
        .select_from(Rating).join(Case, Case.id == Rating.case_id).where(*cohort)
        .group_by(Rating.institution_id, Rating.mediator_id, Case.category, Rating.level))).all())


GOOD_LEVELS = (3, 4, 5)  # 基本满意 and better: a 好评 in the 好差评 rules


def _rated(levels: dict[int, int]) -> dict:
    n = sum(levels.values())
    good = sum(levels.get(x, 0) for x in GOOD_LEVELS)
    return {"ratings": n, "levels": {str(x): levels.get(x, 0) for x in (5, 4, 3, 2, 1)}, "good": good,
            "poor": n - good, "good_rate": _r(good / n, 4) if n else None,
            "average": _r(sum(x * c for x, c in levels.items()) / n, 2) if n else None}


def _satisfaction_figures(rows: list[tuple], inst_names: dict, med_names: dict) -> dict:
    per: dict[str, dict] = {"institution": {}, "mediator": {}, "category": {}}
    total: dict[int, int] = {}
    for inst, med, cat, level, n in rows:
        total[level] = total.get(level, 0) + n
        for dim, key in (("institution", inst), ("mediator", med), ("category", cat)):
            d = per[dim].setdefault(key, {})
            d[level] = d.get(level, 0) + n

    def rows_of(dim: str) -> list[dict]:
        out = []
        for key, levels in per[dim].items():
            row = {"key": key, **_rated(levels)}
            if dim == "institution":
                row["name"] = inst_names.get(key, str(key))
            elif dim == "mediator":
                row["name"] = med_names.get(key, (str(key), None))[0] if key is not None else ""
            out.append(row)
        return sorted(out, key=lambda r: (-r["ratings"], str(r["key"])))

    return {**_rated(total), "by_institution": rows_of("institution"), "by_mediator": rows_of("mediator"),
            "by_category": rows_of("category")}


async def _names(s: AsyncSession) -> tuple[dict, dict]:
    insts = {i: n for i, n in (await s.execute(select(Institution.id, Institution.name))).all()}
    users = {u: (n or un, inst) for u, n, un, inst in (await s.execute(
        select(User.id, User.name, User.username, User.institution_id).where(User.role == "mediator"))).all()}
    return insts, users


# Finished summaries, keyed by the audit chain's head: every change to a case appends to the chain,
# so a summary computed at the same head is exactly current. Reloads and the CSV downloads of the
# page's tables cost one tiny query; any change (even a clerk's logged view) moves the head.
_CACHE: OrderedDict[tuple, tuple[float, dict]] = OrderedDict()
CACHE_SIZE = 32
CACHE_SECONDS = 300


def clear_cache() -> None:
    _CACHE.clear()


async def summary(db, actor: Actor, f: Filters, tz: ZoneInfo, tzname: str) -> dict:
    require_reader(actor)
    async with db.read() as s:
        head = tuple((await s.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1))).one())
    u = actor.user
    scope = (u.role, u.institution_id) if case_scope(actor) is not None else "all"
    key = (db.url, scope, f.date_from, f.date_to, f.institution_id, tzname, head)
    hit = _CACHE.get(key)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        _CACHE.move_to_end(key)
        return copy.deepcopy(hit[1])
    data = await compute(db, actor, f, tz, tzname)
    _CACHE[key] = (time.monotonic(), data)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return copy.deepcopy(data)


async def compute(db, actor: Actor, f: Filters, tz: ZoneInfo, tzname: str) -> dict:
    """The dashboard's figures. The independent queries run at once, each in its own read-only unit
    (on PostgreSQL each gets a connection and a core; SQLite's WAL lets the readers run side by side)."""
    require_reader(actor)
    cohort = _cohort(actor, f, tz)
    lo, _hi = day_bounds(f.date_from, f.date_to, tz)
    ref = f.date_to
    window_start = add_months(dt.date(ref.year, ref.month, 1), -3)
    wlo = dt.datetime.combine(window_start, dt.time(), tz).astimezone(dt.timezone.utc)
    is_pg = db.engine.dialect.name == "postgresql"

    async def unit(fn, *args):
        async with db.read() as s:
            if is_pg:  # the per-case aggregation sorts ~100k rows: keep it in memory (this transaction only)
                await s.execute(text("SET LOCAL work_mem = '64MB'"))
            return await fn(s, *args)

    month = _month(is_pg, Case.created_at, tz, tzname)
    with_rising = wlo >= lo  # the warning's four months lie inside the cohort: counted in the same scan
    jobs = [unit(_breakdowns, cohort, month, with_rising), unit(_sessions, cohort), unit(_names),
            unit(_satisfaction, cohort), *[unit(_first, cohort, lo, name) for name in MILESTONES]]
    if not with_rising:
        jobs.append(unit(_rising, _cohort(actor, f, tz, lo_override=wlo), month))
    by, per_session, (inst_names, med_names), rated, *firsts = await asyncio.gather(*jobs)
    if with_rising:
        per_cat: dict[str, dict[str, int]] = {}
        for (cat, mon), n in by["rising"].items():
            if mon is not None and _month_key(mon) >= window_start.strftime("%Y-%m"):
                per_cat.setdefault(cat, {})[_month_key(mon)] = n
    else:
        per_cat = {c: {_month_key(k): n for k, n in v.items()} for c, v in firsts.pop().items()}
    durations = {name: {"median_days": r["median_days"], "cases": r["cases"]} for name, r in zip(MILESTONES, firsts)}
    outcomes = firsts[list(MILESTONES).index("to_resolution")]["outcomes"]
    total = sum(by["status"].values())

    held = ended_n = 0
    seconds = 0.0
    for mid, (h, e, secs) in per_session.items():
        held, ended_n, seconds = held + h, ended_n + e, seconds + secs
    mediators: dict[int, dict] = {}
    for mid, (n, open_n) in by["mediator"].items():
        if mid is not None:
            o = outcomes.get(mid, {"settled": 0, "failed": 0})
            mediators[mid] = {"cases": n, "open": open_n, **o, "sessions": per_session.get(mid, (0, 0, 0.0))[0]}
    settled = sum(o["settled"] for o in outcomes.values())
    failed = sum(o["failed"] for o in outcomes.values())

    this_key = ref.strftime("%Y-%m")
    prev_keys = [add_months(window_start, i).strftime("%Y-%m") for i in range(3)]
    days_in_month = calendar.monthrange(ref.year, ref.month)[1]
    rising = []
    for cat, months in per_cat.items():
        this = months.get(this_key, 0)
        avg = sum(months.get(k, 0) for k in prev_keys) / 3
        projected = this * days_in_month / ref.day
        rising.append({"category": cat, "this_month": this, "projected": _r(projected, 1),
                       "previous": [months.get(k, 0) for k in prev_keys], "previous_avg": _r(avg, 2),
                       "change": _r(projected - avg, 1), "ratio": _r(projected / avg, 2) if avg else None,
                       "warning": projected >= WARN_MIN and projected >= WARN_RATIO * avg})
    rising.sort(key=lambda r: (-r["change"], r["category"]))

    def counted(d: dict) -> list[dict]:
        return [{"key": k, "count": n} for k, n in sorted(d.items(), key=lambda kv: (-kv[1], str(kv[0])))]

    months = {_month_key(k): n for k, n in by["month"].items()}
    unassigned = by["mediator"].get(None, (0, 0))[0]
    return {
        "filters": {"from": f.date_from.isoformat(), "to": f.date_to.isoformat(),
                    "institution_id": f.institution_id, "time_zone": tzname},
        "total": total,
        "by_type": counted(by["type"]),
        "by_category": counted(by["category"]),
        "by_status": counted(by["status"]),
        "by_institution": [{"id": k, "name": inst_names.get(k, str(k)), "count": n}
                           for k, n in sorted(by["institution"].items(), key=lambda kv: (-kv[1], kv[0]))],
        "by_month": [{"month": m, "count": months.get(m, 0)} for m in _months(f.date_from, f.date_to)],
        "settlement": {"settled": settled, "failed": failed,
                       "rate": _r(settled / (settled + failed), 4) if settled + failed else None},
        "durations": durations,
        "sessions": {"held": held, "ended": ended_n,
                     "average_minutes": _r(seconds / 60 / ended_n, 1) if ended_n else None},
        "mediators": sorted(
            ({"id": mid, "name": med_names.get(mid, (str(mid), None))[0],
              "institution": inst_names.get(med_names.get(mid, (None, None))[1]),
              **{k: m[k] for k in ("cases", "open", "settled", "failed", "sessions")}}
             for mid, m in mediators.items()),
            key=lambda r: (-r["open"], -r["cases"], r["name"])),
        "unassigned_cases": unassigned,
        "rising": {"month": this_key, "days_covered": ref.day, "days_in_month": days_in_month,
                   "previous_months": prev_keys, "categories": rising},
        "satisfaction": _satisfaction_figures(rated, inst_names, med_names),
    }


# --- tables for CSV -------------------------------------------------------------------------------------

TABLES = ("by_type", "by_category", "by_status", "by_institution", "by_month", "settlement", "durations",
          "sessions", "mediators", "rising", "satisfaction")


def table(data: dict, name: str, t=None, tr=None) -> tuple[list[str], list[list]]:
    """One table of the summary as (header, rows); t translates headers, tr(prefix, code) names codes."""
    t = t or (lambda k, **kw: k.rsplit(".", 1)[-1])
    tr = tr or (lambda prefix, code: code)
    h = lambda *keys: [t(f"analytics.col.{k}") for k in keys]  # noqa: E731
    if name in ("by_type", "by_category", "by_status"):
        prefix = {"by_type": "case_type", "by_category": "category", "by_status": "status"}[name]
        return h("code", "name", "count"), [[r["key"], tr(prefix, r["key"]), r["count"]] for r in data[name]]
    if name == "by_institution":
        return h("id", "name", "count"), [[r["id"], r["name"], r["count"]] for r in data[name]]
    if name == "by_month":
        return h("month", "count"), [[r["month"], r["count"]] for r in data[name]]
    if name == "settlement":
        st = data["settlement"]
        return h("settled", "failed", "rate"), [[st["settled"], st["failed"], "" if st["rate"] is None else st["rate"]]]
    if name == "durations":
        return h("measure", "name", "median_days", "cases"), [
            [k, t(f"analytics.duration.{k}"), "" if v["median_days"] is None else v["median_days"], v["cases"]]
            for k, v in data["durations"].items()]
    if name == "sessions":
        st = data["sessions"]
        return h("held", "ended", "average_minutes"), [
            [st["held"], st["ended"], "" if st["average_minutes"] is None else st["average_minutes"]]]
    if name == "mediators":
        return h("id", "name", "institution", "cases", "open", "settled", "failed", "sessions"), [
            [r["id"], r["name"], r["institution"] or "", r["cases"], r["open"], r["settled"], r["failed"],
             r["sessions"]] for r in data["mediators"]]
    if name == "rising":
        prev = data["rising"]["previous_months"]
        header = h("code", "name") + prev + h("this_month", "projected", "previous_avg", "change", "warning")
        return header, [[r["category"], tr("category", r["category"]), *r["previous"], r["this_month"], r["projected"],
                         r["previous_avg"], r["change"], "1" if r["warning"] else "0"]
                        for r in data["rising"]["categories"]]
    if name == "satisfaction":
        st = data["satisfaction"]

        def row(dim: str, code, label, r: dict) -> list:
            return [dim, "" if code is None else code, label, r["ratings"], *[r["levels"][x] for x in "54321"],
                    r["good"], r["poor"], "" if r["good_rate"] is None else r["good_rate"],
                    "" if r["average"] is None else r["average"]]
        header = h("dimension", "code", "name", "ratings", "level_5", "level_4", "level_3", "level_2", "level_1",
                   "good", "poor", "good_rate", "average")
        rows = [row("all", "", t("analytics.satisfaction.all"), st)]
        rows += [row("institution", r["key"], r["name"], r) for r in st["by_institution"]]
        rows += [row("mediator", r["key"], r["name"], r) for r in st["by_mediator"]]
        rows += [row("category", r["key"], tr("category", r["key"]), r) for r in st["by_category"]]
        return header, rows
    raise KeyError(name)


def to_csv(header: list[str], rows: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["'" + c if isinstance(c, str) and c[:1] in ("=", "+", "-", "@") else c for c in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")  # the BOM lets spreadsheet programs read UTF-8

