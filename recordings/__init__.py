"""Recordings: forwarded encoded media remuxed into per-participant Matroska/WebM
files without decoding or encoding, crash-safe, described by a signed manifest;
plus recovery after a crash, verification, and the offline grid compose.

Imports rooms/ interfaces, av and cryptography only (no HTTP, database or
socket.io): the server wires consent, the case record and the audit chain.
"""

from .compose import ComposeResult, compose
from .manifest import (
    COMPLETE,
    INTERRUPTED,
    FileEntry,
    Manifest,
    Problem,
    StreamEntry,
    canonical_json,
    load_manifest,
    load_or_create_signing_key,
    load_signed_manifest,
    manifest_digest,
    manifest_key,
    owner_key,
    public_key_pem,
    read_owner,
    save_signed_manifest,
    sign_manifest,
    verify_recording,
    write_owner,
)
from .recorder import RecordingError, SessionRecorder
from .recover import recover
from .storage import DirectoryStore, RecordingStore, check_key

__all__ = [
    "COMPLETE",
    "ComposeResult",
    "DirectoryStore",
    "FileEntry",
    "INTERRUPTED",
    "Manifest",
    "Problem",
    "RecordingError",
    "RecordingStore",
    "SessionRecorder",
    "StreamEntry",
    "canonical_json",
    "check_key",
    "compose",
    "load_manifest",
    "load_or_create_signing_key",
    "load_signed_manifest",
    "manifest_digest",
    "manifest_key",
    "owner_key",
    "public_key_pem",
    "read_owner",
    "recover",
    "save_signed_manifest",
    "sign_manifest",
    "verify_recording",
    "write_owner",
]
