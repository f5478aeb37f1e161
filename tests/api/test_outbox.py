"""The persistent outbox: retries with backoff, nothing lost across a restart, delivered once."""
from __future__ import annotations

import datetime as dt

from server.infra import outbox
from server.infra.db import Database
from server.core.models import OutboxJob


async def test_failing_receiver_gets_each_job_once_after_it_recovers(db, settings):
    received: list[str] = []
    healthy = {"up": False}

    @outbox.handler("test.deliver")
    async def deliver(payload, job):
        if not healthy["up"]:
            raise ConnectionError("receiver down")
        received.append(payload["msg"])

    @outbox.handler("test.refused")
    async def refused(payload, job):
        raise outbox.PermanentFailure("receiver says the content is invalid")

    async with db.session() as s:
        for i in range(3):
            await outbox.enqueue(s, "test.deliver", {"msg": f"m{i}"})
        bad = await outbox.enqueue(s, "test.refused", {"msg": "x"})
    # A failed transaction leaves no job behind.
    try:
        async with db.session() as s:
            await outbox.enqueue(s, "test.deliver", {"msg": "rolled back"})
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass

    far = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    assert await outbox.deliver_due(db) == 0  # receiver down: retried later
    async with db.read() as s:
        jobs = {j.id: j for j in (await s.get_one(OutboxJob, bad.id),)}
        assert jobs[bad.id].status == "failed" and "invalid" in jobs[bad.id].last_error

    # "Restart": a new engine, the jobs are still there and are delivered once the receiver is back.
    db2 = Database(settings.database_url)
    try:
        assert await outbox.deliver_due(db2, now=far) == 0
        healthy["up"] = True
        assert await outbox.deliver_due(db2, now=far + dt.timedelta(days=1)) == 3
        assert await outbox.deliver_due(db2, now=far + dt.timedelta(days=2)) == 0
    finally:
        await db2.dispose()
    assert sorted(received) == ["m0", "m1", "m2"]
    async with db.read() as s:
        from sqlalchemy import select
        rows = (await s.execute(select(OutboxJob).where(OutboxJob.kind == "test.deliver"))).scalars().all()
    assert [(r.status, r.attempts) for r in rows] == [("delivered", 3)] * 3


def test_backoff_grows_and_is_capped():
    delays = [outbox.backoff(n) for n in range(1, 15)]
    assert delays[0] < 10 and delays[3] > delays[1] and max(delays) <= outbox.MAX_DELAY * 1.2
