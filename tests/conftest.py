"""Shared fixtures: a real database (SQLite file and PostgreSQL) and the app on each.

PostgreSQL comes from TEST_POSTGRES_URL (default: the local server, database `test`, trust
auth). Each test session creates its own database there and drops it at the end. In CI a
missing PostgreSQL is a failure, not a skip.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.config import Settings
from server.infra.db import Database, upgrade
from server.system import build
from server.core.models import Base

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))


def run_sync(coro):
    """Run a coroutine to completion from sync code, even when an event loop is running here."""
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _missing(what: str, why: str):
    msg = f"{what} is not available: {why}"
    if IN_CI:
        pytest.fail(msg + " (CI must have it)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """One migrated SQLite file; each test gets a copy (much faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    run_sync(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_database() -> str:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    name = f"mediation_test_{uuid.uuid4().hex[:10]}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]

    async def create():
        eng = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with eng.connect() as c:
                await c.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await eng.dispose()

    try:
        run_sync(create())
    except Exception as exc:  # noqa: BLE001 - any connection problem means "no PostgreSQL"
        _missing("PostgreSQL", f"{type(exc).__name__}: {exc}")
    url = f"{base}/{name}"
    run_sync(upgrade(url))
    yield url

    async def drop():
        eng = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with eng.connect() as c:
                await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await eng.dispose()

    run_sync(drop())


async def _reset_pg(url: str) -> None:
    eng = create_async_engine(url)
    try:
        async with eng.begin() as c:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            await c.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64})
    finally:
        await eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, sqlite_template) -> str:
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    run_sync(_reset_pg(url))
    return url


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    os.environ.pop("DATABASE_URL", None)
    return Settings.from_env(data_dir=tmp_path / "data", database_url=db_url, secret_key="test-secret-key-" + "x" * 32,
                             public_url="http://127.0.0.1:8080")


@pytest.fixture
async def db(settings):
    # The database as every entry point gets it: built with the system (server/system.py), so the
    # services' events reach their subscribers (deadlines, notifications) here too.
    system = build(settings)
    yield system.db
    await system.close()


@pytest.fixture
async def client(aiohttp_client, settings, db):
    from server.http.app import create_app

    app = create_app(settings, db=db)
    return await aiohttp_client(app)


@pytest.fixture(autouse=True)
def _fresh_throttle():
    """Failure counters are per process; each test starts with none."""
    from server.core.throttle import guard
    guard.reset()
    yield
    guard.reset()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """`mediation serve --demo` shared by the browser tests of every directory (tests/browser,
    outcome, archive). Defined here, once: a session fixture imported into a test module is a
    copy of its own there, and each copy would keep a server running to the end of the run."""
    from tests.browser.conftest import running_server
    with running_server(tmp_path_factory.mktemp("portal-server")) as srv:
        yield srv
