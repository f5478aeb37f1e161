"""A route registry that also writes the OpenAPI document, from the same pydantic models."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web
from pydantic import BaseModel


BINARY = {"type": "string", "format": "binary"}


@dataclass
class Operation:
    method: str
    path: str
    handler: Callable
    summary: str
    who: str
    body: type[BaseModel] | None = None
    query: dict[str, str] = field(default_factory=dict)
    status: int = 200
    tag: str = "cases"
    # What the success answers when it is not JSON: media type -> schema (a file: BINARY).
    produces: dict[str, dict] = field(default_factory=dict)
    # Request bodies other than the JSON `body` model: media type -> schema (or an OpenAPI
    # media type object, with "schema" and "encoding"), e.g. multipart or the file itself.
    consumes: dict[str, dict] = field(default_factory=dict)


class ApiRouter:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.operations: list[Operation] = []
        # Handlers open to anyone (or authenticated by a join link's token, `public=True`) use no
        # staff authority, so they need no CSRF token.
        self.public_handlers: set = set()

    def route(self, method: str, path: str, *, summary: str, who: str, body=None, query=None,
              status: int = 200, tag: str = "cases", public: bool = False, produces=None, consumes=None):
        def deco(fn):
            self.operations.append(Operation(method, path, fn, summary, who, body, query or {}, status, tag,
                                             produces or {}, consumes or {}))
            if who == "anyone" or public:
                self.public_handlers.add(fn)
            return fn
        return deco

    def add_to(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, self.prefix + op.path, op.handler)

    def document(self, title: str, version: str) -> dict:
        schemas: dict[str, dict] = {}
        paths: dict[str, dict] = {}
        error = {"$ref": "#/components/schemas/Error"}
        for op in self.operations:
            item = paths.setdefault(self.prefix + op.path, {})
            params = [{"name": n, "in": "path", "required": True,
                       "schema": {"type": "integer" if n.endswith("id") else "string"}}
                      for n in re.findall(r"{(\w+)}", op.path)]
            params += [{"name": n, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
                       for n, d in op.query.items()]
            ok = {ct: {"schema": schema} for ct, schema in op.produces.items()} or \
                {"application/json": {"schema": {"type": "object"}}}
            spec: dict = {
                "summary": op.summary,
                "description": f"Who may call: {op.who}.",
                "tags": [op.tag],
                "parameters": params,
                "responses": {
                    str(op.status): {"description": "OK", "content": ok},
                    "4XX": {"description": "Error", "content": {"application/json": {"schema": error}}},
                },
            }
            content: dict = {}
            if op.body is not None:
                js = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in js.pop("$defs", {}).items():
                    schemas[name] = sub
                schemas[op.body.__name__] = js
                content["application/json"] = {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}
            for ct, media in op.consumes.items():
                content[ct] = media if "schema" in media else {"schema": media}
            if content:
                spec["requestBody"] = {"required": True, "content": content}
            item[op.method.lower()] = spec
        schemas["Error"] = {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "fields": {"type": "object"}},
            "required": ["code", "message"]}}}
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "components": {"schemas": schemas, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "mediation_session"}}},
            "paths": paths,
        }
