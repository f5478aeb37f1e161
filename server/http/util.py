"""Small helpers for reading requests and writing JSON responses.

Every body is read through here: JSON (json_body, parse_json) bounded in size and depth
(server/core/jsonin.py), forms (read_form) and multipart parts (read_part) whose malformed
bodies are a 400 `malformed_body`, never a 500 (docs/api.md, "Limits").
"""
from __future__ import annotations

import json
from contextlib import contextmanager

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from server.core import jsonin
from server.core.i18n import catalog
from server.core.errors import AppError, NotFound, ValidationFailed
from server.core.schemas import ID_MAX, check_text, parse_id, whole_number

MAX_JSON_BYTES = 256 * 1024
MAX_JSON_DEPTH = jsonin.MAX_DEPTH
# What aiohttp raises on a body it cannot read as a form or as multipart: no boundary or a bad
# one, a broken part header, a body that ends before its closing boundary, an unknown charset or
# transfer encoding, text that is not in its charset, a nested multipart.
_UNREADABLE = (ValueError, LookupError, RuntimeError, AssertionError, HttpProcessingError)


def respond(data: dict, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


async def json_body(request: web.Request) -> dict:
    if request.content_length and request.content_length > MAX_JSON_BYTES:
        raise AppError("The request body is too large.", code="too_large", status=413)
    if request.content_type != "application/json":
        raise AppError("Send the body as JSON (Content-Type: application/json).", code="unsupported_media_type",
                       status=415)
    raw = await request.read()
    if not raw:
        return {}
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.", code="invalid_json")
    return data


def parse_json(raw: bytes, *, field: str | None = None):
    """JSON from a request (a body, or a multipart `field`): at most MAX_JSON_BYTES and
    MAX_JSON_DEPTH levels, refused before parsing (413 too_large, 422 invalid_json)."""
    what = f"The '{field}' field" if field else "The body"
    try:
        return jsonin.loads(raw, max_bytes=MAX_JSON_BYTES, max_depth=MAX_JSON_DEPTH)
    except jsonin.TooLarge:
        raise AppError(f"{what} is too large (at most {MAX_JSON_BYTES // 1024} KB).", code="too_large",
                       status=413, fields={field: "too_large"} if field else None) from None
    except jsonin.TooDeep:
        raise ValidationFailed(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels).",
                               code="invalid_json", fields={field: "too_deep"} if field else None) from None
    except ValueError:  # UnicodeDecodeError included
        raise ValidationFailed(f"{what} is not valid JSON.", code="invalid_json",
                               fields={field: "invalid JSON"} if field else None) from None


def malformed_body(detail: str) -> AppError:
    return AppError("The request body could not be read as a form (malformed multipart or form data).",
                    code="malformed_body", status=400, fields={"_": detail[:200]})


@contextmanager
def readable_body():
    """Around reading a form or multipart body: what cannot be read is a 400 malformed_body."""
    try:
        yield
    except _UNREADABLE as exc:
        raise malformed_body(str(exc)) from None


async def read_form(request: web.Request):
    """The posted form (urlencoded or multipart), as request.post() gives it; a malformed body is a
    400 malformed_body, too large a 413 (aiohttp's, answered by the error middleware)."""
    with readable_body():
        return await request.post()


async def read_part(part, limit: int, *, refuse: AppError | None = None) -> bytes:
    """One multipart part's bytes, refused as soon as they exceed `limit` (with `refuse`, else
    413 too_large), so an oversized part is never held whole."""
    out = bytearray()
    with readable_body():
        while chunk := await part.read_chunk():
            out += chunk
            if len(out) > limit:
                raise refuse or AppError(f"The '{part.name}' part is too large.", code="too_large", status=413,
                                         fields={part.name or "_": "too_large"})
    return bytes(out)


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
