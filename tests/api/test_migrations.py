"""Migrations go up from an empty database and down again, on SQLite and PostgreSQL."""
from __future__ import annotations

import uuid

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from server.infra.db import downgrade, upgrade
from server.core.models import Base


async def _tables(url: str) -> set[str]:
    eng = create_async_engine(url)
    try:
        async with eng.connect() as c:
            return set(await c.run_sync(lambda sc: inspect(sc).get_table_names()))
    finally:
        await eng.dispose()


async def test_sqlite_up_and_down(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade(url)
    assert {t.name for t in Base.metadata.sorted_tables} <= await _tables(url)
    await downgrade(url, "base")
    assert await _tables(url) <= {"alembic_version"}
    await upgrade(url)
    assert "cases" in await _tables(url)


async def test_postgres_up_and_down(pg_database):
    # A separate, empty database so the session's shared one keeps its schema.
    from tests.conftest import PG_ADMIN_URL
    name = f"mediation_mig_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as c:
        await c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        await upgrade(url)
        assert {t.name for t in Base.metadata.sorted_tables} <= await _tables(url)
        await downgrade(url, "base")
        assert await _tables(url) <= {"alembic_version"}
        await upgrade(url)
        assert "audit_log" in await _tables(url)
    finally:
        async with admin.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_models_match_migrations(tmp_path):
    """Autogenerate finds no difference: every model change comes with its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = f"sqlite+aiosqlite:///{tmp_path / 'cmp.db'}"
    await upgrade(url)
    eng = create_async_engine(url)
    try:
        async with eng.connect() as c:
            diff = await c.run_sync(lambda sc: compare_metadata(MigrationContext.configure(sc), Base.metadata))
    finally:
        await eng.dispose()
    assert diff == []


async def test_an_enforcement_made_before_0015_keeps_its_applicant(tmp_path):
    """0015 gives each enforcement application its applying party (the one key of its confirmations)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade(url, "0014")
    eng = create_async_engine(url)
    try:
        async with eng.begin() as c:
            # A case to refer to: every NOT NULL column of `cases` gets a value of its type.
            cols = [r for r in (await c.execute(text("PRAGMA table_info(cases)"))).all() if r[3] and r[1] != "id"]
            fill = {c_[1]: (1 if "INT" in c_[2].upper() else "2026-12-01" if "DATE" in c_[2].upper() else "x")
                    for c_ in cols}
            await c.execute(text(f"INSERT INTO cases (id, {', '.join(fill)}) VALUES "
                                 f"(1, {', '.join(':' + k for k in fill)})"), fill)
            for n, (kind, confirmations) in enumerate((("judicial_confirmation", '{"7": {}, "8": {}}'),
                                                        ("enforcement", '{"8": {"name": "x"}}'))):
                await c.execute(text(
                    "INSERT INTO court_submissions (case_id, kind, status, court_id, court_name, basis, key, "
                    "confirmations, requested_by, manifest, created_at, court_reference, answer) VALUES "
                    "(1, :kind, 'delivered', 'county', 'c', '', :key, :conf, '', '{}', '2026-12-01', '', '{}')"),
                    {"kind": kind, "key": f"k{n}", "conf": confirmations})
        await upgrade(url)
        async with eng.connect() as c:
            rows = dict((await c.execute(text("SELECT kind, applicant_party_id FROM court_submissions"))).all())
    finally:
        await eng.dispose()
    assert rows == {"judicial_confirmation": 0, "enforcement": 8}
