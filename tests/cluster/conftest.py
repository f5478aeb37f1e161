"""Several real server processes forming one deployment on this machine's PostgreSQL and Redis.

Each node is `python -m server.cli serve` on its own loopback port with its own NODE_ID, data
and recordings directory; they share DATABASE_URL, REDIS_URL and SECRET_KEY, as nodes of one
deployment do. In CI a missing PostgreSQL or Redis is a failure, not a skip.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.core.config import Settings
from server.infra.db import Database
from server.system import build
from server.core.models import User
from server.core.policy import Actor
from server.core.schemas import AssignIn, CaseIn, InviteIn, SessionIn
from server.services import cases as case_svc
from server.services import sessions as session_svc
from server.infra.files import FileStore
from tests.api.helpers import case_body, seed
from tests.conftest import IN_CI, _reset_pg, run_sync
from tests.support.servers import ServerFailed, ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "cluster-test-secret-" + "k" * 32


class Node(ServerProcess):
    """One node of a test deployment (tests/support/servers.py starts and stops it)."""

    def __init__(self, node_id: str, port: int, data_dir: Path, env: dict):
        super().__init__(env, data_dir / "server.log", port=port, name=f"node {node_id}")
        self.node_id, self.data_dir = node_id, data_dir

    def start(self, timeout: float = 60) -> "Node":
        try:
            return super().start(timeout)
        except ServerFailed as exc:
            pytest.fail(str(exc), pytrace=False)


@dataclass
class Deployment:
    nodes: list[Node]
    db: Database
    database_url: str
    session_id: int
    room_id: str
    case_id: int
    party_ids: list[int]
    mediator: Actor
    extra: dict = field(default_factory=dict)

    async def token(self, role: str, session_id: int | None = None, **kw) -> str:
        async with self.db.session() as s:
            _, token = await session_svc.create_invite(s, self.mediator, session_id or self.session_id,
                                                       InviteIn(role=role, **kw), secret=SECRET, default_seconds=3600)
        return token

    async def new_session(self) -> int:
        """Another session of the case: another room."""
        async with self.db.session() as s:
            return (await session_svc.open_session(s, self.mediator, self.case_id, SessionIn())).id


def _require_redis() -> str:
    """Redis must be there; returns a key prefix of this test's own (no other deployment's nodes)."""
    import redis
    try:
        r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        r.ping()
    except redis.RedisError as exc:
        msg = f"Redis is not available at {REDIS_URL}: {exc}"
        if IN_CI:
            pytest.fail(msg + " (CI must have it)", pytrace=False)
        pytest.skip(msg)
    r.close()
    return f"mediation-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def make_nodes(pg_database, tmp_path):
    """Factory: start n nodes of one deployment (on a PostgreSQL database reset for the test)."""
    prefix = _require_redis()
    run_sync(_reset_pg(pg_database))
    started: list[Node] = []

    def make(n: int, **env_extra) -> list[Node]:
        ports = [free_port() for _ in range(n)]
        base_env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PUBLIC_URL", "RECORDINGS_DIR",
                                 "EVIDENCE_DIR", "NODE_ID", "NODE_URL", "MEDIATION_DATA_DIR")}
        nodes = []
        for i, port in enumerate(ports):
            node_id = f"node-{chr(ord('a') + i)}"
            data_dir = tmp_path / node_id
            data_dir.mkdir()
            env = dict(base_env, DATABASE_URL=pg_database, REDIS_URL=REDIS_URL, SECRET_KEY=SECRET,
                       NODE_ID=node_id, NODE_URL=f"http://127.0.0.1:{port}",
                       PUBLIC_URL=f"http://127.0.0.1:{ports[0]}", MEDIATION_DATA_DIR=str(data_dir),
                       REDIS_PREFIX=prefix, IDENTITY_CHECK="off", PYTHONUNBUFFERED="1", NODE_HEARTBEAT="0.5", NODE_TTL="3",
                       **env_extra)
            nodes.append(Node(node_id, port, data_dir, env))
        for node in nodes:
            started.append(node.start())
        return nodes

    yield make
    for node in started:
        node.stop()


async def seed_session(database_url: str, tmp_path, nodes=()) -> Deployment:
    """A case with a mediator and two parties, and an open session, in the shared database."""
    db = build(Settings.from_env(data_dir=tmp_path / "seed", database_url=database_url)).db
    w = await seed(db)
    async with db.session() as s:
        admin = Actor(user=await s.get(User, w.users["admin"]))
        mediator = Actor(user=await s.get(User, w.users["mediator"]))
        case, _ = await case_svc.file_case(s, FileStore(tmp_path / "evidence"), CaseIn.model_validate(case_body(
            w.inst_a, respondents=[{"name": "李四", "phone": "13900002222"}])), [], max_bytes=1, max_files=0)
        await case_svc.accept(s, admin, case.id)
        await case_svc.assign(s, admin, case.id, AssignIn(mediator_id=w.users["mediator"]))
        sess = await session_svc.open_session(s, mediator, case.id, SessionIn())
        parties = [p.id for p in case.parties]
    return Deployment(list(nodes), db, database_url, sess.id, sess.room_id, case.id, parties, mediator)


@pytest.fixture
async def deployment(make_nodes, pg_database, tmp_path):
    """Three nodes, and a case with a mediator, two parties and an open session."""
    nodes = make_nodes(3)
    d = await seed_session(pg_database, tmp_path, nodes)
    yield d
    await d.db.dispose()
