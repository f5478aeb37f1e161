"""Slows down guessing, without handing anyone a way to lock the owner out (docs/architecture.md,
"Guessing: throttled by client and account").

`guard.attempt(account, caller)` is asked before a secret is checked for an account (a staff
login, a case's access code) and says whether the attempt is heard at all:

- from a device the account knows (its browser holds a device token, given when the owner signed
  in there or, for a case, filed it): only that device's own failures count, at most
  `DEVICE_MAX` an hour; beyond that the token is ignored and the next two rules apply;
- otherwise, per source (the client's address; IPv6 by /64): the first `SOURCE_FREE` failures are
  free, after that each failure makes the next attempt from that source wait twice as long as the
  last (1 s, 2 s, 4 s ... at most `SOURCE_MAX_WAIT`); the count forgets one failure every
  `SOURCE_LEAK` seconds;
- and per account: at most `ACCOUNT_MAX` failures in `ACCOUNT_WINDOW` from all the devices it
  does not know together.

An attempt that is not heard is refused with `TooManyAttempts` (429, Retry-After) before the
secret is looked at, and changes nothing. An attempt that is heard counts as a failure from the
moment it is heard (so parallel requests cannot slip through together) until `succeeded` takes it
back and remembers the device for the account.

The plain counters (`Throttle.check/fail/take/succeed`) bound other things per key: a party's ID
check when signing, bad join tokens per address, the link-check probes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from server.core.errors import AppError

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60

SOURCE_FREE = 5              # failures from one source before it has to wait
SOURCE_BASE_WAIT = 1.0       # the wait after the first failure beyond the free ones (seconds)
SOURCE_MAX_WAIT = 15 * 60    # the wait doubles up to this
SOURCE_LEAK = 10 * 60        # one failure of a source is forgotten every this many seconds
ACCOUNT_MAX = 10             # failures of one account from devices it does not know...
ACCOUNT_WINDOW = 60 * 60     # ...in this window
DEVICE_MAX = 10              # failures of one known device in DEVICE_WINDOW before its token is ignored
DEVICE_WINDOW = 60 * 60
DEVICE_SECONDS = 90 * 86400  # a device token lasts this long after the last success with it
DEVICES_KEPT = 8             # device tokens one browser keeps (accounts signed in on a shared computer)
MAX_KEYS = 100_000           # memory bound of each table under a spray of random keys

# The clock every throttle reads (seconds). The composition root (server/system.py) sets it, so a
# test can move time forward instead of sleeping through a window.
_clock: Callable[[], float] = time.time


def now() -> float:
    return _clock()


def configure(*, clock: Callable[[], float] | None = None, secret: str | None = None) -> None:
    """The clock of all throttles and the key device tokens are signed with; the counters start
    afresh (their times were read from the old clock)."""
    global _clock
    _clock = clock or time.time
    guard.reset()
    if secret:
        guard.secret = secret.encode()


class TooManyAttempts(AppError):
    status = 429
    code = "too_many_attempts"

    def __init__(self, message: str, *, wait: float, scope: str | None = None):
        seconds = max(1, math.ceil(wait))
        fields = {"retry_after": seconds, "retry_after_minutes": math.ceil(seconds / 60)}
        if scope:
            fields["scope"] = scope
        super().__init__(message.format(wait=fields["retry_after_minutes"], seconds=seconds), fields=fields)
        self.headers = {"Retry-After": str(seconds)}


def _prune(table: dict, alive, weight) -> None:
    """Keep a table under MAX_KEYS: drop what has run out, then the keys with the fewest failures
    (a spray of random keys cannot wash out the counters of an account under attack)."""
    if len(table) <= MAX_KEYS:
        return
    for key in [k for k, v in table.items() if not alive(v)]:
        del table[key]
    if len(table) > MAX_KEYS // 2:
        for key in sorted(table, key=lambda k: weight(table[k]))[:len(table) - MAX_KEYS // 2]:
            del table[key]


class Throttle:
    """Counters in a sliding window per key, in process (per node)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS,
                 message: str = "Too many failed attempts. Try again in {wait} minutes.",
                 clock: Callable[[], float] | None = None):
        self.max_failures = max_failures
        self.window = window
        self.message = message
        self._now = clock or now
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()  # asking creates nothing: only failures take memory
        cutoff = self._now() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        return q

    def wait(self, key: str) -> float:
        """Seconds until `key` is below its limit again (0: now)."""
        q = self._recent(key)
        if len(q) < self.max_failures:
            return 0.0
        return max(q[len(q) - self.max_failures] + self.window - self._now(), 0.001)

    def check(self, key: str) -> None:
        wait = self.wait(key)
        if wait > 0:
            raise TooManyAttempts(self.message, wait=wait)

    def fail(self, key: str) -> float:
        t = self._now()
        self._recent(key)
        self._failures.setdefault(key, deque()).append(t)
        cutoff = t - self.window
        _prune(self._failures, lambda q: bool(q) and q[-1] > cutoff, len)
        return t

    def take(self, key: str) -> None:
        """One use of a rate-limited thing: refused (429) once `max_failures` uses fell in the window."""
        self.check(key)
        self.fail(key)

    def forget(self, key: str, stamp: float) -> None:
        """Take back one failure (the one recorded at `stamp`)."""
        q = self._failures.get(key)
        if q is not None and stamp in q:
            q.remove(stamp)

    def succeed(self, key: str) -> None:
        self._failures.pop(key, None)

    def reset(self) -> None:
        self._failures.clear()


class SourceDelay:
    """Per source: a failure count that forgets one failure every `leak` seconds; beyond `free`
    failures each one makes the next attempt wait base * 2^(count - free - 1) seconds, at most `max_wait`."""

    def __init__(self, free: int = SOURCE_FREE, base: float = SOURCE_BASE_WAIT, max_wait: float = SOURCE_MAX_WAIT,
                 leak: float = SOURCE_LEAK, clock: Callable[[], float] | None = None):
        self.free, self.base, self.max_wait, self.leak = free, base, max_wait, leak
        self._now = clock or now
        self._state: dict[str, tuple[int, float, float]] = {}  # key -> (count, counted since, heard again at)

    def _read(self, key: str, t: float) -> tuple[int, float, float]:
        count, since, until = self._state.get(key, (0, t, 0.0))
        gone = min(count, int((t - since) // self.leak))
        return count - gone, (since + gone * self.leak) if count > gone else t, until

    def wait(self, key: str) -> float:
        t = self._now()
        return max(0.0, self._read(key, t)[2] - t)

    def fail(self, key: str) -> tuple[float, float]:
        """Count one failure; returns what `forget` needs to take it back."""
        t = self._now()
        count, since, until = self._read(key, t)
        count += 1
        after = t + min(self.max_wait, self.base * 2 ** (count - self.free - 1)) if count > self.free else t
        self._state[key] = (count, since, max(until, after))
        _prune(self._state, lambda v: v[0] > int((t - v[1]) // self.leak) or v[2] > t, lambda v: v[0])
        return until, max(until, after)

    def forget(self, key: str, token: tuple[float, float]) -> None:
        if key not in self._state:
            return
        count, since, until = self._read(key, self._now())
        before, set_by_it = token
        self._state[key] = (max(0, count - 1), since, before if until == set_by_it else until)

    def reset(self) -> None:
        self._state.clear()


def source_key(address: str) -> str:
    """The source an address belongs to: an IPv4 address, an IPv6 /64 (one subscriber's prefix)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "src:" + address[:64]
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return "src:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return "src:" + str(ip)


@dataclass
class Caller:
    """Who is trying: the client's address and the device tokens its browser presents. `changed`
    says the tokens are to be written back (the HTTP edge keeps them in the device cookie)."""

    address: str = ""
    devices: list[str] = field(default_factory=list)
    changed: bool = False


@dataclass
class Attempt:
    account: str
    caller: Caller
    device: str | None      # the known device it comes from (its token's nonce), else None
    stamp: float
    source: str = ""
    source_token: tuple[float, float] = (0.0, 0.0)


_TOKEN = re.compile(r"^([A-Za-z0-9_-]{8,24})\.(\d{1,12})\.([A-Za-z0-9_-]{16,44})$")


def parse_devices(raw: str | None) -> list[str]:
    """The device tokens of a cookie value (`~`-separated), the well-formed ones only."""
    if not raw or len(raw) > 2000:
        return []
    return [t for t in raw.split("~") if _TOKEN.match(t)][:DEVICES_KEPT]


class Guard(Throttle):
    """The guessing rule for accounts (above), plus the plain counters it inherits."""

    def __init__(self, clock: Callable[[], float] | None = None, secret: bytes | None = None):
        super().__init__(clock=clock)
        self.secret = secret or secrets.token_bytes(32)
        self.sources = SourceDelay(clock=clock)
        self.accounts = Throttle(ACCOUNT_MAX, ACCOUNT_WINDOW, clock=clock)
        self.devices = Throttle(DEVICE_MAX, DEVICE_WINDOW, clock=clock)

    # --- device tokens ---------------------------------------------------------------------------

    def _mac(self, account: str, nonce: str, exp: str) -> str:
        mac = hmac.new(self.secret, f"device.{account}.{nonce}.{exp}".encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def _device_for(self, account: str, token: str, t: float) -> str | None:
        m = _TOKEN.match(token)
        if m is None or int(m.group(2)) < t:
            return None
        nonce, exp, mac = m.groups()
        return nonce if hmac.compare_digest(mac, self._mac(account, nonce, exp)) else None

    def known_device(self, account: str, caller: Caller) -> str | None:
        """The nonce of a device token of `caller` for `account` that is still honoured."""
        t = self._now()
        for token in caller.devices:
            nonce = self._device_for(account, token, t)
            if nonce is not None and self.devices.wait("dev:" + nonce) == 0:
                return nonce
        return None

    def remember(self, account: str, caller: Caller) -> None:
        """The caller's device is known for `account` from now on (a fresh token, the old one replaced)."""
        t = self._now()
        kept = [tok for tok in caller.devices if self._device_for(account, tok, t) is None]
        nonce, exp = secrets.token_urlsafe(12), str(int(t + DEVICE_SECONDS))
        caller.devices = [f"{nonce}.{exp}.{self._mac(account, nonce, exp)}", *kept][:DEVICES_KEPT]
        caller.changed = True

    # --- the rule ----------------------------------------------------------------------------------

    def wait_for(self, account: str, caller: Caller) -> tuple[float, str]:
        """(seconds until an attempt on `account` by `caller` is heard, why: "source" or "account")."""
        if self.known_device(account, caller) is not None:
            return 0.0, ""
        by_source = self.sources.wait(source_key(caller.address))
        by_account = self.accounts.wait(account)
        if by_account >= by_source:
            return by_account, "account" if by_account > 0 else ""
        return by_source, "source"

    def attempt(self, account: str, caller: Caller) -> Attempt:
        """Before checking a secret of `account`: refused (TooManyAttempts) or counted as a failure
        until `succeeded`."""
        device = self.known_device(account, caller)
        if device is not None:
            return Attempt(account, caller, device, self.devices.fail("dev:" + device))
        wait, scope = self.wait_for(account, caller)
        if wait > 0:
            if scope == "account":
                raise TooManyAttempts("Too many failed attempts for this account from devices it does not know. "
                                      "Use a device that signed in before, or try again in {wait} minutes.",
                                      wait=wait, scope=scope)
            raise TooManyAttempts("Too many failed attempts from your address. Try again in {seconds} seconds.",
                                  wait=wait, scope=scope)
        source = source_key(caller.address)
        return Attempt(account, caller, None, self.accounts.fail(account), source, self.sources.fail(source))

    def succeeded(self, attempt: Attempt) -> None:
        """The secret was right: the attempt is no failure, and the device is known for the account."""
        if attempt.device is not None:
            self.devices.succeed("dev:" + attempt.device)
        else:
            self.accounts.forget(attempt.account, attempt.stamp)
            self.sources.forget(attempt.source, attempt.source_token)
        self.remember(attempt.account, attempt.caller)

    def reset(self) -> None:
        super().reset()
        self.sources.reset()
        self.accounts.reset()
        self.devices.reset()


guard = Guard()
