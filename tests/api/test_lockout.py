"""Lockout is no weapon: an attacker guessing staff passwords or access codes slows down (per client
address, exponentially) and hits a per-account ceiling, while the owner on a device they signed in
with before (the device cookie) still gets in. The rule is in server/core/throttle.py and
docs/architecture.md ("Guessing"); time is a clock handed to the composition root, moved by hand.

Clients have their own addresses: each is bound to its own loopback address (127.0.0.x), which is
the peer address the server sees; no forwarded header is trusted (TRUSTED_PROXIES is unset).
"""
from __future__ import annotations

import time

import aiohttp
import pytest
from sqlalchemy import func, select

from server.core.models import AuditEntry, StaffSession
from server.http.app import create_app
from tests.api.helpers import PASSWORD, case_body, seed
from tests.outcome.test_pages import csrf_of

DEVICE_COOKIE = "mediation_device"


class Clock:
    """Seconds for the throttle, moved forward by the test instead of sleeping."""

    def __init__(self):
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Browser:
    """One client with its own address and cookie jar, talking to the test server."""

    def __init__(self, server, address: str):
        self.server = server
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                          cookie_jar=aiohttp.CookieJar(unsafe=True))

    def request(self, method: str, path: str, **kw):
        return self.http.request(method, self.server.make_url(path), allow_redirects=False, **kw)

    async def login(self, username: str, password: str) -> aiohttp.ClientResponse:
        async with self.request("POST", "/api/v1/auth/login", json={"username": username, "password": password}) as r:
            await r.read()
            return r

    async def lookup(self, number: str, code: str) -> aiohttp.ClientResponse:
        async with self.request("GET", f"/api/v1/cases/{number}", headers={"X-Access-Code": code}) as r:
            await r.read()
            return r

    async def form(self, path: str, data: dict, lang: str = "") -> tuple[aiohttp.ClientResponse, str]:
        q = f"?lang={lang}" if lang else ""
        async with self.request("GET", path + q) as r:
            csrf = csrf_of(await r.text())
        async with self.request("POST", path + q, data={**data, "csrf_token": csrf}) as r:
            return r, await r.text()

    def has_device(self) -> bool:
        return any(c.key == DEVICE_COOKIE for c in self.http.cookie_jar)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(aiohttp_client, settings, db, clock):
    return await aiohttp_client(create_app(settings, db=db, clock=clock))


@pytest.fixture
async def browsers(server):
    made: list[Browser] = []

    def make(address: str) -> Browser:
        made.append(Browser(server, address))
        return made[-1]

    yield make
    for b in made:
        await b.http.close()


def refusal(r: aiohttp.ClientResponse, body: dict) -> int:
    """A 429 names its wait in Retry-After (seconds) and in the error's fields; returns the wait."""
    assert r.status == 429, (r.status, body)
    assert body["error"]["code"] == "too_many_attempts", body
    wait = int(r.headers["Retry-After"])
    assert wait >= 1 and body["error"]["fields"]["retry_after"] == wait, (r.headers, body)
    return wait


async def json_of(b: Browser, method: str, path: str, **kw) -> tuple[aiohttp.ClientResponse, dict]:
    async with b.request(method, path, **kw) as r:
        return r, await r.json()


async def counts(db) -> tuple[int, int]:
    async with db.session() as s:
        return ((await s.execute(select(func.count()).select_from(AuditEntry))).scalar_one(),
                (await s.execute(select(func.count()).select_from(StaffSession))).scalar_one())


async def test_an_attacker_cannot_keep_the_admin_out(server, browsers, clock, db):
    await seed(db)
    owner, attacker = browsers("127.0.0.2"), browsers("127.0.0.3")
    assert (await owner.login("admin", PASSWORD)).status == 200
    assert owner.has_device()  # the browser the admin signed in with is now known for that account

    waits, failures, start = [], 0, clock.t
    while clock.t - start < 3600:  # an hour of wrong passwords from one address, as fast as it is heard
        r, body = await json_of(attacker, "POST", "/api/v1/auth/login",
                                json={"username": "admin", "password": f"guess-{failures}"})
        if r.status == 401:
            failures += 1
            continue
        wait = refusal(r, body)
        waits.append((wait, body["error"]["fields"]["scope"]))
        # While it must wait, the attacker is refused even with the right password...
        r, body = await json_of(attacker, "POST", "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        assert refusal(r, body) == wait and not attacker.has_device()
        # ...and the admin, on the known device, is let in whatever the attacker does.
        assert (await owner.login("admin", PASSWORD)).status == 200
        clock.advance(wait)
    # Five free tries, then the wait at this address doubles with every failure, until the account's
    # ceiling (10 failures an hour from devices it does not know) holds it for the rest of the hour.
    assert [w for w, _ in waits[:4]] == [1, 2, 4, 8] and {s for _, s in waits[:4]} == {"source"}, waits
    assert waits[4][1] == "account" and len(waits) == 5 and failures == 10, (waits, failures)


async def test_an_attacker_cannot_keep_the_applicant_out(server, browsers, clock, db):
    w = await seed(db)
    owner, attacker = browsers("127.0.0.2"), browsers("127.0.0.3")
    r, filed = await json_of(owner, "POST", "/api/v1/cases", json=case_body(w.inst_a))
    assert r.status == 201 and owner.has_device()  # the browser that filed the case is known for it
    r, other = await json_of(browsers("127.0.0.4"), "POST", "/api/v1/cases", json=case_body(w.inst_a, title="另一件"))
    number, code = filed["case"]["number"], filed["access_code"]
    # Numbers run in order: the attacker tries this case and the next one, wrong codes, as fast as allowed.
    start, tried, waits = clock.t, 0, []
    while clock.t - start < 3600:
        target = (number, other["case"]["number"])[tried % 2]
        r, body = await json_of(attacker, "GET", f"/api/v1/cases/{target}", headers={"X-Access-Code": "AAAAAAAA"})
        if r.status == 401:
            tried += 1
            continue
        waits.append(refusal(r, body))
        r = await owner.lookup(number, code)
        assert r.status == 200, r.status  # the applicant's own browser reads the case meanwhile
        clock.advance(waits[-1])
    assert waits[:6] == [1, 2, 4, 8, 16, 32] and tried <= 20, (waits, tried)
    # The resident's page, from the same known browser, also lets the owner in.
    r, _ = await owner.form("/lookup", {"number": number, "phone": "13800001111", "code": code})
    assert r.status == 303 and r.headers["Location"] == "/lookup/case"


async def test_pages_say_why_and_when(server, browsers, clock, db):
    w = await seed(db)
    attacker = browsers("127.0.0.3")
    r, filed = await json_of(browsers("127.0.0.2"), "POST", "/api/v1/cases", json=case_body(w.inst_a))
    number = filed["case"]["number"]
    for i in range(5):
        r, text = await attacker.form("/login", {"username": "admin", "password": f"guess-{i}"})
        assert r.status == 401 and "用户名或密码不正确" in text
    r, text = await attacker.form("/login", {"username": "admin", "password": "guess-5"})
    assert r.status == 401
    # The sixth failure makes this address wait; the page says so (Simplified Chinese by default).
    r, text = await attacker.form("/login", {"username": "admin", "password": PASSWORD})
    assert r.status == 429 and r.headers["Retry-After"] == "1" and "1 秒后再试" in text, text
    r, text = await attacker.form("/lookup", {"number": number, "phone": "13800001111", "code": "AAAAAAAA"})
    assert r.status == 429 and "秒后再试" in text and "text/html" in r.headers["Content-Type"]
    r, text = await attacker.form("/lookup", {"number": number, "phone": "13800001111", "code": "AAAAAAAA"},
                                  lang="en")
    assert r.status == 429 and "try again in 1 s." in text, text


async def test_many_sources_hit_the_account_ceiling(server, browsers, clock, db):
    await seed(db)
    owner = browsers("127.0.0.2")
    assert (await owner.login("intake", PASSWORD)).status == 200
    for i in range(10):  # ten addresses, one wrong guess each: no address is slowed down
        assert (await browsers(f"127.0.1.{i + 1}").login("intake", "guess-guess")).status == 401
    fresh = browsers("127.0.2.1")
    r, body = await json_of(fresh, "POST", "/api/v1/auth/login", json={"username": "intake", "password": "guess"})
    wait = refusal(r, body)
    assert body["error"]["fields"]["scope"] == "account" and 3500 < wait <= 3600, body
    # Not even the right password opens the account from a device it does not know: no oracle.
    new_laptop = browsers("127.0.2.2")
    r, body = await json_of(new_laptop, "POST", "/api/v1/auth/login", json={"username": "intake", "password": PASSWORD})
    refusal(r, body)
    # The owner's known device gets in; other accounts are untouched.
    assert (await owner.login("intake", PASSWORD)).status == 200
    assert (await fresh.login("mediator", PASSWORD)).status == 200
    clock.advance(wait)
    assert (await new_laptop.login("intake", PASSWORD)).status == 200


async def test_a_refused_attempt_changes_nothing(server, browsers, clock, db):
    await seed(db)
    attacker = browsers("127.0.0.3")
    for i in range(6):
        assert (await attacker.login("clerk", f"guess-{i}")).status == 401
    before = await counts(db)
    r, body = await json_of(attacker, "POST", "/api/v1/auth/login", json={"username": "clerk", "password": PASSWORD})
    assert refusal(r, body) == 1 and "Set-Cookie" not in r.headers
    clock.advance(0.5)
    # Refusals do not count as failures: the wait only runs down.
    for _ in range(5):
        r, body = await json_of(attacker, "POST", "/api/v1/auth/login", json={"username": "clerk", "password": "x"})
        assert refusal(r, body) == 1
    assert await counts(db) == before and not attacker.has_device()
    clock.advance(0.5)
    assert (await attacker.login("clerk", PASSWORD)).status == 200  # after the announced wait it is heard again


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_trusted_proxy_names_the_client(aiohttp_client, settings, db, clock):
    import dataclasses
    await seed(db)
    behind = dataclasses.replace(settings, trusted_proxies=["127.0.0.1"])
    proxy = await aiohttp_client(create_app(behind, db=db, clock=clock))
    for i in range(6):  # six clients behind the proxy, one failure each: none is slowed down
        r = await proxy.post("/api/v1/auth/login", json={"username": "admin", "password": "guess"},
                             headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
        assert r.status == 401
    for i in range(6):  # one client behind the proxy: the sixth failure makes it wait
        r = await proxy.post("/api/v1/auth/login", json={"username": "clerk", "password": "guess"},
                             headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status == 401
    r = await proxy.post("/api/v1/auth/login", json={"username": "clerk", "password": "guess"},
                         headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status == 429
    # A client that is not the proxy cannot pick its address with the header.
    direct = Browser(proxy, "127.0.0.7")
    try:
        for i in range(6):
            async with direct.request("POST", "/api/v1/auth/login", json={"username": "mediator", "password": "guess"},
                                      headers={"X-Forwarded-For": f"192.0.2.{i}"}) as r:
                assert r.status == 401
        async with direct.request("POST", "/api/v1/auth/login", json={"username": "mediator", "password": "guess"},
                                  headers={"X-Forwarded-For": "192.0.2.200"}) as r:
            assert r.status == 429
    finally:
        await direct.http.close()


# --- the rule's figures, on the throttle alone (no secrets checked, so any number of attempts) ---------------

def _fastest(pick, seconds: float) -> dict[int, int]:
    """Failures an attacker gets who tries again the moment it is heard: {hours: failures in that time}."""
    from server.core.throttle import Caller, Guard
    clock = Clock()
    g, start, n, seen = Guard(clock=clock), clock.t, 0, {}
    while clock.t - start < seconds:
        account, address = pick(n)
        wait, _scope = g.wait_for(account, Caller(address))
        if wait > 0:
            clock.advance(wait)
            continue
        g.attempt(account, Caller(address))  # heard, and wrong: it stays counted
        n += 1
        for hours in (1, 24):
            if clock.t - start < hours * 3600:
                seen[hours] = n
    return seen


def test_the_figures_of_docs_architecture():
    # One address, a new case number (or username) each time: 21 in the first hour, 158 a day.
    assert _fastest(lambda i: (f"code:CG-2026-{i:06d}", "203.0.113.7"), 86400) == {1: 21, 24: 158}
    # One account from as many addresses as the attacker likes: 10 an hour, 240 a day.
    assert _fastest(lambda i: ("login:admin", f"10.{i // 62500}.{i // 250 % 250}.{i % 250}"), 86400) == {1: 10, 24: 240}
    # One address against one account: the smaller of the two.
    assert _fastest(lambda i: ("login:admin", "203.0.113.7"), 86400) == {1: 10, 24: 158}
    # An IPv6 subscriber's /64 is one address.
    assert _fastest(lambda i: (f"code:{i}", f"2001:db8:1:2::{i + 1:x}"), 3600)[1] == 21


def test_device_tokens():
    from server.core.throttle import Caller, Guard, TooManyAttempts
    clock = Clock()
    g = Guard(clock=clock, secret=b"k" * 32)
    owner = Caller("198.51.100.1")
    g.succeeded(g.attempt("login:admin", owner))
    assert owner.changed and len(owner.devices) == 1
    assert g.known_device("login:admin", owner) is not None
    assert g.known_device("login:intake", owner) is None  # a token is for its account only
    assert g.known_device("login:admin", Caller("x", devices=[owner.devices[0][:-2] + "AA"])) is None  # forged
    assert Guard(clock=clock, secret=b"j" * 32).known_device("login:admin", owner) is None  # another key
    # Ten failures on the known device: then its token is ignored, and the address rules apply.
    for _ in range(10):
        g.attempt("login:admin", owner)
    assert g.known_device("login:admin", owner) is None
    for _ in range(5):
        g.attempt("login:admin", owner)  # unknown device now: counted at the address and the account
    with pytest.raises(TooManyAttempts) as refused:
        g.attempt("login:admin", owner)
        g.attempt("login:admin", owner)
    assert refused.value.fields["scope"] == "source"
    clock.advance(3600)  # the device's failures have run out of its window
    assert g.known_device("login:admin", owner) is not None
    clock.advance(90 * 86400)  # and a token expires 90 days after it was given
    assert g.known_device("login:admin", owner) is None
    # A shared computer keeps the tokens of several accounts; signing in again replaces that account's.
    shared = Caller("198.51.100.2")
    for name in ("a", "b", "a"):
        g.succeeded(g.attempt(f"login:{name}", shared))
    assert len(shared.devices) == 2


def test_trusted_proxies_setting(monkeypatch, tmp_path):
    from server.core.config import Settings
    monkeypatch.setenv("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    assert Settings.from_env(data_dir=tmp_path).trusted_proxies == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("TRUSTED_PROXIES", "nginx")
    with pytest.raises(SystemExit, match="TRUSTED_PROXIES"):
        Settings.from_env(data_dir=tmp_path)


def test_a_spray_of_keys_does_not_wash_out_a_ceiling(monkeypatch):
    from server.core import throttle
    from server.core.throttle import Caller, Guard, TooManyAttempts
    monkeypatch.setattr(throttle, "MAX_KEYS", 1000)
    g = Guard(clock=Clock())
    for i in range(10):
        g.attempt("login:admin", Caller(f"10.0.0.{i}"))
    for i in range(5000):  # random usernames from random addresses, to flood the tables
        g.attempt(f"login:x{i}", Caller(f"10.1.{i // 250}.{i % 250}"))
    assert len(g.accounts._failures) <= 1000 and len(g.sources._state) <= 1000
    with pytest.raises(TooManyAttempts):
        g.attempt("login:admin", Caller("10.9.9.9"))
