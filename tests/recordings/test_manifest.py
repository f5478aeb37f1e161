"""Signed manifests: canonical JSON, Ed25519 signature, and verification that
names exactly what was altered."""

from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recordings import Manifest, canonical_json, load_or_create_signing_key, load_signed_manifest, manifest_digest, manifest_key, save_signed_manifest, sign_manifest, verify_recording

from .conftest import SESSION


@pytest.fixture
def signed(two_party, two_party_copy, signing_key):
    save_signed_manifest(two_party_copy, sign_manifest(two_party.manifest, signing_key))
    return two_party_copy


def codes(problems) -> list[tuple[str, str]]:
    return sorted((p.code, p.key) for p in problems)


def test_intact_recording_verifies(signed, signing_key):
    assert verify_recording(signed, SESSION, signing_key.public_key()) == []
    # The private key works as well (its public half is used).
    assert verify_recording(signed, SESSION, signing_key) == []


def test_one_flipped_byte_in_a_file_is_reported_for_that_file(signed, signing_key, two_party):
    target = two_party.manifest.files[0].key
    path = signed.path(target)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    problems = verify_recording(signed, SESSION, signing_key.public_key())
    assert codes(problems) == [("hash_mismatch", target)]
    assert "altered" in str(problems[0])


def test_truncated_missing_and_extra_files_are_reported(signed, signing_key, two_party):
    first, second = (f.key for f in two_party.manifest.files)
    path = signed.path(first)
    path.write_bytes(path.read_bytes()[:-10])
    signed.delete(second)
    extra = f"{SESSION}/mallory-1.webm"
    with signed.open_write(extra) as f:
        f.write(b"not a recording")
    problems = verify_recording(signed, SESSION, signing_key.public_key())
    assert codes(problems) == sorted(
        [("size_mismatch", first), ("hash_mismatch", first), ("file_missing", second), ("unexpected_file", extra)]
    )


def test_an_edited_manifest_fails_its_signature(signed, signing_key, two_party):
    key = manifest_key(SESSION)
    document = json.loads(signed.get_bytes(key))
    document["manifest"]["files"][0]["duration"] += 1.0  # e.g. hide an edit
    signed.put_bytes(key, json.dumps(document).encode())
    problems = verify_recording(signed, SESSION, signing_key.public_key())
    assert codes(problems) == [("manifest_altered", key)]


def test_a_manifest_rewritten_to_match_altered_files_still_fails(signed, signing_key, two_party):
    # Someone alters a file and updates its hash in the manifest: the signature breaks.
    target = two_party.manifest.files[0].key
    path = signed.path(target)
    path.write_bytes(path.read_bytes() + b"\x00")
    key = manifest_key(SESSION)
    document = json.loads(signed.get_bytes(key))
    entry = next(f for f in document["manifest"]["files"] if f["key"] == target)
    entry["sha256"], entry["size"] = signed.sha256(target), signed.size(target)
    signed.put_bytes(key, json.dumps(document).encode())
    assert codes(verify_recording(signed, SESSION, signing_key.public_key())) == [("manifest_altered", key)]
    # ...and re-signing with another key is named as such.
    forged = sign_manifest(document["manifest"], Ed25519PrivateKey.generate())
    save_signed_manifest(signed, forged)
    assert codes(verify_recording(signed, SESSION, signing_key.public_key())) == [("wrong_key", key)]


def test_bad_or_missing_signature_and_manifest(signed, signing_key):
    key = manifest_key(SESSION)
    document = json.loads(signed.get_bytes(key))
    document["signature"]["value"] = "***"
    signed.put_bytes(key, json.dumps(document).encode())
    assert codes(verify_recording(signed, SESSION, signing_key.public_key())) == [("bad_signature", key)]
    signed.put_bytes(key, b"{not json")
    assert codes(verify_recording(signed, SESSION, signing_key.public_key())) == [("manifest_unreadable", key)]
    signed.delete(key)
    assert codes(verify_recording(signed, SESSION, signing_key.public_key())) == [("manifest_missing", key)]


def test_canonical_json_and_digest_are_stable(two_party, signing_key):
    body = two_party.manifest.to_dict()
    assert canonical_json(body) == canonical_json(json.loads(json.dumps(body, indent=3)))
    document = sign_manifest(two_party.manifest, signing_key)
    assert manifest_digest(document) == manifest_digest(two_party.manifest) == manifest_digest(body)
    assert Manifest.from_dict(json.loads(json.dumps(body))).to_dict() == body
    assert set(body) == {"session_key", "status", "started_at", "stopped_at", "files", "errors", "version", "participants"}
    with pytest.raises(ValueError):
        Manifest.from_dict({"files": []})
    with pytest.raises(TypeError):
        sign_manifest(two_party.manifest, signing_key.public_key())


def test_signing_key_is_created_0600_and_reloaded(tmp_path):
    path = tmp_path / "keys" / "recordings.pem"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_signing_key(path)
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    bad = tmp_path / "bad.pem"
    bad.write_text("nope")
    with pytest.raises(ValueError, match="PEM"):
        load_or_create_signing_key(bad)


def test_loaded_document_round_trips(signed):
    document = load_signed_manifest(signed, SESSION)
    assert document["manifest"]["session_key"] == SESSION
    assert document["signature"]["algorithm"] == "Ed25519"
