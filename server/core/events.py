"""What happened, announced by the services; who reacts is wired once, in server/system.py.

A service publishes an event inside its transaction (`await publish(s, Event(...))`). The
bus travels with the database session (`s.info["bus"]`, set by server/infra/db.py), so a
service needs no extra argument and every entry point that uses the system's database gets
the same reactions. Two kinds of subscriber (docs/architecture.md, "Events"):

- **in the transaction** (`Bus.subscribe`): rules that write together with the change —
  deadlines, notifications. They run before the commit; if one raises, the whole change is
  rolled back.
- **after the commit** (`Bus.after_commit`): effects outside the database — the live room
  ends, a withdrawn link's holder is removed, the outbox workers wake. They run only once the
  transaction committed (never for a rolled-back change); a failure is logged, not raised to
  the caller, whose change is already durable.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

log = logging.getLogger("mediation.events")


class Event:
    """Base of every event; subclasses are frozen dataclasses named in the past tense."""


@dataclass(frozen=True)
class CaseTransitioned(Event):
    """A case took a step of the workflow (server/core/workflow.py), or was filed (`action="filed"`)."""
    case: Any            # the Case row, loaded in the publishing transaction
    action: str
    before: str | None
    after: str
    actor: Any = None    # server.core.policy.Actor, or None for the system
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SessionEnded(Event):
    case_id: int
    session_id: int
    room_id: str
    via: str             # "staff", "room", "recusal", …


@dataclass(frozen=True)
class InviteRevoked(Event):
    case_id: int
    session_id: int
    room_id: str
    invite_id: int


@dataclass(frozen=True)
class AgreementChanged(Event):
    """The agreement of a case changed in a way the live room shows (`what`: "draft", "final",
    "signed", "effective", "comment"); `comment` carries the new comment's JSON for "comment"."""
    case_id: int
    what: str
    comment: dict | None = None
    author_type: str = ""   # for a comment: "participant" (in the room), "party" (portal) or "staff"
    author_id: str = ""
    area: str = "main"


@dataclass(frozen=True)
class RecordingAttached(Event):
    case_id: int
    session_id: int
    run: str
    complete: bool


@dataclass(frozen=True)
class JobEnqueued(Event):
    """A row was added to the persistent outbox (server/infra/outbox.py)."""
    kind: str


InTransaction = Callable[[Any, Event], Awaitable[None]]
AfterCommit = Callable[[Event], Awaitable[None]]


class Bus:
    def __init__(self) -> None:
        self._now: dict[type, list[InTransaction]] = defaultdict(list)
        self._after: dict[type, list[AfterCommit]] = defaultdict(list)

    def subscribe(self, kind: type[Event], handler: InTransaction) -> None:
        """`await handler(s, event)` inside the publishing transaction."""
        self._now[kind].append(handler)

    def after_commit(self, kind: type[Event], handler: AfterCommit) -> None:
        """`await handler(event)` once the publishing transaction has committed."""
        self._after[kind].append(handler)

    async def publish(self, s, event: Event) -> None:
        for fn in self._now.get(type(event), ()):
            await fn(s, event)
        if self._after.get(type(event)):
            s.info.setdefault("after_commit", []).append(event)

    async def committed(self, events: list[Event]) -> None:
        for event in events:
            for fn in self._after.get(type(event), ()):
                try:
                    await fn(event)
                except Exception:  # the change is durable; one failed reaction must not hide it
                    log.exception("after-commit handler %s failed for %r", getattr(fn, "__qualname__", fn), event)


async def publish(s, event: Event) -> None:
    """Announce `event` on the bus of the session's database (server/infra/db.py)."""
    bus = s.info.get("bus")
    if bus is None:
        raise RuntimeError("this database session has no event bus: open it with Database.session()")
    await bus.publish(s, event)
