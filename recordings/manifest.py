"""The session manifest: what was recorded, when, by whom, with every file's hash;
canonical JSON, signed with the server's Ed25519 key, and verification that reports
exactly what no longer matches.

Stored as ``<session_key>/manifest.json`` holding the signed document::

    {"manifest": {...}, "signature": {"algorithm": "Ed25519",
                                      "public_key": "<base64 raw 32 bytes>",
                                      "value": "<base64 64-byte signature>"}}

The signature covers `canonical_json(manifest)`. `manifest_digest()` (SHA-256 of the
same bytes) is what goes into the case's audit chain.

One module (~400 lines): the manifest's format, signing and verification belong together.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .storage import RecordingStore, check_key

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
COMPLETE = "complete"
INTERRUPTED = "interrupted"
MEDIA_SUFFIXES = (".webm", ".mkv")


def manifest_key(session_key: str) -> str:
    return f"{check_key(session_key)}/{MANIFEST_NAME}"


OWNER_NAME = "node"


def owner_key(session_key: str) -> str:
    """<session_key>/node: the id of the server node that writes the run (a plain
    UTF-8 line). Not part of the signed manifest; recovery after a crash reads it
    so a node never finalises a run another live node is still writing."""
    return f"{check_key(session_key)}/{OWNER_NAME}"


def write_owner(store: RecordingStore, session_key: str, node_id: str) -> None:
    """Claim the run for `node_id`. Exclusive: FileExistsError if the run already has
    an owner record. Not fsynced here (call store.finalize(owner_key(...)) off the
    event loop); a process kill keeps it, and it is written before any media file."""
    if not isinstance(node_id, str) or not node_id.strip() or "\n" in node_id:
        raise ValueError(f"node id must be a non-empty single line, not {node_id!r}")
    key = owner_key(session_key)
    f = store.open_write(key)
    try:
        f.write(node_id.strip().encode() + b"\n")
    finally:
        f.close()


def read_owner(store: RecordingStore, session_key: str) -> Optional[str]:
    """The node that writes (or wrote) the run; None when the run has no owner record
    (a run from before nodes were recorded), "" while the record is being written."""
    try:
        return store.get_bytes(owner_key(session_key)).decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return None


def iso_time(epoch: float) -> str:
    """UTC ISO 8601 with milliseconds, e.g. 2025-01-31T08:00:00.123Z."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _r(x: float) -> float:
    return round(float(x), 3)


@dataclass
class StreamEntry:
    kind: str  # "audio" | "video"
    codec: str  # "vp8" | "h264" | "opus"
    frames: int
    # Seconds from the file's start to this stream's first frame, and from its
    # first frame to the end of its last one.
    offset: float
    duration: float
    producer_id: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    sample_rate: Optional[int] = None
    channels: Optional[int] = None
    # Spans [start, end] (file seconds) with no media inside this stream longer than
    # GAP_REPORT (muted, lost, or sender paused): shown as gaps, never stretched over.
    gaps: list[list[float]] = field(default_factory=list)


@dataclass
class FileEntry:
    key: str
    participant_id: str
    name: Optional[str]
    role: Optional[str]
    segment: int  # per participant, from 1
    container: str  # "webm" | "matroska"
    started_at: str  # wall clock of the file's time 0 (ISO 8601 UTC)
    offset: float  # seconds from the session start to the file's time 0
    duration: float
    size: int
    sha256: str
    streams: list[StreamEntry]
    # Why the segment ended: stopped | paused | producer_closed | tracks_changed |
    # gap | interrupted
    end_reason: str = "stopped"
    playable: bool = True
    error: Optional[str] = None
    # "screen": the participant's screen share, a file of its own (docs/protocol.md, "Screen
    # sharing"); None: their camera and microphone.
    track: Optional[str] = None

    @property
    def kinds(self) -> list[str]:
        return sorted({s.kind for s in self.streams})

    @property
    def end(self) -> float:
        return self.offset + self.duration


@dataclass
class Manifest:
    session_key: str
    status: str  # COMPLETE | INTERRUPTED
    started_at: str
    stopped_at: str
    files: list[FileEntry] = field(default_factory=list)
    # Recording failures that left no file (e.g. the disk was full), for the record.
    errors: list[str] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    @property
    def participants(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for f in self.files:
            seen.setdefault(f.participant_id, {"id": f.participant_id, "name": f.name, "role": f.role})
        return list(seen.values())

    def files_of(self, participant_id: str) -> list[FileEntry]:
        return [f for f in self.files if f.participant_id == participant_id]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["participants"] = self.participants
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        try:
            files = [
                FileEntry(**{**f, "streams": [StreamEntry(**s) for s in f["streams"]]}) for f in data["files"]
            ]
            return cls(
                session_key=data["session_key"],
                status=data["status"],
                started_at=data["started_at"],
                stopped_at=data["stopped_at"],
                files=files,
                errors=list(data.get("errors", [])),
                version=data.get("version", MANIFEST_VERSION),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a recording manifest: {exc!r}") from None


def canonical_json(data: Any) -> bytes:
    """Deterministic bytes: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _manifest_dict(manifest: Union[Manifest, dict]) -> dict:
    if isinstance(manifest, Manifest):
        return manifest.to_dict()
    if isinstance(manifest, dict) and "manifest" in manifest and "signature" in manifest:
        return manifest["manifest"]
    if isinstance(manifest, dict):
        return manifest
    raise TypeError(f"expected a Manifest or a manifest dict, not {type(manifest).__name__}")


def manifest_digest(manifest: Union[Manifest, dict]) -> str:
    """SHA-256 (hex) of the canonical manifest: the value for the audit chain.
    Accepts a Manifest, its dict, or a signed document."""
    return hashlib.sha256(canonical_json(_manifest_dict(manifest))).hexdigest()


# ----------------------------------------------------------------------------- keys


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def public_key_bytes(key: Union[Ed25519PrivateKey, Ed25519PublicKey]) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError(f"expected an Ed25519 key, not {type(key).__name__}")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_or_create_signing_key(path: Union[str, os.PathLike]) -> Ed25519PrivateKey:
    """The server's Ed25519 signing key from a PEM (PKCS#8, unencrypted) file,
    generated and saved with mode 0600 if the file does not exist."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key another process just created
        except FileExistsError:
            os.unlink(tmp)
            return load_or_create_signing_key(path)
        os.unlink(tmp)
        return key
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("signing key %s is readable by others (mode %o); chmod 600 it", path, mode & 0o777)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: holds a {type(key).__name__}, an Ed25519 key is required")
    return key


def public_key_pem(key: Union[Ed25519PrivateKey, Ed25519PublicKey]) -> str:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# ----------------------------------------------------------------------------- signing


def sign_manifest(manifest: Union[Manifest, dict], private_key: Ed25519PrivateKey) -> dict:
    """The signed document {"manifest", "signature"} for `manifest`."""
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TypeError(f"expected an Ed25519PrivateKey, not {type(private_key).__name__}")
    body = _manifest_dict(manifest)
    return {
        "manifest": body,
        "signature": {
            "algorithm": "Ed25519",
            "public_key": _b64(public_key_bytes(private_key)),
            "value": _b64(private_key.sign(canonical_json(body))),
        },
    }


def save_signed_manifest(store: RecordingStore, document: dict) -> str:
    """Write a signed document as <session_key>/manifest.json; returns the key."""
    if "signature" not in document or "manifest" not in document:
        raise ValueError("not a signed manifest document (sign_manifest() makes one)")
    key = manifest_key(document["manifest"]["session_key"])
    store.put_bytes(key, json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True).encode())
    return key


def load_signed_manifest(store: RecordingStore, session_key: str) -> dict:
    """The stored signed document (FileNotFoundError if none, ValueError if unreadable)."""
    raw = store.get_bytes(manifest_key(session_key))
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"manifest of {session_key} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("manifest"), dict):
        raise ValueError(f"manifest of {session_key} is not a signed manifest document")
    return document


def load_manifest(store: RecordingStore, session_key: str) -> Manifest:
    return Manifest.from_dict(load_signed_manifest(store, session_key)["manifest"])


# ----------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Problem:
    """One thing that does not match. code is one of: manifest_missing,
    manifest_unreadable, bad_signature, wrong_key, manifest_altered, wrong_session,
    file_missing, size_mismatch, hash_mismatch, unexpected_file."""

    code: str
    message: str
    key: Optional[str] = None

    def __str__(self) -> str:
        return self.message


def verify_recording(
    store: RecordingStore,
    session_key: str,
    public_key: Union[Ed25519PublicKey, Ed25519PrivateKey],
) -> list[Problem]:
    """Recheck the manifest signature and every file's size and SHA-256. Returns
    every problem found (empty list: intact). File checks run even when the
    signature fails, so the report says what else differs."""
    expected_key = public_key_bytes(public_key)
    mkey = manifest_key(session_key)
    problems: list[Problem] = []
    try:
        document = load_signed_manifest(store, session_key)
    except FileNotFoundError:
        return [Problem("manifest_missing", f"{mkey} does not exist", mkey)]
    except ValueError as exc:
        return [Problem("manifest_unreadable", str(exc), mkey)]

    body = document["manifest"]
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != "Ed25519":
        problems.append(Problem("bad_signature", f"{mkey} carries no Ed25519 signature", mkey))
    else:
        try:
            signer = base64.b64decode(signature["public_key"], validate=True)
            value = base64.b64decode(signature["value"], validate=True)
        except (KeyError, TypeError, ValueError):
            problems.append(Problem("bad_signature", f"{mkey}: signature fields are malformed", mkey))
        else:
            if signer != expected_key:
                problems.append(
                    Problem("wrong_key", f"{mkey} was signed by another key ({_b64(signer)}), not this server's", mkey)
                )
            else:
                try:
                    Ed25519PublicKey.from_public_bytes(expected_key).verify(value, canonical_json(body))
                except InvalidSignature:
                    problems.append(
                        Problem(
                            "manifest_altered", f"{mkey} was changed after signing (signature does not match)", mkey
                        )
                    )
    if body.get("session_key") != session_key:
        problems.append(
            Problem("wrong_session", f"{mkey} describes session {body.get('session_key')!r}, not {session_key!r}", mkey)
        )

    try:
        manifest = Manifest.from_dict(body)
    except ValueError as exc:
        problems.append(Problem("manifest_unreadable", f"{mkey}: {exc}", mkey))
        return problems
    listed = set()
    for f in manifest.files:
        listed.add(f.key)
        try:
            check_key(f.key)
            if not f.key.startswith(session_key + "/"):
                raise ValueError("outside the session")
        except ValueError:
            problems.append(Problem("manifest_unreadable", f"{mkey} lists a bad key {f.key!r}", f.key))
            continue
        if not store.exists(f.key):
            problems.append(Problem("file_missing", f"{f.key} is listed in the manifest but missing", f.key))
            continue
        size = store.size(f.key)
        if size != f.size:
            problems.append(Problem("size_mismatch", f"{f.key} is {size} bytes, the manifest says {f.size}", f.key))
        digest = store.sha256(f.key)
        if digest != f.sha256:
            problems.append(
                Problem("hash_mismatch", f"{f.key} was altered: SHA-256 {digest}, the manifest says {f.sha256}", f.key)
            )
    for key in store.list(session_key):
        if key.endswith(MEDIA_SUFFIXES) and key not in listed:
            problems.append(Problem("unexpected_file", f"{key} is not listed in the manifest", key))
    return problems
