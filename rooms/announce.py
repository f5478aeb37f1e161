"""Announced media addresses (1:1 NAT), like mediasoup's announcedIp.

aiortc gathers host candidates from the node's own interfaces. Behind a 1:1 NAT
clients cannot reach those addresses; the node's public address must be offered as
well. `announce()` rewrites an SDP the server sends: after each host candidate it
adds one candidate per announced address of the same family (IPv4 for IPv4, IPv6
for IPv6) with the same component, transport, port and type, a foundation of its own
and a priority a little higher than the host one, so clients try it first.

Pure text in, text out: the server's own local description is left as aiortc made it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Iterable, Optional, Sequence, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_MAX_PRIORITY = 2**31 - 1  # RFC 8445 5.1.2


def parse_addresses(addresses: Optional[Iterable[str]]) -> list[Address]:
    """The announced addresses as IP addresses, in order, without repeats. Raises
    ValueError for anything that is not an IPv4 or IPv6 address literal."""
    out: list[Address] = []
    for raw in addresses or ():
        try:
            address = ipaddress.ip_address(str(raw).strip())
        except ValueError:
            raise ValueError(f"media address {raw!r} is not an IPv4 or IPv6 address") from None
        if address.is_unspecified or address.is_multicast:
            raise ValueError(f"media address {raw!r} cannot be announced")
        if address not in out:
            out.append(address)
    return out


def _foundation(host_foundation: str, protocol: str, address: str, taken: set[str]) -> str:
    # Foundations group candidates of one type, base and protocol (RFC 8445 5.1.1.3):
    # an announced address is its own group. 1-32 ice-chars.
    seed = f"announced|{host_foundation}|{protocol}|{address}"
    while True:
        foundation = hashlib.md5(seed.encode()).hexdigest()[:32]
        if foundation not in taken:
            return foundation
        seed += "+"


def announce(sdp: str, addresses: Sequence[Union[str, Address]]) -> str:
    """`sdp` with an extra candidate per host candidate and announced address of the
    same IP family (see the module doc). Unchanged when `addresses` is empty."""
    wanted = parse_addresses(str(a) for a in addresses)
    if not wanted:
        return sdp
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    out: list[str] = []
    section: list[str] = []  # the current m-section (or the session part), for foundations / duplicates

    def flush() -> None:
        out.extend(_announce_section(section, wanted))
        section.clear()

    for line in lines:
        if line.startswith("m="):
            flush()
        section.append(line)
    flush()
    return newline.join(out)


def _parse_candidate(line: str) -> Optional[dict]:
    if not line.startswith("a=candidate:"):
        return None
    fields = line[len("a=candidate:"):].split()
    if len(fields) < 8 or fields[6] != "typ":
        return None
    try:
        priority = int(fields[3])
        int(fields[5])
    except ValueError:
        return None
    return {"fields": fields, "foundation": fields[0], "protocol": fields[2].lower(), "priority": priority,
            "address": fields[4], "port": fields[5], "type": fields[7]}


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower()


def _announce_section(lines: list[str], wanted: list[Address]) -> list[str]:
    candidates = [c for c in map(_parse_candidate, lines) if c is not None]
    if not candidates:
        return list(lines)
    taken = {c["foundation"] for c in candidates}
    present = {(c["protocol"], _normal(c["address"]), c["port"], c["fields"][1]) for c in candidates}
    out: list[str] = []
    for line in lines:
        out.append(line)
        candidate = _parse_candidate(line)
        if candidate is None or candidate["type"] != "host":
            continue
        try:
            family = ipaddress.ip_address(candidate["address"]).version
        except ValueError:
            continue  # an mDNS name: its family is unknown
        extra = 0
        for address in wanted:
            if address.version != family:
                continue
            text = str(address)
            key = (candidate["protocol"], text, candidate["port"], candidate["fields"][1])
            if key in present:
                continue  # already offered (the host address itself, or announced before)
            present.add(key)
            extra += 1
            fields = list(candidate["fields"])
            fields[0] = _foundation(candidate["foundation"], candidate["protocol"], text, taken)
            taken.add(fields[0])
            # One more in the local-preference bits: component bits unchanged.
            fields[3] = str(min(candidate["priority"] + 256 * extra, _MAX_PRIORITY))
            fields[4] = text
            out.append("a=candidate:" + " ".join(fields))
    return out


__all__ = ["announce", "parse_addresses"]
