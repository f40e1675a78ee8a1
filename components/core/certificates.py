"""The rack's private CA and the serving certificate it signs, made by two dynamic providers.

Creates nothing by itself; `new_rack_ca` and `RackCa` (components/system/rack_ca.py) register:
- `CaCertificate`: an ECDSA P-256 key and a self-signed CA certificate (`CA:TRUE, pathlen:0`,
  keyCertSign + cRLSign) valid `validity_days`. Made once, in the provider's `create` (never at
  preview, never in the program); its `diff` replaces it only when its `common_name` changes, so
  nothing about the domain or the ingress address touches it (`pulumi up --replace`, how
  docs/trust.md re-keys it, makes a new one under the same name).
- `ServingCertificate`: a fresh ECDSA P-256 key and a leaf signed by that CA for `dns_names` and
  `ip_addresses` (serverAuth, validity `validity_days`). Its `diff` reissues it **in place** (an
  update: same resource id, nothing replaced) when the names, the addresses, the validity or the
  CA changed, or when fewer than `renew_days` remain at the time of the `preview`/`up`.

Both private keys are outputs the caller marks secret (`additional_secret_outputs`); the
certificates are public. Keys are PKCS#8 PEM, certificates PEM.

The crypto is the `cryptography` package (pyca), not our own: a well-kept binding to OpenSSL that
every Python TLS stack already trusts. Why a dynamic provider rather than pulumi-tls or
cert-manager: see the README ("A private CA for the rack").

The providers are pickled into each resource's state by reference to this module
(`PROVIDER_MODULE`): moving or renaming this module or the classes breaks existing stacks'
refresh and delete, as for GeneratedSecret. Each provider takes an optional clock so tests can
move time; in a stack it is None (the machine's UTC clock).
"""

from __future__ import annotations

import ipaddress
import secrets as _secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pulumi.dynamic as dynamic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PROVIDER_MODULE = "components.core.certificates"
"""Where the state finds the providers (pickled by reference): never move them."""

BACKDATE = timedelta(minutes=5)
"""`notBefore` is set this far back: a node whose clock runs a little behind still accepts a
certificate issued a moment ago."""

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate, both PEM."""

    key_pem: str
    cert_pem: str


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    validity_days: int,
    now: datetime,
) -> x509.CertificateBuilder:
    """What the CA and the leaf share: names, key, a random serial, validity from `now - BACKDATE`,
    and the critical basicConstraints and keyUsage (a CA: `CA:TRUE, pathlen:0`, keyCertSign and
    cRLSign; a leaf: `CA:FALSE`), digitalSignature for both (ECDSA signs)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def issue_ca(common_name: str, *, validity_days: int, now: datetime) -> Issued:
    """A new key and a self-signed CA certificate for it, valid `validity_days` from `now`."""
    key = _new_key()
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "homelab"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _builder(name, name, key, ca=True, validity_days=validity_days, now=now)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(_key_pem(key), _cert_pem(cert))


def issue_serving(
    *,
    ca: Issued,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    validity_days: int,
    now: datetime,
) -> Issued:
    """A new key and a server certificate signed by `ca` for the names and addresses."""
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one name or address")
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (list(dns_names) or list(ip_addresses))[0])])
    cert = (
        _builder(subject, ca_cert.subject, key, ca=False, validity_days=validity_days, now=now)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(_key_pem(key), _cert_pem(cert))


def not_after(cert_pem: str) -> datetime:
    """When a PEM certificate expires (UTC)."""
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc


def due_for_renewal(cert_pem: str, *, renew_days: int, now: datetime) -> bool:
    """Whether fewer than `renew_days` remain before the certificate expires at `now`."""
    return not_after(cert_pem) - now < timedelta(days=renew_days)


# --- the dynamic providers -------------------------------------------------------------------


class _CaProvider(dynamic.ResourceProvider):
    clock: Clock | None = None
    """A test's clock; None: the machine's. A class attribute, set on the instance only when given:
    an instance with no attributes of its own pickles with no state at all. (With state, pulumi's
    `serialize_provider` walks a chain of `_batch_setitems` wrappers that grows by one on every call
    in the process, and a process that registers thousands, like the test session, overflows.)"""

    def __init__(self, clock: Clock | None = None):
        if clock is not None:
            self.clock = clock

    def _now(self) -> datetime:
        return (self.clock or utc_now)()

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        ca = issue_ca(str(props["common_name"]), validity_days=int(props["validity_days"]), now=self._now())
        outs = {
            "common_name": props["common_name"],
            "validity_days": props["validity_days"],
            "cert_pem": ca.cert_pem,
            "private_key_pem": ca.key_pem,
        }
        return dynamic.CreateResult(id_=_secrets.token_hex(8), outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # Only the subject replaces the CA (every device that trusts it must then trust the new one).
        # `validity_days` is read at creation only: a later change is not a reason to re-key.
        replaced = olds.get("common_name") != news.get("common_name")
        return dynamic.DiffResult(
            changes=replaced, replaces=["common_name"] if replaced else [], delete_before_replace=False
        )


class _ServingProvider(dynamic.ResourceProvider):
    clock: Clock | None = None
    """As `_CaProvider.clock`."""

    def __init__(self, clock: Clock | None = None):
        if clock is not None:
            self.clock = clock

    def _now(self) -> datetime:
        return (self.clock or utc_now)()

    def _issue(self, props: dict[str, Any]) -> dict[str, Any]:
        leaf = issue_serving(
            ca=Issued(str(props["ca_private_key_pem"]), str(props["ca_cert_pem"])),
            dns_names=list(props["dns_names"]),
            ip_addresses=list(props["ip_addresses"]),
            validity_days=int(props["validity_days"]),
            now=self._now(),
        )
        # The CA's key is an input only: it is not kept a second time among the outputs.
        outs = {k: props[k] for k in ("dns_names", "ip_addresses", "validity_days", "renew_days", "ca_cert_pem")}
        return {**outs, "cert_pem": leaf.cert_pem, "private_key_pem": leaf.key_pem}

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_=_secrets.token_hex(8), outs=self._issue(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=self._issue(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        keys = ("dns_names", "ip_addresses", "validity_days", "renew_days", "ca_cert_pem")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        cert = olds.get("cert_pem")
        renew_days = int(news["renew_days"])
        if isinstance(cert, str) and cert and due_for_renewal(cert, renew_days=renew_days, now=self._now()):
            changed.append("cert_pem")
        # Never a replacement: the resource id, and so everything that depends on it, stays.
        return dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)


for _provider in (_CaProvider, _ServingProvider):
    _provider.__module__ = PROVIDER_MODULE


class CaCertificate(dynamic.Resource):
    """The CA: `cert_pem` (public) and `private_key_pem` (mark it secret)."""

    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]

    def __init__(self, name: str, *, common_name: str, validity_days: int, opts: pulumi.ResourceOptions):
        props = {"common_name": common_name, "validity_days": validity_days, "cert_pem": None, "private_key_pem": None}
        super().__init__(_CaProvider(), name, props, opts)


class ServingCertificate(dynamic.Resource):
    """A leaf signed by the CA: `cert_pem` (public) and `private_key_pem` (mark it secret)."""

    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        ca_cert_pem: pulumi.Input[str],
        ca_private_key_pem: pulumi.Input[str],
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
        validity_days: int,
        renew_days: int,
        opts: pulumi.ResourceOptions,
    ):
        props = {
            "ca_cert_pem": ca_cert_pem,
            "ca_private_key_pem": ca_private_key_pem,
            "dns_names": list(dns_names),
            "ip_addresses": list(ip_addresses),
            "validity_days": validity_days,
            "renew_days": renew_days,
            "cert_pem": None,
            "private_key_pem": None,
        }
        super().__init__(_ServingProvider(), name, props, opts)
