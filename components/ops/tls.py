"""Certificates for a cluster's TLS links: a small CA and one certificate per node.

Made with ``cryptography`` (a dependency of Crossbar already): ECDSA P-256 keys, a CA valid
for ten years, node certificates valid for five, each naming its node (common name) and the
host peers connect to (subject alternative name: the IP address, or the DNS name), usable for
both ends of a TLS connection. Both ends of a link check the other: the link's client verifies
the peer's certificate and host against the CA, the peer's link port asks for a client
certificate from the same CA (Crossbar's TLS listener requires one when ``ca_certificates``
is set). Cryptosign still decides *which* node a link is.

Layout (paths relative to the cluster directory ``OUT`` and to each node directory):

===========================  ==================================================  ======
file                         holds                                               mode
===========================  ==================================================  ======
``OUT/tls/ca.key``           the CA's private key: keep it off the nodes         0600
``OUT/tls/ca.pem``           the CA's certificate                                0644
``<node>/tls/node.key``      the node's private key                              0600
``<node>/tls/node.pem``      the node's certificate                              0644
``<node>/tls/ca.pem``        the CA's certificate again (the node trusts it)     0644
===========================  ==================================================  ======

Existing files are kept, so an operator with a PKI of their own puts ``OUT/tls/ca.pem`` and
each node's ``node.pem`` and ``node.key`` in place before running ``cluster init --tls``; only
what is missing is made (a node certificate needs ``OUT/tls/ca.key``).
"""

import datetime
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: the node's files, relative to its node directory (Crossbar reads them relative to it too)
NODE_KEY = "tls/node.key"
NODE_CERT = "tls/node.pem"
NODE_CA = "tls/ca.pem"
#: the CA's files, relative to the cluster directory
CA_KEY = "tls/ca.key"
CA_CERT = "tls/ca.pem"

CA_DAYS = 3650
NODE_DAYS = 1825


def _serial() -> int:
    """A random serial number below 2**63.

    Not ``x509.random_serial_number()`` (159 bits): Crossbar reports a TLS peer's certificate,
    serial included, in the WAMP meta API (``wamp.session.get``), and MessagePack cannot carry
    integers past 64 bits, so a caller using it would get no answer at all. 63 random bits are
    plenty for a CA that signs a handful of certificates with SHA-256.
    """
    return secrets.randbelow(2 ** 63 - 1) + 1


def server_tls() -> Dict[str, Any]:
    """The ``tls`` of a node's link port: its certificate, and the CA a peer's client
    certificate must come from.

    :rtype: dict
    """
    return {"key": NODE_KEY, "certificate": NODE_CERT, "ca_certificates": [NODE_CA]}


def client_tls(hostname: str) -> Dict[str, Any]:
    """The ``tls`` of a link to a peer at ``hostname``: the peer's certificate must come from
    the CA and name ``hostname``; this node shows its own certificate.

    :rtype: dict
    """
    return {"hostname": hostname, "ca_certificates": [NODE_CA], "key": NODE_KEY, "certificate": NODE_CERT}


def _write(path: Path, data: Union[bytes, str], mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode``, also when the file exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _name(common_name: str):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deptcast"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(common_name: str = "deptcast cluster CA",
            now: Optional[datetime.datetime] = None) -> Tuple[bytes, bytes]:
    """A new CA: its private key and self-signed certificate, both PEM.

    :rtype: tuple
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _pem_key(key), _pem_cert(cert)


def make_node_certificate(ca_key_pem: bytes, ca_cert_pem: bytes, node: str, host: str,
                          now: Optional[datetime.datetime] = None) -> Tuple[bytes, bytes]:
    """A key and certificate for ``node``, reached at ``host``, signed by the CA; both PEM.

    :param host: an IP address (the certificate names it as such) or a DNS name
    :rtype: tuple
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an elliptic-curve key (make_ca writes one)")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: List[x509.GeneralName]
    try:
        alt_names = [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        alt_names = [x509.DNSName(host)]
    cert = (x509.CertificateBuilder()
            .subject_name(_name(node)).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=NODE_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _pem_key(key), _pem_cert(cert)


def ensure_cluster_certificates(out: Path, nodes: Iterable[Tuple[str, str]]) -> None:
    """Make what is missing of the CA and the node certificates under ``out``; keep the rest;
    tighten the private keys to 0600 and the ``tls`` directories to 0700.

    :param nodes: ``(name, host)`` of every node; its node directory is ``out/<name>``
    :raises ValueError: if a node certificate is missing and there is no CA key to make it
    """
    out = Path(out)
    ca_dir = out / "tls"
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca_dir.chmod(0o700)
    ca_key_path, ca_cert_path = out / CA_KEY, out / CA_CERT
    if not ca_cert_path.exists():
        if ca_key_path.exists():
            raise ValueError(f"{ca_key_path} exists without its certificate {ca_cert_path}")
        key_pem, cert_pem = make_ca()
        _write(ca_key_path, key_pem, 0o600)
        _write(ca_cert_path, cert_pem, 0o644)
    if ca_key_path.exists():
        ca_key_path.chmod(0o600)
    ca_cert_pem = ca_cert_path.read_bytes()
    for name, host in nodes:
        node_tls = out / name / "tls"
        node_tls.mkdir(parents=True, exist_ok=True)
        node_tls.chmod(0o700)
        key_path, cert_path = out / name / NODE_KEY, out / name / NODE_CERT
        if not (key_path.exists() and cert_path.exists()):
            if not ca_key_path.exists():
                raise ValueError(f"{cert_path} or {key_path} is missing, and there is no CA key "
                                 f"({ca_key_path}) to make them: put the node's certificate and key there")
            key_pem, cert_pem = make_node_certificate(ca_key_path.read_bytes(), ca_cert_pem, name, host)
            _write(key_path, key_pem, 0o600)
            _write(cert_path, cert_pem, 0o644)
        key_path.chmod(0o600)
        node_ca = out / name / NODE_CA
        if not node_ca.exists() or node_ca.read_bytes() != ca_cert_pem:
            _write(node_ca, ca_cert_pem, 0o644)
