"""Hash-chained audit log: every action on a case is appended here, in the same transaction."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.models import AuditEntry, AuditHead, utcnow

GENESIS = "0" * 64


@dataclass
class ActorRef:
    """Who did something, as written into the log."""

    type: str  # staff | applicant | participant | system
    id: str = ""
    name: str = ""


SYSTEM = ActorRef("system", "", "system")


def entry_digest(*, seq: int, case_id, session_id, actor_type: str, actor_id: str, actor_name: str,
                 action: str, data: dict, created_at: dt.datetime, prev_hash: str) -> str:
    payload = {
        "seq": seq,
        "case_id": case_id,
        "session_id": session_id,
        "actor": [actor_type, actor_id, actor_name],
        "action": action,
        "data": data,
        "at": created_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
        "prev": prev_hash,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def append(s: AsyncSession, actor: ActorRef, action: str, *, case_id: int | None = None,
                 session_id: int | None = None, data: dict | None = None) -> AuditEntry:
    # Locking the head row serialises appends across connections and nodes (PostgreSQL);
    # on SQLite the write transaction already holds the database lock.
    head = (await s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update())).scalar_one()
    data = json.loads(json.dumps(data or {}, default=str))  # what is hashed is what is stored
    created = utcnow()
    seq = head.seq + 1
    digest = entry_digest(seq=seq, case_id=case_id, session_id=session_id, actor_type=actor.type,
                          actor_id=str(actor.id), actor_name=actor.name, action=action, data=data,
                          created_at=created, prev_hash=head.hash)
    entry = AuditEntry(seq=seq, case_id=case_id, session_id=session_id, actor_type=actor.type,
                       actor_id=str(actor.id), actor_name=actor.name, action=action, data=data,
                       created_at=created, prev_hash=head.hash, hash=digest)
    s.add(entry)
    head.seq = seq
    head.hash = digest
    await s.flush()
    return entry


@dataclass
class ChainProblem:
    seq: int
    problem: str


async def verify_chain(s: AsyncSession, batch: int = 5000) -> list[ChainProblem]:
    """Recompute every hash and link; returns what does not match (empty means intact)."""
    problems: list[ChainProblem] = []
    prev = GENESIS
    expected_seq = 1
    last_seq = 0
    while True:
        rows = (await s.execute(
            select(AuditEntry).where(AuditEntry.seq > last_seq).order_by(AuditEntry.seq).limit(batch)
        )).scalars().all()
        if not rows:
            break
        for e in rows:
            if e.seq != expected_seq:
                problems.append(ChainProblem(e.seq, f"missing entries before seq {e.seq} (expected {expected_seq})"))
            if e.prev_hash != prev:
                problems.append(ChainProblem(e.seq, "prev_hash does not match the previous entry"))
            digest = entry_digest(seq=e.seq, case_id=e.case_id, session_id=e.session_id,
                                  actor_type=e.actor_type, actor_id=e.actor_id, actor_name=e.actor_name,
                                  action=e.action, data=e.data, created_at=e.created_at, prev_hash=e.prev_hash)
            if digest != e.hash:
                problems.append(ChainProblem(e.seq, "content does not match its hash (entry altered)"))
            prev = e.hash
            expected_seq = e.seq + 1
            last_seq = e.seq
    head = (await s.execute(select(AuditHead).where(AuditHead.id == 1))).scalar_one()
    if head.seq != last_seq or head.hash != prev:
        problems.append(ChainProblem(head.seq, "chain head does not match the last entry (entries removed?)"))
    return problems
