"""JSON from outside (HTTP bodies, the filing form's `case` field, socket.io packets), bounded
before it is parsed.

Python's parser recurses once per level of nesting, so `[` x 50,000 would end in a
RecursionError deep inside it; the depth is therefore counted first, in one linear pass over
the brackets outside strings, and anything nested deeper than MAX_DEPTH is refused without
parsing. The size is bounded by the caller (each edge has its own: docs/api.md, docs/protocol.md).
The HTTP edge (server/http/util.py) and the socket.io edge (signaling/server.py) turn the
refusals into their own error shapes.
"""
from __future__ import annotations

import json
import re

MAX_DEPTH = 32  # generous: no body or event the server takes nests more than 3 levels

# A JSON string (its closing quote optional, so an unclosed one cannot make the scan quadratic).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.S)
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")
_OPEN = frozenset(b"[{")


class TooLarge(ValueError):
    def __init__(self, limit: int):
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class TooDeep(ValueError):
    def __init__(self, limit: int):
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


def depth_exceeds(raw: bytes | bytearray, limit: int = MAX_DEPTH) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (unbalanced input counts as it
    reads: what opens and never closes is deep)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for c in _STRING.sub(b"", raw).translate(None, _NOT_BRACKET):
        if c in _OPEN:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads(raw: str | bytes | bytearray, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH):
    """json.loads, refusing first what is too large (TooLarge) or too deep (TooDeep); invalid
    JSON raises json's own ValueError (UnicodeDecodeError for bytes that are not text)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge(max_bytes)
    if depth_exceeds(data, max_depth):
        raise TooDeep(max_depth)
    return json.loads(raw)
