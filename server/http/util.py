"""Small helpers for reading requests and writing JSON responses."""
from __future__ import annotations

import json

from aiohttp import web

from server.core.i18n import catalog
from server.core.errors import AppError, NotFound, ValidationFailed
from server.core.schemas import ID_MAX, check_text, parse_id, whole_number

MAX_JSON_BYTES = 256 * 1024


def respond(data: dict, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


async def json_body(request: web.Request) -> dict:
    if request.content_length and request.content_length > MAX_JSON_BYTES:
        raise AppError("The request body is too large.", code="too_large", status=413)
    if request.content_type != "application/json":
        raise AppError("Send the body as JSON (Content-Type: application/json).", code="unsupported_media_type",
                       status=415)
    raw = await request.read()
    if len(raw) > MAX_JSON_BYTES:
        raise AppError("The request body is too large.", code="too_large", status=413)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("The body is not valid JSON.", code="invalid_json")
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.", code="invalid_json")
    return data


# Paths, queries and form fields follow the rules of server/core/schemas.py (docs/api.md,
# "Accepted input"); every route and page reads them through these.

def path_int(request: web.Request, name: str) -> int:
    """An id in the path; one that cannot name a row (not ASCII digits, beyond ID_MAX) names nothing: 404."""
    n = parse_id(request.match_info[name])
    if n is None:
        raise NotFound(f"No such {name.removesuffix('_id') or 'item'}.")
    return n


def query_page(request: web.Request) -> int:
    n = whole_number(request.query.get("page", "1"))
    if n is None or not 1 <= n <= 100000:
        raise ValidationFailed("page must be a positive number.", fields={"page": "invalid"})
    return n


def query_id(request: web.Request, name: str) -> int | None:
    """An optional id in the query (absent or empty: None); anything but an id is a 422."""
    raw = request.query.get(name)
    if not raw:
        return None
    n = parse_id(raw)
    if n is None:
        raise ValidationFailed(f"{name} must be a number from 1 to {ID_MAX}.", fields={name: "invalid"})
    return n


def query_text(request: web.Request, name: str, limit: int) -> str | None:
    """An optional text in the query, at most `limit` characters and without control characters (422)."""
    raw = request.query.get(name)
    if raw is not None and len(raw) > limit:
        raise ValidationFailed(f"{name} is too long.", fields={name: f"at most {limit} characters"})
    return check_text(raw, name)


def has_key(request, key: str) -> bool:
    return key in catalog(request["lang"]) or key in catalog("zh-CN")


def tr(request, prefix: str, value) -> str:
    """Translate a code (status, role, category...) and fall back to the code itself."""
    if value is None or value == "":
        return ""
    key = f"{prefix}.{value}"
    return request["t"](key) if has_key(request, key) else str(value)
