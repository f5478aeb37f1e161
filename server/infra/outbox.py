"""A persistent outbox: work that must reach another system (court, SMS gateway, mail server).

Jobs are rows, written in the same transaction as the change that causes them, so nothing
is lost if the process dies. A worker delivers due jobs with retries and exponential
backoff; a job is marked delivered only after its handler returned, so delivery is
at-least-once and handlers send an idempotency key (the job's `key`) to receivers that can
use one.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from typing import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import events
from server.core.models import OutboxJob, utcnow

log = logging.getLogger("mediation.outbox")

Handler = Callable[[dict, "OutboxJob"], Awaitable[None]]
_handlers: dict[str, Handler] = {}

BASE_DELAY = 5.0       # seconds before the first retry
MAX_DELAY = 3600.0     # never wait more than an hour between tries
MAX_ATTEMPTS = 50      # then the job is parked as "failed" for a person to look at


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help (e.g. the receiver refused the content)."""


def handler(kind: str):
    """Register the delivery function for one kind of job."""
    def deco(fn: Handler) -> Handler:
        _handlers[kind] = fn
        return fn
    return deco


async def enqueue(s: AsyncSession, kind: str, payload: dict, *, key: str | None = None,
                  delay: float = 0.0) -> OutboxJob:
    """Add a job inside the caller's transaction; it is delivered once that commits."""
    job = OutboxJob(kind=kind, payload=payload, key=key or "", status="pending", attempts=0,
                    next_attempt_at=utcnow() + dt.timedelta(seconds=delay))
    s.add(job)
    await s.flush()
    if not job.key:
        job.key = f"{kind}-{job.id}"
    await events.publish(s, events.JobEnqueued(kind))  # the workers wake once this commits
    return job


def backoff(attempts: int) -> float:
    delay = min(MAX_DELAY, BASE_DELAY * (2 ** max(0, attempts - 1)))
    return delay * random.uniform(0.8, 1.2)


async def deliver_due(db, *, limit: int = 20, now: dt.datetime | None = None) -> int:
    """Try every due job once; returns how many were delivered."""
    now = now or utcnow()
    async with db.session() as s:
        q = (select(OutboxJob).where(OutboxJob.status == "pending", OutboxJob.next_attempt_at <= now)
             .order_by(OutboxJob.next_attempt_at, OutboxJob.id).limit(limit))
        if db.is_postgres:
            q = q.with_for_update(skip_locked=True)  # several nodes share the work
        jobs = list((await s.execute(q)).scalars().all())
        # Claim them for a while so another worker does not pick them up meanwhile.
        for job in jobs:
            job.next_attempt_at = now + dt.timedelta(minutes=5)
    delivered = 0
    for job in jobs:
        fn = _handlers.get(job.kind)
        error: str | None = None
        permanent = False
        if fn is None:
            error, permanent = f"no handler for kind {job.kind!r}", False
        else:
            try:
                await fn(job.payload, job)
            except PermanentFailure as exc:
                error, permanent = str(exc) or type(exc).__name__, True
            except Exception as exc:  # noqa: BLE001 - any failure means "try again later"
                error = f"{type(exc).__name__}: {exc}"[:1000]
        async with db.session() as s:
            row = await s.get(OutboxJob, job.id)
            row.attempts += 1
            if error is None:
                row.status = "delivered"
                row.delivered_at = utcnow()
                row.last_error = ""
                delivered += 1
            else:
                row.last_error = error
                if permanent or row.attempts >= MAX_ATTEMPTS:
                    row.status = "failed"
                else:
                    row.next_attempt_at = utcnow() + dt.timedelta(seconds=backoff(row.attempts))
                log.warning("outbox job %s (%s) attempt %s failed: %s", row.id, row.kind, row.attempts, error)
    return delivered


class Worker:
    """Runs deliver_due in the background of the app."""

    def __init__(self, db, interval: float = 2.0):
        self.db = db
        self.interval = interval
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await deliver_due(self.db)
            except Exception:  # noqa: BLE001 - keep the worker alive through database hiccups
                log.exception("outbox worker round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None


async def cancel(task: asyncio.Task | None) -> None:
    """Stop a background task of the system and wait until it has."""
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
