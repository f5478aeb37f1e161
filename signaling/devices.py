"""Which device holds a participant's place (docs/protocol.md, "One device per link").

A join link is bound, at its first use in a room, to the device that used it: the `join` ack
carries a `resume` secret the page keeps, and a reconnect presents it. A join with the link but
without the secret while its holder is in the room never replaces the holder: a single-use link
is refused (`token_used`, in live_svc.check_pass), any other link waits as a "second device"
until someone who admits lets it in or turns it away, or until the holder is gone.

Only digests of the secrets are kept (in memory and in the room's state shared with other
nodes), so the registry never holds a credential."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

RESUME_BYTES = 24


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(bound: dict[str, str], pid: str, secret: str | None) -> bool:
    """Whether `secret` is the one bound to `pid` in `bound` (participant id -> digest)."""
    held = bound.get(pid)
    return held is not None and secret is not None and hmac.compare_digest(held, digest(secret))


@dataclass
class WaitingDevice:
    sid: str
    participant_id: str
    name: str
    role: str
    since: float  # wall clock, for the mediator's list
    pass_: Any = None  # the live_svc.Pass the device presented


@dataclass
class Devices:
    bound: dict[str, str] = field(default_factory=dict)         # participant id -> digest of its secret
    waiting: dict[str, WaitingDevice] = field(default_factory=dict)  # socket id -> second device

    def bind(self, pid: str) -> str:
        """A new secret for pid: the device that gets it holds the place from now on."""
        secret = secrets.token_urlsafe(RESUME_BYTES)
        self.bound[pid] = digest(secret)
        return secret

    def holds(self, pid: str, secret: str | None) -> bool:
        return matches(self.bound, pid, secret)

    def wait(self, sid: str, p) -> WaitingDevice:
        device = WaitingDevice(sid=sid, participant_id=p.participant_id, name=p.name, role=p.role,
                               since=time.time(), pass_=p)
        self.waiting[sid] = device
        return device

    def first_waiting(self, pid: str) -> WaitingDevice | None:
        """The device that has waited longest for pid's place."""
        queue = [d for d in self.waiting.values() if d.participant_id == pid]
        return min(queue, key=lambda d: d.since) if queue else None

    def take(self, sid: str) -> WaitingDevice | None:
        return self.waiting.pop(sid, None)

    def view(self) -> list[dict]:
        """For those who admit: who waits on a second device (one row per participant)."""
        rows: dict[str, dict] = {}
        for d in sorted(self.waiting.values(), key=lambda d: d.since):
            rows.setdefault(d.participant_id, {"participant_id": d.participant_id, "name": d.name,
                                               "role": d.role, "since": round(d.since, 3)})
        return list(rows.values())
