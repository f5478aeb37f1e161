"""Every JSON body and query parameter of the API, fuzzed (issue 15, "The whole input space").

The operations are the served OpenAPI document's (`GET /api/v1/openapi.json`), so a new route
is covered without a line here. For each, hypothesis sends path ids (real and hostile), query
strings and JSON bodies built from the operation's own schema with hostile values mixed in
(tests/fuzz/surface.py), as a staff member (admin, mediator) or anonymously, on SQLite and on
PostgreSQL. Every answer must be below 500; every refusal must be the documented error
(docs/api.md, "Errors") and must change nothing in the database. Afterwards the archive checks
(`mediation audit verify`: audit chain, evidence, recordings, agreements, transcripts) pass and
the outbox holds only jobs it can deliver.
"""
from __future__ import annotations

import json

import aiohttp
import yarl
from hypothesis import given, strategies as st

from server.core.models import OutboxJob, OutboxMessage
from server.infra import outbox
from tests.api.helpers import PASSWORD
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.surface import Schema, Tally, api_operations, changed, error_problem, path_value, query_string, snapshot
from tests.support.cli import run_cli_async

IDENTITIES = ("anonymous", "admin", "mediator")


async def _login(http: aiohttp.ClientSession, url: str, username: str) -> str:
    async with http.post(url + "/api/v1/auth/login", json={"username": username, "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["token"]


async def _send(srv, http, op: dict, path: str, query: str, body, headers: dict):
    target = srv.url + path + (f"?{query}" if query else "")
    kw = {}
    if body is not None:
        kw = {"data": json.dumps(body).encode(), "headers": {**headers, "Content-Type": "application/json"}}
    else:
        kw = {"headers": headers}
    # The database as the last refusal left it, unless something was accepted since (one
    # snapshot per refused example instead of two).
    before = srv.extra.get("snapshot") or await snapshot(srv.db)
    async with http.request(op["method"], yarl.URL(target, encoded=True), allow_redirects=False, **kw) as r:
        raw = await r.read()
        status, ctype = r.status, r.headers.get("Content-Type", "")
    if status < 400:
        srv.extra.pop("snapshot", None)
        return status, ctype, raw, []
    after = srv.extra["snapshot"] = await snapshot(srv.db)
    return status, ctype, raw, changed(before, after)


# The HTTP server refuses a request target (path and query) longer than this before the
# application sees it, with a plain-text 400 (docs/api.md, "Limits"); behind the README's proxy
# nginx answers 414 first.
HTTP_LINE_LIMIT = 8190


def _check(status: int, ctype: str, raw: bytes, diff: list[str], line: int = 0) -> str | None:
    if status >= 500:
        return f"{status}: {raw[:300]!r}"
    if status < 400:
        return None
    if line > HTTP_LINE_LIMIT:
        if status != 400 or diff:
            return f"{status} for a {line}-byte request target (expected the HTTP layer's 400), changed {diff}"
        return None
    if not ctype.startswith("application/json"):
        return f"{status} refusal as {ctype or 'no content type'}: {raw[:200]!r}"
    try:
        problem = error_problem(json.loads(raw))
    except ValueError:
        return f"{status} refusal that is not JSON: {raw[:200]!r}"
    if problem:
        return f"{status} {problem}"
    if diff:
        return f"{status} {json.loads(raw)['error']['code']} refused, but changed {', '.join(diff)}"
    return None


async def _outbox_intact(db) -> list[str]:
    """Every job is one of the known kinds in a known state; nothing half-written."""
    problems = []
    async with db.read() as s:
        from sqlalchemy import select
        for j in (await s.execute(select(OutboxJob))).scalars():
            if j.status not in ("pending", "delivered", "failed") or j.kind not in outbox._handlers \
                    or not isinstance(j.payload, dict):
                problems.append(f"outbox job {j.id}: {j.kind} {j.status}")
        for m in (await s.execute(select(OutboxMessage))).scalars():
            if m.status not in ("pending", "delivered", "dead"):
                problems.append(f"court outbox {m.id}: {m.status}")
    return problems


def test_no_input_breaks_the_api(served, db_url):
    srv = served
    tally = Tally("api")
    doc = srv.run(_fetch_document(srv))
    ops = api_operations(doc)
    assert len(ops) > 50, "the document lists the API's operations"
    w = srv.world
    # The identities' own accounts are not offered to PATCH /users/{user_id}: an admin may turn
    # any account off or change its role, and doing so to the fuzzing's own login ends its run
    # rather than finding anything (the other accounts are fair game).
    others = [uid for name, uid in w.users.items() if name not in IDENTITIES]
    known = {"id": [1, 2, 3], "case_id": [srv.case_id], "session_id": [srv.session_id],
             "party_id": srv.party_ids, "user_id": others, "institution_id": [w.inst_a, w.inst_b],
             "ref": [srv.case_number, srv.case_id]}

    async def open_http():
        http = aiohttp.ClientSession()
        tokens = {name: await _login(http, srv.url, name) for name in IDENTITIES[1:]}
        return http, tokens

    http, tokens = srv.run(open_http())
    try:
        for op in ops:
            example = _example(srv, http, tokens, tally, op, doc, known)
            try:
                example()
            except AssertionError as exc:
                tally.fail(op["key"], str(exc).splitlines()[0][:600])
    finally:
        srv.run(http.close())
    tally.write(db_url.split(":")[0].split("+")[0])

    # The archive is whole after it all: the command line an operator runs, on this database.
    r = srv.run(run_cli_async(["audit", "verify"], srv.settings), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert srv.run(_outbox_intact(srv.db)) == []
    assert not tally.failed, f"{len(tally.failed)} of {len(ops)} operations failed:\n{tally.summary()}"


def _example(srv, http, tokens: dict, tally: Tally, op: dict, doc: dict, known: dict):
    """The hypothesis test of one operation."""
    body_values = Schema({}, doc["components"]["schemas"]).values(op["body"]) if op["body"] else st.none()
    segments = {name: path_value(name, known) for name in op["path_params"]}

    @fuzz_settings()
    @given(who=st.sampled_from(IDENTITIES), params=st.fixed_dictionaries(segments),
           query=query_string(op["query"]), body=body_values)
    def example(who, params, query, body):
        path = op["path"]
        for name, value in params.items():
            path = path.replace("{" + name + "}", value)
        headers = {} if who == "anonymous" else {"Authorization": f"Bearer {tokens[who]}"}
        tally.count(op["key"])
        status, ctype, raw, diff = srv.run(_send(srv, http, op, path, query, body, headers))
        if op["key"] == "POST /api/v1/auth/logout" and who != "anonymous" and status < 400:
            tokens[who] = srv.run(_login(http, srv.url, who))  # logged out: log in again
        target = f"{path}?{query}" if query else path
        problem = _check(status, ctype, raw, diff, len(target.encode()))
        assert problem is None, f"{problem} <- {op['method']} {target[:200]} as {who}, body {body!r:.200}"

    return example


async def _fetch_document(srv) -> dict:
    async with aiohttp.ClientSession() as http, http.get(srv.url + "/api/v1/openapi.json") as r:
        assert r.status == 200
        return await r.json()
