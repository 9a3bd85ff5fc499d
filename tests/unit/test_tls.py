"""The cluster's link certificates (``components.ops.tls``)."""

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from components.ops import tls


def test_node_certificates_chain_to_the_ca_and_name_their_host():
    ca_key, ca_pem = tls.make_ca()
    ca = x509.load_pem_x509_certificate(ca_pem)
    for host, kind in (("10.0.0.1", x509.IPAddress), ("node1.example", x509.DNSName)):
        _, pem = tls.make_node_certificate(ca_key, ca_pem, "n1", host)
        cert = x509.load_pem_x509_certificate(pem)
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(kind)
        assert names == [ipaddress.ip_address(host) if kind is x509.IPAddress else host]
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert 0 < cert.serial_number < 2 ** 63


def test_a_ca_key_that_make_ca_did_not_write_is_refused():
    _, ca_pem = tls.make_ca()
    other = tls._pem_key(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="not an elliptic-curve key"):
        tls.make_node_certificate(other, ca_pem, "n1", "127.0.0.1")
