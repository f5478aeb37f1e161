"""Small helpers for reading requests and writing JSON responses."""
from __future__ import annotations

import json

from aiohttp import web

from server.core.i18n import catalog
from server.core.errors import AppError, NotFound, ValidationFailed

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


def path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"No such {name.removesuffix('_id') or 'item'}.")
    return int(raw)


def query_page(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 100000:
        raise ValidationFailed("page must be a positive number.", fields={"page": "invalid"})
    return int(raw)


def has_key(request, key: str) -> bool:
    return key in catalog(request["lang"]) or key in catalog("zh-CN")


def tr(request, prefix: str, value) -> str:
    """Translate a code (status, role, category...) and fall back to the code itself."""
    if value is None or value == "":
        return ""
    key = f"{prefix}.{value}"
    return request["t"](key) if has_key(request, key) else str(value)
