"""The `mediation` command line, run as a real process."""
from __future__ import annotations

import os
import subprocess
import sys


def run(args, env):
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_adds_institutions_users_experts(db_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": db_url, "MEDIATION_DATA_DIR": str(tmp_path)}
    assert run(["db", "upgrade"], env).returncode == 0
    r = run(["institutions", "add", "--name", "海港镇人民调解委员会", "--area", "海港镇"], env)
    assert r.returncode == 0, r.stderr
    inst_id = int(r.stdout.strip())
    r = run(["users", "add", "--username", "li", "--password", "long-enough-pw", "--role", "mediator",
             "--institution", str(inst_id), "--name", "李调解"], env)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 0
    r = run(["experts", "add", "--name", "黄海", "--specialty", "fishery", "--level", "town"], env)
    assert r.returncode == 0 and int(r.stdout) > 0
    # Bad input: a clear message, exit code 2, nothing written.
    r = run(["users", "add", "--username", "li", "--password", "long-enough-pw", "--role", "clerk"], env)
    assert r.returncode == 2 and "username" in r.stderr
    r = run(["users", "add", "--username", "wang", "--password", "short", "--role", "clerk"], env)
    assert r.returncode == 2 and "password" in r.stderr
    r = run(["users", "add", "--username", "zhao", "--password", "long-enough-pw", "--role", "mediator"], env)
    assert r.returncode == 2 and "institution" in r.stderr
    r = run(["users", "add", "--username", "zhao", "--password", "long-enough-pw", "--role", "wizard"], env)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_institution_prefix_comes_from_the_name(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "MEDIATION_DATA_DIR": str(tmp_path)}
    assert run(["institutions", "add", "--name", "海港镇人民调解委员会"], env).returncode == 0
    assert run(["institutions", "add", "--name", "海港镇人民调解中心"], env).returncode == 0
    import sqlite3
    prefixes = [r[0] for r in sqlite3.connect(tmp_path / "x.db").execute("select prefix from institutions order by id")]
    assert prefixes == ["HGZR", "HGZR2"]


def test_api_document_is_current():
    from pathlib import Path

    from server.http.api.docs import markdown
    assert (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8") == markdown(), \
        "docs/api.md is stale: run python -m server.http.api.docs"


async def test_openapi_document_lists_every_route(client):
    from server.http.api.routes import api
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for op in api.operations:
        assert op.method.lower() in doc["paths"][api.prefix + op.path]
    assert "CaseIn" in doc["components"]["schemas"]


async def test_openapi_document_names_files_and_the_non_json_bodies(client, db):
    from server.services.archive.analytics import TABLES
    from server.services.cases import ALLOWED_EVIDENCE

    from .helpers import login, seed

    doc = await (await client.get("/api/v1/openapi.json")).json()

    def op(method: str, path: str) -> dict:
        return doc["paths"]["/api/v1" + path][method]

    files = {
        ("get", "/cases/{case_id}/export"): {"application/zip"},
        ("get", "/cases/{case_id}/evidence/{evidence_id}"): set(ALLOWED_EVIDENCE),
        ("get", "/cases/{case_id}/agreement/pdf"): {"application/pdf"},
        ("get", "/party/agreement/pdf"): {"application/pdf"},
        ("get", "/sessions/{session_id}/transcript.pdf"): {"application/pdf"},
        ("get", "/sessions/{session_id}/calendar.ics"): {"text/calendar"},
        ("get", "/analytics/csv"): {"text/csv"},
        ("get", "/recordings/{file_id}/file"): {"video/webm", "video/x-matroska"},
        ("get", "/link-check/download"): {"application/octet-stream"},
    }
    wrong = {}
    for (method, path), types in files.items():
        content = op(method, path)["responses"]["200"]["content"]
        if set(content) != types or any(c["schema"].get("type") != "string" for c in content.values()):
            wrong[f"{method} {path}"] = content
    assert not wrong, wrong
    # Everything else still answers JSON, and errors are JSON everywhere.
    assert set(op("get", "/cases")["responses"]["200"]["content"]) == {"application/json"}
    assert set(op("get", "/party/agreement/pdf")["responses"]["4XX"]["content"]) == {"application/json"}

    filing = op("post", "/cases")["requestBody"]["content"]
    assert filing["application/json"]["schema"] == {"$ref": "#/components/schemas/CaseIn"}
    form = filing["multipart/form-data"]
    assert form["schema"]["required"] == ["case"]
    assert form["schema"]["properties"]["case"] == {"$ref": "#/components/schemas/CaseIn"}
    assert form["encoding"]["case"]["contentType"] == "application/json"
    assert form["schema"]["properties"]["evidence"]["items"] == {"type": "string", "format": "binary"}

    verify = op("post", "/agreements/verify")["requestBody"]
    assert verify["required"] is True
    assert verify["content"]["application/pdf"]["schema"] == {"type": "string", "format": "binary"}
    assert "application/json" not in verify["content"]

    # What the document says is what is served.
    await seed(db)
    admin = await login(client, "admin")
    r = await client.get(f"/api/v1/analytics/csv?table={TABLES[0]}", headers=admin)
    assert r.status == 200 and r.content_type in files[("get", "/analytics/csv")], (r.status, r.content_type)
