"""The composition root: one function builds the system every entry point uses.

`build(settings)` makes the event bus, the database that carries it, the file stores, the
outbox workers, the outcome runtime (seal, court outbox) and registers what each domain adds
to the archive (record sections, integrity checks, export files) and which rules follow which
event. `mediation serve` (server/http/app.py), every CLI command (server/cli.py) and the workers
use it, so none of them can see a different system from another (docs/architecture.md).

The live room is the one reaction that needs a running server: `attach_live(system, hub)`
subscribes the socket.io hub (signaling/) to the events it acts on; it is called by the web
app right after it made the hub.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Protocol

from server.core import events, throttle
from server.core.config import Settings
from server.infra.db import Database
from server.infra.files import FileStore
from server.infra.outbox import Worker, cancel
from server.services import recordings as rec_svc
from server.services.notify import messages as notify
from server.services.outcome import court as court_svc
from server.services.outcome import followup
from server.services.outcome import performance
from server.services.outcome import records as outcome_records
from server.services.procedure import deadlines
from server.services.procedure import rules as procedure
from server.services.procedure import transcript

log = logging.getLogger("mediation")


class LiveRooms(Protocol):
    """What the live side (signaling/hub.py) offers to the system's reactions."""

    async def end_room(self, room_id: str) -> None: ...
    async def revoke_invite(self, room_id: str, invite_id: int) -> None: ...
    async def agreement_changed(self, event: events.AgreementChanged) -> None: ...


class DeadlineScanner:
    """Every few minutes: reminders and overdue flags of the case deadlines (server/services/procedure/deadlines.py),
    and the reminders and report requests of the agreements' obligations (server/services/outcome/performance.py)."""

    def __init__(self, db: Database, wake, interval: float = 300.0, reminder_days: tuple[int, ...] = (7, 1)):
        self.db, self.wake, self.interval, self.reminder_days = db, wake, interval, reminder_days
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            try:
                counts = await deadlines.scan(self.db)
                counts.update({f"obligations_{k}": n for k, n in
                               (await performance.scan(self.db, self.reminder_days)).items()})
                if any(counts.values()):
                    self.wake()
            except Exception:  # noqa: BLE001 - keep scanning through database hiccups
                log.exception("deadline scan failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None


class System:
    """Everything an entry point needs; made only by `build`."""

    def __init__(self, settings: Settings, db: Database, owns_db: bool):
        self.settings = settings
        self.db = db
        self.bus = db.bus
        self._owns_db = owns_db
        self.evidence = FileStore(settings.evidence_dir)
        self.outbox = Worker(db)
        self.outcome = court_svc.OutcomeRuntime(settings, db)
        self.deadline_scanner = DeadlineScanner(db, self.outbox.wake,
                                                reminder_days=settings.performance_reminder_days)
        self.live: LiveRooms | None = None

    def wake_workers(self) -> None:
        self.outbox.wake()
        self.outcome.worker.wake()

    async def start_workers(self) -> None:
        """The background work of a serving node: outbox, court outbox, deadline scan."""
        self.outbox.start()
        await self.outcome.start()
        self.deadline_scanner.start()

    async def recover(self) -> list[str]:
        """What a killed process of this node was recording, finalised and attached."""
        return await rec_svc.recover_interrupted(self.db, self.settings)

    async def close(self) -> None:
        await self.deadline_scanner.stop()
        await self.outcome.stop()
        await self.outbox.stop()
        if self._owns_db:
            await self.db.dispose()


def _register_archive() -> None:
    """What each domain adds to a case's record, integrity check and export (server/services/archive)."""
    outcome_records.register()
    rec_svc.register_with_archive()
    transcript.register_with_archive()


def _subscribe(system: System) -> None:
    bus = system.bus
    # The procedural rules follow every step of a case: deadlines met, started, cancelled; notifications.
    bus.subscribe(events.CaseTransitioned, procedure.on_case_transitioned)
    # After the agreement (docs/procedure.md): a settlement or failure schedules the follow-up (after the
    # rules above started its deadline); an agreement in effect has its obligations watched.
    bus.subscribe(events.CaseTransitioned, followup.on_case_transitioned)
    bus.subscribe(events.AgreementChanged, performance.on_agreement_changed)

    async def wake(_event) -> None:
        system.wake_workers()

    bus.after_commit(events.JobEnqueued, wake)


def build(settings: Settings, *, db: Database | None = None, clock: Callable[[], float] | None = None) -> System:
    """The system for `settings`. A given `db` (tests) is used and left open on close(); a given
    `clock` (tests: seconds, moved by hand) is what the throttles of guessing read (server/core/throttle.py,
    docs/architecture.md "Guessing")."""
    owns = db is None
    db = db or Database(settings.database_url)
    db.bus = events.Bus()  # one system per database: a second build starts from a clean bus
    system = System(settings, db, owns_db=owns)
    # Module-level configuration of the notification channels and the deadline calendar.
    notify.configure(notify.NotifyConfig.from_env(settings))
    deadlines.configure(tz=settings.display_tz, days={"followup": settings.followup_days,
                                                      "followup_failed": settings.followup_failed_days})
    throttle.configure(clock=clock, secret=settings.secret_key)
    _register_archive()
    _subscribe(system)
    return system


def attach_live(system: System, live: LiveRooms) -> None:
    """The live rooms follow what the services announce (after the change is committed)."""
    system.live = live
    bus = system.bus

    async def session_ended(e: events.SessionEnded) -> None:
        await live.end_room(e.room_id)

    async def invite_revoked(e: events.InviteRevoked) -> None:
        await live.revoke_invite(e.room_id, e.invite_id)

    async def agreement_changed(e: events.AgreementChanged) -> None:
        await live.agreement_changed(e)

    bus.after_commit(events.SessionEnded, session_ended)
    bus.after_commit(events.InviteRevoked, invite_revoked)
    bus.after_commit(events.AgreementChanged, agreement_changed)
