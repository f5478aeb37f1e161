"""schemathesis against the served OpenAPI document (issue 15, "The whole input space").

`mediation serve --demo` runs as a real process; schemathesis loads `/api/v1/openapi.json` from
it and, for every operation it lists, sends bounded examples (valid and invalid, the tests/fuzz
hypothesis profile's count) with the demo admin's token and anonymously. Each answer must not be
a server error and must match the document: its status codes, media types, headers and schemas.
Afterwards `mediation audit verify` passes on that database. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import given, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

from server.services.demo import DEMO_PASSWORD, STAFF
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.surface import Tally
from tests.support.cli import run_cli
from tests.support.servers import ServerFailed, ServerProcess, clean_env

# The court's ruling callback takes the PDF itself as its body: sent as raw bytes, like any file.
schemathesis.serializer.alias("application/pdf", "application/octet-stream")

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
DEMO_USERS = {username for username, *_ in STAFF}
# What the staff token never sends, so the run cannot lock itself out or break the demo accounts
# it logs in with (docs/api.md; the same operations are still sent anonymously):
STAFF_EXCLUDED = {
    "POST /api/v1/auth/logout",   # would end the token's own session; every later example anonymous
    "PATCH /api/v1/users/{user_id}",  # may deactivate, re-role or re-password the demo accounts
}


def _login_guard(case) -> bool:
    """Logins are sent for any username but the demo accounts': wrong passwords for those count
    towards their lockout (docs/architecture.md, "Guessing") and would keep the run out."""
    body = case.body if isinstance(case.body, dict) else {}
    return body.get("username") not in DEMO_USERS


def _example(op, key: str, base: str, token: str, http, tally: Tally):
    """The hypothesis test of one operation."""
    strategy = st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE))
    identities = ["anonymous"] if key in STAFF_EXCLUDED else ["anonymous", "admin"]

    @fuzz_settings()
    @given(case=strategy, who=st.sampled_from(identities))
    def example(case, who):
        if key == "POST /api/v1/auth/login" and not _login_guard(case):
            return
        tally.count(key)
        headers = {"Authorization": f"Bearer {token}"} if who == "admin" else {}
        response = case.call(base_url=base, session=http, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=headers)

    return example


@pytest.fixture
def demo_server(settings, tmp_path):
    env = clean_env(DATABASE_URL=settings.database_url, MEDIATION_DATA_DIR=str(settings.data_dir),
                    EVIDENCE_DIR=str(settings.evidence_dir), SECRET_KEY=settings.secret_key,
                    IDENTITY_CHECK="off")
    server = ServerProcess(env, tmp_path / "server.log", args=("--demo",), name="demo server")
    try:
        server.start(timeout=90)
    except ServerFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


def test_the_served_document_holds(demo_server, settings, db_url):
    base = demo_server.url
    r = requests.post(base + "/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
    tally = Tally("schemathesis")
    http = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50
    for op in operations:
        key = f"{op.method.upper()} {op.path}"
        try:
            _example(op, key, base, token, http, tally)()
        except Exception as exc:  # noqa: BLE001 - schemathesis's failure (group): note it, go on with the next
            text = str(exc).strip()
            tally.fail(key, f"{type(exc).__name__}: {text[:700]}")
    demo_server.stop()
    tally.write(db_url.split(":")[0].split("+")[0])
    # The archive is whole after the run (the command line an operator runs).
    r = run_cli(["audit", "verify"], settings, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not tally.failed, f"{len(tally.failed)} of {len(operations)} operations failed:\n" + \
        json.dumps(tally.failed, ensure_ascii=False, indent=1)
