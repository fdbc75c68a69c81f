"""A throw-away certificate authority and one certificate for 127.0.0.1, for Dask TLS tests."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


def make_tls_files(directory: Path) -> dict[str, str]:
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` (signed by the CA; SAN 127.0.0.1, localhost)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regsweep test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"tls_ca_file": directory / "ca.pem", "tls_client_cert": directory / "cert.pem",
             "tls_client_key": directory / "key.pem"}
    files["tls_ca_file"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["tls_client_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["tls_client_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return {k: str(v) for k, v in files.items()}
