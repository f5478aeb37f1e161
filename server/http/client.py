"""Who is calling, as the throttle of guessing sees it (server/core/throttle.py): the client's
address and the device cookie its browser keeps.

The address is the connection's peer; only when the peer is one of `TRUSTED_PROXIES` (the
reverse proxy in front, README "Deployment") is `X-Forwarded-For` read, from the
right: the first address that is not itself a trusted proxy is the client. A client that talks
to the server directly cannot choose its address with the header.

The device cookie (`mediation_device`: HttpOnly, SameSite=Strict, 90 days) holds the signed
device tokens the throttle gave this browser at a successful sign-in or filing; a response writes
it only when the throttle changed them.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web

from server.core.throttle import DEVICE_SECONDS, Caller, parse_devices

DEVICE_COOKIE = "mediation_device"


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted)


def _trusted(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_address(request: web.Request) -> str:
    peer = request.remote or ""
    networks = _networks(tuple(request.app["settings"].trusted_proxies))
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a malformed entry: what lies left of it was written by nobody we trust
        if not _trusted(hop, networks):
            return hop
        peer = hop
    return peer


def caller(request: web.Request) -> Caller:
    """The request's caller (made once per request)."""
    found = request.get("caller")
    if found is None:
        found = request["caller"] = Caller(address=client_address(request),
                                           devices=parse_devices(request.cookies.get(DEVICE_COOKIE)))
    return found


def keep_devices(request: web.Request, resp: web.StreamResponse) -> None:
    """Called for every response: writes the device cookie when the throttle gave this browser a token."""
    found = request.get("caller")
    if found is None or not found.changed or not isinstance(resp, web.StreamResponse) or resp.prepared:
        return
    resp.set_cookie(DEVICE_COOKIE, "~".join(found.devices), httponly=True, samesite="Strict", path="/",
                    max_age=DEVICE_SECONDS, secure=request.app["settings"].cookie_secure)
