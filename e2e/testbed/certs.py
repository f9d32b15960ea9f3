"""Key material for one local control plane: a CA, the apiserver's serving certificate,
client certificates for the admin and the control-plane components, and the
service-account signing key pair.

Called by `e2e.testbed.controlplane` once per cluster before anything starts. Each
cluster gets its own CA, as real clusters do, so a kubeconfig for one cluster cannot
talk to another one by accident. Nothing here is secret beyond the test session, but
keys are still written 0600 and never printed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any demo left running, short enough to be obviously throwaway.
_VALIDITY = datetime.timedelta(days=30)
# Clock skew between cert creation and the apiserver's first check is zero here, but a
# little slack keeps "not yet valid" out of the picture entirely.
_BACKDATE = datetime.timedelta(minutes=5)

ADMIN_USER = "admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"

# Identities that get a client certificate: (file stem, CN, O). The controller manager
# runs all controllers under its own name (see components.controller_manager_args), so
# it needs superuser rights; bootstrap RBAC covers the scheduler's named user. kwok acts
# as the node agent and uses the admin kubeconfig.
_CLIENTS: tuple[tuple[str, str, str | None], ...] = (
    ("admin", ADMIN_USER, "system:masters"),
    ("controller-manager", CONTROLLER_MANAGER_USER, "system:masters"),
    ("scheduler", SCHEDULER_USER, None),
)


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its PEM private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Every file a control plane's processes and kubeconfigs refer to."""

    ca: CertPair
    serving: CertPair
    clients: dict[str, CertPair]
    service_account_key: Path
    service_account_pub: Path

    def client(self, name: str) -> CertPair:
        return self.clients[name]


def write_pki(directory: Path, service_ip: str) -> Pki:
    """Create a fresh PKI under `directory` (created if needed) and return its paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _self_signed_ca(ca_key)
    ca = _write_pair(directory / "ca", ca_cert, ca_key)

    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = _issue(
        ca_cert,
        ca_key,
        serving_key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        _apiserver_sans(service_ip),
    )
    serving = _write_pair(directory / "apiserver", serving_cert, serving_key)

    clients = {
        stem: _write_client(directory / stem, ca_cert, ca_key, cn, org)
        for stem, cn, org in _CLIENTS
    }
    sa_key, sa_pub = _write_service_account_keys(directory)
    return Pki(ca, serving, clients, sa_key, sa_pub)


def _apiserver_sans(service_ip: str) -> list[x509.GeneralName]:
    names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", service_ip]
    return [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]


def _self_signed_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herd-testbed-ca")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_client(
    stem: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    organization: str | None,
) -> CertPair:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(ca_cert, ca_key, key, x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH)
    return _write_pair(stem, cert, key)


def _write_service_account_keys(directory: Path) -> tuple[Path, Path]:
    # RSA because it is what every Kubernetes distribution uses for service-account
    # tokens, so token consumers (kubectl, the Python client) see the familiar RS256.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = directory / "sa.key"
    public = directory / "sa.pub"
    _write_secret(private, _key_pem(key))
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _write_pair(stem: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertPair:
    cert_path = stem.with_suffix(".crt")
    key_path = stem.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_secret(key_path, _key_pem(key))
    return CertPair(cert_path, key_path)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_secret(path: Path, data: bytes) -> None:
    """Write `data` so that it is 0600 from the first byte, not chmod-ed afterwards."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@dataclass(frozen=True)
class ServingPki:
    """A private CA and a serving certificate it signed for loopback (127.0.0.1, localhost).

    For the test bed's private chart sources (`e2e.testbed.registry`, the TLS chart
    repository): clients trust them only when given `ca.cert`.
    """

    ca: CertPair
    serving: CertPair


def write_serving_pki(
    directory: Path,
    common_name: str = "herd-testbed-registry",
    names: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> ServingPki:
    """A fresh CA under `directory` and a loopback serving certificate signed by it (also
    valid for the extra DNS `names` and `ips`)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _self_signed_ca(ca_key)
    ca = _write_pair(directory / "ca", ca_cert, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in ("localhost", *names)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in {"127.0.0.1", *ips}]
    cert = _issue(
        ca_cert,
        ca_key,
        key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        sans,
    )
    return ServingPki(ca, _write_pair(directory / "serving", cert, key))
