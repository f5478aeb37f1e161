"""Slows down guessing: too many failed logins or access-code checks for one key in a window.
The same counters also bound plain use (`take`: every call counts), e.g. the room's link-check probes."""
from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Callable

from server.core.errors import AppError

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60

# The clock every throttle reads (seconds). The composition root (server/system.py) sets it, so a
# test can move time forward instead of sleeping through a window.
_clock: Callable[[], float] = time.time


def now() -> float:
    return _clock()


def configure(*, clock: Callable[[], float] | None = None) -> None:
    """The clock of all throttles; the counters start afresh (their times were read from the old clock)."""
    global _clock
    _clock = clock or time.time
    guard.reset()


class TooManyAttempts(AppError):
    status = 429
    code = "too_many_attempts"


class Throttle:
    """In-process counters (per node); enough to make online guessing pointless."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS,
                 message: str = "Too many failed attempts. Try again in {wait} minutes."):
        self.max_failures = max_failures
        self.window = window
        self.message = message
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        q = self._failures[key]
        cutoff = now() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def check(self, key: str) -> None:
        q = self._recent(key)
        if len(q) >= self.max_failures:
            wait = int(q[0] + self.window - now()) // 60 + 1
            raise TooManyAttempts(self.message.format(wait=wait), fields={"retry_after_minutes": wait})

    def fail(self, key: str) -> None:
        self._recent(key).append(now())
        if len(self._failures) > 100_000:  # bound memory under a spray of random keys
            self._failures.clear()

    def take(self, key: str) -> None:
        """One use of a rate-limited thing: refused (429) once `max_failures` uses fell in the window."""
        self.check(key)
        self.fail(key)

    def succeed(self, key: str) -> None:
        self._failures.pop(key, None)

    def reset(self) -> None:
        self._failures.clear()


guard = Throttle()
