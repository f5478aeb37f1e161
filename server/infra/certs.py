"""The institution's signing identity: a configured certificate in production, a local test CA in development.

Production sets ``SIGNING_CERT`` (PEM: the institution's certificate, optionally followed by its
chain) and ``SIGNING_KEY`` (PEM private key; ``SIGNING_KEY_PASSWORD`` if it is encrypted).
``SIGNING_TRUST_ROOTS`` (PEM bundle) names the roots a verification trusts; by default the
self-signed certificates in the ``SIGNING_CERT`` bundle.

Without them, the first start creates ``<data dir>/signing/``: a root CA and an institution
certificate, both plainly marked as test material (CN "TEST ONLY …"). Documents signed with
them verify against that local root only and carry no legal weight.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.infra.files import atomic_write

log = logging.getLogger("mediation.certs")

DEV_DIR = "signing"
TEST_ORG = "TEST ONLY - development material, no legal effect"
ROOT_CN = "TEST ONLY Mediation Development Root CA"
SEAL_CN = "TEST ONLY Mediation Institution Seal"


class SigningConfigError(RuntimeError):
    pass


@dataclass
class SigningIdentity:
    cert: ax509.Certificate
    key: akeys.PrivateKeyInfo
    chain: list[ax509.Certificate]
    trust_roots: list[ax509.Certificate]
    test_material: bool
    source: str  # "configured" or the dev directory
    extra: dict = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return self.cert.subject.human_friendly

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.cert.dump()).hexdigest()

    def signer(self):
        from pyhanko.sign import signers
        from pyhanko_certvalidator.registry import SimpleCertificateStore
        return signers.SimpleSigner(signing_cert=self.cert, signing_key=self.key,
                                    cert_registry=SimpleCertificateStore.from_certs(self.chain))

    def describe(self) -> dict:
        return {"subject": self.subject, "sha256": self.fingerprint, "test_material": self.test_material,
                "not_after": self.cert["tbs_certificate"]["validity"]["not_after"].native.isoformat()}


def _to_asn1(cert: x509.Certificate) -> ax509.Certificate:
    return ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _load_pem_certs(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise SigningConfigError(f"not a PEM certificate bundle: {exc}") from exc


def _key_info(key) -> akeys.PrivateKeyInfo:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return akeys.PrivateKeyInfo.load(der)


def _write_private(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o600)


def _write_public(path: Path, data: bytes) -> None:
    atomic_write(path, data)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=sign, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def create_dev_material(directory: Path) -> None:
    """A test root CA and an institution certificate issued by it (ECDSA P-256, SHA-256)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(_name(ROOT_CN)).issuer_name(_name(ROOT_CN))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(sign=False, ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    seal_key = ec.generate_private_key(ec.SECP256R1())
    seal = (x509.CertificateBuilder().subject_name(_name(SEAL_CN)).issuer_name(root.subject)
            .public_key(seal_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(sign=True, ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                                  x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12")]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(seal_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write_private(directory / "root-ca.key", root_key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    _write_private(directory / "institution.key", seal_key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    _write_public(directory / "root-ca.pem", root.public_bytes(pem))
    # Written last: its presence means the set is complete.
    _write_public(directory / "institution.pem", seal.public_bytes(pem) + root.public_bytes(pem))
    (directory / "README.txt").write_text(
        "TEST ONLY. These keys were generated by the mediation server for development and tests.\n"
        "Documents signed with them have no legal effect. In production set SIGNING_CERT and\n"
        "SIGNING_KEY to the institution's real certificate and key.\n", encoding="utf-8")
    log.warning("created TEST ONLY signing certificates in %s (development material, no legal effect)", directory)


def _identity_from_files(cert_path: Path, key_path: Path, password: bytes | None, trust_path: Path | None,
                         *, test: bool, source: str) -> SigningIdentity:
    try:
        certs = _load_pem_certs(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=password)
    except OSError as exc:
        raise SigningConfigError(f"cannot read the signing certificate or key: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise SigningConfigError(f"cannot load the signing key: {exc}") from exc
    if not certs:
        raise SigningConfigError("the signing certificate file holds no certificate")
    leaf = certs[0]
    if leaf.public_key().public_numbers() != key.public_key().public_numbers():
        raise SigningConfigError("the signing key does not belong to the signing certificate")
    chain = [_to_asn1(c) for c in certs]
    if trust_path is not None:
        roots = [_to_asn1(c) for c in _load_pem_certs(trust_path.read_bytes())]
    else:
        roots = [_to_asn1(c) for c in certs if c.subject == c.issuer]
    return SigningIdentity(cert=chain[0], key=_key_info(key), chain=chain, trust_roots=roots,
                           test_material=test, source=source)


_cache: dict[tuple, SigningIdentity] = {}
_lock = threading.Lock()


def load_identity(data_dir: Path, env: dict | None = None) -> SigningIdentity:
    """The configured identity, or the development one (created on first use)."""
    env = os.environ if env is None else env
    cert, key = env.get("SIGNING_CERT"), env.get("SIGNING_KEY")
    trust = env.get("SIGNING_TRUST_ROOTS")
    if bool(cert) != bool(key):
        raise SigningConfigError("Set both SIGNING_CERT and SIGNING_KEY, or neither (development test CA).")
    cache_key = (str(cert), str(key), str(trust), str(Path(data_dir).resolve()))
    with _lock:
        if cache_key in _cache:
            return _cache[cache_key]
        if cert:
            pw = env.get("SIGNING_KEY_PASSWORD")
            ident = _identity_from_files(Path(cert), Path(key), pw.encode() if pw else None,
                                         Path(trust) if trust else None, test=False, source="configured")
        else:
            d = Path(data_dir) / DEV_DIR
            if not (d / "institution.pem").exists():
                create_dev_material(d)
            ident = _identity_from_files(d / "institution.pem", d / "institution.key", None, d / "root-ca.pem",
                                         test=True, source=str(d))
        _cache[cache_key] = ident
        return ident
