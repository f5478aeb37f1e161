"""With TSA_URL set, the seal carries an RFC 3161 timestamp: a real local TSA over HTTP (pyHanko's test TSA logic
behind an aiohttp endpoint, its certificate issued by the development CA)."""
from __future__ import annotations

import datetime as dt

from aiohttp import web
from asn1crypto import keys as akeys
from asn1crypto import tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.infra import certs
from server.infra import pdf


def _tsa_material(data_dir):
    d = data_dir / certs.DEV_DIR
    root_key = serialization.load_pem_private_key((d / "root-ca.key").read_bytes(), password=None)
    root = x509.load_pem_x509_certificate((d / "root-ca.pem").read_bytes())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST ONLY Time Stamping Authority")]))
            .issuer_name(root.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    der = serialization.Encoding.DER
    return (ax509.Certificate.load(cert.public_bytes(der)),
            akeys.PrivateKeyInfo.load(key.private_bytes(der, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption())),
            ax509.Certificate.load(root.public_bytes(der)))


async def test_seal_with_rfc3161_timestamp(aiohttp_server, tmp_path):
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    ident = certs.load_identity(tmp_path, env={})
    tsa_cert, tsa_key, root = _tsa_material(tmp_path)
    stamper = DummyTimeStamper(tsa_cert=tsa_cert, tsa_key=tsa_key, certs_to_embed=[root])
    requests = []

    async def tsa(request: web.Request) -> web.Response:
        assert request.content_type == "application/timestamp-query"
        req = tsp.TimeStampReq.load(await request.read())
        requests.append(req)
        return web.Response(body=stamper.request_tsa_response(req).dump(), content_type="application/timestamp-reply")

    app = web.Application()
    app.router.add_post("/tsa", tsa)
    server = await aiohttp_server(app, host="127.0.0.1")
    doc = pdf.Document(title="人民调解协议书", sections=[pdf.Section("协议内容", ["一、测试条款。"])],
                       seal_name="城关镇人民调解委员会", test_material=True)
    unsigned = await pdf.render_async(doc)
    signed = await pdf.sign(unsigned, ident, reason="测试", tsa_url=str(server.make_url("/tsa")))
    assert requests  # (pyHanko asks once more first, to size the signature)
    check = await pdf.verify(signed, ident.trust_roots)
    assert check.ok, check.to_json()
    assert check.signatures[0].timestamp is not None
    # Without a TSA there is no timestamp, and the signature is still valid.
    plain = await pdf.verify(await pdf.sign(unsigned, ident, reason="测试"), ident.trust_roots)
    assert plain.ok and plain.signatures[0].timestamp is None
