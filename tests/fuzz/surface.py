"""The input surface, derived from the app itself, and hostile values for it.

Shared by the property suite (tests/fuzz/test_api_properties.py, test_event_properties.py) and
the longer run (bench/fuzz.py). Operations come from the served OpenAPI document, events from
the hub's own table (signaling/hub.py, `Hub.events`): a route or event added later is fuzzed
without touching this file. The rules the values probe are docs/api.md ("Accepted input") and
docs/protocol.md (payloads, refusals).
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import threading
from pathlib import Path
from urllib.parse import quote

from hypothesis import strategies as st
from sqlalchemy import select

from server.core.models import Base

# ----------------------------------------------------------------------------- hostile values

ID_EDGES = [0, -1, 1, 2147483647, 2147483648, 3000000000, 2**63 - 1, 2**63, -(2**63) - 1, 10**40]
NASTY_DATES = ["0001-01-01", "9999-12-31", "10000-01-01", "2026-02-30", "2026-13-01", "１９９０-01-01", "1899-12-31",
               "2200-01-01", "0000-00-00", "2026-1-1", "-2026-01-01"]
# Strings aimed at the rules of docs/api.md, "Accepted input": other digits, out-of-range ids,
# control characters, lone surrogates, impossible or far dates, sizes, markup and paths.
NASTY_TEXT = [
    "", " ", "²", "١٢٣", "１２", "𝟘", "0", "-1", "+1", "1e3", "0x10", "01", "2147483648", "9223372036854775808",
    "\x00", "a\x00b", "\x01", "\x1b[31m", "\x7f", "\x85", "\u202e", "\ufeff", "\ud800", "\udfff", "\t\n\r",
    *NASTY_DATES,
    "NaN", "Infinity", "null", "true", "[]", "{}", "<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd",
    "%00", "%C2%B2", "拖欠工资", "x" * 300, "长" * 3000,
]
NASTY_SCALARS = [None, True, False, 0.5, -0.0, 1e308, -1e308, *ID_EDGES]


def nasty_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40))


def json_values(max_leaves: int = 12) -> st.SearchStrategy:
    """Any JSON, with hostile leaves; sometimes nested past the documented 32 levels."""
    leaf = st.one_of(st.sampled_from(NASTY_SCALARS), nasty_text(), st.integers(), st.floats(allow_nan=False))
    tree = st.recursive(leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(nasty_text(), kids, max_size=4)),
                        max_leaves=max_leaves)
    deep = st.integers(30, 40).map(lambda n: _nest(n))
    return st.one_of(tree, deep)


def _nest(n: int):
    v: object = 1
    for i in range(n):
        v = [v] if i % 2 else {"a": v}
    return v


class Schema:
    """JSON-schema-driven values: mostly what the schema asks for, with hostile values mixed in at
    any depth (a wrong type, an edge id, a control character), so validation and what lies
    behind it are both reached."""

    def __init__(self, root: dict, defs: dict | None = None):
        self.root = root
        self.defs = defs or {}

    def resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            ref = schema["$ref"]
            if ref.startswith("#/components/schemas/"):
                schema = self.defs[ref.rsplit("/", 1)[1]]
            elif ref.startswith("#/$defs/"):
                schema = self.root["$defs"][ref.rsplit("/", 1)[1]]
            else:
                raise ValueError(ref)
        return schema

    def values(self, schema: dict | None = None, depth: int = 0) -> st.SearchStrategy:
        schema = self.root if schema is None else schema
        hostile = st.one_of(st.sampled_from(NASTY_SCALARS), nasty_text(), json_values(4))
        return st.integers(0, 7).flatmap(lambda k: hostile if k == 0 or depth > 6
                                         else self.conforming(schema, depth))

    def conforming(self, schema: dict, depth: int) -> st.SearchStrategy:
        s = self.resolve(schema)
        for key in ("anyOf", "oneOf"):
            if key in s:
                return st.one_of([self.values(x, depth) for x in s[key]])
        if "allOf" in s:
            return self.values(s["allOf"][0], depth)
        if "const" in s:
            return st.just(s["const"])
        if "enum" in s:
            return st.sampled_from(s["enum"])
        kind = s.get("type")
        if isinstance(kind, list):
            return st.one_of([self.conforming({**s, "type": k}, depth) for k in kind])
        if kind == "object":
            props = s.get("properties", {})
            required = [k for k in s.get("required", []) if k in props]
            optional = [k for k in props if k not in required]
            return st.fixed_dictionaries(
                {k: self.values(props[k], depth + 1) for k in required},
                optional={k: self.values(props[k], depth + 1) for k in optional})
        if kind == "array":
            lo = min(s.get("minItems", 0), 3)
            hi = max(lo, min(s.get("maxItems", 3), 3))
            return st.lists(self.values(s.get("items", {}), depth + 1), min_size=lo, max_size=hi)
        if kind == "integer":
            lo, hi = s.get("minimum"), s.get("maximum")
            return st.one_of(st.integers(lo, hi), st.sampled_from(ID_EDGES))
        if kind == "number":
            return st.one_of(st.floats(s.get("minimum"), s.get("maximum"), allow_nan=False, allow_infinity=False),
                             st.integers(-10, 10**6))
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "string":
            fmt = s.get("format")
            if fmt == "date":
                return st.one_of(st.dates().map(str), st.sampled_from(NASTY_DATES))
            if fmt == "date-time":
                return st.one_of(st.datetimes().map(lambda d: d.isoformat()), st.sampled_from(NASTY_DATES))
            if "pattern" in s:
                return st.one_of(st.from_regex(s["pattern"], fullmatch=True), nasty_text())
            lo = s.get("minLength", 0)
            hi = min(s.get("maxLength", 40), 60)
            return st.one_of(st.text(min_size=min(lo, hi), max_size=max(hi, 1)), nasty_text())
        return json_values(6)


# ----------------------------------------------------------------------------- the surface

def api_operations(doc: dict) -> list[dict]:
    """Every operation of an OpenAPI document: method, path, path and query parameters, the JSON body schema."""
    ops = []
    for path, item in doc["paths"].items():
        for method, spec in item.items():
            body = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            ops.append({
                "key": f"{method.upper()} {path}", "method": method.upper(), "path": path,
                "path_params": [p["name"] for p in spec.get("parameters", []) if p["in"] == "path"],
                "query": [p["name"] for p in spec.get("parameters", []) if p["in"] == "query"],
                "body": body,
            })
    return ops


def path_value(name: str, known: dict[str, list]) -> st.SearchStrategy[str]:
    """A path segment: a real id (or case number) of the seeded world, or a hostile one, percent-encoded."""
    real = known.get(name) or known.get("id", [1])
    raw = st.one_of(st.sampled_from([str(x) for x in real]), st.sampled_from([str(x) for x in ID_EDGES]),
                    nasty_text().filter(lambda t: t not in ("", ".", "..")))
    return raw.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe=""))


def query_string(names: list[str]) -> st.SearchStrategy[str]:
    """Some of the operation's query parameters with real-looking or hostile values (and, at times,
    bytes that are not UTF-8 at all), encoded by hand so nothing is cleaned up on the way."""
    if not names:
        return st.just("")
    value = st.one_of(nasty_text(), st.dates().map(str), st.integers(-5, 10**20).map(str),
                      st.sampled_from(["pending", "accepted", "county", "labour", "cases", "1"]))
    enc = value.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe=""))
    raw = st.one_of(enc, st.sampled_from(["%ff", "%C0%80", "%", "%zz", "a&b", "%ED%A0%80"]))
    return st.dictionaries(st.sampled_from(names), raw, max_size=len(names)).map(
        lambda d: "&".join(f"{k}={v}" for k, v in d.items()))


def events_of(hub) -> dict[str, tuple]:
    """The hub's event table: name -> (payload model, needs join)."""
    return dict(sorted(hub.events.items()))


# ----------------------------------------------------------------------------- checks

def error_problem(body) -> str | None:
    """None if `body` is the documented error (docs/api.md, "Errors"), else what is wrong with it."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return f"not an error object: {str(body)[:200]}"
    err = body["error"]
    if not isinstance(err.get("code"), str) or not err["code"] or not isinstance(err.get("message"), str) \
            or not err["message"]:
        return f"error without code and message: {err}"
    if "fields" in err and not isinstance(err["fields"], dict):
        return f"error fields not an object: {err}"
    if err["code"] == "internal_error":
        return f"internal_error: {err}"
    return None


def ack_problem(ack) -> str | None:
    """None if `ack` is a documented ack (docs/protocol.md): {ok: true, ...} or
    {ok: false, error: {code, message, fields?}} with a code other than internal_error."""
    if not isinstance(ack, dict) or not isinstance(ack.get("ok"), bool):
        return f"not an ack: {str(ack)[:200]}"
    if ack["ok"]:
        return None
    err = ack.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("code"), str) or not err["code"] \
            or not isinstance(err.get("message"), str) or not err["message"]:
        return f"refusal without code and message: {ack}"
    if "fields" in err and not isinstance(err["fields"], dict):
        return f"refusal fields not an object: {ack}"
    if err["code"] == "internal_error":
        return f"internal_error: {ack}"
    return None


# Staff sessions are left out: logging in (a fuzzing identity coming back) adds one.
SKIP_TABLES = {"staff_sessions"}
# Columns the delivery workers write on their own schedule (server/infra/outbox.py, the court
# outbox): a job's progress is not a change made by the request being checked; its rows are.
WORKER_COLUMNS = {
    "outbox_jobs": {"status", "attempts", "next_attempt_at", "last_error", "delivered_at"},
    "court_outbox": {"status", "attempts", "next_attempt_at", "locked_until", "last_error", "delivered_at",
                     "response"},
}


async def snapshot(db) -> dict[str, str]:
    """Each table's rows, as a digest: what a refused request must leave as it was."""
    out = {}
    async with db.read() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in SKIP_TABLES:
                continue
            skip = WORKER_COLUMNS.get(table.name, set())
            rows = (await s.execute(select(*[c for c in table.columns if c.name not in skip]))).all()
            out[table.name] = f"{len(rows)}:" + hashlib.sha256(
                repr(sorted(repr(tuple(r)) for r in rows)).encode()).hexdigest()[:16]
    return out


def changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before if before[k] != after.get(k))


# ----------------------------------------------------------------------------- plumbing

class LoopThread:
    """An event loop on its own thread: the server (and the socket.io clients) live there, the
    hypothesis examples drive it from the test's thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fuzz-loop")
        self.thread.start()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Tally:
    """Inputs tried and what failed, per surface (a route or an event); written as JSON to
    FUZZ_REPORT when set (bench/fuzz.py reads it)."""

    def __init__(self, suite: str):
        self.suite = suite
        self.tried: collections.Counter = collections.Counter()
        self.failed: dict[str, str] = {}

    def count(self, key: str) -> None:
        self.tried[key] += 1

    def fail(self, key: str, what: str) -> None:
        self.failed.setdefault(key, what)

    def write(self, label: str) -> None:
        path = os.environ.get("FUZZ_REPORT")
        if not path:
            return
        p = Path(path)
        data = json.loads(p.read_text()) if p.exists() else {}
        data.setdefault(self.suite, {})[label] = {"tried": dict(self.tried), "failed": self.failed}
        p.write_text(json.dumps(data, ensure_ascii=False, indent=1))

    def summary(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in sorted(self.failed.items()))
