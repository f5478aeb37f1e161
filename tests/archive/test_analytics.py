"""统一研判分析 on SQLite and PostgreSQL: the figures against ones computed here from the seed itself."""
from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from zoneinfo import ZoneInfo

import pytest

from tests.api.helpers import login, seed

from .seeding import analytics_specs, case_status, patch, seed_cases

TZ = ZoneInfo("Asia/Shanghai")
FROM, TO = dt.date(2026, 1, 1), dt.date(2026, 6, 20)
QS = f"from={FROM}&to={TO}"


def expected(specs, world, institution: str | None = None) -> dict:
    """The figures, computed from the specs alone (no SQL, no service code)."""
    def local(t):
        return t.astimezone(TZ)
    cohort = [sp for sp in specs if FROM <= local(sp.filed).date() <= TO and (institution is None or sp.inst == institution)]
    count = lambda key: {k: sum(1 for sp in cohort if key(sp) == k) for k in {key(sp) for sp in cohort}}  # noqa: E731
    inst_id = {"a": world.inst_a, "b": world.inst_b}
    months = {}
    for sp in cohort:
        months[local(sp.filed).strftime("%Y-%m")] = months.get(local(sp.filed).strftime("%Y-%m"), 0) + 1

    def med(name):
        vals = [(sp.times[name] - sp.filed).total_seconds() / 86400 for sp in cohort if name in sp.times]
        return (round(statistics.median(vals), 2) if vals else None), len(vals)

    sessions = [(s, sp) for sp in cohort if sp.accept_after_h is not None and sp.mediator for s in sp.sessions]
    settled = sum(1 for sp in cohort if sp.outcome == "settle" and sp.mediator and sp.accept_after_h is not None)
    failed = sum(1 for sp in cohort if sp.outcome == "fail" and sp.mediator and sp.accept_after_h is not None)
    mediators = {}
    for sp in cohort:
        if sp.mediator and sp.accept_after_h is not None:
            m = mediators.setdefault(world.users[sp.mediator], {"cases": 0, "open": 0, "settled": 0, "failed": 0,
                                                                "sessions": 0})
            m["cases"] += 1
            m["open"] += case_status(sp) in ("filed", "transferred", "accepted", "assigned", "in_mediation")
            m["settled"] += sp.outcome == "settle"
            m["failed"] += sp.outcome == "fail"
            m["sessions"] += len(sp.sessions)
    # Early warning: June to the 20th (pro-rated to 30 days) against March-May.
    rising = {}
    for sp in specs:
        if institution is not None and sp.inst != institution:
            continue
        mon = local(sp.filed).strftime("%Y-%m")
        if local(sp.filed).date() <= TO:
            rising.setdefault(sp.category, {}).setdefault(mon, 0)
            rising[sp.category][mon] += 1
    warn = {}
    for cat, per in rising.items():
        this = per.get("2026-06", 0)
        avg = sum(per.get(m, 0) for m in ("2026-03", "2026-04", "2026-05")) / 3
        projected = this * 30 / 20
        if this or avg:
            warn[cat] = (this, round(avg, 2), projected >= 3 and projected >= 1.5 * avg)
    return {
        "total": len(cohort),
        "by_type": count(lambda sp: sp.type), "by_category": count(lambda sp: sp.category),
        "by_status": count(case_status), "by_institution": {inst_id[k]: v for k, v in count(lambda sp: sp.inst).items()},
        "months": months,
        "durations": {"to_acceptance": med("accept"), "to_first_session": med("first_session"),
                      "to_resolution": med("resolution")},
        "settled": settled, "failed": failed,
        "rate": round(settled / (settled + failed), 4) if settled + failed else None,
        "held": len(sessions), "avg_minutes": round(sum(s[2] for s, _ in sessions) / len(sessions), 1) if sessions else None,
        "mediators": mediators,
        "rising": warn,
    }


def as_map(rows, key="key"):
    return {r[key]: r["count"] for r in rows}


@pytest.fixture
async def seeded(db, client, settings, monkeypatch):
    from server.infra.files import FileStore
    world = await seed(db)
    clock = patch(monkeypatch)
    specs = analytics_specs()
    await seed_cases(db, world, specs, clock, FileStore(settings.evidence_dir))
    monkeypatch.undo()
    return world, specs


async def test_summary_csv_and_page_match_figures_computed_from_the_seed(client, seeded):
    world, specs = seeded
    admin = await login(client, "admin")
    for institution in (None, "a"):
        exp = expected(specs, world, institution)
        qs = QS + (f"&institution_id={world.inst_a}" if institution else "")
        r = await client.get(f"/api/v1/analytics/summary?{qs}", headers=admin)
        assert r.status == 200, await r.text()
        got = await r.json()
        assert got["total"] == exp["total"]
        assert as_map(got["by_type"]) == exp["by_type"]
        assert as_map(got["by_category"]) == exp["by_category"]
        assert as_map(got["by_status"]) == exp["by_status"]
        assert {r["id"]: r["count"] for r in got["by_institution"]} == exp["by_institution"]
        assert [m["month"] for m in got["by_month"]] == ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
        assert {m["month"]: m["count"] for m in got["by_month"] if m["count"]} == exp["months"]
        for name, (median, n) in exp["durations"].items():
            assert got["durations"][name]["cases"] == n, name
            assert got["durations"][name]["median_days"] == pytest.approx(median, abs=0.011), name
        assert got["settlement"] == {"settled": exp["settled"], "failed": exp["failed"], "rate": exp["rate"]}
        assert got["sessions"]["held"] == exp["held"] and got["sessions"]["ended"] == exp["held"]
        assert got["sessions"]["average_minutes"] == pytest.approx(exp["avg_minutes"], abs=0.051)
        assert {m["id"]: {k: m[k] for k in ("cases", "open", "settled", "failed", "sessions")}
                for m in got["mediators"]} == exp["mediators"]
        rising = {r["category"]: (r["this_month"], r["previous_avg"], r["warning"]) for r in got["rising"]["categories"]}
        assert rising == exp["rising"]
        assert got["rising"]["month"] == "2026-06" and got["rising"]["days_covered"] == 20
    # Labour leads the early warning on the whole centre.
    r = await client.get(f"/api/v1/analytics/summary?{QS}", headers=admin)
    top = (await r.json())["rising"]["categories"][0]
    assert top["category"] == "labour" and top["warning"] is True

    # An institution's clerk sees their institution; CSV of every table.
    clerk = await login(client, "clerk")  # a clerk of institution A: sees only A
    r = await client.get(f"/api/v1/analytics/summary?{QS}", headers=clerk)
    got = await r.json()
    assert got["total"] == expected(specs, world, "a")["total"]
    assert {x["id"] for x in got["by_institution"]} == {world.inst_a}
    county = await login(client, "county_clerk")
    r = await client.get(f"/api/v1/analytics/csv?{QS}&table=by_status&lang=en", headers=county)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    body = (await r.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["code", "name", "cases"]
    assert {row[0]: int(row[2]) for row in rows[1:]} == expected(specs, world)["by_status"]
    for table in ("by_type", "by_category", "by_institution", "by_month", "settlement", "durations", "sessions",
                  "mediators", "rising"):
        r = await client.get(f"/api/v1/analytics/csv?{QS}&table={table}", headers=county)
        assert r.status == 200, table
        assert len((await r.read()).decode("utf-8-sig").strip().splitlines()) >= 2, table

    # The page: tables, chart data and the vendored chart library.
    admin = await login(client, "admin")
    r = await client.get(f"/analytics?{QS}&lang=zh-CN", headers=admin)
    assert r.status == 200
    html = await r.text()
    assert 'id="analytics-data"' in html and "/static/vendor/chart-4.6.1.umd.min.js" in html
    assert "统一研判分析" in html and "data-testid=\"warnings\"" in html
    r = await client.get("/analytics?from=bad", headers=admin)
    assert r.status == 200 and "筛选条件有误" in await r.text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_bad_filters_are_422_and_strangers_are_refused(client, db):
    await seed(db)
    admin = await login(client, "admin")
    for qs, field in [("from=2026-13-01", "from"), ("to=yesterday", "to"), ("from=2026-05-01&to=2026-04-01", "to"),
                      ("institution_id=abc", "institution_id"), ("institution_id=0", "institution_id"),
                      ("colour=red", "colour"), ("from=2000-01-01&to=2026-01-01", "from")]:
        r = await client.get(f"/api/v1/analytics/summary?{qs}", headers=admin)
        assert r.status == 422, qs
        body = await r.json()
        assert body["error"]["code"] == "validation_failed" and field in body["error"]["fields"], (qs, body)
    r = await client.get("/api/v1/analytics/csv?table=nope", headers=admin)
    assert r.status == 422 and "table" in (await r.json())["error"]["fields"]
    client.session.cookie_jar.clear()  # the bearer token alone decides who calls
    assert (await client.get("/api/v1/analytics/summary")).status == 401
    for who in ("intake", "mediator"):
        headers = await login(client, who)
        client.session.cookie_jar.clear()
        assert (await client.get("/api/v1/analytics/summary", headers=headers)).status == 403
    assert (await client.get("/api/v1/analytics/csv?table=by_type")).status == 401
    # Pages: anonymous to the login page, a mediator gets 403.
    r = await client.get("/analytics", allow_redirects=False)
    assert r.status == 303 and "/login" in r.headers["Location"]
    mediator = await login(client, "mediator")
    client.session.cookie_jar.clear()
    r = await client.get("/analytics", headers=mediator)
    assert r.status == 403
