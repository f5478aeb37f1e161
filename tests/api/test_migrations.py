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
