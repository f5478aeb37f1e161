"""Writes docs/api.md from the route registry, so the document cannot drift from the code.

Run `python -m server.http.api.docs` after changing a route; a test checks the file is current.
"""
from __future__ import annotations

import sys
from pathlib import Path

from server.core.schemas import DATE_MAX, DATE_MIN, ID_MAX
from server.http.api.routes import api

# The rules of server/core/schemas.py, with its figures.
ACCEPTED = f"""- Accepted input, the same on SQLite and PostgreSQL and for the socket.io events: an id (in a
  path, a query, a body or an event) is written in ASCII digits `0-9` and lies from 1 to
  {ID_MAX} (PostgreSQL's `integer`); other digits (`²`, `١`, `１`) or a larger number name
  nothing: 404 `not_found` in a path, 422 `validation_failed` naming the field elsewhere,
  `bad_request` for an event. Text (body fields, form fields, queries such as `q`, `party`,
  `number`, `specialty`, a case number in the path) holds no control characters: tab, line feed
  and carriage return are text; NUL and the other C0 controls, DEL, the C1 controls and lone
  surrogates are refused (422 naming the field). Dates are `YYYY-MM-DD` in ASCII digits from
  {DATE_MIN.isoformat()} to {DATE_MAX.isoformat()} (`from`/`to` of the archive search and the analytics,
  `scheduled_at`, `starts_at`, `performance_deadline`); others are a 422. The pages apply the
  same rules: a form shows the field's message, a path or query the translated error page (the
  archive and analytics pages name the filter).
"""

# How CI tries the input space (tests/fuzz; bench/fuzz.py is the longer run).
FUZZED = """- Input in CI: every operation of the served OpenAPI document is fuzzed on SQLite and
  PostgreSQL (tests/fuzz/test_api_properties.py): hypothesis sends path ids, query strings and
  JSON bodies built from each operation's own schema with hostile values mixed in (other
  digits, ids past the column, control characters, far dates, deep nesting), as an admin, a
  mediator or anonymously. No answer may be a 5xx or `internal_error`, every refusal has the
  shape above and changes no database row, and `mediation audit verify` passes afterwards. The
  `ci` hypothesis profile is derandomized with 8 examples per operation; `bench/fuzz.py` runs
  the same suites longer and counts the inputs per route and event (docs/benchmarks.md).
  - Every socket.io event (tests/fuzz/test_event_properties.py, the hub's own event table, so a
    new event is covered without a line there): the mediator, an admitted party and a connection
    that never joined send payloads built from the event's model with the same hostile values,
    or no object at all; every ack is `{ok: true, ...}` or the error shape of docs/protocol.md,
    and a refused event changes neither the room (who is where, mutes, caucuses, recording,
    second devices) nor the database. 4 examples per event in CI.
  - schemathesis (tests/fuzz/test_schemathesis.py) against `mediation serve --demo`, as a real
    process: every operation the document lists, positive and negative examples, with the demo
    admin's token and anonymously; no server error, and status codes, media types, headers and
    bodies as documented. The token never logs itself out or edits users, and logins never name
    a demo account, so the run cannot lock itself out.
"""

INTRO = """# HTTP API (`/api/v1`)

Generated from the route registry by `python -m server.http.api.docs`; the same registry serves the
OpenAPI document at `/api/v1/openapi.json`.

- Bodies are JSON (`Content-Type: application/json`); `POST /cases` also takes
  `multipart/form-data` with a `case` field (the JSON) and up to five `evidence` files, and
  `POST /agreements/verify` takes the PDF itself. Files come back as themselves (the table names
  their media types; the OpenAPI document has them too).
- Limits: a JSON body (or the `case` field) is at most 256 KB (413 `too_large`) and nests at
  most 32 levels, counted before parsing (422 `invalid_json`); an evidence file is at most
  `MAX_EVIDENCE_MB` (413 `too_large`, `fields.evidence`). A form or multipart body that cannot
  be read (no boundary, a broken part header, no closing boundary, a nested multipart) is 400
  `malformed_body`; one over the upload limit (`MAX_EVIDENCE_MB` x `MAX_EVIDENCE_FILES` + 1 MB)
  is 413 `too_large`. The pages answer the same with the translated error page. A request
  target (path and query) over 8190 bytes is refused by the HTTP server itself with a plain-text
  400 before the application sees it (behind the README's nginx, 414 comes first).
- Errors: a 4xx/5xx status with `{"error": {"code", "message", "fields"?}}`; `fields` maps a
  dotted field path (`applicant.phone`) to what is wrong. A refused request changes nothing.
  Codes: `malformed_body` (400), `validation_failed` (422), `invalid_json` (422),
  `unsupported_media_type` (415), `too_large` (413), `unauthorized`/`bad_credentials`/
  `bad_access_code` (401), `forbidden`/`csrf_failed` (403), `not_found` (404), `conflict`/
  `illegal_transition`/`session_ended` (409).
- Staff authenticate with `POST /auth/login`; send `Authorization: Bearer <token>`, or rely on
  the `mediation_session` cookie (HttpOnly, SameSite=Lax) and then also send the login's
  `csrf_token` as `X-CSRF-Token` on every write.
- The applicant reads their case with `GET /cases/{number}` and the header `X-Access-Code`
  (optionally `X-Phone`), and withdraws it with `POST /cases/{number}/withdraw`.
- Guessing is throttled by client and account (docs/architecture.md, "Guessing"): a staff login
  and every access-code check (`X-Access-Code`, `X-Case-Number`, the `/lookup` form) may answer
  429 `too_many_attempts` with `Retry-After` (seconds) and `fields` `retry_after`,
  `retry_after_minutes` and `scope`: `source` (this address failed too often: five failures are
  free, then the wait doubles from 1 s up to 15 min) or `account` (ten failures in an hour from
  devices the account or case does not know). A successful login, look-up or filing sets the
  `mediation_device` cookie (HttpOnly, SameSite=Strict, 90 days); a client that keeps it is
  heard whatever others try. A refused attempt checks nothing and counts nothing.
- Join links are `PUBLIC_URL/join/<token>`; the token is an HS256 JWT (audience
  `mediation-join`) with `sid` (session id), `room`, `sub` (participant), `role`, `name`,
  `grants`, `jti` and `exp`. It is refused once expired, revoked or its session has ended.
- The room's check-in page measures its link before entering (`/link-check/*`, the join token
  in `X-Join-Token`; no staff login, no CSRF token): a few `ping`s for the round trip, a
  `download` of 256 KB and `upload`s of 8 to 128 KB within about 3 s, then `result` with the figures, which
  answers the verdict (`good`: video will work, `fair`: video may stutter, `poor`: audio only
  advised) and writes `link.checked` with the figures and the verdict to the session's record.
  Probes answer `Cache-Control: no-store`. Refusals: `token_missing`/`token_invalid`/
  `token_expired` (401; `result` also `token_revoked`, `session_ended`), `too_large` (413, an
  upload over 512 KB), `validation_failed` (422, figures missing, negative, not numbers), and
  `too_many_attempts` (429: 60 requests a minute per link, 10 bad tokens per address in 15
  minutes). A refused result records nothing.
""" + ACCEPTED + FUZZED + """
| method | path | who may call | what |
|---|---|---|---|
"""


def _media(op) -> str:
    """The body it takes and, when not JSON, what it answers."""
    bodies = ([f"`{op.body.__name__}`"] if op.body else []) + [f"`{ct}`" for ct in op.consumes]
    out = f"; body: {' or '.join(bodies)}" if bodies else ""
    if op.produces:
        out += "; answers " + ", ".join(f"`{ct}`" for ct in op.produces)
    return out


def markdown() -> str:
    rows = [f"| {op.method} | `{api.prefix}{op.path}` | {op.who} | {op.summary}{_media(op)} |"
            for op in api.operations]
    return INTRO + "\n".join(rows) + "\n"


def main() -> int:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api.md")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(markdown(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
