"""Configuration from environment variables (documented in README.md)."""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path


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
    ice_servers: list[dict] = field(default_factory=list)
    identity_check: bool = True
    display_tz: str = "Asia/Shanghai"
    cookie_secure: bool = False
    max_evidence_bytes: int = 10 * 1024 * 1024
    max_evidence_files: int = 5
    staff_session_hours: int = 12
    join_token_default_seconds: int = 24 * 3600

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
            ice_servers=ice,
            identity_check=os.environ.get("IDENTITY_CHECK", "on").lower() not in ("off", "0", "false", "no"),
            cookie_secure=public_url.startswith("https://"),
            max_evidence_bytes=int(os.environ.get("MAX_EVIDENCE_MB", "10")) * 1024 * 1024,
            display_tz=os.environ.get("DISPLAY_TZ", "Asia/Shanghai"),
        )
        values.update(overrides)
        return cls(**values)


def normalise_db_url(url: str) -> str:
    """Accept plain postgresql:// and sqlite:// URLs and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    return url
