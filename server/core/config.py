"""Configuration from environment variables (documented in README.md)."""
from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from rooms.announce import parse_addresses


def _default_data_dir() -> Path:
    return Path(os.environ.get("MEDIATION_DATA_DIR", Path.cwd() / "var"))


def _secret_key(data_dir: Path) -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the data dir.

    Keeping it on disk means join tokens and sessions survive a restart of a dev server.
    """
    env = os.environ.get("SECRET_KEY")
    if env:
        if len(env) < 32:
            raise SystemExit("SECRET_KEY must be at least 32 characters long.")
        return env
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


@dataclass
class Settings:
    database_url: str
    secret_key: str
    data_dir: Path
    recordings_dir: Path
    evidence_dir: Path
    public_url: str
    redis_url: str | None = None
    redis_prefix: str = "mediation:"  # keys and channels of this deployment on a shared Redis
    ice_servers: list[dict] = field(default_factory=list)
    # TURN relay for participants behind firewalls (coturn's use-auth-secret): the URLs handed to
    # every participant with short-lived credentials (server/services/live.py). The server's own
    # connections never relay through it.
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str = ""
    identity_check: bool = True
    display_tz: str = "Asia/Shanghai"
    cookie_secure: bool = False
    # The reverse proxies in front (addresses or networks): only from these is X-Forwarded-For
    # read, to know the client's address the throttle of guessing counts by (server/http/client.py).
    trusted_proxies: list[str] = field(default_factory=list)
    max_evidence_bytes: int = 10 * 1024 * 1024
    max_evidence_files: int = 5
    staff_session_hours: int = 12
    join_token_default_seconds: int = 24 * 3600
    # This node, in a deployment of several (REDIS_URL set). Without Redis there is one node.
    node_id: str = "node-1"
    node_url: str = ""              # where clients reach this node; defaults to public_url
    media_addresses: list[str] = field(default_factory=list)  # announced for ICE (1:1 NAT)
    media_ports: tuple[int, int] | None = None  # MEDIA_PORTS: the UDP range media binds in
    # ADAPTATION=off forwards every video in full to every viewer, whatever its link (the
    # benchmark's baseline); on by default (rooms/adaptation.py).
    adaptation: bool = True
    # FORWARDING=frames feeds viewers through the earlier frame path (reassemble, packetize again
    # per viewer) instead of forwarding each RTP packet (the default, "packets"): the benchmark's
    # baseline, and a way back should the packet path misbehave (rooms/media.py).
    forwarding: str = "packets"
    node_heartbeat: float = 1.0     # seconds between heartbeats
    node_ttl: float = 3.0           # a node silent this long is dead and loses its rooms
    node_max_streams: int = 600     # forwarded streams at which a node counts as full
    node_max_cpu: float = 0.85      # share of one core at which a node counts as full
    # After the agreement (docs/procedure.md, "After the agreement"): the follow-up visit (回访) is
    # due this many days after a settlement / a failed mediation; the obliged party is reminded
    # this many days before an obligation's last day.
    followup_days: int = 30
    followup_failed_days: int = 15
    performance_reminder_days: tuple[int, ...] = (7, 1)
    # SIP_LISTEN: the telephone endpoint a PBX or trunk sends calls to, e.g. "udp:0.0.0.0:5060"
    # (docs/protocol.md, "Telephone (SIP)"); empty: no telephone.
    sip_listen: str = ""

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        data_dir = Path(overrides.pop("data_dir", None) or _default_data_dir())
        data_dir.mkdir(parents=True, exist_ok=True)
        db = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'mediation.db'}"
        ice_raw = os.environ.get("ICE_SERVERS", "").strip()
        ice: list[dict] = []
        if ice_raw:
            try:
                parsed = json.loads(ice_raw)
                ice = parsed if isinstance(parsed, list) else [parsed]
            except json.JSONDecodeError:
                # A comma-separated list of URLs, e.g. "stun:stun.example.org:3478"
                ice = [{"urls": u.strip()} for u in ice_raw.split(",") if u.strip()]
        public_url = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8080").rstrip("/")
        values = dict(
            database_url=normalise_db_url(db),
            secret_key=_secret_key(data_dir),
            data_dir=data_dir,
            recordings_dir=Path(os.environ.get("RECORDINGS_DIR", data_dir / "recordings")),
            evidence_dir=Path(os.environ.get("EVIDENCE_DIR", data_dir / "evidence")),
            public_url=public_url,
            redis_url=os.environ.get("REDIS_URL") or None,
            redis_prefix=os.environ.get("REDIS_PREFIX", "mediation:"),
            ice_servers=ice,
            turn_urls=[u.strip() for u in os.environ.get("TURN_URLS", "").split(",") if u.strip()],
            turn_secret=os.environ.get("TURN_SECRET", ""),
            identity_check=os.environ.get("IDENTITY_CHECK", "on").lower() not in ("off", "0", "false", "no"),
            cookie_secure=public_url.startswith("https://"),
            trusted_proxies=os.environ.get("TRUSTED_PROXIES", ""),
            max_evidence_bytes=int(os.environ.get("MAX_EVIDENCE_MB", "10")) * 1024 * 1024,
            display_tz=os.environ.get("DISPLAY_TZ", "Asia/Shanghai"),
        )
        values.update(
            node_id=os.environ.get("NODE_ID") or f"{socket.gethostname()}-{os.environ.get('PORT', '8080')}",
            node_url=(os.environ.get("NODE_URL") or public_url).rstrip("/"),
            media_addresses=[a.strip() for a in os.environ.get("MEDIA_ADDRESSES", "").split(",") if a.strip()],
            media_ports=os.environ.get("MEDIA_PORTS", "").strip() or None,
            node_heartbeat=float(os.environ.get("NODE_HEARTBEAT", "1.0")),
            node_ttl=float(os.environ.get("NODE_TTL", "3.0")),
            node_max_streams=int(os.environ.get("NODE_MAX_STREAMS", "600")),
            node_max_cpu=float(os.environ.get("NODE_MAX_CPU", "0.85")),
            adaptation=os.environ.get("ADAPTATION", "on").strip().lower(),
            forwarding=os.environ.get("FORWARDING", "packets").strip().lower(),
            followup_days=os.environ.get("FOLLOWUP_DAYS", "30"),
            followup_failed_days=os.environ.get("FOLLOWUP_FAILED_DAYS", "15"),
            performance_reminder_days=os.environ.get("PERFORMANCE_REMINDER_DAYS", "7,1"),
            sip_listen=os.environ.get("SIP_LISTEN", "").strip(),
        )
        values.update(overrides)
        try:  # a typo here would otherwise refuse every join, not the start
            parse_addresses(values["media_addresses"])
        except ValueError as exc:
            raise SystemExit(f"MEDIA_ADDRESSES: {exc}") from None
        try:
            values["media_ports"] = parse_port_range(values["media_ports"])
        except ValueError as exc:
            raise SystemExit(f"MEDIA_PORTS: {exc}") from None
        try:  # and a broken relay would only show when a party behind a firewall cannot get in
            check_turn(values["turn_urls"], values["turn_secret"])
        except ValueError as exc:
            raise SystemExit(f"TURN_URLS / TURN_SECRET: {exc}") from None
        try:  # a typo would otherwise make every client behind the proxy one address
            values["trusted_proxies"] = parse_networks(values["trusted_proxies"])
        except ValueError as exc:
            raise SystemExit(f"TRUSTED_PROXIES: {exc}") from None
        if isinstance(values["adaptation"], str):
            if values["adaptation"] not in ("on", "off"):
                raise SystemExit(f"ADAPTATION: expected on or off, not {values['adaptation']!r}")
            values["adaptation"] = values["adaptation"] == "on"
        if values["forwarding"] not in ("packets", "frames"):
            raise SystemExit(f"FORWARDING: expected packets or frames, not {values['forwarding']!r}")
        try:  # a typo would otherwise only show weeks later, when no follow-up is due
            values["followup_days"] = parse_days(values["followup_days"], "FOLLOWUP_DAYS")
            values["followup_failed_days"] = parse_days(values["followup_failed_days"], "FOLLOWUP_FAILED_DAYS")
            values["performance_reminder_days"] = parse_day_list(values["performance_reminder_days"])
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        if values["sip_listen"] and not _SIP_LISTEN.fullmatch(values["sip_listen"]):
            raise SystemExit(f"SIP_LISTEN: expected udp:HOST:PORT (e.g. udp:0.0.0.0:5060), not {values['sip_listen']!r}")
        if not values.get("node_url"):
            values["node_url"] = values["public_url"]
        return cls(**values)


_SIP_LISTEN = re.compile(r"udp:(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.-]+):(\d{1,5})")


_TURN_URL = re.compile(r"^(turns?):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
                       r"(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$")


def parse_port_range(raw) -> tuple[int, int] | None:
    """MEDIA_PORTS: "40000-40999" (low-high, within 1024-65535), or unset for any port."""
    if raw is None or isinstance(raw, tuple):
        return raw
    m = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", raw)
    if m is None:
        raise ValueError(f"{raw!r} is not a range like 40000-40999")
    low, high = int(m.group(1)), int(m.group(2))
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"{raw!r}: need 1024 <= low <= high <= 65535")
    return low, high


def parse_days(raw, name: str) -> int:
    """A number of days between 1 and 365 (FOLLOWUP_DAYS, FOLLOWUP_FAILED_DAYS)."""
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw).strip()
        if not text.isdigit():
            raise ValueError(f"{name}: expected a number of days, not {raw!r}")
        value = int(text)
    if not 1 <= value <= 365:
        raise ValueError(f"{name}: between 1 and 365 days, not {value}")
    return value


def parse_day_list(raw) -> tuple[int, ...]:
    """PERFORMANCE_REMINDER_DAYS: comma-separated days before the last day (0-60), e.g. "7,1"; empty: none."""
    if isinstance(raw, (tuple, list)):
        items = [str(x) for x in raw]
    else:
        items = [x.strip() for x in str(raw).split(",") if x.strip()]
    out = set()
    for x in items:
        if not x.isdigit() or not 0 <= int(x) <= 60:
            raise ValueError(f"PERFORMANCE_REMINDER_DAYS: days from 0 to 60, comma-separated, not {raw!r}")
        out.add(int(x))
    return tuple(sorted(out, reverse=True))


def parse_networks(raw) -> list[str]:
    """TRUSTED_PROXIES: comma-separated addresses or networks (127.0.0.1, 10.0.0.0/8, ::1); empty: none."""
    items = list(raw) if isinstance(raw, (list, tuple)) else [x.strip() for x in str(raw).split(",") if x.strip()]
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"not an address or network: {item!r}") from None
    return out


def check_turn(urls: list[str], secret: str) -> None:
    """TURN URLs as RFC 7065 writes them (turn:host[:port][?transport=udp|tcp], turns:host[:port]),
    and a shared secret long enough to sign credentials with; both or neither."""
    for url in urls:
        m = _TURN_URL.match(url)
        if m is None:
            raise ValueError(f"not a TURN URL: {url!r} (e.g. turn:turn.example.org:3478?transport=tcp, "
                             "turns:turn.example.org:443)")
        if m.group(3) is not None and not 1 <= int(m.group(3)) <= 65535:
            raise ValueError(f"bad port in {url!r}")
        if m.group(1) == "turns" and m.group(4) == "udp":
            raise ValueError(f"turns: runs over TLS on TCP, not UDP: {url!r}")
    if urls and len(secret) < 16:
        raise ValueError("TURN_URLS needs TURN_SECRET (coturn's static-auth-secret, at least 16 characters)")
    if secret and not urls:
        raise ValueError("TURN_SECRET is set but TURN_URLS is empty")


def normalise_db_url(url: str) -> str:
    """Accept plain postgresql:// and sqlite:// URLs and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    return url
