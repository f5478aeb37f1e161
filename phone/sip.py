"""SIP messages (RFC 3261): a small strict parser and the responses a UAS sends.

No library on PyPI was a fit: the maintained ones are alpha, accept a body shorter than its
Content-Length, or are user agents with their own threads and media. This one parses only what
the endpoint needs and refuses the rest with `SipError` (a status for a request that can still be
answered, None for one that is dropped). Limits bound the work any datagram can cause.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE = 8192   # a UDP datagram the endpoint reads at all (a normal INVITE is ~1-2 KB)
MAX_HEADERS = 64
MAX_LINE = 2048
MAX_VIAS = 8

# RFC 3261 §7.3.3 compact forms.
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type", "e": "content-encoding", "k": "supported", "s": "subject"}
REQUIRED = ("via", "from", "to", "call-id", "cseq")

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_URI = re.compile(r"^(sips?|tel):[\x21-\x7e]+$", re.IGNORECASE)
_STATUS = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ([^\r\n]*)$")
_TAG = re.compile(r";\s*tag=([^;,\s]+)", re.IGNORECASE)
_URI_IN = re.compile(r"<([^>]*)>")


class SipError(Exception):
    """`status` None: drop silently (not even a response can be formed)."""

    def __init__(self, reason: str, status: int | None = 400):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Message:
    method: str | None = None        # a request's method, else None
    uri: str = ""
    status: int = 0                  # a response's status, else 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case full name, value)
    body: bytes = b""

    def get(self, name: str, default: str = "") -> str:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def call_id(self) -> str:
        return self.get("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = self.get("cseq").partition(" ")
        return int(number), method.strip()

    def tag(self, header: str) -> str:
        m = _TAG.search(self.get(header))
        return m.group(1) if m else ""


def parse(data: bytes) -> Message:
    if len(data) > MAX_MESSAGE:
        raise SipError("message too large", None)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipError("no end of headers", None)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("headers are not UTF-8", None) from None
    lines = text.split("\r\n")
    if any(len(line) > MAX_LINE for line in lines):
        raise SipError("line too long", None)
    msg = Message()
    first = lines[0]
    status = _STATUS.match(first)
    if status:
        msg.status, msg.reason = int(status.group(1)), status.group(2)
    else:
        parts = first.split(" ")
        if len(parts) != 3 or parts[2] != "SIP/2.0" or not _TOKEN.match(parts[0]) or len(parts[0]) > 32:
            raise SipError("bad request line", None)
        if not _URI.match(parts[1]):
            raise SipError("bad request URI", None)
        msg.method, msg.uri = parts[0], parts[1]
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()      # header folding (§7.3.1)
        elif line:
            unfolded.append(line)
        else:
            raise SipError("empty header line", None)
    if len(unfolded) > MAX_HEADERS:
        raise SipError("too many headers", None)
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not _TOKEN.match(name or "-") or not name:
            raise SipError("bad header", None)
        name = COMPACT.get(name, name)
        value = value.strip()
        if name == "via":  # several values in one header line are several Vias
            vias = [x.strip() for x in value.split(",") if x.strip()]
            msg.headers += [("via", x) for x in vias]
        else:
            msg.headers.append((name, value))
    for name in REQUIRED:
        if not msg.get(name):
            raise SipError(f"missing {name}", None)
    if len(msg.get_all("via")) > MAX_VIAS:
        raise SipError("too many Via headers", None)
    number, _, method = msg.get("cseq").partition(" ")
    if not number.isdigit() or len(number) > 10 or not _TOKEN.match(method.strip() or "-"):
        raise SipError("bad CSeq")
    if msg.method and method.strip() != msg.method and msg.method not in ("ACK", "CANCEL"):
        raise SipError("CSeq method does not match")
    length = msg.get("content-length")
    if length:
        if not length.isdigit() or len(length) > 6:
            raise SipError("bad Content-Length")
        n = int(length)
        if n > len(body):
            raise SipError("body shorter than Content-Length")
        body = body[:n]          # §18.3: bytes past Content-Length on UDP are dropped
    msg.body = body
    return msg


def uri_of(value: str) -> str:
    """The URI of a From/To/Contact value: `"Name" <sip:x@y>;tag=1` -> sip:x@y."""
    m = _URI_IN.search(value)
    return (m.group(1) if m else value.split(";")[0]).strip()


def caller_digits(value: str) -> str:
    """The digits of the caller's number (user part of the From URI); '' if none."""
    uri = uri_of(value)
    user = uri.split(":", 1)[-1].split("@", 1)[0].split(";", 1)[0]
    return "".join(ch for ch in user if ch.isdigit())[:32]


REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 405: "Method Not Allowed",
           415: "Unsupported Media Type", 481: "Call/Transaction Does Not Exist", 486: "Busy Here",
           487: "Request Terminated", 488: "Not Acceptable Here", 500: "Server Internal Error",
           501: "Not Implemented", 503: "Service Unavailable"}


def response(req: Message, status: int, *, to_tag: str = "", extra: list[tuple[str, str]] = (),
             body: bytes = b"", content_type: str = "") -> bytes:
    """A response to `req` (§8.2.6): its Vias, From, Call-ID and CSeq; To with our tag."""
    to = req.get("to")
    if to_tag and not _TAG.search(to) and status > 100:
        to = f"{to};tag={to_tag}"
    lines = [f"SIP/2.0 {status} {REASONS.get(status, 'Unknown')}"]
    lines += [f"Via: {v}" for v in req.get_all("via")]
    lines += [f"From: {req.get('from')}", f"To: {to}", f"Call-ID: {req.call_id}", f"CSeq: {req.get('cseq')}"]
    lines += [f"{k}: {v}" for k, v in extra]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"{method} {uri} SIP/2.0", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
